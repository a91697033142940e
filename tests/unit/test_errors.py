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


def test_long_loops_show_progress_and_time_left_in_the_terminal(
    tmp_path, capsys, monkeypatch
):
    """Every step goes to the rule's log; the terminal gets a line only once
    the loop has run for the interval (short jobs stay quiet), then the
    last one, naming the job's log."""
    import logging
    import sys

    from percell import logs
    from percell.logs import Progress, setup_logging

    log_file = tmp_path / "logs/segment/ctrl.log"
    stderr = sys.stderr
    # (restored after the test: setup_logging sets them for the job)
    monkeypatch.setattr(logs, "_terminal", stderr)
    monkeypatch.setattr(logs, "_job", "")
    try:
        setup_logging(log_file)
        quick = Progress("segment ctrl/r1", 3, "tiles")
        for i in range(1, 4):
            quick.step(i, "detail")
        monkeypatch.setenv("PERCELL_PROGRESS_EVERY_S", "0")
        slow = Progress("segment ctrl/r2", 2, "tiles")
        for i in range(1, 3):
            slow.step(i)
    finally:
        logging.getLogger().handlers.clear()
        sys.stderr.close()
        sys.stderr = stderr
    terminal = capsys.readouterr().err.splitlines()
    assert terminal == [
        f"percell: segment ctrl/r2: {i}/2 tiles, 0:00 so far, about 0:00 left "
        f"[{log_file}]"
        for i in (1, 2)
    ]
    logged = log_file.read_text()
    assert "segment ctrl/r1: 3/3 tiles, 0:00 so far, about 0:00 left (detail)" in logged
    assert "segment ctrl/r2: 2/2 tiles" in logged


def test_check_config_names_the_line_of_a_yaml_tab_and_the_key_of_a_bad_value(
    tmp_path, capsys
):
    """Snakemake refuses a YAML file with a tab naming neither file nor line
    (its loader runs before the workflow); ``percell check-config`` names
    both, and the schema's own errors, by key."""
    from percell.cli import main

    good = (REPO / "config/config.yaml").read_text()
    tabbed = tmp_path / "tabbed.yaml"
    lines = good.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  name:"))
    lines[at] = "\t" + lines[at].lstrip()
    tabbed.write_text("\n".join(lines) + "\n")
    assert main(["check-config", str(tabbed)]) == 2
    err = capsys.readouterr().err
    assert f"{tabbed}, line {at + 1}, column 1: not valid YAML" in err
    assert "a tab in the indentation" in err
    typo = tmp_path / "typo.yaml"
    typo.write_text(good.replace("diameter: 16", 'diameter: "16"'))
    assert main(["check-config", str(typo)]) == 2
    assert "segmentation.diameter" in capsys.readouterr().err
    assert main(["check-config", str(REPO / "config/config.yaml")]) == 0
