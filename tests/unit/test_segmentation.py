"""Watershed, tiling and cell geometry on synthetic images with known nuclei."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import regionprops_table

from percell.cells import SHAPE_COLUMNS, cell_table
from percell.demo import synthetic_cells
from percell.pyramid import nearest_2x2
from percell.tiling import tile_grid
from tests.segmentation_support import (
    Watershed,
    assert_shape_features_equal,
    matched_f1,
    segment_in_memory,
)


def held_out(seed: int, shape=(768, 768), **kwargs):
    dapi, _, _, truth = synthetic_cells(
        shape, np.random.default_rng(1000 + seed), **kwargs
    )
    return dapi, truth


def watershed_for(image, diameter=16.0, min_size=30):
    return Watershed(image, diameter, min_size)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_watershed_finds_the_nuclei(tmp_path, seed):
    image, truth = held_out(seed)
    labels, cells = segment_in_memory(image, watershed_for(image), tmp_path, 2048, 32)
    f1 = matched_f1(truth, labels)
    assert f1 >= 0.9, f"F1 {f1:.3f}"
    assert len(cells) == len(np.unique(labels)) - 1


def test_tiled_equals_untiled_with_cells_on_tile_borders(tmp_path):
    image, _ = held_out(5, shape=(1000, 1100))
    method = watershed_for(image)
    whole, _ = segment_in_memory(image, method, tmp_path, 4096, 32, "whole")
    tiled, cells = segment_in_memory(image, method, tmp_path, 256, 32, "tiled")
    # cells straddle the 256-px borders: a cut would show up as extra objects
    straddling = sum(
        1
        for y0, y1, x0, x1 in zip(
            cells.bbox_y,
            cells.bbox_y + cells.bbox_h,
            cells.bbox_x,
            cells.bbox_x + cells.bbox_w,
            strict=True,
        )
        if (y0 // 256 != (y1 - 1) // 256) or (x0 // 256 != (x1 - 1) // 256)
    )
    assert straddling > 20
    assert len(np.unique(tiled)) == len(np.unique(whole))
    assert matched_f1(whole, tiled) >= 0.99
    assert cells.label_value.is_unique


def test_more_than_65535_cells_keep_distinct_int32_ids(tmp_path):
    rng = np.random.default_rng(3)
    image, _, _, truth = synthetic_cells(
        (2900, 2900), rng, spacing=10, nucleus_radius=3.0
    )
    assert truth.max() > 65535
    labels, cells = segment_in_memory(
        image, watershed_for(image, diameter=6.0, min_size=5), tmp_path, 1024, 16
    )
    assert labels.dtype == np.int32
    ids = np.unique(labels)
    assert ids.size - 1 > 65535
    assert len(cells) == ids.size - 1 and cells.label_value.is_unique
    assert matched_f1(truth, labels) >= 0.9


def test_tile_grid_cores_cover_the_image_once():
    tiles = tile_grid(1000, 700, 256, 40)
    covered = np.zeros((1000, 700), int)
    for t in tiles:
        covered[slice(*t.core_y), slice(*t.core_x)] += 1
        assert t.pad_y[0] == max(0, t.core_y[0] - 40)
        assert t.pad_x[1] == min(700, t.core_x[1] + 40)
    assert (covered == 1).all()


def test_cell_table_matches_regionprops():
    _, _, _, labels = synthetic_cells((300, 400), np.random.default_rng(4))
    table = cell_table(labels, 0.5, offset=(10, 20))
    ref = regionprops_table(
        labels, properties=("label", "area", "centroid", "bbox", "perimeter")
    )
    np.testing.assert_array_equal(table.label_value, ref["label"])
    np.testing.assert_array_equal(table.area_pixels, ref["area"])
    np.testing.assert_allclose(table.area_um2, ref["area"] * 0.25)
    np.testing.assert_allclose(table.centroid_x, ref["centroid-1"] + 20)
    np.testing.assert_allclose(table.centroid_y, ref["centroid-0"] + 10)
    np.testing.assert_array_equal(table.bbox_w, ref["bbox-3"] - ref["bbox-1"])
    np.testing.assert_allclose(
        table.circularity, 4 * np.pi * ref["area"] / ref["perimeter"] ** 2
    )


def test_tiled_shape_features_equal_regionprops_of_the_whole_image(tmp_path):
    image, _ = held_out(8, shape=(700, 650))
    labels, cells = segment_in_memory(image, watershed_for(image), tmp_path, 200, 32)
    ref = regionprops_table(
        labels, properties=("label", "area", "perimeter", *SHAPE_COLUMNS)
    )
    assert len(cells) == len(ref["label"]) > 100
    np.testing.assert_array_equal(cells.label_value, ref["label"])
    np.testing.assert_array_equal(cells.area_pixels, ref["area"])
    np.testing.assert_array_equal(cells.perimeter, ref["perimeter"])
    assert_shape_features_equal(cells, ref, SHAPE_COLUMNS)
    # a known shape: a 10 x 40 bar lying along x
    bar = np.zeros((30, 60), np.int32)
    bar[10:20, 10:50] = 1
    row = cell_table(bar, 1.0).iloc[0]
    assert row.extent == 1.0 and row.solidity == 1.0
    assert row.major_axis_length > 3 * row.minor_axis_length
    assert row.orientation == np.pi / 2


def test_3d_cell_table_counts_voxels():
    labels = np.zeros((4, 20, 30), np.int32)
    labels[1:3, 5:10, 10:20] = 7
    table = cell_table(labels, 1.0)
    row = table.iloc[0]
    assert (row.label_value, row.area_pixels, row.bbox_x, row.bbox_w) == (
        7,
        100,
        10,
        10,
    )
    assert np.isnan(row.perimeter)
    assert all(np.isnan(row[c]) for c in SHAPE_COLUMNS)


def test_watershed_3d_stack():
    rng = np.random.default_rng(6)
    _, _, _, truth2d = synthetic_cells((200, 200), rng)
    stack = np.stack([(truth2d > 0) * 1000.0 + 100] * 5).astype(np.float32)
    labels = Watershed(stack, 16, min_size=30).whole(stack)
    assert labels.shape == stack.shape
    assert abs(len(np.unique(labels)) - len(np.unique(truth2d))) <= 2


def test_label_pyramid_never_invents_ids():
    _, _, _, labels = synthetic_cells((513, 777), np.random.default_rng(7))
    level = labels
    for _ in range(3):
        level = nearest_2x2(level)
        assert set(np.unique(level)) <= set(np.unique(labels))


def test_a_volume_separates_nuclei_that_overlap_in_xy_at_other_depths():
    """Tissue: every nucleus overlaps others in XY at other depths. As a
    volume (z step two pixels) the watershed finds them; as columns
    (monolayer mode) it cannot, by construction."""
    from percell.demo import synthetic_nuclei_3d

    stack, truth = synthetic_nuclei_3d(
        (24, 128, 128), 12, 2.0, np.random.default_rng(7)
    )
    volume = Watershed(stack, 12, min_size=15, anisotropy=2.0).whole(stack)
    columns = Watershed(stack, 12, min_size=15).whole(stack)
    assert matched_f1(truth, volume) >= 0.9  # (0.97 here; the bench: several)
    assert matched_f1(truth, columns) < 0.5


def test_a_volume_background_is_that_of_its_voxels_not_of_its_projection():
    """Tissue: a nucleus at some depth over every pixel, so the maximum over
    z is bright everywhere; the background between the nuclei, on each
    plane, is 100. A volume's blocks take the percentile of all their
    voxels and find it; the projection's blocks cannot."""
    from percell.watershed import region_background

    stack = np.full((4, 96, 96), 100.0, np.float32)
    for z in range(4):  # each plane holds a quarter of the squares
        for y in range(0, 96, 12):
            for x in range(0, 96, 12):
                if (y // 12 + 2 * (x // 12)) % 4 == z:
                    stack[z, y : y + 12, x : x + 12] = 1000.0
    crop = stack[2, :64, :64]
    volume = region_background(stack, 1.0, crop, 12, 1.0, volume=True)
    projection = region_background(stack, 1.0, crop, 12, 1.0)
    np.testing.assert_allclose(volume.grid, 100.0, atol=1.0)
    assert projection.grid.min() > 900


def test_a_tiled_volume_equals_the_untiled_one(tmp_path):
    from percell.demo import synthetic_nuclei_3d

    stack, _ = synthetic_nuclei_3d((12, 200, 220), 12, 2.0, np.random.default_rng(8))
    method = Watershed(stack, 12, min_size=15, anisotropy=2.0)
    whole, _ = segment_in_memory(stack, method, tmp_path, 4096, 32, "whole")
    tiled, cells = segment_in_memory(stack, method, tmp_path, 64, 32, "tiled")
    assert whole.ndim == 3 and len(cells) > 50
    assert len(np.unique(tiled)) == len(np.unique(whole))
    assert matched_f1(whole, tiled) >= 0.99


def test_tiles_in_threads_give_the_labels_of_one_thread(tmp_path):
    """A segment job's threads segment tiles at once; pasted in tile order,
    the labels (and their ids) are exactly those of one thread."""
    image, _ = held_out(6, shape=(700, 760))
    method = watershed_for(image)
    one, cells_one = segment_in_memory(image, method, tmp_path, 192, 32, "one")
    three, cells_three = segment_in_memory(
        image, method, tmp_path, 192, 32, "three", threads=3
    )
    np.testing.assert_array_equal(three, one)
    assert cells_three.equals(cells_one)
