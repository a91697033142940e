"""Every error a user can meet is a PercellError, defined in percell.errors."""

from __future__ import annotations

import re

import pytest

from percell import errors
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (errors.ConfigError, ValueError),
        (errors.SourceImageError, ValueError),
        (errors.ExperimentError, RuntimeError),
        (errors.ModelError, RuntimeError),
    ],
)
def test_each_error_is_a_percell_error_and_the_builtin_it_replaces(error, builtin):
    assert issubclass(error, errors.PercellError)
    assert issubclass(error, builtin)
    with pytest.raises(builtin):
        raise error("x")


def test_errors_are_defined_only_in_percell_errors():
    """No module keeps an error class of its own (ModelError used to live in
    the cellpose adapter)."""
    found = []
    for path in sorted((REPO / "src/percell").glob("*.py")):
        if path.name == "errors.py":
            continue
        found += [
            f"{path.name}: {m}"
            for m in re.findall(
                r"^class (\w+)\((?:\w+, )*\w*(?:Error|Exception)\b",
                path.read_text(),
                re.M,
            )
        ]
    assert found == []


def test_the_percell_command_reports_a_user_error_and_exits_2(tmp_path, capsys):
    from percell.cli import main

    missing = tmp_path / "none.percell"
    assert main(["export", str(missing), "--csv", str(tmp_path / "c.csv")]) == 2
    err = capsys.readouterr().err
    assert f"{missing}/experiment.db: no experiment database" in err
    assert not (tmp_path / "c.csv").exists()
