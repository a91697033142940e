"""The compiled per-cell loops: medians by counting (integers whose range in a
cell fits 16 bits) and by selection (wider integers, floats), pixel grouping,
labels not asked for. Expected values come from numpy on each cell alone."""

import numpy as np
import pytest

from percell.measure import LabelIndex, intensity_metrics, mask_metrics


def cells_of(sizes: list[int]) -> np.ndarray:
    """A one-row label image: cell i+1 has sizes[i] pixels, interleaved with
    background so that a cell's pixels are not contiguous in the image."""
    labels = np.repeat(np.arange(1, len(sizes) + 1), sizes)
    rng = np.random.default_rng(7)
    labels = rng.permutation(labels)
    out = np.zeros(labels.size * 2, np.int32)
    out[::2] = labels
    return out[None, :]


@pytest.mark.parametrize(
    ("dtype", "low", "span"),
    [
        ("uint8", 0, 1),  # one value: a flat cell
        ("uint8", 0, 256),  # one high byte
        ("uint16", 100, 300),  # middle ranks across two high bytes
        ("uint16", 0, 65536),  # the widest counted range
        ("int16", -32768, 65536),  # negatives, counted
        ("int32", -(2**31), 2**32),  # too wide to count: selection
        ("uint32", 2**32 - 70000, 70000),  # just too wide: selection
        ("float32", -1e6, 2e6),
        ("float64", -1e150, 2e150),
    ],
)
def test_every_metric_equals_numpy_on_each_cell(dtype, low, span):
    sizes = [1, 2, 3, 4, 255, 256, 257, 1000, 1001]
    labels = cells_of(sizes)
    rng = np.random.default_rng(11)
    if np.dtype(dtype).kind == "f":
        values = low + rng.random(labels.shape) * span
    else:
        values = low + rng.integers(0, span, labels.shape, dtype=np.int64)
    image = values.astype(dtype)
    ours = intensity_metrics(labels, image)
    assert ours.index.tolist() == list(range(1, len(sizes) + 1))
    for cell in ours.index:
        px = image[labels == cell].astype(np.float64)
        row = ours.loc[cell]
        assert row["area"] == px.size
        assert row["median_intensity"] == np.median(px), cell
        assert row["min_intensity"] == px.min()
        assert row["max_intensity"] == px.max()
        np.testing.assert_allclose(row["integrated_intensity"], px.sum(), rtol=1e-12)
        np.testing.assert_allclose(row["mean_intensity"], px.mean(), rtol=1e-12)
        np.testing.assert_allclose(
            row["std_intensity"], px.std(), rtol=1e-9, atol=1e-9 * abs(px).max()
        )


def test_even_median_whose_two_middle_values_lie_in_different_high_bytes():
    labels = np.ones((1, 4), np.int32)
    image = np.array([[0, 255, 256, 511]], np.uint16)
    assert intensity_metrics(labels, image).loc[1, "median_intensity"] == 255.5


def test_many_equal_values_stay_exact_by_selection():
    # a saturated float cell: selection must split equal values evenly
    labels = np.ones((200, 200), np.int32)
    image = np.full((200, 200), 3.5, np.float32)
    image[0, :3] = (1.0, 2.0, 9.0)
    row = intensity_metrics(labels, image).loc[1]
    assert row["median_intensity"] == 3.5
    assert row["min_intensity"] == 1.0 and row["max_intensity"] == 9.0


def test_integer_sums_are_exact_beyond_float64s_53_bits():
    # past 2**53 a float64 running sum drops each added 1 (its step is 2);
    # the int64 sum keeps them, and is rounded once, at the end
    big = np.full(2**21 + 2, 2**32 - 1, np.uint32)
    image = np.concatenate([big, np.ones(1000, np.uint32)])[None, :]
    labels = np.ones(image.shape, np.int32)
    exact = (2**21 + 2) * (2**32 - 1) + 1000
    assert exact > 2**53
    total = intensity_metrics(labels, image).loc[1, "integrated_intensity"]
    assert total == float(exact)


def test_labels_not_asked_for_are_ignored_and_missing_ones_are_empty():
    labels = np.array([[1, 2, 2, 5, 0]], np.int32)
    image = np.array([[10, 20, 30, 40, 50]], np.uint16)
    ours = intensity_metrics(labels, image, ids=np.array([2, 3]))
    assert ours.index.tolist() == [2, 3]
    assert ours.loc[2, "mean_intensity"] == 25.0
    assert ours.loc[3, "area"] == 0 and np.isnan(ours.loc[3, "mean_intensity"])
    stats = mask_metrics(LabelIndex(labels, np.array([2, 3])), image, image > 25, 0.5)
    assert stats.loc[2, "pixels_inside"] == 1
    assert stats.loc[2, "mean_outside"] == 20.0
    assert np.isnan(stats.loc[3, "fraction_inside"])


def test_negative_labels_are_refused():
    with pytest.raises(ValueError, match="negative labels"):
        LabelIndex(np.array([[1, -1]], np.int32))


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32", "float64"])
def test_mean_and_std_are_numpys_bit_for_bit(dtype):
    """The PerCell 3 application measures with np.nanmean / np.nanstd of each
    cell's pixels; re-measuring what percell stored must change no value, so
    the sums follow numpy's order (pairwise, in buffer-sized chunks): cells of
    1 to 30,000 pixels, across the 8-, 128- and 8192-pixel boundaries."""
    sizes = [1, 7, 8, 9, 127, 128, 129, 1000, 8191, 8192, 8193, 30000]
    labels = cells_of(sizes)
    rng = np.random.default_rng(5)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is None:
        image = rng.normal(1000.0, 300.0, labels.shape).astype(dtype)
    else:
        image = rng.integers(info.min, int(info.max) + 1, labels.shape, dtype=dtype)
    got = intensity_metrics(labels, image)
    for label in range(1, len(sizes) + 1):
        pixels = image[labels == label]
        assert got.loc[label, "mean_intensity"] == float(np.nanmean(pixels))
        assert got.loc[label, "std_intensity"] == float(np.nanstd(pixels))
