"""The experiment.db schema, compared with PERCELL3_FORMAT.md table by table."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from percell import db
from percell.contracts import Channel

# Transcribed from ../shared/PERCELL3_FORMAT.md ("SQLite experiment.db (schema 3.0.0)").
EXPECTED_COLUMNS = {
    "experiments": [
        "id",
        "name",
        "description",
        "percell_version",
        "created_at",
        "updated_at",
    ],
    "channels": [
        "id",
        "name",
        "role",
        "excitation_nm",
        "emission_nm",
        "color",
        "is_segmentation",
        "display_order",
    ],
    "conditions": ["id", "name", "description"],
    "timepoints": ["id", "name", "time_seconds", "display_order"],
    "regions": [
        "id",
        "name",
        "condition_id",
        "timepoint_id",
        "width",
        "height",
        "pixel_size_um",
        "source_file",
        "zarr_path",
    ],
    "segmentation_runs": [
        "id",
        "channel_id",
        "model_name",
        "parameters",
        "cell_count",
        "created_at",
    ],
    "cells": [
        "id",
        "region_id",
        "segmentation_id",
        "label_value",
        "centroid_x",
        "centroid_y",
        "bbox_x",
        "bbox_y",
        "bbox_w",
        "bbox_h",
        "area_pixels",
        "area_um2",
        "perimeter",
        "circularity",
        "is_valid",
    ],
    "measurements": ["id", "cell_id", "channel_id", "metric", "value"],
    "threshold_runs": [
        "id",
        "channel_id",
        "method",
        "parameters",
        "threshold_value",
        "created_at",
    ],
    "analysis_runs": [
        "id",
        "plugin_name",
        "parameters",
        "status",
        "cell_count",
        "started_at",
        "completed_at",
    ],
    "tags": ["id", "name", "color"],
    "cell_tags": ["cell_id", "tag_id"],
}
EXPECTED_UNIQUE = {
    "channels": [("name",)],
    "conditions": [("name",)],
    "timepoints": [("name",)],
    "regions": [("name", "condition_id", "timepoint_id")],
    "cells": [("region_id", "segmentation_id", "label_value")],
    "measurements": [("cell_id", "channel_id", "metric")],
    "tags": [("name",)],
    "cell_tags": [("cell_id", "tag_id")],
}
EXPECTED_INDEXES = {
    "idx_cells_region",
    "idx_cells_segmentation",
    "idx_cells_area",
    "idx_measurements_cell",
    "idx_measurements_channel",
    "idx_measurements_metric",
    "idx_regions_condition",
}
FORMAT_DOC = Path(__file__).resolve().parents[3] / "shared" / "PERCELL3_FORMAT.md"


@pytest.fixture
def conn(tmp_path):
    c = db.connect(tmp_path / "experiment.db")
    yield c
    c.close()


def columns(conn, table):
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def unique_sets(conn, table):
    out = []
    for _, name, unique, *_ in conn.execute(f"PRAGMA index_list({table})"):
        if unique:
            out.append(tuple(r[2] for r in conn.execute(f"PRAGMA index_info({name})")))
    return sorted(out)


@pytest.mark.parametrize("table", sorted(EXPECTED_COLUMNS))
def test_table_columns(conn, table):
    assert columns(conn, table) == EXPECTED_COLUMNS[table]


@pytest.mark.parametrize("table", sorted(EXPECTED_UNIQUE))
def test_table_unique_keys(conn, table):
    assert unique_sets(conn, table) == sorted(EXPECTED_UNIQUE[table])


def test_indexes(conn):
    names = {
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx_%'"
        )
    }
    assert names == EXPECTED_INDEXES


def test_never_wal(conn):
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


@pytest.mark.skipif(not FORMAT_DOC.is_file(), reason="shared/PERCELL3_FORMAT.md absent")
def test_transcription_matches_the_format_document():
    text = FORMAT_DOC.read_text()
    section = text[text.index("## SQLite") : text.index("Indexes the application")]
    doc = {}
    for line in section.splitlines():
        m = re.match(r"\|\s*([a-z_, ]+?)\s*\|\s*(.+?)\s*\|$", line)
        if not m or m.group(1) in ("table",) or set(m.group(1)) <= {"-"}:
            continue
        for part in re.split(r";\s*", m.group(2)):
            part = re.sub(r"UNIQUE\([^)]*\)|primary key|PRIMARY KEY", "", part)
            part = part.split(":")[-1]  # "one row: id, ..."
            if not part.strip():
                continue
            named = re.match(r"(\w+)\((.*)\)", part.strip())
            if named:  # "tags(id, name UNIQUE, color)"
                table, cols = named.group(1), named.group(2)
            else:
                table, cols = m.group(1), part
            doc[table] = [c.split()[0] for c in cols.split(",") if c.strip()]
    indexes = set(re.findall(r"idx_\w+", text))
    assert {t: doc[t] for t in EXPECTED_COLUMNS} == EXPECTED_COLUMNS
    assert indexes == EXPECTED_INDEXES


def test_region_upsert_is_idempotent_with_null_timepoint(conn):
    with db.transaction(conn):
        cond = db.upsert_condition(conn, "ctrl")
        first = db.upsert_region(conn, "r1", cond, None, 10, 20, 0.5, "a.tif", "p")
        again = db.upsert_region(conn, "r1", cond, None, 11, 21, 0.5, "a.tif", "p")
    assert first == again
    assert conn.execute("SELECT width, height FROM regions").fetchall() == [(11, 21)]


def test_failed_transaction_leaves_nothing(conn):
    with pytest.raises(RuntimeError), db.transaction(conn):
        db.upsert_condition(conn, "ctrl")
        raise RuntimeError("boom")
    assert conn.execute("SELECT count(*) FROM conditions").fetchone() == (0,)


@pytest.mark.parametrize("n", [0, 1, 249, 250, 251, 1000])
def test_insert_rows_many_per_statement(conn, n):
    """Every row lands once, in order, whatever n is against the batch size."""
    conn.execute("CREATE TABLE t (a INTEGER, b REAL, c TEXT, d INTEGER)")
    a = list(range(n))
    b = [i / 3 if i % 7 else None for i in range(n)]
    c = [f"m{i % 5}" for i in range(n)]
    d = [-i for i in range(n)]
    db.insert_rows(conn, "t", ["a", "b", "c", "d"], [a, b, c, d])
    assert conn.execute("SELECT a, b, c, d FROM t ORDER BY rowid").fetchall() == list(
        zip(a, b, c, d, strict=True)
    )


def test_insert_rows_refuses_ragged_columns(conn):
    conn.execute("CREATE TABLE t (a INTEGER, b INTEGER)")
    with pytest.raises(ValueError, match=r"t\.b: 2 values, expected 3"):
        db.insert_rows(conn, "t", ["a", "b"], [[1, 2, 3], [1, 2]])


def _one_cell(conn):
    with db.transaction(conn):
        db.upsert_experiment(conn, "e", "")
        ch = db.upsert_channel(conn, Channel(name="GFP"), 0)
        cond = db.upsert_condition(conn, "ctrl")
        region = db.upsert_region(conn, "r1", cond, None, 10, 10, 0.5, "f", "p")
        seg = db.upsert_segmentation_run(conn, ch, "watershed", "{}")
        conn.execute(
            "INSERT INTO cells (id, region_id, segmentation_id, label_value, "
            "centroid_x, centroid_y, bbox_x, bbox_y, bbox_w, bbox_h, area_pixels) "
            "VALUES (1, ?, ?, 1, 0, 0, 0, 0, 1, 1, 1)",
            (region, seg),
        )
    return ch


def test_nan_is_no_measurement_row_and_a_value_becoming_nan_is_removed(conn):
    ch = _one_cell(conn)
    ids, channels = np.array([1]), np.array([ch])
    values = np.array([[[1.5, np.nan]]])
    with db.transaction(conn):
        db.upsert_measurements(conn, ids, channels, ["mean", "max"], values)
    rows = conn.execute("SELECT metric, value FROM measurements").fetchall()
    assert rows == [("mean", 1.5)]  # NaN is NULL: no row, never 0.0
    row_id = conn.execute("SELECT id FROM measurements").fetchone()[0]
    with db.transaction(conn):
        db.upsert_measurements(
            conn, ids, channels, ["mean", "max"], np.array([[[2.5, 3.0]]])
        )
    rows = conn.execute("SELECT id, metric, value FROM measurements ORDER BY id")
    assert rows.fetchall() == [(row_id, "mean", 2.5), (row_id + 1, "max", 3.0)]
    with db.transaction(conn):
        db.upsert_measurements(
            conn, ids, channels, ["mean", "max"], np.array([[[2.5, np.nan]]])
        )
    rows = conn.execute("SELECT id, metric, value FROM measurements").fetchall()
    assert rows == [(row_id, "mean", 2.5)]


def test_held_wal_database_fails_after_the_timeout_naming_the_file(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "experiment.db"
    db.connect(path).close()
    app = sqlite3.connect(path)  # as the application: WAL, the file open
    app.execute("PRAGMA journal_mode = WAL")
    app.execute("SELECT count(*) FROM cells").fetchone()
    code = (
        "import sys, time\nfrom percell import db\nstart = time.monotonic()\n"
        "try:\n    db.connect(sys.argv[1], timeout=1.0)\nexcept Exception as e:\n"
        "    print(type(e).__name__, round(time.monotonic() - start), e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True
    ).stdout
    app.close()
    assert out.startswith("ExperimentError 1 ") and str(path) in out


def test_large_loads_go_in_slices_of_cells_and_write_every_row(conn, monkeypatch):
    """Cells, measurements and mask statistics are bound a slice of cells at a
    time (memory follows the slice, not the region); every row still lands,
    in order, and NaN still removes a row across slice borders."""
    monkeypatch.setattr(db, "CELLS_PER_BATCH", 7)
    ch = _one_cell(conn)
    n = 25
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {c: rng.random(n) * 10 for c in db.CELL_GEOMETRY if c != "label_value"}
    )
    table.insert(0, "label_value", np.arange(2, n + 2))
    table.insert(0, "segmentation_id", 1)
    table.insert(0, "region_id", 1)
    values = rng.random((n, 1, 2))
    with db.transaction(conn):
        ids = db.insert_cells(conn, table[db.CELL_COLUMNS])
        db.upsert_measurements(conn, ids, np.array([ch]), ["mean", "max"], values)
    assert ids.tolist() == list(range(2, n + 2))
    labels = conn.execute("SELECT label_value FROM cells WHERE id > 1 ORDER BY id")
    assert [r[0] for r in labels] == list(range(2, n + 2))
    got = conn.execute(
        "SELECT cell_id, metric, value FROM measurements ORDER BY id"
    ).fetchall()
    expected = [
        (int(i), m, float(values[k, 0, j]))
        for k, i in enumerate(ids)
        for j, m in enumerate(["mean", "max"])
    ]
    assert got == expected
    values[8, 0, 1] = np.nan  # in the second slice
    with db.transaction(conn):
        db.upsert_measurements(conn, ids, np.array([ch]), ["mean", "max"], values)
    assert conn.execute("SELECT count(*) FROM measurements").fetchone()[0] == 2 * n - 1
