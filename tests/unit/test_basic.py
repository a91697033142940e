"""The BaSiC flat-field estimate on fields with a known vignette."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from skimage.transform import resize

from percell.basic import basic_flatfield
from tests.conftest import REPO
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


def _basicpy_python() -> str | None:
    """A Python with BaSiCPy: $PERCELL_BASICPY_PYTHON or the repository's
    ``.venv-basicpy`` (the README's third command builds it)."""
    path = os.environ.get("PERCELL_BASICPY_PYTHON") or str(
        REPO / ".venv-basicpy/bin/python"
    )
    return path if Path(path).is_file() else None


@pytest.mark.skipif(
    _basicpy_python() is None,
    reason="BaSiCPy lives in its own environment: build .venv-basicpy (README)",
)
@pytest.mark.parametrize("seed", [5, 11])
def test_flatfield_agrees_with_basicpy(tmp_path, seed):
    fields, truth = vignetted_fields(24, (160, 192), np.random.default_rng(seed))
    np.save(tmp_path / "fields.npy", fields)
    subprocess.run(
        [
            _basicpy_python(),
            str(REPO / "tests/support/basicpy_reference.py"),
            str(tmp_path / "fields.npy"),
            str(tmp_path / "basicpy.npy"),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    reference = np.load(tmp_path / "basicpy.npy")
    ours = basic_flatfield(fields.astype(float))
    assert reference.shape == ours.shape == truth.shape
    # the same profile (the vignette spans 0.49..1.21)...
    assert np.abs(ours - reference).max() < 0.03
    assert np.abs(reference - truth).max() < 0.05  # (BaSiCPy finds it too)
    # ...and the same correction
    raw = field_variation(fields)
    by_basicpy, by_ours = (
        field_variation(fields / reference),
        field_variation(fields / ours),
    )
    assert by_ours <= 1.15 * by_basicpy, (raw, by_basicpy, by_ours)
