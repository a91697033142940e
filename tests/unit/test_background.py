"""Background subtraction at import, against numpy and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.restoration import rolling_ball

from percell.background import SUBGROUP, subtract_background
from percell.contracts import BackgroundSettings
from percell.storage import IMAGE_COMPRESSOR, create_array, open_group

DTYPES = ["uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64"]


def _region(tmp_path, data, chunks):
    group = open_group(tmp_path / "img", mode="w")
    arr = create_array(group, "0", data.shape, chunks, data.dtype, IMAGE_COMPRESSOR)
    arr[...] = data
    return group


def _image(dtype, shape, rng):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "ui" else None
    lo = max(info.min, -100) if info else -100.0
    hi = min(info.max, 5000) if info else 5000.0
    return rng.uniform(lo, hi, shape).astype(dtype)


def _expected(raw, background, dtype):
    """raw - background in the image's dtype, rounded and clipped for ints."""
    out = raw.astype(np.float64) - background
    if np.dtype(dtype).kind in "ui":
        info = np.iinfo(dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_and_percentile_are_exact_in_every_dtype(tmp_path, dtype):
    rng = np.random.default_rng(3)
    data = _image(dtype, (3, 300, 170), rng)
    group = _region(tmp_path, data, (1, 128, 128))
    settings = {
        "b": BackgroundSettings(method="constant", value=40),
        "c": BackgroundSettings(method="percentile", percentile=7.5),
    }
    records, ranges = subtract_background(group, ["a", "b", "c"], settings)
    out = group["0"][:]
    np.testing.assert_array_equal(out[0], data[0])  # not configured: untouched
    np.testing.assert_array_equal(out[1], _expected(data[1], 40.0, dtype))
    value = float(np.percentile(data[2], 7.5))
    assert records[1].value == pytest.approx(value, rel=1e-12, abs=1e-9)
    np.testing.assert_array_equal(out[2], _expected(data[2], records[1].value, dtype))
    assert ranges[1] == (float(out[1].min()), float(out[1].max()))
    assert [r.channel for r in records] == ["b", "c"]


@pytest.mark.parametrize("dtype", ["uint16", "int16", "float32"])
def test_rolling_ball_in_bands_equals_the_whole_plane(tmp_path, dtype):
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:300, :260]
    # spots on a sloping background
    data = 200 + 0.5 * yy + 0.3 * xx + rng.normal(0, 5, yy.shape)
    for y, x in rng.integers(10, 250, (40, 2)):
        data[y - 2 : y + 3, x - 2 : x + 3] += 800
    data = np.stack([data, data[::-1]]).astype(dtype)[:, np.newaxis]  # (C, Z, Y, X)
    data = np.concatenate([data, data + 7], axis=1)  # two z planes
    group = _region(tmp_path, data, (1, 1, 64, 64))
    settings = {"b": BackgroundSettings(method="rolling_ball", radius=9)}
    records, _ = subtract_background(group, ["a", "b"], settings)
    out = group["0"][:]
    kept = group[SUBGROUP]["b"][:]
    for z in range(2):
        reference = rolling_ball(data[1, z].astype(np.float64), radius=9)
        np.testing.assert_allclose(kept[z], reference.astype(np.float32))
        np.testing.assert_array_equal(
            out[1, z], _expected(data[1, z], reference, dtype)
        )
    np.testing.assert_array_equal(out[0], data[0])
    assert records[0].value is None
    assert records[0].subtracted_max == pytest.approx(float(kept.max()), rel=1e-6)
