"""The README's config/compartments-demo.yaml through the whole chain: nuclei
grown into cells, three label images per region, metrics per compartment."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
import zarr
from ome_zarr_models.v04 import Image, ImageLabel
from skimage.measure import regionprops_table
from skimage.restoration import rolling_ball

from percell.cells import METRICS
from percell.storage import open_group
from tests.conftest import REPO, run_workflow, tree_digest, write_config
from tests.workflow.test_reruns import planned_jobs

KEYS = ["ctrl/t0/r1", "ctrl/t0/r2", "drug/t0/r1", "drug/t0/r2"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("compartments")
    cfg = yaml.safe_load((REPO / "config/compartments-demo.yaml").read_text())
    cfg["experiment"]["path"] = "out/comp.percell"
    write_config(work, cfg)
    run_workflow(work)
    return {"work": work, "experiment": work / "out/comp.percell", "config": cfg}


@pytest.fixture
def demo_copy(demo, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(demo["work"], work, symlinks=True)
    return {"work": work, "experiment": work / "out/comp.percell"}


def _labels(exp, key, compartment=None):
    path = exp / "labels.zarr" / key
    if compartment:
        path = path / "labels" / compartment
    return open_group(path)["0"][:]


def test_three_label_images_share_each_cells_label(demo):
    exp = demo["experiment"]
    conn = sqlite3.connect(exp / "experiment.db")
    for key in KEYS:
        cells = _labels(exp, key)
        nucleus = _labels(exp, key, "nucleus")
        cytoplasm = _labels(exp, key, "cytoplasm")
        assert cells.dtype == nucleus.dtype == cytoplasm.dtype == np.int32
        ids = np.unique(cells)[1:]
        assert ids.size > 50
        np.testing.assert_array_equal(np.unique(nucleus)[1:], ids)
        assert ((nucleus == 0) | (nucleus == cells)).all()
        np.testing.assert_array_equal(cytoplasm, np.where(nucleus > 0, 0, cells))
        assert np.unique(cytoplasm)[1:].size >= 0.95 * ids.size
        n_db = conn.execute(
            "SELECT count(*) FROM cells c JOIN regions r ON r.id = c.region_id "
            "WHERE r.zarr_path = ?",
            (f"images.zarr/{key}",),
        ).fetchone()[0]
        assert n_db == ids.size  # the cells table holds the whole cells


def test_compartments_are_valid_ngff_labels_of_the_image(demo):
    exp = demo["experiment"]
    key = KEYS[0]
    group = zarr.open_group(str(exp / "labels.zarr" / key), mode="r")
    ImageLabel.from_zarr(group)  # the PerCell 3 label image, as before
    assert group["labels"].attrs["labels"] == ["nucleus", "cytoplasm"]
    for name in ("nucleus", "cytoplasm"):
        label = ImageLabel.from_zarr(group["labels"][name])
        source = label.attributes.image_label.source.image
        resolved = (exp / "labels.zarr" / key / "labels" / name / source).resolve()
        assert resolved == (exp / "images.zarr" / key).resolve()
        levels = label.attributes.multiscales[0].datasets
        assert len(levels) == len(group.attrs["multiscales"][0]["datasets"])
    Image.from_zarr(zarr.open_group(str(exp / "images.zarr" / key), mode="r"))


@pytest.mark.parametrize("compartment", ["nucleus", "cytoplasm"])
def test_compartment_metrics_equal_regionprops(demo, compartment):
    exp = demo["experiment"]
    conn = sqlite3.connect(exp / "experiment.db")
    key = KEYS[1]
    labels = _labels(exp, key, compartment)
    image = open_group(exp / "images.zarr" / key)["0"][:]
    for c, channel in enumerate(("DAPI", "GFP", "RFP")):
        ref = regionprops_table(
            labels,
            image[c],
            properties=("label", "area", "intensity_mean", "intensity_max"),
        )
        ref_median = [
            np.median(image[c][labels == i]) for i in ref["label"][:20].tolist()
        ]
        table = pd.read_sql_query(
            """SELECT c.label_value, m.metric, m.value FROM measurements m
               JOIN cells c ON c.id = m.cell_id
               JOIN channels ch ON ch.id = m.channel_id
               JOIN regions r ON r.id = c.region_id
               WHERE ch.name = ? AND r.zarr_path = ? AND m.metric LIKE ?""",
            conn,
            params=(channel, f"images.zarr/{key}", f"{compartment}_%"),
        ).pivot(index="label_value", columns="metric", values="value")
        np.testing.assert_array_equal(table.index, ref["label"])
        np.testing.assert_array_equal(table[f"{compartment}_area"], ref["area"])
        np.testing.assert_allclose(
            table[f"{compartment}_mean_intensity"], ref["intensity_mean"], rtol=1e-12
        )
        np.testing.assert_array_equal(
            table[f"{compartment}_max_intensity"], ref["intensity_max"]
        )
        np.testing.assert_array_equal(
            table[f"{compartment}_median_intensity"].iloc[:20], ref_median
        )


def test_export_has_a_column_per_channel_compartment_and_metric(demo):
    table = pd.read_csv(demo["work"] / "out/comp_cells.csv")
    for channel in ("DAPI", "GFP", "RFP"):
        for metric in METRICS:
            for prefix in ("", "nucleus_", "cytoplasm_"):
                assert f"{channel}_{prefix}{metric}" in table.columns
    # the cytoplasm is where GFP is, the nucleus where DAPI is
    assert (
        table.GFP_cytoplasm_mean_intensity > table.GFP_nucleus_mean_intensity
    ).mean() > 0.95
    assert (
        table.DAPI_nucleus_mean_intensity > table.DAPI_cytoplasm_mean_intensity
    ).all()
    # a cell's area is its nucleus's plus its cytoplasm's
    np.testing.assert_array_equal(
        table.GFP_area,
        table.GFP_nucleus_area + table.GFP_cytoplasm_area.fillna(0),
    )
    run = (
        sqlite3.connect(demo["experiment"] / "experiment.db")
        .execute("SELECT parameters FROM segmentation_runs")
        .fetchone()[0]
    )
    assert '"compartments"' in run and '"cells": "watershed"' in run


def test_background_is_subtracted_at_import_and_recorded(demo):
    work, exp = demo["work"], demo["experiment"]
    conn = sqlite3.connect(exp / "experiment.db")
    key = KEYS[3]
    level0 = open_group(exp / "images.zarr" / key)["0"][:]
    # the demo's vignette is divided out first (the experiment's profiles)
    flat = open_group(exp / "illumination.zarr/all")["flatfield"][:].astype(float)
    raw = {
        ch: np.clip(
            np.rint(
                tifffile.imread(work / f"resources/compartments-demo/{key}_{ch}.tif")
                / flat[c]
            ),
            0,
            65535,
        )
        for c, ch in enumerate(("DAPI", "GFP", "RFP"))
    }

    def minus(image, background):
        return np.clip(np.rint(image.astype(np.float64) - background), 0, 65535)

    np.testing.assert_array_equal(level0[0], minus(raw["DAPI"], 150))
    gfp_value = float(np.percentile(raw["GFP"], 10))
    np.testing.assert_array_equal(level0[1], minus(raw["GFP"], gfp_value))
    ball = rolling_ball(raw["RFP"].astype(np.float64), radius=10)
    np.testing.assert_array_equal(level0[2], minus(raw["RFP"], ball))
    kept = open_group(exp / "images.zarr" / key)["background/RFP"][:]
    np.testing.assert_allclose(kept, ball.astype(np.float32))
    rows = conn.execute(
        "SELECT ch.name, b.method, b.value, b.subtracted_mean FROM "
        "percell_background b JOIN channels ch ON ch.id = b.channel_id "
        "JOIN regions r ON r.id = b.region_id WHERE r.zarr_path = ? "
        "ORDER BY ch.display_order",
        (f"images.zarr/{key}",),
    ).fetchall()
    assert [r[:2] for r in rows] == [
        ("DAPI", "constant"),
        ("GFP", "percentile"),
        ("RFP", "rolling_ball"),
    ]
    assert rows[0][2] == 150 and rows[1][2] == pytest.approx(gfp_value)
    assert rows[2][2] is None and rows[2][3] == pytest.approx(ball.mean(), rel=1e-5)


def test_the_demo_vignette_is_divided_out(demo):
    """The demo draws a vignette (corners at 60%); the fitted flat-fields
    find it, and the imported GFP background is even across the field."""
    from percell.demo import vignette_profile

    exp = demo["experiment"]
    truth = vignette_profile((512, 512), 0.4)
    truth /= truth.mean()
    flat = open_group(exp / "illumination.zarr/all")["flatfield"][:]
    for profile in flat:
        assert np.abs(profile - truth).max() < 0.08
    assert open_group(exp / "illumination.zarr/all").attrs["percell"]["channels"] == [
        "DAPI",
        "GFP",
        "RFP",
    ]


def test_changing_a_background_reimports_and_keeps_the_raw_files(demo_copy):
    work, exp = demo_copy["work"], demo_copy["experiment"]
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["background"]["DAPI"]["value"] = 100
    write_config(work, config)
    jobs = planned_jobs(work)
    assert jobs["import_images"] == 2 and jobs["segment"] == 2
    raw = tree_digest(work / "resources")
    run_workflow(work)
    assert tree_digest(work / "resources") == raw
    conn = sqlite3.connect(exp / "experiment.db")
    assert conn.execute(
        "SELECT DISTINCT value FROM percell_background WHERE method = 'constant'"
    ).fetchall() == [(100.0,)]


def test_changing_the_distance_regrows_cells_and_keeps_the_images(demo_copy):
    work, exp = demo_copy["work"], demo_copy["experiment"]
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["segmentation"]["compartments"]["distance"] = 6
    write_config(work, config)
    jobs = planned_jobs(work)
    assert {k: jobs[k] for k in ("segment", "measure", "register")} == {
        "segment": 2,
        "measure": 2,
        "register": 1,
    }
    assert "import_images" not in jobs and "threshold" not in jobs
    images = tree_digest(exp / "images.zarr")
    before = _labels(exp, KEYS[1])
    run_workflow(work)
    assert tree_digest(exp / "images.zarr") == images
    after = _labels(exp, KEYS[1])
    nucleus = _labels(exp, KEYS[1], "nucleus")
    assert (after > 0).sum() < (before > 0).sum()
    assert ((nucleus == 0) | (nucleus == after)).all()
    conn = sqlite3.connect(exp / "experiment.db")
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            {"cells": "membrane"},
            r"segmentation\.compartments\.cells: 'membrane' is not allowed, "
            r"expected one of 'expand', 'watershed', 'cellpose'",
        ),
        (
            {"cells": "watershed", "channel": None},
            r"segmentation\.compartments: cells: watershed needs the cytoplasm "
            r"channel",
        ),
        (
            {"cells": "cellpose", "channel": None},
            r"segmentation\.compartments: cells: cellpose needs the cytoplasm "
            r"channel",
        ),
        (
            {"cells": "cellpose", "model": "models/cells.pt"},
            r"segmentation\.compartments\.model: model file models/cells\.pt does "
            r"not exist",
        ),
        (
            {"channel": "CY5"},
            r"segmentation\.compartments\.channel: unknown channel 'CY5'",
        ),
        ({"distance": -3}, r"segmentation\.compartments\.distance: -3 is too small"),
        ({"nuclei": True}, r"segmentation\.compartments: .*'nuclei'"),
    ],
)
def test_bad_compartment_settings_name_the_key(demo_copy, edit, message):
    def change(config):
        compartments = {**config["segmentation"]["compartments"], **edit}
        config["segmentation"]["compartments"] = {
            k: v for k, v in compartments.items() if v is not None
        }

    _rerun_expecting_failure(demo_copy, change, message)


def _rerun_expecting_failure(demo_copy, change, message):
    """Edit the config, rerun: a non-zero exit, ``message`` in the output,
    the experiment byte-for-byte as it was."""
    work, exp = demo_copy["work"], demo_copy["experiment"]
    config = yaml.safe_load((work / "config.yaml").read_text())
    change(config)
    write_config(work, config)
    before = tree_digest(exp)
    proc = run_workflow(work, check=False)
    assert proc.returncode != 0
    assert re.search(message, proc.stdout + proc.stderr), proc.stderr[-3000:]
    assert tree_digest(exp) == before


@pytest.mark.parametrize(
    ("background", "message"),
    [
        (
            {"CY5": {"method": "constant", "value": 3}},
            r"background\.CY5: unknown channel 'CY5'",
        ),
        (
            {"GFP": {"method": "rolling_ball"}},
            r"background\.GFP: method rolling_ball needs radius",
        ),
        (
            {"GFP": {"method": "tophat", "radius": 3}},
            r"background\.GFP\.method: 'tophat' is not allowed, expected one of",
        ),
        (
            {"GFP": {"method": "percentile", "percentile": 120}},
            r"background\.GFP\.percentile: 120 is too large, expected at most 100",
        ),
    ],
)
def test_bad_background_settings_name_the_key(demo_copy, background, message):
    _rerun_expecting_failure(
        demo_copy, lambda config: config.update(background=background), message
    )


def test_corrections_are_recorded_on_the_image_and_shown_in_its_figure(demo):
    from PIL import Image as Picture

    from percell.report import _corrections_text

    exp = demo["experiment"]
    attrs = open_group(exp / "images.zarr" / KEYS[0]).attrs["percell"]
    assert attrs["illumination"] == "illumination.zarr/all"
    assert [b["method"] for b in attrs["background"]] == [
        "constant",
        "percentile",
        "rolling_ball",
    ]
    text = _corrections_text(attrs)
    assert text.startswith("flat-field illumination.zarr/all; DAPI - constant (150)")
    # channels, cells and nuclei, the RFP run's mask, the RFP background
    figure = demo["work"] / "out/comp_qc/regions/ctrl/t0/ctrl_t0_r1.png"
    with Picture.open(figure) as picture:
        assert picture.width > 4 * 400


# --- cells from cellpose ---------------------------------------------------


@pytest.fixture(scope="module")
def cellpose_cells(tmp_path_factory, tiny_cell_model):
    """The demo with cells from a second segmentation, cellpose's cell model on
    (GFP, DAPI), each nucleus matched to its cell; one tile per region, so
    that cellpose's own ``eval`` of the region is the reference."""
    work = tmp_path_factory.mktemp("cellpose-cells")
    cfg = yaml.safe_load((REPO / "config/compartments-demo.yaml").read_text())
    cfg["experiment"]["path"] = "out/comp.percell"
    del cfg["illumination"]  # tested above; not what this is about
    cfg["input"]["demo"]["regions"] = ["r1"]
    cfg["segmentation"]["tile_size"] = 512
    cfg["segmentation"]["compartments"] = {
        "cells": "cellpose",
        "channel": "GFP",
        "model": str(tiny_cell_model),
        "distance": 12,  # the cell diameter: 16 + 2 × 12 px
    }
    write_config(work, cfg)
    run_workflow(work)
    return {"experiment": work / "out/comp.percell", "model": tiny_cell_model}


CELLPOSE_KEYS = ["ctrl/t0/r1", "drug/t0/r1"]


def test_cellpose_cells_are_cellposes_own_cells(cellpose_cells):
    from tests.support.tiny_cellpose import load_tiny
    from tests.unit.test_compartments import assert_same_partition

    exp = cellpose_cells["experiment"]
    model = load_tiny(cellpose_cells["model"])
    for key in CELLPOSE_KEYS:
        image = open_group(exp / "images.zarr" / key)["0"][:]  # DAPI, GFP, RFP
        masks = model.eval(
            np.stack([image[1], image[0]], axis=-1),
            channels=[1, 2],
            channel_axis=-1,
            diameter=40.0,
            flow_threshold=0.4,
            cellprob_threshold=0.0,
            min_size=30,
        )[0]
        assert np.unique(masks).size > 50
        assert_same_partition(_labels(exp, key), masks)


def test_cellpose_cells_hold_their_matched_nuclei(cellpose_cells):
    exp = cellpose_cells["experiment"]
    for key in CELLPOSE_KEYS:
        cells = _labels(exp, key)
        nucleus = _labels(exp, key, "nucleus")
        cytoplasm = _labels(exp, key, "cytoplasm")
        assert ((nucleus == 0) | (nucleus == cells)).all()
        np.testing.assert_array_equal(cytoplasm, np.where(nucleus > 0, 0, cells))
        ids = np.unique(cells)[1:]
        # nearly every cell holds a nucleus, and the nuclei are where DAPI is
        assert np.unique(nucleus)[1:].size >= 0.95 * ids.size
        dapi = open_group(exp / "images.zarr" / key)["0"][0]
        assert dapi[nucleus > 0].mean() > 5 * dapi[cytoplasm > 0].mean()


def test_cellpose_cells_record_their_model(cellpose_cells):
    exp = cellpose_cells["experiment"]
    model = str(cellpose_cells["model"].resolve())
    resolved = json.loads((exp / ".workflow/model/cells.json").read_text())
    assert resolved["outputs"]["path"] == model
    segment = json.loads((exp / ".workflow/segment/ctrl/t0.json").read_text())
    assert segment["params"]["cells_model"]["path"] == model
    conn = sqlite3.connect(exp / "experiment.db")
    (parameters,) = conn.execute(
        "SELECT parameters FROM segmentation_runs ORDER BY id DESC LIMIT 1"
    ).fetchone()
    comp = json.loads(parameters)["compartments"]
    assert comp["cells"] == "cellpose"
    assert comp["model"] == str(cellpose_cells["model"])
