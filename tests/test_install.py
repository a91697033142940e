"""The package installs as a wheel, and a deployed workflow runs on it.

A user who does not clone this repository installs the wheel (no ``-e``) and
copies the workflow into a project directory of their own. This test does
exactly that: build the wheel from the sources, install it into a fresh
virtual environment with its dependencies, deploy ``Snakefile``,
``workflow/``, ``envs/``, ``config/`` and ``profiles/`` into an empty
directory, and
run the demo to completion there.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, timeout: int = 900) -> str:
    # nothing from the test's own environment may point at the sources
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel built from the sources, installed without -e."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info")
    )
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", "dist", "./source"],
        root,
    )
    (wheel,) = (root / "dist").glob("percell-*.whl")
    run([sys.executable, "-m", "venv", "venv"], root)
    constraints = str(REPO / "envs/constraints.txt")
    run(
        [str(root / "venv/bin/pip"), "install", "-q", "-c", constraints, str(wheel)],
        root,
    )
    return root / "venv"


def test_the_wheel_carries_its_schemas_and_is_the_one_imported(installed):
    out = run(
        [
            str(installed / "bin/python"),
            "-c",
            "import importlib.util, percell, percell.config as c; "
            "print(percell.__file__); "
            "print(sorted(c.load_schema('config')['properties'])[:3]); "
            "print(importlib.util.find_spec('snakemake_executor_plugin_slurm'))",
        ],
        cwd=installed.parent,
    )
    location, schema_keys, slurm_plugin = out.splitlines()[:3]
    assert location.startswith(str(installed)), location
    assert "channels" in schema_keys
    # the SLURM executor is the `slurm` extra: a plain install has none (it
    # costs every snakemake call ~9 s where no SLURM controller answers)
    assert slurm_plugin == "None"


def test_deployed_workflow_runs_the_demo_on_the_installed_package(installed):
    project = installed.parent / "project"
    project.mkdir()
    shutil.copy2(REPO / "Snakefile", project / "Snakefile")
    for folder in ("workflow", "envs", "config", "profiles"):
        shutil.copytree(REPO / folder, project / folder)
    # a smaller demo than the README's: the same chain, a quicker test
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["input"]["demo"].update(size=256, large_size=512, timepoints=["t0"])
    (project / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    run([str(installed / "bin/snakemake"), "--cores", "2"], project)
    exp = project / "results/demo.percell"
    with sqlite3.connect(exp / "experiment.db") as db:
        regions = db.execute("SELECT count(*) FROM regions").fetchone()[0]
        cells = db.execute("SELECT count(*) FROM cells").fetchone()[0]
    assert regions == 4 and cells > 50
    assert (project / "results/demo_cells.parquet").is_file()
    # every rule's conda environment resolves from the deployment
    for rules in (project / "workflow/rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', rules.read_text()):
            assert (rules.parent / env).resolve().is_file(), (rules.name, env)


def test_conda_environments_install_this_version_of_the_package():
    """The environment files name percell by version (not a path into a clone),
    so they work from any deployment; the version is the package's."""
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        deps = yaml.safe_load(env.read_text())["dependencies"]
        pip = next(d["pip"] for d in deps if isinstance(d, dict))
        (percell,) = [p for p in pip if p.startswith("percell")]
        assert re.fullmatch(rf"percell(\[[a-z,]+\])?=={re.escape(version)}", percell)


def test_a_vendor_file_without_its_plugin_names_the_extra(installed, tmp_path):
    """A plain install has no bioio plugin; a CZI in a sample sheet stops the
    run before any job, naming the file and the extra that reads it."""
    czi = tmp_path / "scan.czi"
    czi.write_bytes(b"ZISRAWFILE" + b"\0" * 100)
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(f"condition\tregion\tpath\nctrl\tr1\t{czi}\n")
    project = tmp_path / "project"
    project.mkdir()
    cfg = {
        "experiment": {"name": "x", "path": "out/x.percell"},
        "input": {"sample_sheet": str(sheet)},
        "channels": [{"name": "DAPI"}],
    }
    (project / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [
            str(installed / "bin/snakemake"),
            "--snakefile",
            str(REPO / "Snakefile"),
            "--configfile",
            "config.yaml",
            "--cores",
            "1",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode != 0
    assert (
        f"{czi}: reading .czi files needs the bioio plugin bioio-czi, which is "
        "not installed: pip install 'percell[czi]'" in proc.stderr
    ), proc.stderr[-3000:]
    assert not (project / "out").exists()
