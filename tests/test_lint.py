"""The repository stays lint-clean: snakemake --lint, snakefmt, ruff."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "cmd",
    [
        [str(BIN / "snakemake"), "--lint"],
        [str(BIN / "snakefmt"), "--check", "Snakefile", "workflow"],
        [str(BIN / "ruff"), "check", "src", "tests", "bench", "workflow/scripts"],
        [
            str(BIN / "ruff"),
            "format",
            "--check",
            "src",
            "tests",
            "bench",
            "workflow/scripts",
        ],
    ],
    ids=["snakemake-lint", "snakefmt", "ruff-check", "ruff-format"],
)
def test_lint_clean(cmd):
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    if cmd[1] == "--lint":
        assert "Congratulations" in output, output
