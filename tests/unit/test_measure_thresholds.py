"""Measurements against regionprops_table; thresholds against scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage import filters
from skimage.measure import regionprops_table

from percell.measure import intensity_metrics, mask_metrics
from percell.storage import IMAGE_COMPRESSOR, MASK_COMPRESSOR, create_array, open_group
from percell.thresholds import (
    Histogram,
    region_histogram,
    smooth_band,
    threshold_value,
    write_mask,
)


def random_labels(shape=(300, 400), seed=0, n=150):
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, np.int32)
    seeds[rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)] = np.arange(
        1, n + 1
    )
    dist, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    labels = seeds[iy, ix]
    labels[dist > 9] = 0  # background between cells
    return labels


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_intensity_metrics_equal_regionprops(dtype):
    labels = random_labels()
    image = (np.random.default_rng(1).random(labels.shape) * 4000).astype(dtype)
    ours = intensity_metrics(labels, image)

    def median(mask, img):
        return np.median(img[mask])

    ref = regionprops_table(
        labels,
        image,
        properties=(
            "label",
            "area",
            "intensity_mean",
            "intensity_min",
            "intensity_max",
            "intensity_std",
        ),
        extra_properties=(median,),
    )
    order = np.argsort(ref["label"])
    np.testing.assert_array_equal(ours.index, ref["label"][order])
    np.testing.assert_array_equal(ours["area"], ref["area"][order])
    np.testing.assert_array_equal(ours["min_intensity"], ref["intensity_min"][order])
    np.testing.assert_array_equal(ours["max_intensity"], ref["intensity_max"][order])
    # regionprops sums float32 pixels in float32; ours sums in float64
    exact = 0 if dtype == "uint16" else 1e-6
    np.testing.assert_allclose(
        ours["mean_intensity"], ref["intensity_mean"][order], rtol=exact
    )
    sums = ndimage.sum_labels(image.astype(np.float64), labels, ours.index)
    np.testing.assert_allclose(ours["integrated_intensity"], sums, rtol=exact)
    np.testing.assert_allclose(
        ours["std_intensity"], ref["intensity_std"][order], rtol=1e-6
    )
    np.testing.assert_allclose(
        ours["median_intensity"], ref["median"][order], rtol=1e-6
    )


@pytest.mark.parametrize("dtype", ["uint16", "int32", "float32", "float64"])
def test_many_cells_and_every_sort_path(dtype):
    """More than 65,536 cells and values beyond 16 bits take the 64-bit sort key."""
    rng = np.random.default_rng(9)
    labels = rng.permutation(np.repeat(np.arange(1, 70001), 2)).reshape(350, 400)
    image = (rng.random(labels.shape) * 200000 - 1000).astype(dtype)
    if dtype == "uint16":
        image = rng.integers(0, 65535, labels.shape).astype(dtype)
    ours = intensity_metrics(labels.astype(np.int32), image)
    order = np.argsort(labels.ravel(), kind="stable")
    pairs = image.ravel()[order].reshape(-1, 2).astype(np.float64)
    np.testing.assert_array_equal(ours["min_intensity"], pairs.min(axis=1))
    np.testing.assert_array_equal(ours["max_intensity"], pairs.max(axis=1))
    np.testing.assert_allclose(ours["median_intensity"], pairs.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(
        ours["std_intensity"], pairs.std(axis=1), rtol=1e-6, atol=1e-9
    )


def test_mask_metrics():
    labels = random_labels(seed=2)
    image = np.random.default_rng(3).integers(0, 1000, labels.shape).astype(np.uint16)
    mask = np.where(image > 500, 255, 0).astype(np.uint8)
    stats = mask_metrics(labels, image, mask, min_fraction=0.5)
    for cell in stats.index[:20]:
        inside = (labels == cell) & (mask > 0)
        outside = (labels == cell) & (mask == 0)
        row = stats.loc[cell]
        assert row.pixels_inside == inside.sum()
        assert row.fraction_inside == pytest.approx(
            inside.sum() / (labels == cell).sum()
        )
        assert row.mean_inside == pytest.approx(image[inside].mean())
        assert row.mean_outside == pytest.approx(image[outside].mean())
        assert row.positive == int(row.fraction_inside >= 0.5)


def image_array(tmp_path, data):
    group = open_group(tmp_path / "img", mode="w")
    arr = create_array(
        group, "0", data.shape, (1, 512, 512), data.dtype, IMAGE_COMPRESSOR
    )
    arr[...] = data
    return arr


SKIMAGE = {
    "otsu": filters.threshold_otsu,
    "li": filters.threshold_li,
    "triangle": filters.threshold_triangle,
    "yen": filters.threshold_yen,
    "isodata": filters.threshold_isodata,
    "mean": filters.threshold_mean,
}


@pytest.mark.parametrize("method", sorted(SKIMAGE))
@pytest.mark.parametrize("sigma", [0.0, 1.5])
def test_threshold_values_equal_scikit_image(tmp_path, method, sigma):
    rng = np.random.default_rng(4)
    data = np.concatenate(
        [rng.normal(300, 40, (1, 700, 600)), rng.normal(1500, 200, (1, 700, 600))],
        axis=2,
    )
    data = np.clip(data, 0, 65535).astype(np.uint16)
    arr = image_array(tmp_path, data)
    hist = region_histogram(arr, 0, sigma)
    smoothed = smooth_band(data[0], sigma, data.dtype)
    expected = SKIMAGE[method](smoothed)
    assert threshold_value(hist, method) == pytest.approx(float(expected), rel=1e-9)


@pytest.mark.parametrize("p", [0, 12.5, 50, 99.9, 100])
def test_percentile_equals_numpy(p):
    data = np.random.default_rng(5).integers(0, 5000, 10001).astype(np.uint16)
    hist = Histogram()
    hist.add(data[:4000])
    hist.add(data[4000:])
    assert threshold_value(hist, "percentile", percentile=p) == pytest.approx(
        np.percentile(data, p)
    )


def test_pooled_histogram_equals_concatenated_pixels():
    rng = np.random.default_rng(6)
    parts = [
        rng.integers(0, 3000, (50, 60)).astype(np.uint16) * (i + 1) for i in range(3)
    ]
    pooled = Histogram()
    for part in parts:
        h = Histogram()
        h.add(part)
        pooled.merge(h)
    allpix = np.concatenate([p.ravel() for p in parts])
    for method, fn in SKIMAGE.items():
        assert threshold_value(pooled, method) == pytest.approx(float(fn(allpix)))


@pytest.mark.parametrize("sigma", [0.0, 2.0])
def test_mask_is_exactly_image_above_value(tmp_path, sigma):
    data = np.random.default_rng(7).integers(0, 2000, (1, 1100, 900)).astype(np.uint16)
    arr = image_array(tmp_path, data)
    out = create_array(
        open_group(tmp_path / "mask", mode="w"),
        "0",
        (1100, 900),
        (512, 512),
        np.uint8,
        MASK_COMPRESSOR,
    )
    on = write_mask(arr, 0, sigma, 1000.5, out)
    expected = smooth_band(data[0], sigma, data.dtype) > 1000.5
    np.testing.assert_array_equal(out[:], np.where(expected, 255, 0))
    assert on == expected.sum()
