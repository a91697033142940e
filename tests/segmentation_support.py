"""Helpers for segmentation tests: matched-object F1, segmenting in memory,
shape features against regionprops."""

from __future__ import annotations

import numpy as np

from percell.matching import matched_f1  # noqa: F401 (tests import it here)
from percell.storage import LABEL_COMPRESSOR, create_array, open_group
from percell.tiling import segment_tiled
from percell.watershed import region_background, segment_nuclei


class Watershed:
    """The watershed of one in-memory region, as the segment step sets it up:
    the region's background and noise once, then a method per tile that
    takes (background, image)."""

    def __init__(self, image, diameter=16.0, min_size=30, sigma=1.0, anisotropy=None):
        middle = image[image.shape[0] // 2] if image.ndim == 3 else image
        self.background = region_background(
            image, 1.0, middle[:512, :512], diameter, sigma, anisotropy is not None
        )
        self.diameter, self.min_size, self.sigma = diameter, min_size, sigma
        self.anisotropy = anisotropy  # a stack segmented as a volume

    def segment(self, image, background):
        return segment_nuclei(
            image,
            background,
            self.diameter,
            self.background.noise,
            self.sigma,
            self.min_size,
            self.anisotropy,
        )

    def window(self, tile, image):
        return np.broadcast_to(
            self.background.window(tile.pad_y, tile.pad_x),
            image[..., slice(*tile.pad_y), slice(*tile.pad_x)].shape,
        )

    def __call__(self, tile):
        return self.segment(tile[1], tile[0])

    def whole(self, image):
        """The untiled result."""
        behind = self.background.window((0, image.shape[-2]), (0, image.shape[-1]))
        return self.segment(image, np.broadcast_to(behind, image.shape))


def segment_in_memory(
    image: np.ndarray,
    method,
    tmp_path,
    tile_size: int,
    overlap: int,
    name: str = "labels",
    threads: int = 1,
):
    """Run the tiled segmentation of ``image`` (Y, X) or (Z, Y, X) into a
    zarr array; a ``Watershed`` method gets its background as the tile's
    first plane."""
    group = open_group(tmp_path / name, mode="w")
    chunks = (*image.shape[:-2], 512, 512)
    labels = create_array(group, "0", image.shape, chunks, np.int32, LABEL_COMPRESSOR)

    def read_tile(tile):
        window = image[..., slice(*tile.pad_y), slice(*tile.pad_x)]
        if isinstance(method, Watershed):
            return np.stack([method.window(tile, image), window])
        return window

    cells = segment_tiled(
        read_tile, method, labels, tile_size, overlap, 0.5, threads=threads
    )
    return labels[:], cells


def assert_shape_features_equal(table, ref, columns) -> None:
    """``table``'s shape ``columns`` equal regionprops' ``ref``: to 1e-12 (the
    inertia features come from exact moments, regionprops' are rounded), an
    orientation up to a half turn (±π/2 are one axis) and to within the
    rounding that nearly equal axes amplify."""
    for column in columns:
        got, want = np.asarray(table[column], float), np.asarray(ref[column], float)
        if column != "orientation":
            np.testing.assert_allclose(got, want, 1e-12, 1e-12, err_msg=column)
            continue
        # the angle's error is the tensor's rounding times (l1 + l2) / (l1 - l2)
        l1 = (np.asarray(ref["major_axis_length"], float) / 4) ** 2
        l2 = (np.asarray(ref["minor_axis_length"], float) / 4) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            tolerance = 1e-12 + 1e-14 * (l1 + l2) / (l1 - l2)
        turn = np.abs(np.angle(np.exp(2j * (got - want)))) / 2  # the doubled angle
        bad = ~(turn <= tolerance) & (l1 > l2)  # equal axes: no orientation
        assert not bad.any(), (column, got[bad], want[bad])


#: regionprops' properties behind every ``cell_table`` column
REGIONPROPS_PROPERTIES = ("label", "area", "centroid", "bbox", "perimeter")


def assert_cell_table_equals_regionprops(table, ref, shape_columns) -> None:
    """``percell.cells.cell_table``'s ``table`` equals regionprops' ``ref``
    (``REGIONPROPS_PROPERTIES`` and ``shape_columns``): bit for bit but for
    the inertia features (``assert_shape_features_equal``)."""
    np.testing.assert_array_equal(table.label_value, ref["label"])
    for column, key in [
        ("area_pixels", "area"),
        ("centroid_x", "centroid-1"),
        ("centroid_y", "centroid-0"),
        ("bbox_x", "bbox-1"),
        ("bbox_y", "bbox-0"),
        ("perimeter", "perimeter"),
        ("solidity", "solidity"),
        ("extent", "extent"),
    ]:
        np.testing.assert_array_equal(table[column], ref[key], err_msg=column)
    np.testing.assert_array_equal(table.bbox_w, ref["bbox-3"] - ref["bbox-1"])
    np.testing.assert_array_equal(table.bbox_h, ref["bbox-2"] - ref["bbox-0"])
    assert_shape_features_equal(table, ref, shape_columns)
