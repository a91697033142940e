"""Measuring a region band by band equals measuring it whole, for cells that
cross band borders too (2-D and Z-stacks, every kind of pixel)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from percell.contracts import MaskRun
from percell.measure import (
    METRICS,
    band_rows,
    intensity_metrics,
    mask_metrics,
    measure_region,
)
from percell.storage import IMAGE_COMPRESSOR, create_array, open_group

CHANNELS = ["A", "B"]


def blobs(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Labels of random blobs, many crossing band borders, and label 2 also
    in a second piece at the bottom (a label need not be connected)."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.random(shape), 4)
    labels, _ = ndimage.label(noise > np.quantile(noise, 0.55))
    labels[..., -4:, :4] = 2
    return labels.astype(np.int32)


def stored(tmp_path, name, data, chunks):
    group = open_group(tmp_path / name, mode="w")
    arr = create_array(group, "0", data.shape, chunks, data.dtype, IMAGE_COMPRESSOR)
    arr[...] = data
    return arr


@pytest.mark.parametrize("dtype", ["uint16", "int16", "uint8", "int32", "float32"])
@pytest.mark.parametrize("shape", [(300, 257), (3, 160, 130)])
def test_bands_give_the_whole_images_metrics(tmp_path, dtype, shape):
    labels = blobs(shape, seed=1)
    rng = np.random.default_rng(2)
    if np.dtype(dtype).kind == "f":
        image = (rng.normal(0, 100, (2, *shape))).astype(dtype)
    else:
        info = np.iinfo(dtype)
        image = rng.integers(max(info.min, -3000), min(info.max, 3000), (2, *shape))
        image = image.astype(dtype)
    mask = (rng.random(shape) > 0.5).astype(np.uint8) * 255
    chunks_yx = (32, 64)
    lead = (1,) * (len(shape) - 2)
    lab = stored(tmp_path, "labels", labels, (*lead, *chunks_yx))
    img = stored(tmp_path, "image", image, (1, *lead, *chunks_yx))
    msk = stored(tmp_path, "mask", mask, (*lead, *chunks_yx))
    run = MaskRun(name="r", channel="B", min_fraction=0.4)
    per_row = int(np.prod(shape)) // shape[-2]
    small = 64 * per_row  # bands of 64 rows: cells cross band borders
    assert band_rows(shape, 32, small) == 64
    wide, stats = measure_region(lab, img, CHANNELS, [(run, msk)], band_pixels=small)

    # label 2 spans the first band to the last; others cross one border
    ys = np.nonzero(labels == 2)[-2]
    assert ys.min() // 64 == 0 and ys.max() // 64 == (shape[-2] - 1) // 64
    ids = np.unique(labels[labels > 0])
    assert wide["label_value"].tolist() == ids.tolist()
    for c, name in enumerate(CHANNELS):
        whole = intensity_metrics(labels, image[c])
        for metric in METRICS:
            np.testing.assert_allclose(
                wide[f"{name}|{metric}"].to_numpy(),
                whole[metric].to_numpy(),
                rtol=1e-12,
                err_msg=f"{name} {metric}",
            )
    whole_mask = mask_metrics(labels, image[1], mask, 0.4).reset_index()
    assert stats["run"].unique().tolist() == ["r"]
    pd.testing.assert_frame_equal(
        stats.drop(columns="run").reset_index(drop=True),
        whole_mask,
        check_exact=False,
        rtol=1e-12,
    )


def test_a_region_without_cells_gives_empty_tables_with_their_columns(tmp_path):
    lab = stored(tmp_path, "labels", np.zeros((70, 40), np.int32), (32, 32))
    img = stored(tmp_path, "image", np.ones((2, 70, 40), np.uint16), (1, 32, 32))
    msk = stored(tmp_path, "mask", np.zeros((70, 40), np.uint8), (32, 32))
    run = MaskRun(name="r", channel="A", min_fraction=0.5)
    wide, stats = measure_region(lab, img, CHANNELS, [(run, msk)], band_pixels=1280)
    assert wide.empty and "A|median_intensity" in wide.columns
    assert stats.empty and "fraction_inside" in stats.columns


def test_a_band_is_bounded_by_pixels_not_by_the_chunk():
    """A plate well's label chunk is a whole field: a band of whole chunks
    across a 20000-px-wide well would be 50 M pixels, so bands cut chunks."""
    assert band_rows((20000, 20000), 2500, 1 << 24) == 838
    assert band_rows((20000, 20000), 512, 1 << 24) == 512
    assert band_rows((4096, 4096), 512, 1 << 24) == 4096
    assert band_rows((10, 4096, 4096), 512, 1 << 24) == 409


@pytest.mark.parametrize("how", ["max", "mean"])
def test_a_projected_stack_is_measured_as_numpys_projection(tmp_path, how):
    """ZProjected streams a stack's projection band by band; measuring it
    equals measuring the 2-D arrays numpy projects (labels and masks by
    their maximum), and write_projection stores exactly those values."""
    from percell.projection import ZProjected, write_projection

    shape = (3, 150, 130)
    labels = blobs(shape, seed=3)
    rng = np.random.default_rng(4)
    image = rng.integers(0, 4000, (2, *shape)).astype(np.uint16)
    mask = (rng.random(shape) > 0.5).astype(np.uint8) * 255
    lab = stored(tmp_path, "labels", labels, (1, 32, 64))
    img = stored(tmp_path, "image", image, (1, 1, 32, 64))
    msk = stored(tmp_path, "mask", mask, (1, 32, 64))
    run = MaskRun(name="r", channel="B", min_fraction=0.4)
    flat_image = image.max(axis=1) if how == "max" else image.mean(axis=1)
    flat = (labels.max(axis=0), flat_image, mask.max(axis=0))
    got = measure_region(
        ZProjected(lab, "max", False),
        ZProjected(img, how, True),
        CHANNELS,
        [(run, ZProjected(msk, "max", False))],
        band_pixels=40 * 130,
    )
    expected = measure_region(
        stored(tmp_path, "l2", flat[0], (32, 64)),
        stored(tmp_path, "i2", flat[1], (1, 32, 64)),
        CHANNELS,
        [(run, stored(tmp_path, "m2", flat[2], (32, 64)))],
    )
    for a, b in zip(got, expected, strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    write_projection(img, tmp_path / "proj", how, True, {"x": 1})
    written = open_group(tmp_path / "proj")
    assert written.attrs["x"] == 1
    np.testing.assert_array_equal(written["0"][...], flat_image)
