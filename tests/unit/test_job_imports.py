"""Each workflow job is a fresh Python process, and a large part of a small
job's time is its imports (pandas, numba, scipy.ndimage: a quarter to half a
second each on the CI machine). Jobs that never use a heavy library do not
import it: checked in a clean interpreter, as the job starts."""

from __future__ import annotations

import subprocess
import sys

import pytest

# the step module a job imports -> what it must not import
NOT_IMPORTED = {
    "percell.thresholds": ["scipy.ndimage", "skimage", "pandas", "numba"],
    "percell.demo": ["pandas", "numba", "percell.wells"],
    "percell.register": ["numba", "scipy.ndimage", "skimage"],
    "percell.pyramid": ["pandas", "numba", "scipy.ndimage", "skimage"],
    "percell.hierarchy": ["pandas", "numba", "scipy.ndimage", "skimage"],
    "percell.importer": ["pandas", "numba", "skimage"],
}


@pytest.mark.parametrize("module", sorted(NOT_IMPORTED))
def test_a_job_imports_only_what_it_uses(module):
    heavy = NOT_IMPORTED[module]
    code = (
        f"import sys, percell.steps, {module}\n"
        f"print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [], f"{module} imports {out.stdout.split()}"
