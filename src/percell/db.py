"""The PerCell 3 ``experiment.db``: schema 3.0.0, the workflow's own tables,
and the idempotent upserts both schema versions share.

The tables a region, a segmentation and a threshold live in are named
differently in 3.0.0 and 4.0.0 (``Names``); everything else the register
step writes is the same SQL for both (``percell.experiment_format`` holds
what differs).

Only the register step opens the database for writing, in one transaction.
The journal stays in rollback mode (never WAL): the experiment may live on a
network file system, where WAL's shared memory does not work.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from percell.cells import COLUMNS as CELL_GEOMETRY
from percell.cells import SHAPE_COLUMNS
from percell.contracts import Channel
from percell.errors import ExperimentError

if TYPE_CHECKING:  # pandas is imported where a table is read or written
    import pandas as pd

SCHEMA_VERSION = "3.0.0"


@dataclass(frozen=True)
class Names:
    """Where a schema keeps regions, segmentations and thresholds."""

    #: the table of regions (3.0.0) or FOVs (4.0.0)
    regions: str
    #: the column of ``cells`` (and of the workflow's tables) naming it
    region_id: str
    segmentations: str
    thresholds: str


V3_NAMES = Names("regions", "region_id", "segmentation_runs", "threshold_runs")
V4_NAMES = Names("fovs", "fov_id", "segmentations", "thresholds")

#: Tables both schema versions have, column for column.
SHARED_SQL = """
CREATE TABLE IF NOT EXISTS channels (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT,
    excitation_nm REAL,
    emission_nm REAL,
    color TEXT,
    is_segmentation INTEGER NOT NULL DEFAULT 0,
    display_order INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS conditions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS timepoints (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    time_seconds REAL,
    display_order INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS analysis_runs (
    id INTEGER PRIMARY KEY,
    plugin_name TEXT NOT NULL,
    parameters TEXT,
    status TEXT NOT NULL DEFAULT 'running',
    cell_count INTEGER,
    started_at TEXT NOT NULL DEFAULT (datetime('now')),
    completed_at TEXT
);
CREATE TABLE IF NOT EXISTS tags (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    color TEXT
);
"""

V3_TABLES_SQL = """
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    percell_version TEXT NOT NULL DEFAULT '3.0.0',
    created_at TEXT NOT NULL DEFAULT (datetime('now')),
    updated_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS regions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    condition_id INTEGER NOT NULL REFERENCES conditions(id),
    timepoint_id INTEGER REFERENCES timepoints(id),
    width INTEGER,
    height INTEGER,
    pixel_size_um REAL,
    source_file TEXT,
    zarr_path TEXT,
    UNIQUE(name, condition_id, timepoint_id)
);
CREATE TABLE IF NOT EXISTS segmentation_runs (
    id INTEGER PRIMARY KEY,
    channel_id INTEGER NOT NULL REFERENCES channels(id),
    model_name TEXT NOT NULL,
    parameters TEXT,
    cell_count INTEGER,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS cells (
    id INTEGER PRIMARY KEY,
    region_id INTEGER NOT NULL REFERENCES regions(id),
    segmentation_id INTEGER NOT NULL REFERENCES segmentation_runs(id),
    label_value INTEGER NOT NULL,
    centroid_x REAL NOT NULL,
    centroid_y REAL NOT NULL,
    bbox_x INTEGER NOT NULL,
    bbox_y INTEGER NOT NULL,
    bbox_w INTEGER NOT NULL,
    bbox_h INTEGER NOT NULL,
    area_pixels REAL NOT NULL,
    area_um2 REAL,
    perimeter REAL,
    circularity REAL,
    is_valid INTEGER NOT NULL DEFAULT 1,
    UNIQUE(region_id, segmentation_id, label_value)
);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY,
    cell_id INTEGER NOT NULL REFERENCES cells(id),
    channel_id INTEGER NOT NULL REFERENCES channels(id),
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    UNIQUE(cell_id, channel_id, metric)
);
CREATE TABLE IF NOT EXISTS threshold_runs (
    id INTEGER PRIMARY KEY,
    channel_id INTEGER NOT NULL REFERENCES channels(id),
    method TEXT NOT NULL,
    parameters TEXT,
    threshold_value REAL,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS cell_tags (
    cell_id INTEGER NOT NULL REFERENCES cells(id),
    tag_id INTEGER NOT NULL REFERENCES tags(id),
    PRIMARY KEY (cell_id, tag_id)
);
CREATE INDEX IF NOT EXISTS idx_cells_region ON cells(region_id);
CREATE INDEX IF NOT EXISTS idx_cells_segmentation ON cells(segmentation_id);
CREATE INDEX IF NOT EXISTS idx_cells_area ON cells(area_pixels);
CREATE INDEX IF NOT EXISTS idx_measurements_cell ON measurements(cell_id);
CREATE INDEX IF NOT EXISTS idx_measurements_channel ON measurements(channel_id);
CREATE INDEX IF NOT EXISTS idx_measurements_metric ON measurements(metric);
CREATE INDEX IF NOT EXISTS idx_regions_condition ON regions(condition_id);
"""
CORE_SQL = SHARED_SQL + V3_TABLES_SQL

#: The workflow's own tables, beyond PerCell 3 (the application ignores
#: them); ``{regions}`` and ``{thresholds}`` are the schema's ``Names``. The
#: column names stay ``region_id`` and ``threshold_run_id`` in both versions.
WORKFLOW_SQL = """
CREATE TABLE IF NOT EXISTS percell_region_thresholds (
    region_id INTEGER NOT NULL REFERENCES {regions}(id),
    threshold_run_id INTEGER NOT NULL REFERENCES {thresholds}(id),
    run_name TEXT NOT NULL,
    pixels_on INTEGER,
    PRIMARY KEY (region_id, run_name)
);
CREATE TABLE IF NOT EXISTS percell_cell_masks (
    cell_id INTEGER NOT NULL REFERENCES cells(id),
    threshold_run_id INTEGER NOT NULL REFERENCES {thresholds}(id),
    pixels_inside INTEGER NOT NULL,
    fraction_inside REAL NOT NULL,
    mean_inside REAL,
    mean_outside REAL,
    positive INTEGER NOT NULL,
    PRIMARY KEY (cell_id, threshold_run_id)
);
CREATE TABLE IF NOT EXISTS percell_region_sources (
    region_id INTEGER NOT NULL REFERENCES {regions}(id),
    position INTEGER NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (region_id, position)
);
CREATE TABLE IF NOT EXISTS percell_registered (
    unit TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    registered_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS percell_orphan_tags (
    id INTEGER PRIMARY KEY,
    region_id INTEGER NOT NULL REFERENCES {regions}(id),
    tag_id INTEGER NOT NULL REFERENCES tags(id),
    old_cell_id INTEGER NOT NULL,
    old_label_value INTEGER NOT NULL,
    centroid_x REAL,
    centroid_y REAL,
    bbox_x INTEGER,
    bbox_y INTEGER,
    bbox_w INTEGER,
    bbox_h INTEGER,
    orphaned_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS percell_cell_shape (
    cell_id INTEGER PRIMARY KEY REFERENCES cells(id),
    area_pixels REAL NOT NULL,
    area_um2 REAL,
    perimeter REAL,
    circularity REAL,
    eccentricity REAL,
    solidity REAL,
    major_axis_length REAL,
    minor_axis_length REAL,
    orientation REAL,
    extent REAL
);
CREATE TABLE IF NOT EXISTS percell_background (
    region_id INTEGER NOT NULL REFERENCES {regions}(id),
    channel_id INTEGER NOT NULL REFERENCES channels(id),
    method TEXT NOT NULL,
    parameters TEXT NOT NULL,
    value REAL,
    subtracted_min REAL NOT NULL,
    subtracted_max REAL NOT NULL,
    subtracted_mean REAL NOT NULL,
    PRIMARY KEY (region_id, channel_id)
);
CREATE TABLE IF NOT EXISTS percell_fields (
    region_id INTEGER NOT NULL REFERENCES {regions}(id),
    field INTEGER NOT NULL,
    x INTEGER NOT NULL,
    y INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    grid_row INTEGER NOT NULL,
    grid_column INTEGER NOT NULL,
    stage_x_um REAL,
    stage_y_um REAL,
    source_files TEXT NOT NULL,
    PRIMARY KEY (region_id, field)
);
"""


def workflow_schema(names: Names) -> str:
    """The workflow's own tables, referring to the schema's tables."""
    return WORKFLOW_SQL.format(regions=names.regions, thresholds=names.thresholds)


SCHEMA_SQL = CORE_SQL + workflow_schema(V3_NAMES)


#: how long register waits for another program to release the database
BUSY_TIMEOUT_S = 30.0


def connect(
    path: str | Path,
    foreign_keys: bool = True,
    timeout: float = BUSY_TIMEOUT_S,
    create: bool = True,
) -> sqlite3.Connection:
    """Open (creating if needed) an experiment database for writing.

    The connection is in autocommit mode; callers group their writes in
    ``with transaction(conn):``. ``foreign_keys=False`` is for bulk loads
    whose ids are right by construction (a quarter of the insert time goes
    to checking them otherwise).

    The journal is switched back to rollback mode (the PerCell 3 application
    switches it to WAL). With ``create=False`` the schema is left to the
    caller (``create_schema`` inside its own transaction, so that a failed
    write leaves even the schema as it was). While another program holds the
    database that
    switch cannot happen: after waiting ``timeout`` seconds this raises
    ExperimentError naming the file, and nothing is written.
    """
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=timeout)
    mode, reason = _switch_to_rollback_journal(conn, timeout)
    if mode != "delete":
        conn.close()
        raise _busy_error(path, reason)
    conn.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
    # 256 MB of page cache (default 2 MB): a 4.0.0 measurements table has
    # nine indexes, and inserting into them thrashes a small cache
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    if create:
        with transaction(conn):
            create_schema(conn)
    return conn


def create_schema(conn: sqlite3.Connection, sql: str = SCHEMA_SQL) -> None:
    """Create what is missing of the schema, inside the caller's transaction
    (``executescript`` would commit it)."""
    for statement in sql.split(";"):
        if statement.strip():
            conn.execute(statement)


def _switch_to_rollback_journal(
    conn: sqlite3.Connection, timeout: float
) -> tuple[str, str]:
    """Leave WAL, retrying for ``timeout`` seconds: SQLite refuses the switch
    at once (no busy wait) while another connection has the file open."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0].lower()
            reason = f"the journal stays in {mode} mode"
        except sqlite3.OperationalError as exc:
            mode, reason = "", str(exc)
        if mode == "delete" or time.monotonic() >= deadline:
            return mode, reason
        time.sleep(0.2)


def _busy_error(path: str | Path, reason: str) -> ExperimentError:
    return ExperimentError(
        f"{path}: the database is in use by another program (the PerCell 3 "
        f"application?) and could not be taken over: {reason}. Close it there "
        "and run the workflow again; nothing was written."
    )


class transaction:
    """One IMMEDIATE transaction: all writes land together or not at all."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def upsert_experiment(
    conn: sqlite3.Connection,
    name: str,
    description: str,
    version: str = SCHEMA_VERSION,
) -> int:
    """The single experiments row (id 1, which 4.0.0 requires); created_at
    is kept on updates."""
    row = conn.execute(
        "SELECT id, name, description FROM experiments ORDER BY id LIMIT 1"
    ).fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO experiments (id, name, description, percell_version) "
            "VALUES (1, ?, ?, ?)",
            (name, description, version),
        )
        return 1
    if (row[1], row[2]) != (name, description):
        conn.execute(
            "UPDATE experiments SET name = ?, description = ?, "
            "updated_at = datetime('now') WHERE id = ?",
            (name, description, row[0]),
        )
    return int(row[0])


def touch_experiment(conn: sqlite3.Connection) -> None:
    """Mark the experiment as updated now."""
    conn.execute("UPDATE experiments SET updated_at = datetime('now')")


def upsert_channel(
    conn: sqlite3.Connection, ch: Channel, order: int, is_segmentation: bool = False
) -> int:
    """Insert or update a channel by name; return its id."""
    conn.execute(
        """INSERT INTO channels (name, role, excitation_nm, emission_nm, color,
                                 is_segmentation, display_order)
           VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT(name) DO UPDATE SET role = excluded.role,
               excitation_nm = excluded.excitation_nm,
               emission_nm = excluded.emission_nm, color = excluded.color,
               is_segmentation = excluded.is_segmentation,
               display_order = excluded.display_order""",
        (
            ch.name,
            ch.role,
            ch.excitation_nm,
            ch.emission_nm,
            ch.color.lstrip("#").upper(),
            int(is_segmentation),
            order,
        ),
    )
    return _id(conn, "channels", ch.name)


def upsert_condition(conn: sqlite3.Connection, name: str) -> int:
    """Insert a condition if new; return its id."""
    conn.execute(
        "INSERT INTO conditions (name) VALUES (?) ON CONFLICT(name) DO NOTHING", (name,)
    )
    return _id(conn, "conditions", name)


def upsert_timepoint(
    conn: sqlite3.Connection, name: str, time_seconds: float | None, order: int
) -> int:
    """Insert or update a timepoint by name; return its id."""
    conn.execute(
        """INSERT INTO timepoints (name, time_seconds, display_order) VALUES (?, ?, ?)
           ON CONFLICT(name) DO UPDATE SET time_seconds = excluded.time_seconds,
               display_order = excluded.display_order""",
        (name, time_seconds, order),
    )
    return _id(conn, "timepoints", name)


def upsert_region(
    conn: sqlite3.Connection,
    name: str,
    condition_id: int,
    timepoint_id: int | None,
    width: int,
    height: int,
    pixel_size_um: float,
    source_file: str,
    zarr_path: str,
) -> int:
    """Insert or update a region by (name, condition, timepoint); return its id.

    SQLite's UNIQUE treats NULL timepoints as distinct, so the lookup uses
    ``IS`` rather than relying on ON CONFLICT.
    """
    row = conn.execute(
        "SELECT id FROM regions "
        "WHERE name = ? AND condition_id = ? AND timepoint_id IS ?",
        (name, condition_id, timepoint_id),
    ).fetchone()
    values = (width, height, pixel_size_um, source_file, zarr_path)
    if row is None:
        cur = conn.execute(
            "INSERT INTO regions (name, condition_id, timepoint_id, width, height, "
            "pixel_size_um, source_file, zarr_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (name, condition_id, timepoint_id, *values),
        )
        return _last_id(cur)
    conn.execute(
        "UPDATE regions SET width = ?, height = ?, pixel_size_um = ?, source_file = ?, "
        "zarr_path = ? WHERE id = ?",
        (*values, row[0]),
    )
    return int(row[0])


def replace_region_sources(
    conn: sqlite3.Connection, region_id: int, paths: list[str]
) -> None:
    """Record every raw file of a region (beyond 3.0.0)."""
    conn.execute("DELETE FROM percell_region_sources WHERE region_id = ?", (region_id,))
    conn.executemany(
        "INSERT INTO percell_region_sources (region_id, position, path) "
        "VALUES (?, ?, ?)",
        [(region_id, i, p) for i, p in enumerate(paths)],
    )


FIELD_COLUMNS = (
    "field",
    "x",
    "y",
    "width",
    "height",
    "grid_row",
    "grid_column",
    "stage_x_um",
    "stage_y_um",
)


def replace_region_fields(
    conn: sqlite3.Connection, region_id: int, fields: list[dict]
) -> None:
    """Where each field of a plate well sits in the stitched image, and its
    files (beyond 3.0.0): per-field work stays possible."""
    conn.execute("DELETE FROM percell_fields WHERE region_id = ?", (region_id,))
    insert_rows(
        conn,
        "percell_fields",
        ["region_id", *FIELD_COLUMNS, "source_files"],
        [[region_id] * len(fields)]
        + [[f[c] for f in fields] for c in FIELD_COLUMNS]
        + [[json.dumps(f["source_files"]) for f in fields]],
    )


def replace_region_background(
    conn: sqlite3.Connection, region_id: int, records: list[dict[str, Any]]
) -> None:
    """What import subtracted from each channel of a region (``BackgroundRecord``
    as plain data); a region without background subtraction has no rows."""
    conn.execute("DELETE FROM percell_background WHERE region_id = ?", (region_id,))
    conn.executemany(
        "INSERT INTO percell_background (region_id, channel_id, method, "
        "parameters, value, subtracted_min, subtracted_max, subtracted_mean) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                region_id,
                channel_id(conn, r["channel"]),
                r["method"],
                json.dumps(r["parameters"], sort_keys=True),
                r["value"],
                r["subtracted_min"],
                r["subtracted_max"],
                r["subtracted_mean"],
            )
            for r in records
        ],
    )


def _last_id(cur: sqlite3.Cursor) -> int:
    """The id of the row ``cur`` just inserted."""
    assert cur.lastrowid is not None
    return int(cur.lastrowid)


def _id(conn: sqlite3.Connection, table: str, name: str) -> int:
    return int(
        conn.execute(f"SELECT id FROM {table} WHERE name = ?", (name,)).fetchone()[0]
    )


def cell_columns(names: Names = V3_NAMES) -> list[str]:
    """cells columns written by register: the run's keys, then the geometry."""
    return [names.region_id, "segmentation_id", *CELL_GEOMETRY]


CELL_COLUMNS = cell_columns(V3_NAMES)


def channel_id(conn: sqlite3.Connection, name: str) -> int:
    """Id of channel ``name``."""
    return _id(conn, "channels", name)


def set_segmentation_channel(conn: sqlite3.Connection, channel: int) -> None:
    """Mark ``channel`` as the one cells were segmented on."""
    conn.execute("UPDATE channels SET is_segmentation = (id = ?)", (channel,))


def upsert_segmentation_run(
    conn: sqlite3.Connection, channel: int, model_name: str, parameters: str
) -> int:
    """The run with these exact settings, created if new; return its id."""
    row = conn.execute(
        "SELECT id FROM segmentation_runs WHERE channel_id = ? AND model_name = ? "
        "AND parameters = ?",
        (channel, model_name, parameters),
    ).fetchone()
    if row:
        return int(row[0])
    cur = conn.execute(
        "INSERT INTO segmentation_runs "
        "(channel_id, model_name, parameters, cell_count) VALUES (?, ?, ?, 0)",
        (channel, model_name, parameters),
    )
    return _last_id(cur)


#: cells whose rows are bound and written at once
CELLS_PER_BATCH = 20_000


def cell_batches(n_cells: int) -> Iterator[slice]:
    """Slices of at most ``CELLS_PER_BATCH`` cells. A region's rows become
    Python values to be bound, so memory follows the slice, not the region
    (a well of 800,000 cells held 3 GB at once)."""
    for start in range(0, n_cells, CELLS_PER_BATCH):
        yield slice(start, start + CELLS_PER_BATCH)


def insert_cells(
    conn: sqlite3.Connection, table: pd.DataFrame, names: Names = V3_NAMES
) -> np.ndarray:
    """Insert the rows of a cells DataFrame (columns ``cell_columns(names)``).

    Ids are given here (one past the largest in use, counting up), so the
    caller knows every new cell's id without reading them back.

    Returns:
        The new ids, in the table's row order.
    """
    start = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM cells").fetchone()[0]
    ids = np.arange(start, start + len(table), dtype=np.int64)
    for part in cell_batches(len(table)):
        rows = table.iloc[part]
        wanted = cell_columns(names)
        columns = [ids[part].tolist()] + [_column(rows[c]) for c in wanted]
        insert_rows(conn, "cells", ["id", *wanted], columns)
    return ids


# SQLite's historical limit on parameters per statement
MAX_PARAMETERS = 999


CACHE_KIB = 256 * 1024


@contextmanager
def checks_off(conn: sqlite3.Connection) -> Iterator[None]:
    """Skip CHECK constraints for rows that are right by construction (a
    fifth of a 4.0.0 measurement insert goes to its scope CHECK otherwise)."""
    conn.execute("PRAGMA ignore_check_constraints = ON")
    try:
        yield
    finally:
        conn.execute("PRAGMA ignore_check_constraints = OFF")


def insert_rows(
    conn: sqlite3.Connection,
    table: str,
    names: list[str],
    columns: list[list],
    conflict: str = "",
) -> None:
    """Insert equally long value lists, many rows per statement.

    One statement per row spends most of its time stepping the statement;
    a multi-row VALUES list brings a bulk load close to SQLite's own speed.
    """
    n, k = len(columns[0]), len(names)
    if n == 0:
        return
    flat = [None] * (n * k)
    for i, column in enumerate(columns):
        if len(column) != n:
            raise ValueError(f"{table}.{names[i]}: {len(column)} values, expected {n}")
        flat[i::k] = column
    rows = MAX_PARAMETERS // k
    head = f"INSERT INTO {table} ({', '.join(names)}) VALUES "
    row = f"({', '.join('?' * k)})"
    tail = f" {conflict}" if conflict else ""
    full = n // rows * rows
    if full:
        step = rows * k
        conn.executemany(
            head + ", ".join([row] * rows) + tail,
            (flat[s : s + step] for s in range(0, full * k, step)),
        )
    if full < n:
        conn.execute(head + ", ".join([row] * (n - full)) + tail, flat[full * k :])


def _column(series: pd.Series) -> list[Any]:
    """A column as Python values, NaN as None (SQL NULL)."""
    values = series.to_numpy()
    if values.dtype.kind == "f":
        return [None if v != v else v for v in values.tolist()]
    return values.tolist()


def insert_measurements(
    conn: sqlite3.Connection,
    cell_ids: np.ndarray,
    channel_ids: np.ndarray,
    metrics: list[str],
    values: np.ndarray,
) -> None:
    """Bulk-insert the measurements of cells that have none yet:
    ``upsert_measurements`` without the conflict check.

    Rows go in (cell, channel, metric) order, so the UNIQUE index only ever
    appends. For a large load, drop the secondary indexes first
    (``drop_indexes``) and build them once afterwards (``restore_indexes``):
    much faster than row by row.
    """
    upsert_measurements(conn, cell_ids, channel_ids, metrics, values, new_cells=True)


def create_measurement_indexes(conn: sqlite3.Connection) -> None:
    """The indexes PerCell 3 expects on measurements."""
    conn.execute(
        "CREATE INDEX IF NOT EXISTS idx_measurements_cell ON measurements(cell_id)"
    )
    conn.execute(
        "CREATE INDEX IF NOT EXISTS idx_measurements_channel "
        "ON measurements(channel_id)"
    )
    conn.execute(
        "CREATE INDEX IF NOT EXISTS idx_measurements_metric ON measurements(metric)"
    )


def refresh_segmentation_counts(
    conn: sqlite3.Connection, names: Names = V3_NAMES, drop_empty: bool = True
) -> None:
    """Recount cells per segmentation; with ``drop_empty``, drop workflow-made
    runs that lost all their cells (a 3.0.0 run is shared by regions; a
    4.0.0 segmentation is its FOV's label image and stays)."""
    table = names.segmentations
    conn.execute(
        f"UPDATE {table} SET cell_count = "
        f"(SELECT count(*) FROM cells WHERE segmentation_id = {table}.id)"
    )
    if drop_empty:
        conn.execute(
            f"DELETE FROM {table} WHERE cell_count = 0 AND parameters "
            'LIKE \'%"source": "percell-workflow"%\''
        )


def drop_indexes(conn: sqlite3.Connection, table: str) -> list[str]:
    """Drop every index of ``table`` before a bulk load (a 4.0.0
    measurements table has nine, and a row costs a B-tree insert in each);
    returns their SQL, as the schema wrote it, for ``restore_indexes``."""
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
        "AND sql IS NOT NULL ORDER BY name",
        (table,),
    ).fetchall()
    for name, _ in rows:
        conn.execute(f'DROP INDEX "{name}"')
    return [sql for _, sql in rows]


def restore_indexes(conn: sqlite3.Connection, statements: list[str]) -> None:
    """Build indexes dropped by ``drop_indexes`` once, from sorted rows (a
    UNIQUE one fails here if the load broke it, inside the transaction)."""
    for sql in statements:
        conn.execute(sql)


def workflow_parameters(parameters: dict[str, Any]) -> str:
    """A threshold's ``parameters`` JSON, marked as the workflow's."""
    return json.dumps({"source": WORKFLOW_SOURCE, **parameters}, sort_keys=True)


def upsert_threshold_run(
    conn: sqlite3.Connection, channel: int, method: str, parameters: dict, value: float
) -> int:
    """The workflow's threshold run for (run name, scope unit), updated in place."""
    params = workflow_parameters(parameters)
    row = conn.execute(
        "SELECT id FROM threshold_runs WHERE json_extract(parameters, '$.source') = "
        "'percell-workflow' AND json_extract(parameters, '$.name') = ? AND "
        "json_extract(parameters, '$.scope_key') = ?",
        (parameters["name"], parameters["scope_key"]),
    ).fetchone()
    if row is None:
        cur = conn.execute(
            "INSERT INTO threshold_runs "
            "(channel_id, method, parameters, threshold_value) VALUES (?, ?, ?, ?)",
            (channel, method, params, value),
        )
        return _last_id(cur)
    conn.execute(
        "UPDATE threshold_runs SET channel_id = ?, method = ?, parameters = ?, "
        "threshold_value = ?, created_at = datetime('now') WHERE id = ?",
        (channel, method, params, value, row[0]),
    )
    return int(row[0])


def set_region_threshold(
    conn: sqlite3.Connection,
    region_id: int,
    run_name: str,
    threshold_run_id: int,
    pixels_on: int,
) -> None:
    """Which threshold run (and value) a region's mask of ``run_name`` used."""
    conn.execute(
        "INSERT INTO percell_region_thresholds (region_id, threshold_run_id, run_name, "
        "pixels_on) VALUES (?, ?, ?, ?) ON CONFLICT(region_id, run_name) DO UPDATE SET "
        "threshold_run_id = excluded.threshold_run_id, pixels_on = excluded.pixels_on",
        (region_id, threshold_run_id, run_name, pixels_on),
    )


def unused_threshold_runs(
    conn: sqlite3.Connection, names: Names = V3_NAMES
) -> list[int]:
    """Workflow-made threshold runs no region uses any more."""
    rows = conn.execute(
        f"SELECT id FROM {names.thresholds} WHERE json_extract(parameters, "
        "'$.source') = 'percell-workflow' AND id NOT IN (SELECT threshold_run_id "
        "FROM percell_region_thresholds) AND id NOT IN (SELECT threshold_run_id "
        "FROM percell_cell_masks)"
    )
    return [int(i) for (i,) in rows]


def drop_unused_threshold_runs(
    conn: sqlite3.Connection, names: Names = V3_NAMES
) -> list[int]:
    """Remove workflow-made threshold runs no region uses any more; their ids."""
    ids = unused_threshold_runs(conn, names)
    conn.executemany(
        f"DELETE FROM {names.thresholds} WHERE id = ?", [(i,) for i in ids]
    )
    return ids


MASK_COLUMNS = [
    "pixels_inside",
    "fraction_inside",
    "mean_inside",
    "mean_outside",
    "positive",
]


# --- what register consumed, for incremental reruns ------------------------------

WORKFLOW_SOURCE = "percell-workflow"


def _workflow_segmentations(names: Names) -> str:
    """A subquery: ids of the segmentations the workflow made."""
    return (
        f"SELECT id FROM {names.segmentations} "
        f"WHERE json_extract(parameters, '$.source') = '{WORKFLOW_SOURCE}'"
    )


def registered_digests(conn: sqlite3.Connection) -> dict[str, str]:
    """Unit → digest of what register last wrote for it."""
    return dict(conn.execute("SELECT unit, digest FROM percell_registered"))


def record_digests(conn: sqlite3.Connection, digests: dict[str, str]) -> None:
    """Remember what was written, for the next register to compare with."""
    conn.executemany(
        "INSERT INTO percell_registered (unit, digest) VALUES (?, ?) "
        "ON CONFLICT(unit) DO UPDATE SET digest = excluded.digest, "
        "registered_at = datetime('now')",
        sorted(digests.items()),
    )


def forget_digests(conn: sqlite3.Connection, prefix: str) -> None:
    """Drop the recorded digests of units starting with ``prefix``."""
    conn.execute(
        "DELETE FROM percell_registered WHERE substr(unit, 1, ?) = ?",
        (len(prefix), prefix),
    )


def workflow_cells(
    conn: sqlite3.Connection, region_id: int, names: Names = V3_NAMES
) -> pd.DataFrame:
    """The region's cells made by the workflow (not by the application):
    DataFrame of id and the CELL_GEOMETRY columns, by label value."""
    import pandas as pd

    return pd.read_sql_query(
        f"SELECT id, {', '.join(CELL_GEOMETRY)} FROM cells WHERE "
        f"{names.region_id} = ? AND segmentation_id IN "
        f"({_workflow_segmentations(names)}) ORDER BY label_value",
        conn,
        params=(region_id,),
    )


def workflow_cell_ids(
    conn: sqlite3.Connection, region_id: int, names: Names = V3_NAMES
) -> tuple[np.ndarray, np.ndarray]:
    """(label values, sorted; their cell ids) of the region's workflow cells."""
    where = (
        f"WHERE {names.region_id} = ? AND segmentation_id IN "
        f"({_workflow_segmentations(names)})"
    )
    n, first_id, first_label, in_step = conn.execute(
        f"SELECT count(*), min(id), min(label_value), sum(id - label_value = "
        f"(SELECT min(id) - min(label_value) FROM cells {where})) FROM cells {where}",
        (region_id, region_id),
    ).fetchone()
    if n and in_step == n:
        # cells inserted as one block in label order (as register inserts
        # them): the ids follow from the labels, no row needs reading
        labels = np.array(
            conn.execute(
                f"SELECT max(label_value) FROM cells {where}", (region_id,)
            ).fetchone(),
            np.int64,
        )
        if labels[0] - first_label + 1 == n:
            labels = np.arange(first_label, first_label + n, dtype=np.int64)
            return labels, labels - first_label + first_id
    rows = conn.execute(
        f"SELECT label_value, id FROM cells {where} ORDER BY label_value",
        (region_id,),
    ).fetchall()
    table = np.array(rows, dtype=np.int64).reshape(-1, 2)
    return table[:, 0], table[:, 1]


def delete_cells(conn: sqlite3.Connection, cell_ids: list[int]) -> None:
    """Remove cells and every row that refers to them."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (id INTEGER PRIMARY KEY)")
    conn.execute("DELETE FROM doomed")
    insert_rows(conn, "doomed", ["id"], [list(cell_ids)])
    for table in (
        "measurements",
        "cell_tags",
        "percell_cell_masks",
        "percell_cell_shape",
    ):
        conn.execute(f"DELETE FROM {table} WHERE cell_id IN (SELECT id FROM doomed)")
    conn.execute("DELETE FROM cells WHERE id IN (SELECT id FROM doomed)")
    conn.execute("DELETE FROM doomed")


def cell_tags_of(conn: sqlite3.Connection, cell_ids: list[int]) -> list[tuple]:
    """(cell id, tag id) of every tag on these cells."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS asked (id INTEGER PRIMARY KEY)")
    conn.execute("DELETE FROM asked")
    insert_rows(conn, "asked", ["id"], [list(cell_ids)])
    rows = conn.execute(
        "SELECT cell_id, tag_id FROM cell_tags WHERE cell_id IN (SELECT id FROM asked)"
    ).fetchall()
    conn.execute("DELETE FROM asked")
    return rows


def tag_cells(conn: sqlite3.Connection, pairs: list[tuple[int, int]]) -> None:
    """Add (cell id, tag id) pairs, keeping any that exist."""
    conn.executemany(
        "INSERT OR IGNORE INTO cell_tags (cell_id, tag_id) VALUES (?, ?)", pairs
    )


def keep_orphan_tags(conn: sqlite3.Connection, rows: list[tuple]) -> None:
    """Tags whose cell found no successor: (region id, tag id, old cell id,
    old label value, centroid x, y, bbox x, y, w, h)."""
    conn.executemany(
        "INSERT INTO percell_orphan_tags (region_id, tag_id, old_cell_id, "
        "old_label_value, centroid_x, centroid_y, bbox_x, bbox_y, bbox_w, bbox_h) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def move_cells_to_run(
    conn: sqlite3.Connection,
    region_id: int,
    segmentation_id: int,
    names: Names = V3_NAMES,
) -> None:
    """Attach a region's workflow cells to ``segmentation_id`` (same labels,
    new settings): ids, tags and measurements stay."""
    conn.execute(
        f"UPDATE cells SET segmentation_id = ? WHERE {names.region_id} = ? AND "
        f"segmentation_id IN ({_workflow_segmentations(names)}) "
        "AND segmentation_id != ?",
        (segmentation_id, region_id, segmentation_id),
    )


def update_cell_geometry(
    conn: sqlite3.Connection, ids: list[int], table: pd.DataFrame
) -> None:
    """Rewrite the geometry columns of existing cells in place."""
    columns = [c for c in CELL_GEOMETRY if c != "label_value"]
    values = [_column(table[c]) for c in columns]
    conn.executemany(
        f"UPDATE cells SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = ?",
        zip(*values, ids, strict=True),
    )


@dataclass(frozen=True)
class Scope:
    """Which 4.0.0 measurements rows are meant: the cells' segmentation, and
    for the mask scopes the threshold (``mask_inside`` / ``mask_outside``).
    3.0.0 has one measurement per cell, channel and metric (no scope)."""

    segmentation_id: int
    scope: str = "whole_cell"
    threshold_id: int | None = None

    def columns(self) -> list[str]:
        return ["scope", "segmentation_id", "threshold_id"]

    def values(self) -> list[Any]:
        return [self.scope, self.segmentation_id, self.threshold_id]

    def key(self) -> str:
        """The columns of the partial unique index the row falls under, as
        an upsert's conflict target."""
        if self.threshold_id is None:
            return (
                "(cell_id, channel_id, metric, scope, segmentation_id) "
                "WHERE threshold_id IS NULL"
            )
        return (
            "(cell_id, channel_id, metric, scope, segmentation_id, threshold_id) "
            "WHERE threshold_id IS NOT NULL"
        )

    def where(self) -> str:
        """The rows of this scope, for a DELETE (parameters: ``values()``)."""
        return "scope = ? AND segmentation_id = ? AND threshold_id IS ?"


def upsert_measurements(
    conn: sqlite3.Connection,
    cell_ids: np.ndarray,
    channel_ids: np.ndarray,
    metrics: list[str],
    values: np.ndarray,
    new_cells: bool = False,
    scope: Scope | None = None,
) -> None:
    """Write measurements in place: ``values[i, j, k]`` is cell i, channel j,
    metric k. A row that exists is updated (its id stays); NaN removes the
    row (no value: NULL in any pivot, as the column itself is NOT NULL).
    ``new_cells``: the cells have no measurement yet, so rows are inserted
    without the conflict check. ``scope``: the 4.0.0 scope of every row
    (None: a 3.0.0 database)."""
    n_cells, n_channels, n_metrics = values.shape
    if n_cells > CELLS_PER_BATCH:
        for part in cell_batches(n_cells):
            upsert_measurements(
                conn,
                cell_ids[part],
                channel_ids,
                metrics,
                values[part],
                new_cells,
                scope,
            )
        return
    if n_cells == 0:
        return
    cell_col = np.repeat(cell_ids, n_channels * n_metrics)
    channel_col = np.tile(np.repeat(channel_ids, n_metrics), n_cells)
    metric_col = np.array(metrics * (n_cells * n_channels), dtype=object)
    flat = values.reshape(-1)
    nan = np.isnan(flat)
    scoped = scope.values() if scope else []
    if nan.any() and not new_cells:
        where = f" AND {scope.where()}" if scope else ""
        conn.executemany(
            "DELETE FROM measurements WHERE cell_id = ? AND channel_id = ? AND "
            f"metric = ?{where}",
            (
                (*row, *scoped)
                for row in zip(
                    cell_col[nan].tolist(),
                    channel_col[nan].tolist(),
                    metric_col[nan].tolist(),
                    strict=True,
                )
            ),
        )
    keep = ~nan
    n_rows = int(keep.sum())
    key = scope.key() if scope else "(cell_id, channel_id, metric)"
    with checks_off(conn):  # the scope is one of the format's own
        insert_rows(
            conn,
            "measurements",
            ["cell_id", "channel_id", "metric", "value"]
            + (scope.columns() if scope else []),
            [
                cell_col[keep].tolist(),
                channel_col[keep].tolist(),
                metric_col[keep].tolist(),
                flat[keep].tolist(),
                *([v] * n_rows for v in scoped),
            ],
            conflict=""
            if new_cells
            else f"ON CONFLICT{key} DO UPDATE SET "
            "value = excluded.value WHERE value IS NOT excluded.value",
        )


#: the columns of ``percell_cell_shape`` after cell_id
SHAPE_TABLE_COLUMNS = [
    "area_pixels",
    "area_um2",
    "perimeter",
    "circularity",
    *SHAPE_COLUMNS,
]


def upsert_cell_shapes(
    conn: sqlite3.Connection, cell_ids: np.ndarray, table: pd.DataFrame
) -> None:
    """Shape features of cells (``SHAPE_TABLE_COLUMNS``), written in place."""
    if len(cell_ids) > CELLS_PER_BATCH:
        for part in cell_batches(len(cell_ids)):
            upsert_cell_shapes(conn, cell_ids[part], table.iloc[part])
        return
    updates = ", ".join(f"{c} = excluded.{c}" for c in SHAPE_TABLE_COLUMNS)
    insert_rows(
        conn,
        "percell_cell_shape",
        ["cell_id", *SHAPE_TABLE_COLUMNS],
        [np.asarray(cell_ids).tolist()]
        + [_column(table[c]) for c in SHAPE_TABLE_COLUMNS],
        conflict=f"ON CONFLICT(cell_id) DO UPDATE SET {updates}",
    )


def set_cell_areas(
    conn: sqlite3.Connection, cell_ids: np.ndarray, areas: np.ndarray
) -> None:
    """Set cells' areas in pixels, their area in µm² following (its ratio to
    the pixels is the pixel size, squared; NULL stays NULL)."""
    conn.executemany(
        "UPDATE cells SET area_um2 = CASE WHEN area_pixels > 0 "
        "THEN area_um2 * (? / area_pixels) END, area_pixels = ? WHERE id = ?",
        ((float(a), float(a), int(i)) for i, a in zip(cell_ids, areas, strict=True)),
    )


def upsert_cell_masks(
    conn: sqlite3.Connection,
    cell_ids: np.ndarray,
    run_ids: np.ndarray,
    table: pd.DataFrame,
) -> None:
    """Per-cell statistics of threshold masks, updated in place."""
    if len(cell_ids) > CELLS_PER_BATCH:
        for part in cell_batches(len(cell_ids)):
            upsert_cell_masks(conn, cell_ids[part], run_ids[part], table.iloc[part])
        return
    cols = ["cell_id", "threshold_run_id", *MASK_COLUMNS]
    columns = [cell_ids.tolist(), run_ids.tolist()] + [
        _column(table[c]) for c in MASK_COLUMNS
    ]
    updates = ", ".join(f"{c} = excluded.{c}" for c in MASK_COLUMNS)
    insert_rows(
        conn,
        "percell_cell_masks",
        cols,
        columns,
        conflict=f"ON CONFLICT(cell_id, threshold_run_id) DO UPDATE SET {updates}",
    )


def has_other_threshold_runs(conn: sqlite3.Connection, keep: list[str]) -> bool:
    """Whether any region uses a threshold run whose name is not in ``keep``."""
    row = conn.execute(
        "SELECT 1 FROM percell_region_thresholds WHERE run_name NOT IN "
        "(SELECT value FROM json_each(?)) LIMIT 1",
        (json.dumps(sorted(keep)),),
    ).fetchone()
    return row is not None


def remove_threshold_runs(
    conn: sqlite3.Connection, region_id: int, keep: list[str], names: Names = V3_NAMES
) -> int:
    """Remove a region's workflow rows of threshold runs not in ``keep``."""
    kept = json.dumps(sorted(keep))
    gone = (
        f"SELECT id FROM {names.thresholds} WHERE json_extract(parameters, "
        f"'$.source') = '{WORKFLOW_SOURCE}' AND json_extract(parameters, '$.name') "
        "NOT IN (SELECT value FROM json_each(?))"
    )
    region_cells = f"SELECT id FROM cells WHERE {names.region_id} = ?"
    conn.execute(
        f"DELETE FROM percell_cell_masks WHERE threshold_run_id IN ({gone}) AND "
        f"cell_id IN ({region_cells})",
        (kept, region_id),
    )
    cur = conn.execute(
        "DELETE FROM percell_region_thresholds WHERE region_id = ? AND run_name NOT "
        "IN (SELECT value FROM json_each(?))",
        (region_id, kept),
    )
    return cur.rowcount
