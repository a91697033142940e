"""The segment step in the workflow: labels on disk, cells in the database,
reruns that touch only segmentation, and bad settings refused up front."""

from __future__ import annotations

import json
import os
import re
import sqlite3

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
import zarr
from ome_zarr_models.v04 import ImageLabel

from percell.demo import synthetic_cells
from percell.storage import open_group
from tests.conftest import (
    base_config,
    copy_run,
    run_workflow,
    tree_digest,
    write_config,
)
from tests.workflow.test_reruns import planned_jobs

SEGMENTATION = {
    "method": "watershed",
    "channel": "DAPI",
    "diameter": 16,
    "min_size": 30,
    "tile_size": 512,
}


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    rows, truths = [], {}
    for i, (cond, region) in enumerate(
        [("ctrl", "r1"), ("ctrl", "r2"), ("drug", "r1")]
    ):
        dapi, gfp, _, truth = synthetic_cells((700, 900), np.random.default_rng(50 + i))
        truths[(cond, region)] = truth
        for ch, img in (("DAPI", dapi), ("GFP", gfp)):
            path = root / "raw" / f"{cond}_{region}_{ch}.tif"
            path.parent.mkdir(exist_ok=True)
            tifffile.imwrite(path, img)
            rows.append(f"{cond}\t{region}\t{ch}\t{path}")
    sheet = root / "samples.tsv"
    sheet.write_text("condition\tregion\tchannel\tpath\n" + "\n".join(rows) + "\n")
    work = root / "work"
    work.mkdir()
    write_config(
        work, base_config({"sample_sheet": str(sheet)}, segmentation=dict(SEGMENTATION))
    )
    run_workflow(work)
    return {"work": work, "experiment": work / "out/exp.percell", "truths": truths}


@pytest.fixture
def segmented_copy(segmented, tmp_path):
    return copy_run(segmented, tmp_path)


def test_labels_are_int32_ngff_with_resolving_source(segmented):
    exp = segmented["experiment"]
    for cond, region in segmented["truths"]:
        path = exp / "labels.zarr" / cond / region
        ImageLabel.from_zarr(zarr.open_group(str(path), mode="r"))
        attrs = json.loads((path / ".zattrs").read_text())
        source = attrs["image-label"]["source"]["image"]
        resolved = os.path.normpath(path / source)
        assert resolved == str(exp / "images.zarr" / cond / region)
        image = open_group(resolved)
        labels = open_group(path)
        assert sorted(labels.array_keys()) == sorted(image.array_keys())
        level0 = labels["0"]
        assert level0.dtype == np.int32 and level0.chunks == (512, 512)
        meta = json.loads((path / "0/.zarray").read_text())
        assert (
            meta["compressor"]["cname"] == "lz4" and meta["compressor"]["clevel"] == 5
        )
        ids0 = set(np.unique(level0[:]))
        for key in labels.array_keys():
            assert set(np.unique(labels[key][:])) <= ids0


def test_cells_match_the_labels_and_the_truth(segmented):
    from tests.segmentation_support import matched_f1

    exp = segmented["experiment"]
    conn = sqlite3.connect(exp / "experiment.db")
    runs = conn.execute(
        "SELECT id, model_name, parameters, cell_count FROM segmentation_runs"
    ).fetchall()
    assert len(runs) == 1 and runs[0][1] == "watershed"
    assert json.loads(runs[0][2])["diameter"] == 16
    total = 0
    for (cond, region), truth in segmented["truths"].items():
        labels = open_group(exp / "labels.zarr" / cond / region)["0"][:]
        assert matched_f1(truth, labels) >= 0.9
        rows = conn.execute(
            """SELECT label_value, area_pixels, bbox_x, bbox_y, bbox_w, bbox_h
               FROM cells JOIN regions r ON r.id = cells.region_id
               JOIN conditions c ON c.id = r.condition_id
               WHERE c.name = ? AND r.name = ? ORDER BY label_value""",
            (cond, region),
        ).fetchall()
        ids, areas = np.unique(labels[labels > 0], return_counts=True)
        assert [r[0] for r in rows] == ids.tolist()
        assert [r[1] for r in rows] == areas.tolist()
        total += len(rows)
    assert runs[0][3] == total
    assert conn.execute(
        "SELECT is_segmentation FROM channels WHERE name = 'DAPI'"
    ).fetchone() == (1,)


def test_changing_segmentation_reruns_only_segment_and_register(segmented_copy):
    work, exp = segmented_copy["work"], segmented_copy["experiment"]
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["segmentation"]["min_size"] = 60
    write_config(work, config)
    # measure and the export follow segmentation; import and pyramid do not run
    assert planned_jobs(work) == {
        "segment": 2,
        "measure": 2,
        "register": 1,
        "export": 1,
        "qc_regions": 2,
        "qc_experiment": 1,
        "all": 1,
    }
    images_before = tree_digest(exp / "images.zarr")
    run_workflow(work)
    assert tree_digest(exp / "images.zarr") == images_before
    conn = sqlite3.connect(exp / "experiment.db")
    runs = conn.execute(
        "SELECT parameters, cell_count FROM segmentation_runs"
    ).fetchall()
    assert len(runs) == 1 and json.loads(runs[0][0])["min_size"] == 60
    n_cells = conn.execute("SELECT count(*) FROM cells").fetchone()[0]
    assert runs[0][1] == n_cells
    assert conn.execute(
        "SELECT count(*) FROM (SELECT region_id, label_value FROM cells "
        "GROUP BY 1, 2 HAVING count(*) > 1)"
    ).fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM cells WHERE segmentation_id NOT IN "
        "(SELECT id FROM segmentation_runs)"
    ).fetchone() == (0,)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"channel": "CY5"}, "segmentation.channel: unknown channel 'CY5'"),
        (
            {"diameter": 0},
            r"segmentation\.diameter: 0 is too small, expected more than 0",
        ),
        ({"diameter": -3}, r"segmentation\.diameter: -3 is too small, expected more"),
        (
            {"method": "cellpose", "model": "/nowhere/model.pth"},
            "model file /nowhere/model.pth does not exist",
        ),
        (
            {"method": "stardist"},
            r"segmentation\.method: 'stardist' is not allowed, expected",
        ),
    ],
    ids=[
        "unknown-channel",
        "zero-diameter",
        "negative-diameter",
        "missing-model",
        "unknown-method",
    ],
)
def test_bad_segmentation_settings(segmented_copy, edit, message):
    work, exp = segmented_copy["work"], segmented_copy["experiment"]
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["segmentation"].update(edit)
    write_config(work, config)
    before = tree_digest(exp)
    proc = run_workflow(work, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(message, out), out[-3000:]
    assert "Building DAG of jobs" not in out  # refused while parsing, before any job
    assert tree_digest(exp) == before


def test_cellpose_workflow_with_trained_model(tiny_model, tmp_path):
    from tests.segmentation_support import matched_f1

    rows, truths = [], {}
    for i, region in enumerate(["r1", "r2"]):
        dapi, _, _, truth = synthetic_cells((400, 450), np.random.default_rng(3000 + i))
        truths[region] = truth
        path = tmp_path / f"{region}.tif"
        tifffile.imwrite(path, dapi)
        rows.append(f"ctrl\t{region}\tDAPI\t{path}")
    sheet = tmp_path / "samples.tsv"
    sheet.write_text("condition\tregion\tchannel\tpath\n" + "\n".join(rows) + "\n")
    config = base_config(
        {"sample_sheet": str(sheet)},
        segmentation={
            "method": "cellpose",
            "model": str(tiny_model),
            "channel": "DAPI",
            "diameter": 16,
            "tile_size": 256,
        },
    )
    config["channels"] = [{"name": "DAPI"}]
    write_config(tmp_path, config)
    proc = run_workflow(tmp_path)
    assert "resolve_model" in proc.stdout + proc.stderr
    exp = tmp_path / "out/exp.percell"
    model = json.loads((exp / ".workflow/model/segmentation.json").read_text())
    assert model["outputs"]["path"] == str(tiny_model.resolve())
    for region, truth in truths.items():
        labels = open_group(exp / "labels.zarr/ctrl" / region)["0"][:]
        assert matched_f1(truth, labels) >= 0.9
    conn = sqlite3.connect(exp / "experiment.db")
    (name,) = conn.execute("SELECT model_name FROM segmentation_runs").fetchone()
    assert name == f"cellpose:{tiny_model}"


def test_a_region_without_cells_is_registered_measured_and_drawn(tmp_path):
    """An empty field (no cell found) is a region with 0 cells, not a crash."""
    dapi, gfp, _, truth = synthetic_cells((300, 320), np.random.default_rng(7))
    blank = np.full_like(dapi, 200)
    rows = []
    for region, planes in (("r1", (dapi, gfp)), ("r2", (blank, blank))):
        for ch, img in zip(("DAPI", "GFP"), planes, strict=True):
            path = tmp_path / f"{region}_{ch}.tif"
            tifffile.imwrite(path, img)
            rows.append(f"ctrl\t{region}\t{ch}\t{path}")
    sheet = tmp_path / "samples.tsv"
    sheet.write_text("condition\tregion\tchannel\tpath\n" + "\n".join(rows) + "\n")
    thresholds = [{"channel": "GFP", "method": "otsu", "scope": "region"}]
    config = base_config(
        {"sample_sheet": str(sheet)},
        segmentation=dict(SEGMENTATION),
        thresholds=thresholds,
    )
    write_config(tmp_path, config)
    run_workflow(tmp_path)
    conn = sqlite3.connect(tmp_path / "out/exp.percell/experiment.db")
    counts = dict(
        conn.execute(
            "SELECT r.name, count(c.id) FROM regions r "
            "LEFT JOIN cells c ON c.region_id = r.id GROUP BY r.name"
        ).fetchall()
    )
    assert counts == {"r1": np.unique(truth).size - 1, "r2": 0}
    export = pd.read_csv(tmp_path / "out/exp_cells.csv")
    assert set(export["region"]) == {"r1"}
    assert len(export) == counts["r1"]
    assert (tmp_path / "out/exp_qc/cells.png").stat().st_size > 0


def test_a_tissue_stack_is_segmented_as_a_volume_with_its_compartments(tmp_path):
    """``stacks: volume`` through the workflow: nuclei at different depths
    that overlap in XY come out as separate 3-D objects (tiled in y and x),
    the z step over the pixel size giving the anisotropy, and the cells grown
    from them are measured and registered."""
    from percell.demo import synthetic_nuclei_3d
    from percell.matching import matched_f1

    dapi, truth = synthetic_nuclei_3d(
        (16, 150, 170), 12, 2.0, np.random.default_rng(31)
    )
    gfp = (dapi // 2 + 100).astype(np.uint16)
    rows = []
    for ch, img in (("DAPI", dapi), ("GFP", gfp)):
        path = tmp_path / f"r1_{ch}.tif"
        tifffile.imwrite(path, img, metadata={"axes": "ZYX"})
        rows.append(f"ctrl\tr1\t{ch}\t{path}")
    sheet = tmp_path / "samples.tsv"
    sheet.write_text("condition\tregion\tchannel\tpath\n" + "\n".join(rows) + "\n")
    segmentation = {
        **SEGMENTATION,
        "diameter": 12,
        "min_size": 15,
        "tile_size": 96,
        "stacks": "volume",
        "compartments": {"cells": "expand", "distance": 3},
    }
    # z step 1 µm over 0.5 µm pixels: two pixels, as the stack was drawn
    config = base_config(
        {"sample_sheet": str(sheet)}, segmentation=segmentation, z_step_um=1.0
    )
    write_config(tmp_path, config)
    run_workflow(tmp_path)
    exp = tmp_path / "out/exp.percell"
    region = exp / "labels.zarr/ctrl/r1"
    nuclei = np.asarray(zarr.open_array(region / "labels/nucleus/0", mode="r"))
    cells = np.asarray(zarr.open_array(region / "0", mode="r"))
    assert nuclei.shape == cells.shape == dapi.shape
    assert matched_f1(truth, nuclei) >= 0.92  # (0.96; 0.91 with the z-maximum)
    # each cell grown from its nucleus, in 3-D
    assert (cells[nuclei > 0] > 0).all() and (cells >= nuclei).any()
    assert np.unique(cells).size == np.unique(nuclei).size
    conn = sqlite3.connect(exp / "experiment.db")
    n_cells = conn.execute("SELECT count(*) FROM cells").fetchone()[0]
    assert n_cells == np.unique(cells).size - 1
    measured = conn.execute(
        "SELECT count(DISTINCT cell_id) FROM measurements"
    ).fetchone()[0]
    assert measured == n_cells
