"""A living experiment: what the PerCell 3 application adds survives reruns.

Each test does to a finished experiment what the application does (WAL
journal, tags, its own rows, edited labels), reruns the real workflow with a
changed config, and checks what survived.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from percell.demo import synthetic_cells
from percell.storage import open_group
from tests.conftest import run_workflow, tree_digest, write_config

APP = json.dumps({"source": "percell3-app"})


def db(exp) -> sqlite3.Connection:
    return sqlite3.connect(exp / "experiment.db")


def act_as_the_application(exp, n_tags: int = 25) -> dict:
    """Open the database as the application does (WAL) and add its rows."""
    conn = db(exp)
    assert conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
    cells = conn.execute("SELECT id FROM cells ORDER BY id").fetchall()
    tagged = [c for (c,) in cells[:: max(1, len(cells) // n_tags)][:n_tags]]
    with conn:
        conn.execute("INSERT INTO tags (name, color) VALUES ('mitotic', 'FF00FF')")
        conn.execute("INSERT INTO tags (name, color) VALUES ('apoptotic', '00FFFF')")
        conn.executemany(
            "INSERT INTO cell_tags (cell_id, tag_id) VALUES (?, ?)",
            [(c, 1 + i % 2) for i, c in enumerate(tagged)],
        )
        conn.execute(
            "INSERT INTO analysis_runs (plugin_name, parameters, status, cell_count) "
            "VALUES ('nuclear_ratio', ?, 'completed', ?)",
            (APP, len(tagged)),
        )
        gfp = conn.execute("SELECT id FROM channels WHERE name = 'GFP'").fetchone()[0]
        conn.executemany(
            "INSERT INTO measurements (cell_id, channel_id, metric, value) "
            "VALUES (?, ?, 'nuclear_ratio', ?)",
            [(c, gfp, 0.5 + i) for i, c in enumerate(tagged)],
        )
        conn.execute(
            "INSERT INTO threshold_runs (channel_id, method, parameters, "
            "threshold_value) VALUES (?, 'manual', ?, 123.0)",
            (gfp, APP),
        )
    conn.close()
    return {"tagged": tagged}


def snapshot(exp) -> dict:
    conn = db(exp)
    out = {
        "cells": conn.execute(
            "SELECT c.id, c.region_id, c.label_value FROM cells c ORDER BY c.id"
        ).fetchall(),
        "cell_tags": conn.execute("SELECT * FROM cell_tags ORDER BY 1, 2").fetchall(),
        "tags": conn.execute("SELECT * FROM tags ORDER BY id").fetchall(),
        "analysis_runs": conn.execute("SELECT * FROM analysis_runs").fetchall(),
        "app_measurements": conn.execute(
            "SELECT * FROM measurements WHERE metric = 'nuclear_ratio' ORDER BY id"
        ).fetchall(),
        "app_thresholds": conn.execute(
            "SELECT * FROM threshold_runs WHERE parameters = ?", (APP,)
        ).fetchall(),
        "measurement_ids": conn.execute(
            "SELECT id, cell_id, channel_id, metric FROM measurements "
            "WHERE metric != 'nuclear_ratio' ORDER BY id"
        ).fetchall(),
    }
    conn.close()
    return out


def digest_elsewhere(path) -> str:
    """sha256 of a file, read by another process: closing a descriptor of the
    file in this process would drop the SQLite locks the test holds (POSIX
    locks belong to the process)."""
    code = (
        "import hashlib, sys; "
        "print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True
    ).stdout


def journal_is_rollback(exp) -> bool:
    header = (exp / "experiment.db").read_bytes()[:20]
    # bytes 18-19: file format write/read version, 1 = rollback, 2 = WAL
    return header[18] == 1 and header[19] == 1


def add_region(work, exp_name="r2", cond="drug", tp="t0") -> None:
    config = yaml.safe_load((work / "config.yaml").read_text())
    sheet = work / "extended.tsv"
    original = Path(config["input"]["sample_sheet"]).read_text().rstrip("\n")
    dapi, gfp, _, _ = synthetic_cells((600, 700), np.random.default_rng(99))
    rows = []
    for ch, img in (("DAPI", dapi), ("GFP", gfp)):
        path = work / "raw_new" / f"{cond}_{tp}_{exp_name}_{ch}.tif"
        path.parent.mkdir(exist_ok=True)
        tifffile.imwrite(path, img)
        rows.append(f"{cond}\t{tp}\t{exp_name}\t{ch}\t{path}")
    sheet.write_text(original + "\n" + "\n".join(rows) + "\n")
    config["input"] = {"sample_sheet": str(sheet)}
    write_config(work, config)


def edit_config(work, edit) -> None:
    config = yaml.safe_load((work / "config.yaml").read_text())
    edit(config)
    write_config(work, config)


def test_ids_tags_and_application_rows_survive_a_threshold_change_and_a_new_region(
    measured_copy,
):
    work, exp = measured_copy["work"], measured_copy["experiment"]
    act_as_the_application(exp)
    before = snapshot(exp)
    assert len(before["cell_tags"]) == 25

    def min_fraction(config):
        config["thresholds"][1]["min_fraction"] = 0.6

    edit_config(work, min_fraction)
    add_region(work)
    run_workflow(work)

    after = snapshot(exp)
    old_regions = {r for _, r, _ in before["cells"]}
    kept = [c for c in after["cells"] if c[1] in old_regions]
    assert kept == before["cells"], "cells were renumbered"
    new = [c for c in after["cells"] if c[1] not in old_regions]
    assert len(new) > 50, "the added region's cells are missing"
    for key in ("cell_tags", "tags", "analysis_runs", "app_measurements"):
        assert after[key] == before[key], key
    assert after["app_thresholds"] == before["app_thresholds"]
    # measurements were kept in place: the old rows keep their ids
    old_ids = set(before["measurement_ids"])
    assert old_ids <= set(after["measurement_ids"])
    assert journal_is_rollback(exp)
    conn = db(exp)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    # the change itself landed: positives follow the new min_fraction
    rows = conn.execute(
        "SELECT m.fraction_inside, m.positive FROM percell_cell_masks m "
        "JOIN percell_region_thresholds p ON p.threshold_run_id = m.threshold_run_id "
        "WHERE p.run_name = 'GFPli'"
    ).fetchall()
    assert rows and all(pos == int(frac >= 0.6) for frac, pos in rows)
    counts = json.loads((exp / ".workflow/register/all.json").read_text())["outputs"]
    assert counts["cells_kept"] == len(before["cells"])
    assert counts["cells_replaced"] == len(new)


def test_a_rerun_with_a_changed_segmentation_moves_tags_by_overlap(measured_copy):
    work, exp = measured_copy["work"], measured_copy["experiment"]
    key = "ctrl/t0/r1"
    old_labels = open_group(exp / "labels.zarr" / key)["0"][...]
    conn = db(exp)
    region_id = conn.execute(
        "SELECT r.id FROM regions r JOIN conditions c ON c.id = r.condition_id "
        "WHERE c.name = 'ctrl' AND r.name = 'r1'"
    ).fetchone()[0]
    cells = conn.execute(
        "SELECT id, label_value, area_pixels, centroid_x, centroid_y FROM cells "
        "WHERE region_id = ? ORDER BY area_pixels",
        (region_id,),
    ).fetchall()
    conn.execute("INSERT INTO tags (name) VALUES ('picked')")
    # the smallest cells (a larger min_size removes them) and some large ones
    tagged = cells[:8] + cells[-8:]
    with conn:
        conn.executemany(
            "INSERT INTO cell_tags (cell_id, tag_id) VALUES (?, 1)",
            [(c[0],) for c in tagged],
        )
    conn.close()
    smallest = cells[8][2]

    def larger_min_size(config):
        config["segmentation"]["min_size"] = int(smallest)

    edit_config(work, larger_min_size)
    run_workflow(work)

    new_labels = open_group(exp / "labels.zarr" / key)["0"][...]
    conn = db(exp)
    new_cells = dict(
        conn.execute(
            "SELECT label_value, id FROM cells WHERE region_id = ?", (region_id,)
        ).fetchall()
    )
    tags_now = {c for (c,) in conn.execute("SELECT cell_id FROM cell_tags")}
    orphans = {
        row[0]: row[1:]
        for row in conn.execute(
            "SELECT old_label_value, centroid_x, centroid_y FROM percell_orphan_tags "
            "WHERE region_id = ?",
            (region_id,),
        )
    }
    moved = 0
    for _, label, _, cx, cy in tagged:
        old = old_labels == label
        best, best_iou = None, 0.0
        for new in np.unique(new_labels[old]):
            if new == 0:
                continue
            other = new_labels == new
            iou = (old & other).sum() / (old | other).sum()
            if iou > best_iou:
                best, best_iou = new, iou
        if best_iou >= 0.5:
            assert new_cells[int(best)] in tags_now, f"tag of cell {label} lost"
            moved += 1
        else:
            assert label in orphans, f"tag of vanished cell {label} not kept"
            assert orphans[label] == pytest.approx((cx, cy))
    assert moved >= 8 and len(orphans) >= 1
    assert "kept in percell_orphan_tags" in (work / "logs/exp/register.log").read_text()


def test_edited_labels_are_never_overwritten_silently(measured_copy):
    work, exp = measured_copy["work"], measured_copy["experiment"]
    key = "ctrl/t0/r1"
    labels = open_group(exp / "labels.zarr" / key, mode="r+")["0"]
    edited = labels[...]
    edited[10:30, 10:30] = edited.max() + 1  # a cell drawn by hand
    labels[...] = edited
    before = tree_digest(exp / "labels.zarr" / key)
    db_before = (exp / "experiment.db").read_bytes()

    def refused(edit) -> None:
        """The change is refused by name; labels and database stay."""
        edit_config(work, edit)
        proc = run_workflow(work, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert f"region {key}" in out and "overwrite_edited_labels" in out
        assert tree_digest(exp / "labels.zarr" / key) == before
        assert (exp / "experiment.db").read_bytes() == db_before

    # a threshold change: measure would read the edited labels
    refused(lambda c: c["thresholds"][1].update(min_fraction=0.7))
    # a segmentation change: segment would replace them
    refused(lambda c: c["segmentation"].update(min_size=35))

    edit_config(work, lambda c: c["segmentation"].update(overwrite_edited_labels=True))
    run_workflow(work)
    assert not (open_group(exp / "labels.zarr" / key)["0"][10:30, 10:30] > 0).all()


def test_register_waits_for_the_application_then_fails_without_writing(
    measured_copy,
):
    work, exp = measured_copy["work"], measured_copy["experiment"]
    app = db(exp)
    app.execute("PRAGMA journal_mode = WAL")
    app.execute("SELECT count(*) FROM cells").fetchone()
    db_before = digest_elsewhere(exp / "experiment.db")

    def change(config):
        config["thresholds"][1]["min_fraction"] = 0.3
        config["register"] = {"busy_timeout_s": 2}

    edit_config(work, change)
    proc = run_workflow(work, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "experiment.db" in out and "in use by another program" in out
    assert digest_elsewhere(exp / "experiment.db") == db_before
    assert not (exp / "experiment.db-journal").exists()

    app.close()  # the application is closed: the same command now succeeds
    run_workflow(work)
    assert journal_is_rollback(exp)
    conn = db(exp)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_channel_colour_change_rewrites_metadata_only(measured_copy):
    """A colour is display metadata: no step that makes pixels runs again
    (on a 45 GB plate that would be hours); the images' omero colours, the
    channels row and the QC pictures change; every id and pixel stays."""
    work, exp = measured_copy["work"], measured_copy["experiment"]
    act_as_the_application(exp)
    before = snapshot(exp)
    arrays = {
        store: tree_digest(exp / store) for store in ("labels.zarr", "masks.zarr")
    }
    key = "ctrl/t0/r1"
    level0 = tree_digest(exp / "images.zarr" / key / "0")

    def colour(config):
        config["channels"][1]["color"] = "FFFF00"

    edit_config(work, colour)
    proc = run_workflow(work)
    out = proc.stdout + proc.stderr
    for step in ("import_images", "illumination", "segment", "threshold", "measure"):
        assert f"rule {step}:" not in out, step
    assert "rule register:" in out and "rule qc_regions:" in out
    after = snapshot(exp)
    assert after == before
    assert {s: tree_digest(exp / s) for s in arrays} == arrays
    assert tree_digest(exp / "images.zarr" / key / "0") == level0
    omero = json.loads((exp / "images.zarr" / key / ".zattrs").read_text())["omero"]
    assert [c["color"] for c in omero["channels"]][1] == "FFFF00"
    conn = db(exp)
    assert conn.execute("SELECT color FROM channels WHERE name = 'GFP'").fetchone() == (
        "FFFF00",
    )
    assert conn.execute("SELECT count(*) FROM percell_orphan_tags").fetchone() == (0,)


def test_a_removed_threshold_run_takes_only_its_own_rows(measured_copy):
    work, exp = measured_copy["work"], measured_copy["experiment"]
    act_as_the_application(exp)
    before = snapshot(exp)
    edit_config(work, lambda c: c.update(thresholds=c["thresholds"][:1]))
    run_workflow(work)
    after = snapshot(exp)
    for key in ("cells", "cell_tags", "app_thresholds", "measurement_ids"):
        assert after[key] == before[key], key
    conn = db(exp)
    runs = conn.execute(
        "SELECT DISTINCT run_name FROM percell_region_thresholds"
    ).fetchall()
    assert runs == [("GFP",)]
    names = conn.execute(
        "SELECT DISTINCT json_extract(t.parameters, '$.name') FROM percell_cell_masks "
        "m JOIN threshold_runs t ON t.id = m.threshold_run_id"
    ).fetchall()
    assert names == [("GFP",)]
    assert conn.execute("SELECT count(*) FROM percell_cell_masks").fetchone()[0] == len(
        before["cells"]
    )
