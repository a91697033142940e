"""Thresholds, masks, measurements and the export through the real workflow."""

from __future__ import annotations

import json
import re
import sqlite3

import numpy as np
import pandas as pd
import pytest
import yaml
import zarr
from skimage import filters
from skimage.measure import regionprops_table

from percell.cells import SHAPE_COLUMNS
from percell.storage import open_group
from percell.thresholds import smooth_band
from tests.conftest import (
    run_workflow,
    tree_digest,
    write_config,
)
from tests.segmentation_support import assert_shape_features_equal
from tests.workflow.conftest import REGIONS
from tests.workflow.test_reruns import planned_jobs


def test_masks_are_uint8_zstd_with_max_pyramid(measured):
    exp = measured["experiment"]
    for cond, tp, region in REGIONS:
        for run in ("GFP", "GFPli"):
            path = exp / "masks.zarr" / cond / tp / region / f"threshold_{run}"
            meta = json.loads((path / "0/.zarray").read_text())
            assert meta["dtype"] == "|u1" and meta["chunks"] == [512, 512]
            assert (
                meta["compressor"]["id"] == "zstd" and meta["compressor"]["level"] == 3
            )
            group = open_group(path)
            level0 = group["0"][:]
            assert set(np.unique(level0)) <= {0, 255}
            level1 = group["1"][:]
            padded = np.pad(
                level0, [(0, level0.shape[0] % 2), (0, level0.shape[1] % 2)]
            )
            expected = padded.reshape(level1.shape[0], 2, level1.shape[1], 2).max(
                (1, 3)
            )
            np.testing.assert_array_equal(level1, expected)
            assert group.attrs["multiscales"][0]["axes"][0]["name"] == "y"
            assert zarr.open_group(str(path), mode="r")  # a readable group


def test_experiment_scope_is_one_value_from_pooled_pixels(measured):
    exp = measured["experiment"]
    conn = sqlite3.connect(exp / "experiment.db")
    rows = conn.execute(
        "SELECT DISTINCT t.id, t.threshold_value FROM percell_region_thresholds p "
        "JOIN threshold_runs t ON t.id = p.threshold_run_id WHERE p.run_name = 'GFP'"
    ).fetchall()
    assert len(rows) == 1
    pooled = np.concatenate([measured["pixels"][(*r, "GFP")].ravel() for r in REGIONS])
    assert rows[0][1] == pytest.approx(float(filters.threshold_otsu(pooled)))
    n_regions = conn.execute(
        "SELECT count(*) FROM percell_region_thresholds WHERE run_name = 'GFP'"
    ).fetchone()[0]
    assert n_regions == len(REGIONS)


def test_masks_are_exactly_image_above_value(measured):
    exp = measured["experiment"]
    conn = sqlite3.connect(exp / "experiment.db")
    for cond, tp, region in REGIONS:
        gfp = measured["pixels"][(cond, tp, region, "GFP")]
        values = dict(
            conn.execute(
                "SELECT p.run_name, t.threshold_value FROM percell_region_thresholds p "
                "JOIN threshold_runs t ON t.id = p.threshold_run_id "
                "JOIN regions r ON r.id = p.region_id JOIN conditions c "
                "ON c.id = r.condition_id WHERE c.name = ? AND r.name = ?",
                (cond, region),
            ).fetchall()
        )
        smoothed = smooth_band(gfp, 1.5, gfp.dtype)
        expected_li = filters.threshold_li(smoothed) * 1.1
        assert values["GFPli"] == pytest.approx(expected_li, rel=1e-9)
        base = exp / "masks.zarr" / cond / tp / region
        np.testing.assert_array_equal(
            open_group(base / "threshold_GFP")["0"][:] > 0, gfp > values["GFP"]
        )
        np.testing.assert_array_equal(
            open_group(base / "threshold_GFPli")["0"][:] > 0, smoothed > values["GFPli"]
        )


def test_measurements_equal_regionprops(measured):
    exp = measured["experiment"]
    conn = sqlite3.connect(exp / "experiment.db")
    cond, tp, region = REGIONS[0]
    labels = open_group(exp / "labels.zarr" / cond / tp / region)["0"][:]
    gfp = measured["pixels"][(cond, tp, region, "GFP")]
    ref = regionprops_table(
        labels,
        gfp,
        properties=(
            "label",
            "area",
            "intensity_mean",
            "intensity_max",
            "intensity_min",
        ),
    )
    db = pd.read_sql_query(
        """SELECT c.label_value, m.metric, m.value FROM measurements m
           JOIN cells c ON c.id = m.cell_id JOIN channels ch ON ch.id = m.channel_id
           JOIN regions r ON r.id = c.region_id JOIN conditions co
           ON co.id = r.condition_id
           WHERE ch.name = 'GFP' AND co.name = ? AND r.name = ?""",
        conn,
        params=(cond, region),
    ).pivot(index="label_value", columns="metric", values="value")
    np.testing.assert_array_equal(db.index, ref["label"])
    np.testing.assert_array_equal(db["area"], ref["area"])
    np.testing.assert_array_equal(db["mean_intensity"], ref["intensity_mean"])
    np.testing.assert_array_equal(db["max_intensity"], ref["intensity_max"])
    np.testing.assert_array_equal(db["min_intensity"], ref["intensity_min"])
    n_metrics = conn.execute(
        "SELECT count(DISTINCT metric) FROM measurements"
    ).fetchone()
    assert n_metrics == (7,)


def test_shape_table_equals_regionprops_of_the_label_image(measured):
    exp = measured["experiment"]
    conn = sqlite3.connect(exp / "experiment.db")
    cond, tp, region = REGIONS[0]
    labels = open_group(exp / "labels.zarr" / cond / tp / region)["0"][:]
    shape_columns = list(SHAPE_COLUMNS)
    ref = regionprops_table(
        labels, properties=("label", "area", "perimeter", *shape_columns)
    )
    table = pd.read_sql_query(
        f"""SELECT c.label_value, s.area_pixels, s.perimeter, s.circularity,
                   {", ".join("s." + c for c in shape_columns)}
            FROM percell_cell_shape s JOIN cells c ON c.id = s.cell_id
            JOIN regions r ON r.id = c.region_id JOIN conditions co
            ON co.id = r.condition_id WHERE co.name = ? AND r.name = ?
            ORDER BY c.label_value""",
        conn,
        params=(cond, region),
    )
    np.testing.assert_array_equal(table.label_value, ref["label"])
    np.testing.assert_array_equal(table.area_pixels, ref["area"])
    np.testing.assert_allclose(
        table.circularity, 4 * np.pi * ref["area"] / ref["perimeter"] ** 2
    )
    assert_shape_features_equal(table, ref, shape_columns)
    # every cell has its shape row, and none is left without a cell
    n_cells, with_shape, shapes = conn.execute(
        "SELECT (SELECT count(*) FROM cells), (SELECT count(*) FROM "
        "percell_cell_shape WHERE cell_id IN (SELECT id FROM cells)), "
        "(SELECT count(*) FROM percell_cell_shape)"
    ).fetchone()
    assert n_cells == with_shape == shapes > 0


def test_export_has_one_row_per_cell(measured):
    work, exp = measured["work"], measured["experiment"]
    csv = pd.read_csv(work / "out/exp_cells.csv")
    parquet = pd.read_parquet(work / "out/exp_cells.parquet")
    conn = sqlite3.connect(exp / "experiment.db")
    n_cells = conn.execute("SELECT count(*) FROM cells").fetchone()[0]
    assert len(csv) == len(parquet) == n_cells
    for column in (
        "condition",
        "timepoint",
        "region",
        "area_um2",
        "GFP_mean_intensity",
        "DAPI_median_intensity",
        "GFP_fraction_inside",
        "GFPli_positive",
        "GFPli_mean_outside",
        *SHAPE_COLUMNS,
    ):
        assert column in csv.columns
    assert csv.cell_id.is_unique
    assert set(csv.GFPli_positive.unique()) <= {0, 1}


def test_changing_one_run_reruns_only_its_thresholds_measure_register(measured_copy):
    work, exp = measured_copy["work"], measured_copy["experiment"]
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["thresholds"][1]["correction"] = 1.3
    write_config(work, config)
    assert planned_jobs(work) == {
        "threshold": 2,
        "measure": 2,
        "register": 1,
        "export": 1,
        "qc_regions": 2,
        "qc_experiment": 1,
        "all": 1,
    }
    untouched = tree_digest(exp / "masks.zarr/ctrl/t0/r1/threshold_GFP")
    labels = tree_digest(exp / "labels.zarr")
    run_workflow(work)
    assert tree_digest(exp / "masks.zarr/ctrl/t0/r1/threshold_GFP") == untouched
    assert tree_digest(exp / "labels.zarr") == labels
    conn = sqlite3.connect(exp / "experiment.db")
    assert conn.execute(
        "SELECT count(*) FROM percell_cell_masks WHERE cell_id NOT IN "
        "(SELECT id FROM cells)"
    ).fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM measurements WHERE cell_id NOT IN (SELECT id FROM cells)"
    ).fetchone() == (0,)
    # register loads with per-row foreign-key checks off: check them all here
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"idx_measurements_cell", "idx_measurements_metric"} <= indexes


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"channel": "CY5"}, r"thresholds\.1\.channel: unknown channel 'CY5'"),
        (
            {"method": "magic"},
            r"thresholds\.1\.method: 'magic' is not allowed, expected",
        ),
        ({"method": "manual"}, r"thresholds\.1: method manual needs a value"),
        (
            {"method": "percentile", "percentile": 101},
            r"thresholds\.1\.percentile: 101 is too large, expected at most 100",
        ),
        (
            {"method": "percentile", "percentile": -1},
            r"thresholds\.1\.percentile: -1 is too small, expected at least 0",
        ),
        ({"name": "GFP"}, r"thresholds\.1\.name: duplicate threshold run name 'GFP'"),
    ],
    ids=[
        "unknown-channel",
        "unknown-method",
        "manual-without-value",
        "percentile-above-100",
        "percentile-below-0",
        "duplicate-name",
    ],
)
def test_bad_threshold_settings(measured_copy, edit, message):
    work, exp = measured_copy["work"], measured_copy["experiment"]
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["thresholds"][1].update(edit)
    write_config(work, config)
    before = tree_digest(exp)
    proc = run_workflow(work, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(message, out), out[-3000:]
    assert "Building DAG of jobs" not in out
    assert tree_digest(exp) == before


def test_percell_export_command(measured, tmp_path):
    from percell.cli import main

    assert (
        main(
            [
                "export",
                str(measured["experiment"]),
                "--csv",
                str(tmp_path / "cells.csv"),
            ]
        )
        == 0
    )
    table = pd.read_csv(tmp_path / "cells.csv")
    expected = pd.read_csv(measured["work"] / "out/exp_cells.csv")
    pd.testing.assert_frame_equal(table, expected)
    assert (
        main(
            ["export", str(tmp_path / "none.percell"), "--csv", str(tmp_path / "x.csv")]
        )
        == 2
    )
