"""Flat-field correction through the workflow: fields under a known vignette,
profiles fitted per condition, divided out at import."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import tifffile
import yaml

from percell.storage import open_group
from tests.conftest import base_config, run_workflow, tree_digest, write_config
from tests.support.vignette import field_variation, vignetted_fields
from tests.workflow.test_reruns import planned_jobs

N_FIELDS = 24
SHAPE = (160, 192)


@pytest.fixture(scope="module")
def corrected(tmp_path_factory):
    root = tmp_path_factory.mktemp("illumination")
    rows, raw = [], {}
    for i, cond in enumerate(("ctrl", "drug")):
        rng = np.random.default_rng(40 + i)
        gfp, truth = vignetted_fields(N_FIELDS, SHAPE, rng)
        dapi, _ = vignetted_fields(N_FIELDS, SHAPE, rng, spots=30)
        for f in range(N_FIELDS):
            for ch, img in (("DAPI", dapi[f]), ("GFP", gfp[f])):
                path = root / "raw" / f"{cond}_f{f}_{ch}.tif"
                path.parent.mkdir(exist_ok=True)
                tifffile.imwrite(path, img)
                rows.append(f"{cond}\tf{f}\t{ch}\t{path}")
        raw[cond] = {"GFP": gfp, "DAPI": dapi, "truth": truth}
    sheet = root / "samples.tsv"
    sheet.write_text("condition\tregion\tchannel\tpath\n" + "\n".join(rows) + "\n")
    cfg = base_config(
        {"sample_sheet": str(sheet)},
        illumination={"channels": ["GFP"], "sample_fields": 20, "working_size": 64},
    )
    write_config(root, cfg)
    run_workflow(root)
    return {"work": root, "experiment": root / "out/exp.percell", "raw": raw}


@pytest.fixture
def corrected_copy(corrected, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(corrected["work"], work, symlinks=True)
    return {"work": work, "experiment": work / "out/exp.percell"}


def _level0(exp, cond, f):
    return open_group(exp / "images.zarr" / cond / f"f{f}")["0"][:]


@pytest.mark.parametrize("cond", ["ctrl", "drug"])
def test_corrected_fields_vary_5x_less_across_the_field(corrected, cond):
    exp, raw = corrected["experiment"], corrected["raw"][cond]
    profile = open_group(exp / "illumination.zarr" / cond)
    flat = profile["flatfield"][0]
    assert profile.attrs["percell"]["channels"] == ["GFP"]
    assert len(profile.attrs["percell"]["fields"]) == 20
    assert flat.shape == SHAPE and abs(flat.mean() - 1) < 1e-5
    # the profile is the vignette the fields were made with
    assert np.abs(flat - raw["truth"]).max() < 0.1
    level0 = np.stack([_level0(exp, cond, f) for f in range(N_FIELDS)])
    for f in range(N_FIELDS):
        expected = np.clip(np.rint(raw["GFP"][f] / flat.astype(np.float64)), 0, 65535)
        np.testing.assert_array_equal(level0[f, 1], expected)
        np.testing.assert_array_equal(level0[f, 0], raw["DAPI"][f])  # not corrected
    before, after = field_variation(raw["GFP"]), field_variation(level0[:, 1])
    assert before > 0.1
    assert after * 5 <= before, (before, after)


def test_profiles_are_recorded_with_their_parameters(corrected):
    exp = corrected["experiment"]
    record = json.loads((exp / ".workflow/illumination/ctrl.json").read_text())
    assert record["params"]["settings"]["working_size"] == 64
    assert len(record["params"]["samples"]) == 20
    assert record["outputs"]["path"] == "illumination.zarr/ctrl"


def test_a_new_smoothness_refits_and_reimports_but_keeps_the_raw_files(
    corrected_copy,
):
    work = corrected_copy["work"]
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["illumination"]["smoothness"] = 2.0
    write_config(work, config)
    jobs = planned_jobs(work)
    assert jobs["illumination"] == 2 and jobs["import_images"] == 2
    raw = tree_digest(work / "raw")
    run_workflow(work)
    assert tree_digest(work / "raw") == raw
    assert planned_jobs(work) == {}


def test_a_field_of_another_size_is_refused_and_nothing_changes(corrected_copy):
    work, exp = corrected_copy["work"], corrected_copy["experiment"]
    odd = work / "raw" / "odd_GFP.tif"
    tifffile.imwrite(odd, np.full((100, 120), 300, np.uint16))
    tifffile.imwrite(work / "raw" / "odd_DAPI.tif", np.full((100, 120), 300, np.uint16))
    sheet = work / "samples.tsv"
    with sheet.open("a") as fh:
        for ch in ("DAPI", "GFP"):
            fh.write(f"ctrl\todd\t{ch}\t{work / 'raw' / f'odd_{ch}.tif'}\n")
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["input"]["sample_sheet"] = str(sheet)
    config["illumination"]["sample_fields"] = 50  # every field, the odd one too
    write_config(work, config)
    before = tree_digest(exp)
    proc = run_workflow(work, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(
        r"illumination scope ctrl: field ctrl/odd is 100x120 px but ctrl/f0 is "
        r"160x192 px",
        out,
    ), out[-3000:]
    assert tree_digest(exp) == before


def test_an_unknown_channel_is_refused(corrected_copy):
    work, exp = corrected_copy["work"], corrected_copy["experiment"]
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["illumination"]["channels"] = ["CY5"]
    write_config(work, config)
    before = tree_digest(exp)
    proc = run_workflow(work, check=False)
    assert proc.returncode != 0
    assert "illumination.channels: unknown channel 'CY5'" in proc.stdout + proc.stderr
    assert tree_digest(exp) == before
