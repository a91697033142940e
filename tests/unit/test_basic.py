"""The BaSiC flat-field estimate on fields with a known vignette."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import resize

from percell.basic import basic_flatfield
from tests.support.vignette import field_variation, vignetted_fields


def test_flatfield_recovers_a_known_vignette():
    fields, truth = vignetted_fields(30, (192, 160), np.random.default_rng(5))
    small = np.stack([resize(f.astype(float), (96, 80)) for f in fields])
    flat = resize(basic_flatfield(small), truth.shape, order=1, mode="edge")
    flat /= flat.mean()
    assert np.abs(flat - truth).max() < 0.08
    raw, corrected = field_variation(fields), field_variation(fields / flat)
    assert raw > 0.1
    assert corrected * 5 <= raw, (raw, corrected)


def test_flat_fields_give_a_flat_profile():
    rng = np.random.default_rng(6)
    fields = rng.poisson(500, (10, 64, 64)).astype(float)
    flat = basic_flatfield(fields)
    assert flat.mean() == pytest.approx(1.0)
    assert np.abs(flat - 1).max() < 0.02


@pytest.mark.parametrize("shape", [(1, 32, 32), (32, 32)])
def test_one_field_is_refused(shape):
    with pytest.raises(ValueError, match="at least 2 fields"):
        basic_flatfield(np.ones(shape))
