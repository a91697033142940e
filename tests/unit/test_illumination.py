"""Flat-field profiles applied at import: shape checks and exact division."""

from __future__ import annotations

import numpy as np
import pytest

from percell.errors import ExperimentError
from percell.illumination import check_field_shape, divide


def test_a_profile_of_the_wrong_shape_is_refused_naming_both_shapes():
    profiles = {1: np.ones((100, 120), np.float32)}
    check_field_shape(profiles, (100, 120), "region ctrl/r1")
    with pytest.raises(
        ExperimentError,
        match=r"region ctrl/r2: the flat-field is "
        r"100x120 px but the field is 90x120 px",
    ):
        check_field_shape(profiles, (90, 120), "region ctrl/r2")


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32", "float32"])
def test_division_rounds_and_clips_to_the_dtype(dtype):
    rng = np.random.default_rng(2)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "ui" else None
    top = float(info.max) if info else 1e4
    plane = rng.uniform(
        -50 if dtype != "uint8" and dtype != "uint16" else 0, top, (40, 30)
    ).astype(dtype)
    profile = rng.uniform(0.5, 1.5, (40, 30)).astype(np.float32)
    out = divide(plane, profile, np.dtype(dtype))
    expected = plane.astype(np.float64) / profile
    if info:
        expected = np.clip(np.rint(expected), info.min, info.max)
    np.testing.assert_array_equal(out, expected.astype(dtype))
    assert out.dtype == np.dtype(dtype)
