"""Every accepted pixel type, negatives and full-range extremes included:
measurements, thresholds, masks and the pyramid against numpy / scikit-image.

The references are written out here with plain numpy (per-cell loops,
float64 arithmetic) or are scikit-image's own functions; none calls percell.
"""

from __future__ import annotations

import tracemalloc

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import filters

from percell import ngff
from percell.contracts import Channel
from percell.errors import ExperimentError
from percell.measure import intensity_metrics, mask_metrics
from percell.pyramid import build_levels, max_2x2, mean_2x2
from percell.storage import IMAGE_COMPRESSOR, MASK_COMPRESSOR, create_array, open_group
from percell.thresholds import (
    Histogram,
    region_histogram,
    threshold_value,
    write_mask,
)

DTYPES = ["uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64"]
INT_DTYPES = [d for d in DTYPES if np.dtype(d).kind in "ui"]


def extremes(dtype: str) -> tuple[float, float]:
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "ui" else np.finfo(dtype)
    if np.dtype(dtype).kind == "f":
        # large but finite: sums over a cell stay finite in float64
        return -(2.0**100), 2.0**100
    return int(info.min), int(info.max)


def reference_metrics(labels: np.ndarray, image: np.ndarray) -> dict[int, dict]:
    """Per cell, with numpy on that cell's pixels alone (float64)."""
    out = {}
    for cell in np.unique(labels[labels > 0]):
        px = image[labels == cell].astype(np.float64)
        out[int(cell)] = {
            "mean_intensity": px.mean(),
            "max_intensity": px.max(),
            "min_intensity": px.min(),
            "integrated_intensity": px.sum(),
            "std_intensity": px.std(),
            "median_intensity": np.median(px),
            "area": float(px.size),
        }
    return out


def assert_metrics_equal(labels, image):
    ours = intensity_metrics(labels, image)
    ref = reference_metrics(labels, image)
    assert sorted(ref) == ours.index.tolist()
    for cell, metrics in ref.items():
        px = image[labels == cell].astype(np.float64)
        if image.dtype.kind == "f":
            # floating sums in another order: the textbook error bound
            atol = 4 * px.size * np.finfo(np.float64).eps * np.abs(px).max()
        else:
            atol = 0.0  # integer sums are exact in float64 at these sizes
        for metric, value in metrics.items():
            got = ours.loc[cell, metric]
            if metric in ("min_intensity", "max_intensity", "median_intensity", "area"):
                assert got == value, (cell, metric, got, value)
            elif metric == "std_intensity" and image.dtype.kind == "f":
                # a deviation of atol / n per pixel, at most
                assert abs(got - value) <= np.sqrt(atol * np.abs(px).max()) + atol
            else:
                np.testing.assert_allclose(
                    got, value, rtol=1e-12, atol=atol, err_msg=metric
                )


@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_signed_pixels_do_not_overflow_into_the_cell_key(dtype):
    """Regression: ``values - low`` was computed in the image's own type and
    overflowed into the cell bits of the sort key, so cell 1 (−30000, 0, 30000)
    got a max of 5."""
    lo, hi = extremes(dtype)
    image = np.array([[lo, 0, hi, 5, 6, 7]], dtype)
    labels = np.array([[1, 1, 1, 2, 2, 2]], np.int32)
    ours = intensity_metrics(labels, image)
    assert ours.loc[1, "max_intensity"] == hi
    assert ours.loc[1, "min_intensity"] == lo
    assert ours.loc[1, "median_intensity"] == 0
    assert ours.loc[2, "max_intensity"] == 7


@st.composite
def labelled_images(draw, dtype):
    shape = draw(st.tuples(st.integers(1, 12), st.integers(1, 12)))
    labels = draw(hnp.arrays(np.int32, shape, elements=st.integers(0, 5)))
    lo, hi = extremes(dtype)
    if np.dtype(dtype).kind == "f":
        elements = st.floats(lo, hi, width=np.dtype(dtype).itemsize * 8)
    else:
        elements = st.integers(lo, hi)
    # extremes often: they are where overflow hides
    elements = st.one_of(st.sampled_from([lo, hi, 0]), elements)
    image = draw(hnp.arrays(dtype, shape, elements=elements))
    return labels, image


@pytest.mark.parametrize("dtype", DTYPES)
def test_intensity_metrics_exact_for_every_dtype(dtype):
    @settings(max_examples=60, deadline=None, database=None, derandomize=True)
    @given(labelled_images(dtype))
    def check(data):
        assert_metrics_equal(*data)

    check()


@pytest.mark.parametrize("dtype", DTYPES)
def test_many_cells_and_wide_values_take_the_64_bit_key(dtype):
    """More than 65,536 cells: the other packing of the sort key."""
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(1, 70_001, dtype=np.int32), 3).reshape(1, -1)
    lo, hi = extremes(dtype)
    if np.dtype(dtype).kind == "f":
        image = rng.uniform(lo, hi, labels.shape).astype(dtype)
    else:
        image = rng.integers(lo, hi, labels.shape, endpoint=True).astype(dtype)
    image[0, :6] = [lo, hi, 0, hi, lo, lo]
    ours = intensity_metrics(labels, image)
    cells = labels.reshape(-1, 3)[:, 0]
    px = image.reshape(-1, 3).astype(np.float64)
    np.testing.assert_array_equal(ours.index, cells)
    np.testing.assert_array_equal(ours["max_intensity"], px.max(axis=1))
    np.testing.assert_array_equal(ours["min_intensity"], px.min(axis=1))
    np.testing.assert_array_equal(ours["median_intensity"], np.median(px, axis=1))
    np.testing.assert_allclose(ours["mean_intensity"], px.mean(axis=1), rtol=1e-12)


def test_nan_pixels_give_nan_metrics_only_for_their_cell():
    image = np.array([[1.0, np.nan, 3.0, 4.0, 5.0, 6.0]], np.float32)
    labels = np.array([[1, 1, 1, 2, 2, 2]], np.int32)
    ours = intensity_metrics(labels, image)
    for metric in ("mean_intensity", "max_intensity", "median_intensity"):
        assert np.isnan(ours.loc[1, metric])
    assert ours.loc[1, "area"] == 3
    assert ours.loc[2, "max_intensity"] == 6
    assert ours.loc[2, "median_intensity"] == 5


@pytest.mark.parametrize("dtype", DTYPES)
def test_mask_metrics_exact_for_every_dtype(dtype):
    rng = np.random.default_rng(5)
    lo, hi = extremes(dtype)
    labels = rng.integers(0, 6, (40, 50)).astype(np.int32)
    if np.dtype(dtype).kind == "f":
        image = rng.uniform(lo / 1e20, hi / 1e20, labels.shape).astype(dtype)
    else:
        image = rng.integers(lo, hi, labels.shape, endpoint=True).astype(dtype)
    mask = np.where(rng.random(labels.shape) > 0.5, 255, 0).astype(np.uint8)
    ours = mask_metrics(labels, image, mask, 0.5)
    for cell in range(1, 6):
        sel = labels == cell
        inside = image[sel & (mask > 0)].astype(np.float64)
        outside = image[sel & (mask == 0)].astype(np.float64)
        assert ours.loc[cell, "pixels_inside"] == inside.size
        np.testing.assert_allclose(ours.loc[cell, "mean_inside"], inside.mean(), 1e-9)
        np.testing.assert_allclose(ours.loc[cell, "mean_outside"], outside.mean(), 1e-9)
        assert ours.loc[cell, "positive"] == int(inside.size / sel.sum() >= 0.5)


def image_array(tmp_path, data: np.ndarray, chunks=(1, 16, 16)):
    group = open_group(tmp_path / "img", mode="w")
    arr = create_array(group, "0", data.shape, chunks, data.dtype, IMAGE_COMPRESSOR)
    arr[...] = data
    return arr


def test_values_stay_exact_in_zarr_for_every_dtype(tmp_path):
    for dtype in DTYPES:
        lo, hi = extremes(dtype)
        data = np.array([[[lo, hi], [0, -1 if lo < 0 else 1]]], dtype)
        arr = image_array(tmp_path / dtype, data)
        np.testing.assert_array_equal(arr[...], data)


def integer_image(dtype, shape, seed=0, span=None):
    rng = np.random.default_rng(seed)
    lo, hi = extremes(dtype)
    if span is not None:
        lo, hi = max(lo, -span // 2), min(hi, span // 2)
    img = rng.integers(lo, hi, shape, endpoint=True).astype(dtype)
    # two populations, so every method has something to separate
    img[: shape[0] // 3] = np.clip(img[: shape[0] // 3] // 4, lo, hi).astype(dtype)
    return img


@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("method", ["otsu", "li", "yen", "isodata", "triangle"])
def test_thresholds_equal_scikit_image_for_integer_dtypes(tmp_path, dtype, method):
    # a range scikit-image can histogram densely (one bin per integer)
    img = integer_image(dtype, (60, 70), seed=2, span=20_000)
    arr = image_array(tmp_path, img[np.newaxis])
    ours = threshold_value(region_histogram(arr, 0, 0), method)
    if method == "li" and img.min() < 0:
        # scikit-image's Li takes the log of negative integer bins (a
        # RuntimeWarning and NaN); the method itself is shift-equivariant
        low = int(img.min())
        ref = filters.threshold_li(img.astype(np.int64) - low) + low
    else:
        ref = getattr(filters, f"threshold_{method}")(img)
    assert ours == pytest.approx(float(ref), abs=0.5 if method == "li" else 0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("method", ["otsu", "yen", "isodata"])
def test_thresholds_of_float_dtypes_with_negatives(tmp_path, dtype, method):
    rng = np.random.default_rng(4)
    img = np.concatenate(
        [rng.normal(-5000, 100, 3000), rng.normal(9000, 300, 1500)]
    ).astype(dtype)
    arr = image_array(tmp_path, img.reshape(1, 45, 100))
    ours = threshold_value(region_histogram(arr, 0, 0), method)
    ref = getattr(filters, f"threshold_{method}")(img, nbins=65536)
    # scikit-image bins float32 data in float32; percell bins in float64
    assert ours == pytest.approx(float(ref), rel=1e-9 if dtype == "float64" else 1e-6)


def brute_force_otsu(values: np.ndarray) -> float:
    """Otsu by trying every distinct value as the split, in float64."""
    vals, counts = np.unique(values.astype(np.float64), return_counts=True)
    best, best_t = -1.0, vals[0]
    for i in range(vals.size - 1):
        w0, w1 = counts[: i + 1].sum(), counts[i + 1 :].sum()
        m0 = (vals[: i + 1] * counts[: i + 1]).sum() / w0
        m1 = (vals[i + 1 :] * counts[i + 1 :]).sum() / w1
        between = w0 * w1 * (m0 - m1) ** 2
        if between > best:
            best, best_t = between, vals[i]
    return float(best_t)


@pytest.mark.parametrize("dtype", ["uint32", "int32"])
def test_32_bit_histograms_stay_small_and_otsu_stays_exact(tmp_path, dtype):
    """Full-range 32-bit data: one bin per integer would be 4 billion bins."""
    img = integer_image(dtype, (64, 64), seed=6)
    arr = image_array(tmp_path, img[np.newaxis])
    tracemalloc.start()
    hist = region_histogram(arr, 0, 0)
    value = threshold_value(hist, "otsu")
    for method in ("triangle", "isodata", "li", "yen", "mean"):
        threshold_value(hist, method)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64e6
    assert value == brute_force_otsu(img)


def test_float_histograms_coarsen_instead_of_growing(monkeypatch):
    import percell.thresholds as t

    monkeypatch.setattr(t, "MAX_DISTINCT", 1000)
    hist = Histogram()
    data = np.random.default_rng(0).normal(0, 1, 20_000)
    for part in np.array_split(data, 10):
        hist.add(part)
    assert hist.values.size <= 1000
    assert hist.total == data.size


@pytest.mark.parametrize("method", ["otsu", "li", "triangle", "yen", "isodata"])
def test_constant_region_thresholds_at_its_value(method):
    hist = Histogram()
    hist.add(np.full((10, 10), 7, np.uint16))
    assert threshold_value(hist, method) == 7


def test_empty_histogram_names_what_it_is_of():
    with pytest.raises(ExperimentError, match="region ctrl/r1, channel GFP"):
        threshold_value(Histogram(), "otsu", label="region ctrl/r1, channel GFP")


def random_pixels(dtype: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Integers over the type's whole range; floats within ±1e6."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.uniform(-1e6, 1e6, shape).astype(dtype)
    lo, hi = extremes(dtype)
    return rng.integers(lo, hi, shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_masks_equal_numpy_comparison_for_every_dtype(tmp_path, dtype):
    lo, hi = extremes(dtype)
    img = random_pixels(dtype, (1, 40, 37), seed=8)
    value = 123.5 if np.dtype(dtype).kind == "f" else float(np.median(img))
    img[0, 0, :2] = [lo, hi]
    arr = image_array(tmp_path / "i", img)
    group = open_group(tmp_path / "m", mode="w")
    out = create_array(group, "0", img.shape[1:], (16, 16), np.uint8, MASK_COMPRESSOR)
    on = write_mask(arr, 0, 0, value, out)
    expected = np.where(img[0] > value, 255, 0).astype(np.uint8)
    np.testing.assert_array_equal(out[...], expected)
    assert on == int((img[0] > value).sum())


def reference_mean(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[-2:]
    pad = [(0, 0)] * (a.ndim - 2) + [(0, h % 2), (0, w % 2)]
    p = np.pad(a.astype(np.float64), pad, mode="edge")
    blocks = p.reshape(*p.shape[:-2], p.shape[-2] // 2, 2, p.shape[-1] // 2, 2)
    mean = blocks.mean(axis=(-3, -1))
    if a.dtype.kind == "f":
        return mean.astype(a.dtype)
    return np.floor(mean + 0.5).astype(a.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pyramid_levels_exact_for_every_dtype(tmp_path, dtype):
    lo, hi = extremes(dtype)
    img = random_pixels(dtype, (1, 37, 45), seed=9)
    # blocks of extremes that stay whole down to level 2: integer sums must
    # not overflow (floats would only show summation-order rounding here)
    img[0, :4, :4] = hi
    img[0, 4:8, :4] = lo
    arr = image_array(tmp_path, img)
    group = open_group(tmp_path / "img", mode="r+")
    channels = [Channel(name="c")]
    group.attrs.put(
        ngff.image_attrs("img", 1, 1.0, None, False, channels, [(0, 1, 0, 1)])
    )
    build_levels(tmp_path / "img", 3, mean_2x2, IMAGE_COMPRESSOR)
    group = open_group(tmp_path / "img")
    level1 = reference_mean(img)
    level2 = reference_mean(level1)
    if np.dtype(dtype).kind == "f":
        # four floats summed in another order differ by a few ulp of the
        # largest addend (values are within ±1e6 outside the extreme blocks)
        tol = 4 * np.finfo(dtype).eps * 1e6
        np.testing.assert_allclose(group["1"][...], level1, rtol=0, atol=tol)
        np.testing.assert_allclose(group["2"][...], level2, rtol=0, atol=tol)
    else:
        np.testing.assert_array_equal(group["1"][...], level1)
        np.testing.assert_array_equal(group["2"][...], level2)
    assert group["2"][0, 0, 0] == hi and group["2"][0, 1, 0] == lo
    assert arr.dtype == group["2"].dtype
    np.testing.assert_array_equal(max_2x2(img)[0, 0, 0], hi)
