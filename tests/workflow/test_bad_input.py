"""Bad input: a clear error naming what is wrong, a non-zero exit, and an
existing experiment left byte-for-byte as it was. One test per case."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import tifffile
import yaml

from tests.conftest import (
    REPO,
    SNAKEMAKE,
    run_workflow,
    tree_digest,
    write_config,
)


def rerun_expecting_failure(experiment_copy, *, sheet_rows=None, config_edit=None):
    """Change the sheet or config of a finished experiment and rerun it.

    Returns snakemake's combined output after asserting that the run failed
    and the experiment directory is byte-for-byte unchanged.
    """
    work, exp = experiment_copy["work"], experiment_copy["experiment"]
    config = yaml.safe_load((work / "config.yaml").read_text())
    if sheet_rows is not None:
        sheet = work / "bad.tsv"
        header = "condition\ttimepoint\tregion\tchannel\tpath\n"
        original = experiment_copy["sheet"].read_text().splitlines()[1:]
        sheet.write_text(header + "\n".join(original + sheet_rows) + "\n")
        config["input"] = {"sample_sheet": str(sheet)}
    if config_edit is not None:
        config_edit(config)
    write_config(work, config)
    before = tree_digest(exp)
    proc = run_workflow(work, check=False)
    assert proc.returncode != 0
    assert tree_digest(exp) == before
    return proc.stdout + proc.stderr


def new_region_rows(work, region, make_files):
    """Rows for region ``drug/t1/<region>``; make_files(dir) → {channel: path}."""
    files = make_files(work / "incoming")
    return [f"drug\tt1\t{region}\t{ch}\t{path}" for ch, path in files.items()]


def _write(path, data, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, data, **kwargs)
    return path


def good(d, name="ok", shape=(300, 700), dtype="uint16"):
    return _write(d / f"{name}.tif", np.ones(shape, dtype))


def test_missing_file(experiment_copy):
    def files(d):
        return {"DAPI": good(d), "GFP": d / "does_not_exist.tif"}

    out = rerun_expecting_failure(
        experiment_copy,
        sheet_rows=new_region_rows(experiment_copy["work"], "rX", files),
    )
    assert "does_not_exist.tif" in out and "not found" in out


def test_corrupt_tiff(experiment_copy):
    def files(d):
        bad = d / "corrupt.tif"
        bad.parent.mkdir(parents=True, exist_ok=True)
        bad.write_bytes(b"II*\x00" + b"\x17" * 500)
        return {"DAPI": good(d), "GFP": bad}

    out = rerun_expecting_failure(
        experiment_copy,
        sheet_rows=new_region_rows(experiment_copy["work"], "rX", files),
    )
    assert "corrupt.tif" in out and "not a readable TIFF" in out


def test_unreadable_non_tiff_file(experiment_copy):
    def files(d):
        bad = d / "notes.tif"
        bad.parent.mkdir(parents=True, exist_ok=True)
        bad.write_text("this is not an image")
        return {"DAPI": good(d), "GFP": bad}

    out = rerun_expecting_failure(
        experiment_copy,
        sheet_rows=new_region_rows(experiment_copy["work"], "rX", files),
    )
    assert "notes.tif" in out and "not a readable TIFF" in out


def test_truncated_tiff(experiment_copy):
    def files(d):
        full = good(d, "full")
        cut = d / "truncated.tif"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        return {"DAPI": good(d), "GFP": cut}

    out = rerun_expecting_failure(
        experiment_copy,
        sheet_rows=new_region_rows(experiment_copy["work"], "rX", files),
    )
    assert "truncated.tif" in out and "truncated" in out


def test_wrong_dimensionality(experiment_copy):
    def files(d):
        five_d = _write(d / "five_d.tif", np.ones((2, 2, 2, 30, 70), "uint16"))
        return {"DAPI": good(d), "GFP": five_d}

    out = rerun_expecting_failure(
        experiment_copy,
        sheet_rows=new_region_rows(experiment_copy["work"], "rX", files),
    )
    assert "five_d.tif" in out and "not supported" in out


def test_channels_with_different_shapes(experiment_copy):
    def files(d):
        return {"DAPI": good(d), "GFP": good(d, "small", shape=(200, 700))}

    out = rerun_expecting_failure(
        experiment_copy,
        sheet_rows=new_region_rows(experiment_copy["work"], "rX", files),
    )
    assert "drug/t1/rX" in out and "small.tif" in out and "differ" in out


@pytest.mark.parametrize("dtype", ["complex64", "bool"])
def test_unsupported_dtype(experiment_copy, dtype):
    def files(d):
        return {"DAPI": good(d), "GFP": good(d, f"img_{dtype}", dtype=dtype)}

    out = rerun_expecting_failure(
        experiment_copy,
        sheet_rows=new_region_rows(experiment_copy["work"], "rX", files),
    )
    assert f"img_{dtype}.tif" in out and "unsupported pixel type" in out


def test_duplicate_rows(experiment_copy):
    first = experiment_copy["sheet"].read_text().splitlines()[1]
    out = rerun_expecting_failure(experiment_copy, sheet_rows=[first])
    assert "duplicate rows" in out and "condition='ctrl'" in out


@pytest.mark.parametrize("bad_name", ["../evil", "with space", ".hidden", "a..b"])
def test_names_breaking_the_percell3_rule(experiment_copy, bad_name):
    def files(d):
        return {"DAPI": good(d), "GFP": good(d, "g")}

    rows = new_region_rows(experiment_copy["work"], bad_name, files)
    out = rerun_expecting_failure(experiment_copy, sheet_rows=rows)
    assert repr(bad_name) in out and "name rule" in out and "bad.tsv, row 12" in out


def test_unknown_config_key(experiment_copy):
    def edit(config):
        config["pyramid"]["levles"] = 3

    out = rerun_expecting_failure(experiment_copy, config_edit=edit)
    assert "pyramid: unknown key(s) 'levles'" in out
    assert "allowed keys: levels, resources" in out


def test_wrong_config_type(experiment_copy):
    def edit(config):
        config["pixel_size_um"] = "half a micron"

    out = rerun_expecting_failure(experiment_copy, config_edit=edit)
    assert "pixel_size_um: 'half a micron' is a string, expected" in out
    # a user's mistake: one message naming the config file, no traceback
    assert f"percell: error in {experiment_copy['work'] / 'config.yaml'}" in out
    assert "Traceback" not in out and 'File "' not in out


def test_a_tab_in_the_default_config_names_its_line(experiment_copy):
    """With no --configfile, the Snakefile reads config/config.yaml itself:
    a tab in its indentation is named by file and line, with no traceback
    (Snakemake's own message names neither)."""
    work, exp = experiment_copy["work"], experiment_copy["experiment"]
    lines = (work / "config.yaml").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  "))
    lines[at] = "\t" + lines[at].lstrip()
    (work / "config").mkdir()
    (work / "config/config.yaml").write_text("\n".join(lines) + "\n")
    before = tree_digest(exp)
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "-d", str(work)]
    proc = subprocess.run([*cmd, "--cores", "1"], capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"percell: config/config.yaml, line {at + 1}, column 1: not valid" in out
    assert "a tab in the indentation" in out
    assert "Traceback" not in out
    assert tree_digest(exp) == before


def test_bad_channel_name_in_config(experiment_copy):
    def edit(config):
        config["channels"][0]["name"] = "DAPI/../x"

    out = rerun_expecting_failure(experiment_copy, config_edit=edit)
    assert "channels.0.name" in out and "DAPI/../x" in out


def test_first_run_with_bad_input_creates_no_experiment(tmp_path):
    sheet = tmp_path / "s.tsv"
    sheet.write_text("condition\tregion\tchannel\tpath\nc\tr\tDAPI\tmissing.tif\n")
    write_config(
        tmp_path,
        {
            "experiment": {"name": "x", "path": "out/x.percell"},
            "input": {"sample_sheet": str(sheet)},
            "channels": [{"name": "DAPI"}],
            "pixel_size_um": 1.0,
        },
    )
    proc = run_workflow(tmp_path, check=False)
    assert proc.returncode != 0
    assert "missing.tif" in proc.stderr + proc.stdout
    assert not (tmp_path / "out").exists()
