"""Cells grown from nuclei: against scikit-image, tiled against untiled."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage import segmentation

from percell.compartments import (
    cells_from_nuclei,
    nuclei_of_cells,
    stack_compartments,
)
from percell.demo import synthetic_cells
from percell.storage import LABEL_COMPRESSOR, create_array, open_group
from percell.tiling import segment_tiled
from percell.watershed import region_threshold, smooth
from tests.segmentation_support import Watershed


def _nuclei_method(dapi):
    return Watershed(dapi, diameter=16, min_size=30)


def _tiled(tmp_path, name, image, method, tile_size, overlap):
    """Segment (C, Y, X) ``image`` in tiles into cells, nucleus, cytoplasm."""
    arrays = []
    for layer in ("cells", "nucleus", "cytoplasm"):
        group = open_group(tmp_path / name / layer, mode="w")
        arrays.append(
            create_array(
                group, "0", image.shape[1:], (256, 256), np.int32, LABEL_COMPRESSOR
            )
        )

    nuclei = _nuclei_method(image[0])

    def read_tile(tile):  # (background, DAPI, GFP), as the segment step reads
        window = image[:, slice(*tile.pad_y), slice(*tile.pad_x)]
        return np.concatenate([nuclei.window(tile, image[0])[np.newaxis], window])

    cells = segment_tiled(
        read_tile, method, arrays[0], tile_size, overlap, 1.0, layers=arrays[1:]
    )
    return [a[:] for a in arrays], cells


def assert_same_partition(a, b):
    """``a`` and ``b`` are the same objects, whatever their ids."""
    np.testing.assert_array_equal(a > 0, b > 0)
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    assert pairs.shape[1] == np.unique(a[a > 0]).size == np.unique(b[b > 0]).size


@pytest.fixture(scope="module")
def region():
    dapi, gfp, _, truth = synthetic_cells((700, 760), np.random.default_rng(21))
    return np.stack([dapi, gfp]), truth


def test_expanded_cells_in_tiles_equal_expand_labels_of_the_whole_image(
    tmp_path, region
):
    image, _ = region
    nuclei = _nuclei_method(image[0])

    def method(tile):
        found = nuclei(tile[:2])
        return stack_compartments(cells_from_nuclei(found, 7.0), found)

    (cells, nucleus, cytoplasm), table = _tiled(
        tmp_path, "expand", image, method, 200, 32 + 14
    )
    # the reference: scikit-image on the whole nucleus image
    np.testing.assert_array_equal(cells, segmentation.expand_labels(nucleus, 7.0))
    assert len(table) == len(np.unique(nucleus)) - 1 > 150
    np.testing.assert_array_equal(np.unique(cells), np.unique(nucleus))
    # a nucleus and its cytoplasm share the cell's label; together they are it
    assert ((nucleus == 0) | (nucleus == cells)).all()
    np.testing.assert_array_equal(cytoplasm, np.where(nucleus > 0, 0, cells))
    # cells straddle the 200-px tile borders
    assert np.unique(cells[:, 199:201]).size > 5


def test_watershed_grown_cells_in_tiles_equal_the_untiled_run(tmp_path, region):
    image, truth = region
    nuclei = _nuclei_method(image[0])
    threshold = region_threshold(image[1], 1.0)

    def method(tile):
        found = nuclei(tile[:2])
        signal = smooth(tile[2], 1.0)
        return stack_compartments(
            cells_from_nuclei(found, 12.0, signal, threshold), found
        )

    (cells, nucleus, cyto), _ = _tiled(tmp_path, "tiled", image, method, 200, 56)
    (whole, whole_nucleus, _), _ = _tiled(tmp_path, "whole", image, method, 4096, 0)
    # the same cells, numbered in another order
    assert_same_partition(cells, whole)
    assert_same_partition(nucleus, whole_nucleus)
    ids = np.unique(nucleus)[1:]
    np.testing.assert_array_equal(np.unique(cells)[1:], ids)
    # every cell holds its nucleus whole and reaches at most 12 px beyond it
    assert ((nucleus == 0) | (nucleus == cells)).all()
    beyond = ndimage.distance_transform_edt(nucleus == 0)[(cells > 0)]
    assert beyond.max() <= 12
    # touching cells part between their nuclei: each has its own cytoplasm,
    # and a cell is about as large as the synthetic one (radius 2 x nucleus)
    with_cytoplasm = np.unique(cyto)[1:]
    assert with_cytoplasm.size >= 0.98 * ids.size
    cell_area = np.bincount(cells.ravel())[ids]
    nucleus_area = np.bincount(nucleus.ravel())[ids]
    assert 2.5 < np.median(cell_area / nucleus_area) < 4.5
    # the cytoplasm lies where the cytoplasm channel is bright
    gfp = image[1]
    assert np.median(gfp[cyto > 0]) > 4 * np.median(gfp[cells == 0])
    assert truth.max() > 100


def test_a_dim_gap_between_nucleus_and_cytoplasm_stays_inside_the_cell():
    """A stain kept out of the nucleus leaves a dim ring around it: the
    cytoplasm beyond the ring is still the cell's, and the ring too."""
    yy, xx = np.mgrid[:80, :80]
    r = np.hypot(yy - 40, xx - 40)
    nuclei = (r <= 8).astype(np.int32)
    cytoplasm = np.where((r > 11) & (r <= 20), 100.0, 0.0)
    cells = cells_from_nuclei(nuclei, 25.0, cytoplasm, 50.0)
    np.testing.assert_array_equal(cells > 0, r <= 20)


def test_each_nucleus_goes_to_the_cell_holding_most_of_it():
    cells = np.zeros((6, 12), np.int32)
    cells[:, 0:4] = 5
    cells[:, 4:8] = 9
    cells[0:3, 8:12] = 2
    nuclei = np.zeros_like(cells)
    nuclei[1:3, 1:3] = 1  # inside cell 5
    nuclei[1:3, 3:6] = 2  # 2 px in cell 5, 4 px in cell 9: cell 9's
    nuclei[4:6, 5:7] = 3  # cell 9's second nucleus
    nuclei[3:6, 9:12] = 4  # outside every cell: dropped
    nuclei[1:3, 10:12] = 6  # inside cell 2
    nuclei[5, 0:2] = 7  # 1 px in cell 5, 1 outside (below): half is enough
    nuclei[5, 2] = 8
    nuclei[4, 2:4] = 8  # 1 px in cell 5, 2 outside (below): dropped
    cells[5, 0] = 0
    cells[4, 2:4] = 0
    expected = np.array(
        [
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [0, 5, 5, 9, 9, 9, 0, 0, 0, 0, 2, 2],
            [0, 5, 5, 9, 9, 9, 0, 0, 0, 0, 2, 2],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 9, 9, 0, 0, 0, 0, 0],
            [5, 5, 0, 0, 0, 9, 9, 0, 0, 0, 0, 0],
        ]
    )
    np.testing.assert_array_equal(nuclei_of_cells(cells, nuclei), expected)
    stacked = stack_compartments(cells, nuclei_of_cells(cells, nuclei))
    # the part of nucleus 2 in cell 5 is cut off; cell 9 has both nuclei
    np.testing.assert_array_equal(stacked[1], np.where(expected == cells, expected, 0))
    assert set(np.unique(stacked[1][cells == 9])) == {0, 9}


def test_a_nucleus_split_evenly_goes_to_the_lower_cell_label():
    cells = np.array([[3, 3, 4, 4]], np.int32)
    nuclei = np.array([[0, 1, 1, 0]], np.int32)
    np.testing.assert_array_equal(nuclei_of_cells(cells, nuclei), [[0, 3, 3, 0]])
    np.testing.assert_array_equal(
        nuclei_of_cells(cells, np.zeros_like(nuclei)), np.zeros_like(nuclei)
    )


@pytest.mark.parametrize(
    ("compartments", "unit", "expected"),
    [
        ({"cells": "cellpose", "channel": "GFP", "distance": 6}, "pixels", 16 + 12),
        ({"cells": "cellpose", "channel": "GFP", "diameter": 40}, "pixels", 40),
        ({"cells": "cellpose", "channel": "GFP", "diameter": 13}, "um", 26),
    ],
)
def test_the_cell_diameter_defaults_to_nucleus_plus_twice_the_distance(
    compartments, unit, expected
):
    from percell.compartments import distance_pixels
    from percell.contracts import SegmentationSettings
    from percell.segmentation import cell_diameter_pixels, diameter_pixels

    seg = SegmentationSettings(
        channel="DAPI",
        diameter=16 if unit == "pixels" else 8,
        diameter_unit=unit,
        compartments=compartments,
    )
    assert seg.compartments is not None
    nucleus = diameter_pixels(seg, 0.5)
    assert nucleus == 16
    distance = distance_pixels(seg.compartments, 0.5)
    assert cell_diameter_pixels(seg, 0.5, nucleus, distance) == expected
