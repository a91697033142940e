"""QC figures: drawn from the right pyramid level, with the omero colours."""

from __future__ import annotations

import tracemalloc

import numpy as np
from PIL import Image

from percell import ngff
from percell.contracts import Channel
from percell.report import composite, nearest_level, region_figure
from percell.storage import IMAGE_COMPRESSOR, create_array, open_group


def image_group(path, shape, levels, windows, colours=("FF0000", "00FF00")):
    """An image group of ``levels`` levels; nothing is written to level 0."""
    group = open_group(path, mode="w")
    for level in range(levels):
        factor = 2**level
        level_shape = (shape[0], shape[1] // factor, shape[2] // factor)
        create_array(
            group, str(level), level_shape, (1, 512, 512), "uint16", IMAGE_COMPRESSOR
        )
    channels = [Channel(name=f"c{i}", color=c) for i, c in enumerate(colours)]
    group.attrs.put(ngff.image_attrs("r", levels, 0.5, None, False, channels, windows))
    return group


def test_nearest_level_is_the_one_closest_to_1024_px(tmp_path):
    group = image_group(tmp_path / "img", (2, 5000, 3000), 4, [(0, 1, 0, 1)] * 2)
    # edges 5000, 2500, 1250, 625: 1250 is nearest to 1024
    assert nearest_level(group) == "2"


def test_composite_uses_the_omero_colours_and_windows(tmp_path):
    group = image_group(
        tmp_path / "img", (2, 8, 8), 1, [(0, 65535, 100, 200), (0, 65535, 0, 1000)]
    )
    data = np.zeros((2, 8, 8), np.uint16)
    data[0, 0, 0] = 150  # half-way in channel 0's window: half red
    data[1, 0, 1] = 5000  # beyond channel 1's window: full green
    group["0"][...] = data
    rgb, level = composite(group)
    assert level == "0"
    assert rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 0], [127, 0, 0])  # 255 x 0.5, truncated
    np.testing.assert_array_equal(rgb[0, 1], [0, 255, 0])
    np.testing.assert_array_equal(rgb[1, 1], [0, 0, 0])


def test_a_huge_region_is_drawn_from_a_small_level(tmp_path):
    """Level 0 here is 2 x 32768 x 32768 (4 GB if read); the figure reads the
    1024 px level only, so its memory stays a few MB."""
    exp = tmp_path / "exp.percell"
    image_group(exp / "images.zarr/c/r1", (2, 32768, 32768), 6, [(0, 65535, 0, 10)] * 2)
    tracemalloc.start()
    region_figure(exp, "c/r1", [], tmp_path / "r1.png")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100e6
    with Image.open(tmp_path / "r1.png") as png:
        assert png.width > 500
