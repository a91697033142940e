"""The compiled shape features equal scikit-image's regionprops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import regionprops_table

from percell.cells import SHAPE_COLUMNS, cell_table
from tests.segmentation_support import (
    REGIONPROPS_PROPERTIES,
    assert_cell_table_equals_regionprops,
)

PROPERTIES = (*REGIONPROPS_PROPERTIES, *SHAPE_COLUMNS)


def blobs(seed: int, shape=(240, 260)) -> np.ndarray:
    """Irregular objects: concave, with holes, touching each other and the
    image's edges, and single pixels and thin lines among them."""
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random(shape), 2)
    labels, _ = ndimage.label(smooth > np.quantile(smooth, 0.55))
    # split some objects into touching halves, and add lines and dots
    labels[:, ::37] = np.where(labels[:, ::37] > 0, labels.max() + 1, 0)
    top = labels.max()
    labels[5, 10:60] = top + 1  # a horizontal line
    idx = np.arange(30)
    labels[40 + idx, 50 + idx] = top + 2  # a diagonal line
    labels[0, 0], labels[-1, -1] = top + 3, top + 4  # single corner pixels
    return labels.astype(np.int32)


def reference(labels: np.ndarray) -> dict:
    return regionprops_table(labels, properties=PROPERTIES)


def check_equal(table, ref) -> None:
    assert_cell_table_equals_regionprops(table, ref, SHAPE_COLUMNS)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shape_features_equal_regionprops(seed):
    labels = blobs(seed)
    table = cell_table(labels, 1.0)
    ref = reference(labels)
    assert len(table) > 100
    check_equal(table, ref)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int64, np.uint32])
def test_other_label_dtypes_and_sparse_ids(dtype):
    labels = blobs(3)
    if np.iinfo(dtype).max < labels.max():
        labels = labels % 250 + (labels > 0)  # ids may repeat: regions merge
    labels = labels.astype(dtype)
    check_equal(cell_table(labels, 1.0), reference(labels))
    # ids beyond the pixel count (2,000), with gaps
    sparse = np.zeros((40, 50), np.int64)
    sparse[2:9, 3:20] = 7
    sparse[20:30, 10:14] = 50_000
    sparse[31:38, 30:45] = 5
    sparse = sparse.astype(np.uint32 if dtype == np.uint32 else np.int64)
    check_equal(cell_table(sparse, 1.0), reference(sparse))


def test_known_shapes():
    # a bar of 10 rows by 40 columns: variances (n² - 1) / 12 along each axis
    bar = np.zeros((30, 60), np.int32)
    bar[10:20, 10:50] = 1
    row = cell_table(bar, 1.0).iloc[0]
    var_y, var_x = (10**2 - 1) / 12, (40**2 - 1) / 12
    assert row.major_axis_length == pytest.approx(4 * math.sqrt(var_x), rel=1e-14)
    assert row.minor_axis_length == pytest.approx(4 * math.sqrt(var_y), rel=1e-14)
    assert row.eccentricity == pytest.approx(math.sqrt(1 - var_y / var_x), rel=1e-14)
    assert row.orientation == np.pi / 2  # the major axis along x, exactly
    assert row.solidity == row.extent == 1.0
    # an L of five pixels: its hull holds the inner corner's pixel, not the
    # outer one (which lies beyond the hull edge from (0, 0.5) to (1.5, 2))
    ell = np.array([[1, 0, 0], [1, 0, 0], [1, 1, 1]], np.int32)
    row = cell_table(ell, 1.0).iloc[0]
    assert row.solidity == 5 / 6
    assert row.extent == 5 / 9
    # a plus: both axes alike, so regionprops' rule for a == c with no
    # cross moment: -π/4
    plus = np.zeros((5, 5), np.int32)
    plus[2, :] = plus[:, 2] = 3
    row = cell_table(plus, 1.0).iloc[0]
    assert row.orientation == -np.pi / 4 and row.eccentricity == 0.0
    assert row.solidity == 9 / 13  # the hull is the diamond of 13 centres


def test_tile_offset_moves_positions_only():
    labels = blobs(4, shape=(80, 90))
    plain, moved = cell_table(labels, 0.5), cell_table(labels, 0.5, offset=(100, 7))
    np.testing.assert_array_equal(moved.centroid_x, plain.centroid_x + 7)
    np.testing.assert_array_equal(moved.bbox_y, plain.bbox_y + 100)
    for column in ("area_um2", "perimeter", *SHAPE_COLUMNS):
        np.testing.assert_array_equal(moved[column], plain[column])
