"""The watershed's compiled kernels, exact against scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage import segmentation
from skimage.feature import peak_local_max

from percell.watershed import (
    BACKGROUND_PERCENTILE,
    BLOCK_DIAMETERS,
    RegionBackground,
    _watershed,
    footprint_maximum,
    region_background,
    smooth,
    smoothing_sigma,
)
from percell.watershed_kernels import (
    LEVELS,
    RANKED_SHARE,
    _window_maxima,
    drop_small,
    flood,
    flood_parts,
    keep_above_peak_share,
    quantise,
    spaced_peaks,
)


def _case(rng: np.random.Generator, ndim: int):
    high = 60 if ndim == 2 else 16
    shape = tuple(int(n) for n in rng.integers(3, high, ndim))
    surface = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0, 3))
    mask = ndimage.gaussian_filter(rng.random(shape), 1.5) > rng.uniform(0.4, 0.6)
    return shape, surface, mask


@pytest.mark.parametrize("ndim", [2, 3])
def test_flood_is_scikit_images_watershed_on_the_same_levels(ndim):
    rng = np.random.default_rng(ndim)
    for trial in range(150):
        shape, surface, mask = _case(rng, ndim)
        if not mask.any():
            continue
        inside = np.flatnonzero(mask)
        seeds = np.unique(
            rng.choice(inside, size=min(int(rng.integers(1, 12)), inside.size))
        )
        if trial % 2:
            # every seed below three levels of ties: the fronts meet on ties,
            # which only scikit-image's order (oldest first) decides alike
            levels = rng.integers(40, 43, shape).astype(np.uint16)
            levels.ravel()[seeds] = rng.choice(40, seeds.size, replace=False)
        else:
            levels = quantise(surface, mask)
            # distinct levels: scikit-image leaves markers' ties to its heap
            levels.ravel()[seeds] = rng.choice(LEVELS, seeds.size, replace=False)
        markers = np.zeros(shape, np.int32)
        markers.ravel()[seeds] = np.arange(1, seeds.size + 1)
        expected = segmentation.watershed(levels, markers, mask=mask)
        np.testing.assert_array_equal(flood(levels, markers, mask), expected)


@pytest.mark.parametrize("shape", [(480, 480), (60, 60, 60)])
def test_a_large_part_and_a_small_one_flood_as_scikit_images_watershed(shape):
    """A part of more than LEVELS / RANKED_SHARE pixels floods on its levels
    as they are, reading its queues ahead of the flood; a smaller one on
    the ranks of its levels: both as scikit-image floods them."""
    rng = np.random.default_rng(len(shape))
    surface = ndimage.gaussian_filter(rng.random(shape), 2)
    mask = np.ones(shape, bool)
    wall = shape[-1] // 4
    mask[(slice(None),) * (len(shape) - 1) + (slice(wall, wall + 2),)] = False
    parts, n = ndimage.label(mask)
    sizes = np.bincount(parts.ravel())[1:]
    assert n == 2 and sizes.min() * RANKED_SHARE < LEVELS < sizes.max() * RANKED_SHARE
    markers = np.zeros(shape, np.int32)
    for part in (1, 2):
        seeds = rng.choice(np.flatnonzero(parts == part), 20, replace=False)
        markers.ravel()[seeds] = np.arange(1, 21) + 20 * (part - 1)
    labels = np.zeros(shape, np.int32)
    flood_parts(surface, markers, mask, parts, np.array([False, True, True]), labels)
    expected = segmentation.watershed(quantise(surface, mask), markers, mask=mask)
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("ndim", [2, 3])
def test_flooding_only_parts_with_two_seeds_changes_nothing(ndim):
    rng = np.random.default_rng(10 + ndim)
    for _ in range(150):
        shape, surface, mask = _case(rng, ndim)
        markers = np.zeros(shape, np.int32)
        if mask.any():
            spots = rng.choice(np.flatnonzero(mask), size=int(rng.integers(1, 15)))
            # ids repeat: a seed of several pixels (a plateau, a column)
            markers.ravel()[spots] = rng.integers(1, 6, spots.size)
        everywhere = flood(quantise(surface, mask), markers, mask)
        np.testing.assert_array_equal(_watershed(surface, markers, mask), everywhere)


@pytest.mark.parametrize("ndim", [2, 3])
def test_flood_parts_writes_only_the_shared_parts(ndim):
    """The flood of the shared parts is ``flood``'s on the whole mask's
    levels; every other pixel keeps what the caller put there."""
    rng = np.random.default_rng(40 + ndim)
    for _ in range(60):
        shape, surface, mask = _case(rng, ndim)
        if not mask.any():
            continue
        parts, n = ndimage.label(mask)
        markers = np.zeros(shape, np.int32)
        spots = rng.choice(np.flatnonzero(mask), size=int(rng.integers(1, 15)))
        markers.ravel()[spots] = np.arange(1, spots.size + 1)
        shared = rng.random(n + 1) > 0.5
        shared[0] = False
        labels = np.full(shape, -7, np.int32)
        flood_parts(surface, markers, mask, parts, shared, labels)
        where = shared[parts]
        everywhere = flood(quantise(surface, mask), np.where(where, markers, 0), where)
        np.testing.assert_array_equal(labels[where], everywhere[where])
        assert (labels[~where] == -7).all()


def test_quantised_levels_keep_the_surfaces_order():
    rng = np.random.default_rng(5)
    surface = rng.normal(size=(200, 300)).astype(np.float32)
    mask = np.ones(surface.shape, bool)
    levels = quantise(surface, mask)
    assert levels.min() == 0 and levels.max() == LEVELS - 1
    order = np.argsort(surface, axis=None, kind="stable")
    assert np.all(np.diff(levels.ravel()[order].astype(np.int64)) >= 0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_spaced_peaks_are_peak_local_maxs_with_a_mask(ndim):
    rng = np.random.default_rng(20 + ndim)
    for trial in range(150):
        _, surface, mask = _case(rng, ndim)
        if trial % 4 == 0:  # plateaus
            surface = np.round(surface * 20)
        elif trial % 4 == 1:  # the dtype of the watershed's blobs
            surface = surface.astype(np.float32)
        elif trial % 4 == 2:
            surface = (surface * 1000).astype(np.int32) - 300
        spacing = int(rng.integers(1, 6))
        threshold = float(np.quantile(surface, rng.uniform(0, 0.9)))
        expected = peak_local_max(
            surface,
            min_distance=spacing,
            threshold_abs=threshold,
            labels=mask.astype(np.int32),
            exclude_border=False,
        )
        markers = spaced_peaks(surface, spacing, threshold, mask)
        # the same peaks, numbered from the highest as scikit-image lists them
        assert markers.max() == len(expected)
        assert [int(markers[tuple(p)]) for p in expected] == list(
            range(1, len(expected) + 1)
        )


def test_window_maxima_are_ndimages_maximum_filter_inside_the_mask():
    """The 2-D kernel behind spaced_peaks: at every mask pixel above the
    limit, whether it equals the maximum of its square window of the image
    with the dtype's least value outside the mask (clipped at the edges as
    ``mode="nearest"`` pads them), and whether every mask pixel is such a
    maximum; plateaus and all dtypes included."""
    rng = np.random.default_rng(25)
    flat_seen = 0
    for trial in range(120):
        shape = tuple(int(n) for n in rng.integers(1, 40, 2))
        surface = rng.random(shape)
        if trial % 3 == 0:  # plateaus
            surface = np.round(surface * 4)
        if trial % 10 == 0:  # a flat object
            surface[:] = 2
        dtype = [np.float64, np.float32, np.int32][trial % 3]
        surface = surface.astype(dtype)
        mask = rng.random(shape) > 0.3
        spacing = int(rng.integers(1, 7))
        limit = dtype(rng.choice([-1, 1, 2]))
        least = (np.finfo if dtype != np.int32 else np.iinfo)(dtype).min
        masked = np.where(mask, surface, least)
        top = masked == ndimage.maximum_filter(masked, 2 * spacing + 1, mode="nearest")
        got, every = _window_maxima(surface, mask, spacing, limit)
        np.testing.assert_array_equal(got, top & mask & (surface > limit))
        assert every == bool(top[mask].all())
        flat_seen += every
    assert flat_seen >= 5


@pytest.mark.parametrize("ndim", [2, 3])
def test_footprint_maximum_is_ndimages_maximum_filter(ndim):
    rng = np.random.default_rng(30 + ndim)
    for trial in range(60):
        shape = tuple(int(n) for n in rng.integers(3, 30, ndim))
        radii = [int(r) for r in rng.integers(1, 6, ndim)]
        grid = np.ogrid[tuple(slice(-r, r + 1) for r in radii)]
        footprint = sum((g / r) ** 2 for g, r in zip(grid, radii, strict=True)) <= 1
        surface = rng.random(shape).astype(np.float32 if trial % 2 else np.float64)
        if trial % 3 == 0:  # plateaus
            surface = np.round(surface * 5)
        expected = ndimage.maximum_filter(surface, footprint=footprint, mode="nearest")
        np.testing.assert_array_equal(footprint_maximum(surface, footprint), expected)


def test_background_window_is_map_coordinates_bilinear():
    rng = np.random.default_rng(40)
    for _ in range(40):
        ny, nx = (int(n) for n in rng.integers(1, 40, 2))
        background = RegionBackground(
            rng.random((ny, nx)) * 1000, float(rng.uniform(8, 80)), 1.0
        )
        y0, x0 = (int(n) for n in rng.integers(0, 400, 2))
        y = (y0, y0 + int(rng.integers(1, 500)))
        x = (x0, x0 + int(rng.integers(1, 500)))
        ys = (np.arange(*y) + 0.5) / background.block - 0.5
        xs = (np.arange(*x) + 0.5) / background.block - 0.5
        expected = ndimage.map_coordinates(
            background.grid,
            np.meshgrid(ys, xs, indexing="ij"),
            order=1,
            mode="nearest",
        ).astype(np.float32)
        np.testing.assert_array_equal(background.window(y, x), expected)


@pytest.mark.parametrize("shape", [(700, 650), (37, 45), (128, 128)])
def test_background_grid_is_each_blocks_percentile(shape):
    rng = np.random.default_rng(41)
    image = rng.normal(200, 20, shape).astype(np.float32)
    diameter = 12.0
    got = region_background(image, 1.0, image[:256, :256], diameter, 1.0)
    step = round(max(8.0, BLOCK_DIAMETERS * diameter))
    smoothed = smooth(image, max(smoothing_sigma(diameter, 1.0), 0.5))
    ny, nx = -(-shape[0] // step), -(-shape[1] // step)
    grid = np.array(
        [
            [
                np.percentile(
                    smoothed[i * step : (i + 1) * step, j * step : (j + 1) * step],
                    BACKGROUND_PERCENTILE,
                )
                for j in range(nx)
            ]
            for i in range(ny)
        ]
    )
    expected = ndimage.median_filter(grid, 3, mode="nearest")
    np.testing.assert_array_equal(got.grid, expected)


@pytest.mark.parametrize("shape", [(90, 70), (12, 30, 40)])
def test_each_label_keeps_its_pixels_above_its_share_of_its_peak(shape):
    rng = np.random.default_rng(len(shape) + 20)
    values = rng.normal(size=shape).astype(np.float32)
    labels = rng.integers(0, 30, shape).astype(np.int32)
    labels[labels == 7] = 0  # a label with no pixel
    peak = ndimage.maximum(values, labels, np.arange(30))
    expected = np.where(values < 0.4 * peak[labels], 0, labels)
    before = np.count_nonzero(labels)
    keep_above_peak_share(values, labels, 29, 0.4)
    np.testing.assert_array_equal(labels, expected)
    assert 0 < np.count_nonzero(labels) < before


@pytest.mark.parametrize("shape", [(90, 70), (12, 30, 40)])
def test_small_labels_are_dropped(shape):
    rng = np.random.default_rng(len(shape) + 30)
    labels = (rng.integers(1, 400, shape) * (rng.random(shape) < 0.7)).astype(np.int32)
    sizes = np.bincount(labels.ravel())
    expected = np.where(sizes[labels] < sizes[1:].mean(), 0, labels)
    before = np.count_nonzero(labels)
    drop_small(labels, float(sizes[1:].mean()))
    np.testing.assert_array_equal(labels, expected)
    assert 0 < np.count_nonzero(labels) < before
    with pytest.raises(ValueError, match="C-contiguous"):
        drop_small(labels[:, ::2], 3)
