"""``percell upgrade``: a 3.0.0 experiment carried to 4.0.0 in place.

The PerCell 3 application refuses any other major version and migrates
nothing; this does it, keeping every id a user's work refers to:

- regions become FOVs with the same ids (bio rep ``N1`` unless percell_bio_reps
  names one; display name
  ``<condition>_N1_[<timepoint>_]<region>``); cells, measurements, tags,
  analysis runs, channels, conditions and timepoints keep their ids;
- each segmentation run becomes one segmentation per FOV that has its cells,
  each of the workflow's threshold runs one threshold per FOV that used it
  (the application's own threshold runs, which name no region, are kept as
  thresholds without a FOV);
- whole-cell measurements get their scope and segmentation; the workflow's
  tables (shapes, fields, sources, mask statistics, orphan tags, what
  register consumed) come along, referring to the same ids, so the next
  workflow run with ``experiment.format: "4.0.0"`` continues incrementally
  (it re-measures, to add the ``mask_inside`` / ``mask_outside`` rows 4.0.0
  has and 3.0.0 had not; it neither imports nor segments again);
- the application's paths (``images.zarr/fov_<id>``, ``labels.zarr/seg_<id>``,
  ``masks.zarr/thresh_<id>/mask``) are hard-linked views of the arrays.

Atomic: the new database is built beside the old one (a copy, migrated in
one transaction), the views are made, and only then does the new database
replace the old one (one rename). A failure before that removes what it
made; a kill leaves the 3.0.0 database and every 3.0.0 path as they were
(views already made are new paths the 3.0.0 application never reads), and
running the command again finishes the job. Upgrading a 4.0.0 experiment
only brings its views up to date.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from pathlib import Path

from percell import db, layout
from percell.errors import ExperimentError
from percell.experiment_format import same_major, v4, views
from percell.experiment_format.base import DEFAULT_BIO_REP
from percell.experiment_format.v3 import BIO_REPS_SQL, V3
from percell.experiment_format.v4 import V4
from percell.storage import fsync_directory, fsync_file

log = logging.getLogger(__name__)

#: tables copied column for column (their references change)
SAME_COLUMNS = (
    "channels",
    "conditions",
    "timepoints",
    "analysis_runs",
    "tags",
    "cell_tags",
    "percell_region_sources",
    "percell_registered",
    "percell_orphan_tags",
    "percell_cell_shape",
    "percell_background",
    "percell_fields",
)
#: every 3.0.0 table (renamed aside, carried over, dropped): those whose
#: shape changes, then the ones copied as they are
V3_TABLES = (
    "experiments",
    "regions",
    "segmentation_runs",
    "cells",
    "measurements",
    "threshold_runs",
    "percell_region_thresholds",
    "percell_cell_masks",
    "percell_bio_reps",
    *SAME_COLUMNS,
)


def upgrade(experiment: str | Path, busy_timeout_s: float = db.BUSY_TIMEOUT_S) -> dict:
    """Carry a 3.0.0 experiment to 4.0.0 in place (or finish a 4.0.0 one's
    views); returns counts of what was carried."""
    experiment = Path(experiment)
    path = experiment / layout.DATABASE
    if not path.is_file():
        raise ExperimentError(f"{experiment}: no experiment.db (not an experiment)")
    fmt = V4()
    conn = db.connect(path, foreign_keys=False, timeout=busy_timeout_s, create=False)
    try:
        version = _version(conn)
        if same_major(version, fmt.version):
            fovs = _fov_ids(conn)
            fmt.publish_views(experiment, conn, fovs)
            _publish_other_labels(experiment, conn)
            log.info("%s is schema %s already: its views are up to date", path, version)
            return {"fovs": len(fovs), "upgraded": 0}
        if not same_major(version, V3.version):
            raise ExperimentError(
                f"{path}: schema {version}; percell upgrades 3.0.0 experiments only"
            )
        built = path.with_name(f".{path.name}.upgrade.partial")
        built.unlink(missing_ok=True)
        # no other program writes while the copy is taken and migrated
        conn.execute("BEGIN IMMEDIATE")
        try:
            _refuse_what_cannot_be_carried(experiment, conn)
            target = sqlite3.connect(built, isolation_level=None)
            reader = sqlite3.connect(path)  # (the writer's own would be LOCKED)
            try:
                reader.backup(target)
                reader.close()
                counts = _migrate(target, fmt)
                fovs = _fov_ids(target)
                try:
                    fmt.publish_views(experiment, target, fovs)
                    _publish_other_labels(experiment, target)
                except BaseException:
                    _remove_views(experiment, target)
                    raise
            finally:
                reader.close()
                target.close()
            fsync_file(built)
            os.replace(built, path)  # the one moment the experiment changes
            fsync_directory(path.parent)
        except BaseException:
            built.unlink(missing_ok=True)
            raise
        finally:
            conn.execute("ROLLBACK")  # (the old file: nothing was written to it)
    finally:
        conn.close()
    log.info("upgraded %s to schema 4.0.0: %s", experiment, counts)
    return counts


def _version(conn: sqlite3.Connection) -> str:
    row = conn.execute(
        "SELECT percell_version FROM experiments ORDER BY id LIMIT 1"
    ).fetchone()
    if row is None:
        raise ExperimentError("experiment.db has no experiments row")
    return str(row[0])


def _fov_ids(conn: sqlite3.Connection) -> list[int]:
    return [int(i) for (i,) in conn.execute("SELECT fov_id FROM percell_fovs")]


def _key_of(
    zarr_path: str | None, condition: str, timepoint: str | None, name: str
) -> str:
    """The region's path inside each store (the 3.0.0 application's own
    regions have the path it computes: condition / timepoint / region)."""
    prefix = f"{layout.IMAGES}/"
    if zarr_path and zarr_path.startswith(prefix):
        return zarr_path[len(prefix) :]
    return layout.region_key(condition, timepoint, name)


def _refuse_what_cannot_be_carried(experiment: Path, conn: sqlite3.Connection) -> None:
    """A region 4.0.0 cannot hold (a Z-stack, a condition named like the
    application's paths) stops the upgrade before anything is written."""
    rows = conn.execute(
        "SELECT r.name, r.zarr_path, c.name, t.name FROM regions r JOIN conditions c "
        "ON c.id = r.condition_id LEFT JOIN timepoints t ON t.id = r.timepoint_id"
    ).fetchall()
    for name, zarr_path, condition, timepoint in rows:
        key = _key_of(zarr_path, condition, timepoint, name)
        meta = layout.image_path(experiment, key) / "0" / ".zarray"
        if not meta.is_file():
            raise ExperimentError(
                f"region {key}: no image at {meta.parent}; percell upgrade needs "
                "every region's level 0 (nothing was changed)"
            )
        shape = json.loads(meta.read_text())["shape"]
        if len(shape) == 4:
            raise ExperimentError(
                f"region {key}: its image is a Z-stack {tuple(shape)}; the 4.0.0 "
                "application reads a projection of it, and the measurements of a "
                "projection are not those of the 3.0.0 experiment, so percell "
                "upgrade cannot carry it. Run the workflow with experiment.format "
                "4.0.0 and experiment.z_projection into a new experiment path "
                "(nothing was changed)"
            )
        v4.refuse_what_4_cannot_hold(key, shape)


def _migrate(conn: sqlite3.Connection, fmt: V4) -> dict:
    """The copy's tables, 3.0.0 → 4.0.0, in one transaction."""
    conn.execute("PRAGMA legacy_alter_table = ON")  # renames leave references be
    with db.transaction(conn):
        # (an experiment of an older percell may lack some workflow tables)
        db.create_schema(conn, db.SCHEMA_SQL + BIO_REPS_SQL)
        for table in V3_TABLES:
            conn.execute(f"ALTER TABLE {table} RENAME TO v3_{table}")
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            "AND tbl_name LIKE 'v3_%'"
        ).fetchall():
            conn.execute(f"DROP INDEX {name}")
        db.create_schema(conn, fmt.schema_sql)
        for table in SAME_COLUMNS:
            _copy(conn, table)
        conn.execute(
            "INSERT INTO experiments (id, name, description, percell_version, "
            "created_at, updated_at) SELECT 1, name, description, ?, created_at, "
            "datetime('now') FROM v3_experiments ORDER BY id LIMIT 1",
            (fmt.version,),
        )
        conn.execute(
            "INSERT INTO bio_reps (id, name) VALUES (1, ?)", (DEFAULT_BIO_REP,)
        )
        conn.execute(
            "INSERT INTO bio_reps (name) SELECT DISTINCT bio_rep FROM "
            "v3_percell_bio_reps WHERE bio_rep != ? ORDER BY bio_rep",
            (DEFAULT_BIO_REP,),
        )
        _fovs(conn)
        _segmentations(conn)
        _thresholds(conn)
        # (its nine indexes built once from the loaded rows, not row by row)
        indexes = db.drop_indexes(conn, "measurements")
        conn.execute(
            "INSERT INTO measurements (id, cell_id, channel_id, metric, value, scope, "
            "segmentation_id) SELECT m.id, m.cell_id, m.channel_id, m.metric, m.value, "
            "'whole_cell', c.segmentation_id FROM v3_measurements m "
            "JOIN cells c ON c.id = m.cell_id"
        )
        db.restore_indexes(conn, indexes)
        runs = sorted(
            {
                n
                for (n,) in conn.execute(
                    "SELECT run_name FROM percell_region_thresholds"
                )
            }
        )
        fmt.configure(conn, _fov_ids(conn), runs)
        # a FOV the application segmented (no workflow segmentation): its first
        conn.execute(
            "INSERT INTO fov_config (config_id, fov_id, segmentation_id) SELECT "
            "(SELECT max(id) FROM analysis_config), source_fov_id, min(id) FROM "
            "segmentations WHERE source_fov_id NOT IN (SELECT fov_id FROM fov_config) "
            "GROUP BY source_fov_id"
        )
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in (
                "fovs",
                "cells",
                "measurements",
                "cell_tags",
                "segmentations",
                "thresholds",
            )
        }
        for table in ("cells", "measurements", "cell_tags"):
            lost = conn.execute(
                f"SELECT (SELECT count(*) FROM v3_{table}) - count(*) FROM {table}"
            ).fetchone()[0]
            if lost:
                raise ExperimentError(
                    f"{lost} row(s) of {table} refer to a region, segmentation "
                    "run or cell that experiment.db does not hold; percell upgrade "
                    "carries only what it can place (nothing was changed)"
                )
        for table in V3_TABLES:
            conn.execute(f"DROP TABLE v3_{table}")
    conn.execute("VACUUM")
    return counts


def _copy(conn: sqlite3.Connection, table: str) -> None:
    columns = [r[1] for r in conn.execute(f"PRAGMA table_info(v3_{table})")]
    if not columns:
        return
    names = ", ".join(columns)
    conn.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM v3_{table}")


def _fovs(conn: sqlite3.Connection) -> None:
    """Each region a FOV with its id; its key and path in percell_fovs."""
    taken: set[str] = set()
    rows = conn.execute(
        "SELECT r.id, r.name, r.condition_id, r.timepoint_id, r.width, r.height, "
        "r.pixel_size_um, r.source_file, r.zarr_path, c.name, t.name, "
        "coalesce(b.bio_rep, ?) FROM v3_regions r "
        "JOIN conditions c ON c.id = r.condition_id LEFT JOIN timepoints t "
        "ON t.id = r.timepoint_id LEFT JOIN v3_percell_bio_reps b "
        "ON b.region_id = r.id "
        "ORDER BY r.id",
        (DEFAULT_BIO_REP,),
    ).fetchall()
    rep_ids = dict(conn.execute("SELECT name, id FROM bio_reps"))
    for rid, name, cond_id, tp_id, w, h, ps, source, zarr_path, cond, tp, rep in rows:
        display = "_".join([cond, rep, *([tp] if tp else []), name])
        if display in taken:
            display = f"{display}_{rid}"
        taken.add(display)
        conn.execute(
            "INSERT INTO fovs (id, display_name, condition_id, bio_rep_id, "
            "timepoint_id, width, height, pixel_size_um, source_file) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rid, display, cond_id, rep_ids[rep], tp_id, w, h, ps, source),
        )
        key = _key_of(zarr_path, cond, tp, name)
        conn.execute(
            "INSERT INTO percell_fovs (fov_id, region, key, zarr_path) "
            "VALUES (?, ?, ?, ?)",
            (rid, name, key, f"{layout.IMAGES}/{key}"),
        )


def _segmentations(conn: sqlite3.Connection) -> None:
    """One segmentation per (FOV, run) that has cells; the cells follow."""
    pairs = conn.execute(
        "SELECT DISTINCT c.region_id, c.segmentation_id, s.model_name, s.parameters, "
        "ch.name, f.width, f.height, f.display_name FROM v3_cells c "
        "JOIN v3_segmentation_runs s ON s.id = c.segmentation_id "
        "LEFT JOIN channels ch ON ch.id = s.channel_id "
        "JOIN fovs f ON f.id = c.region_id "
        "ORDER BY c.region_id, c.segmentation_id"
    ).fetchall()
    new_id = {}
    for fov, run, model, params, channel, w, h, display in pairs:
        suffix = "" if params and db.WORKFLOW_SOURCE in params else f"_run{run}"
        cur = conn.execute(
            "INSERT INTO segmentations (name, seg_type, source_fov_id, source_channel, "
            "model_name, parameters, width, height) VALUES (?, 'cellular', ?, ?, ?, "
            "?, ?, ?)",
            (f"percell_{display}{suffix}", fov, channel, model, params, w or 0, h or 0),
        )
        new_id[(fov, run)] = int(cur.lastrowid or 0)
    conn.execute("CREATE TEMP TABLE seg_map (fov INTEGER, run INTEGER, seg INTEGER)")
    conn.executemany(
        "INSERT INTO seg_map VALUES (?, ?, ?)", [(*k, v) for k, v in new_id.items()]
    )
    conn.execute(
        "INSERT INTO cells (id, fov_id, segmentation_id, label_value, centroid_x, "
        "centroid_y, bbox_x, bbox_y, bbox_w, bbox_h, area_pixels, area_um2, perimeter, "
        "circularity, is_valid) SELECT c.id, c.region_id, m.seg, c.label_value, "
        "c.centroid_x, c.centroid_y, c.bbox_x, c.bbox_y, c.bbox_w, c.bbox_h, "
        "c.area_pixels, c.area_um2, c.perimeter, c.circularity, c.is_valid "
        "FROM v3_cells c JOIN seg_map m ON m.fov = c.region_id AND "
        "m.run = c.segmentation_id"
    )
    db.refresh_segmentation_counts(conn, db.V4_NAMES, drop_empty=False)
    conn.execute("DROP TABLE seg_map")


def _thresholds(conn: sqlite3.Connection) -> None:
    """The workflow's threshold runs: one threshold per FOV that used it; the
    application's own: kept, without a FOV."""
    used = conn.execute(
        "SELECT p.region_id, p.threshold_run_id, p.run_name, p.pixels_on, ch.name, "
        "r.method, r.parameters, r.threshold_value, r.created_at, f.width, f.height, "
        "f.display_name FROM v3_percell_region_thresholds p JOIN v3_threshold_runs r "
        "ON r.id = p.threshold_run_id LEFT JOIN channels ch ON ch.id = r.channel_id "
        "JOIN fovs f ON f.id = p.region_id ORDER BY p.region_id, p.run_name"
    ).fetchall()
    mapping = []
    for (
        fov,
        run_id,
        run,
        pixels_on,
        channel,
        method,
        params,
        value,
        made,
        w,
        h,
        disp,
    ) in used:
        cur = conn.execute(
            "INSERT INTO thresholds (name, source_fov_id, source_channel, method, "
            "parameters, threshold_value, width, height, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (f"percell_{disp}_{run}", fov, channel, method, params, value, w, h, made),
        )
        new = int(cur.lastrowid or 0)
        mapping.append((fov, run_id, new))
        conn.execute(
            "INSERT INTO percell_region_thresholds (region_id, threshold_run_id, "
            "run_name, pixels_on) VALUES (?, ?, ?, ?)",
            (fov, new, run, pixels_on),
        )
    conn.execute("CREATE TEMP TABLE thr_map (fov INTEGER, run INTEGER, thr INTEGER)")
    conn.executemany("INSERT INTO thr_map VALUES (?, ?, ?)", mapping)
    conn.execute(
        "INSERT INTO percell_cell_masks (cell_id, threshold_run_id, pixels_inside, "
        "fraction_inside, mean_inside, mean_outside, positive) SELECT m.cell_id, "
        "t.thr, m.pixels_inside, m.fraction_inside, m.mean_inside, m.mean_outside, "
        "m.positive FROM v3_percell_cell_masks m JOIN cells c ON c.id = m.cell_id "
        "JOIN thr_map t ON t.fov = c.fov_id AND t.run = m.threshold_run_id"
    )
    conn.execute(
        "INSERT INTO thresholds (name, source_channel, method, parameters, "
        "threshold_value, width, height, created_at) SELECT 'threshold_run_' || r.id, "
        "ch.name, r.method, r.parameters, r.threshold_value, 0, 0, r.created_at "
        "FROM v3_threshold_runs r LEFT JOIN channels ch ON ch.id = r.channel_id "
        "WHERE r.id NOT IN (SELECT threshold_run_id FROM v3_percell_region_thresholds)"
    )
    conn.execute("DROP TABLE thr_map")


def _publish_other_labels(experiment: Path, conn: sqlite3.Connection) -> None:
    """Label views of the segmentations the workflow did not make (the 3.0.0
    application's own, whose labels sit at the region's label path)."""
    rows = conn.execute(
        "SELECT s.id, p.key FROM segmentations s JOIN percell_fovs p "
        "ON p.fov_id = s.source_fov_id WHERE coalesce(json_extract(s.parameters, "
        "'$.source'), '') != ?",
        (db.WORKFLOW_SOURCE,),
    ).fetchall()
    for seg_id, key in rows:
        source = layout.label_path(experiment, key) / "0"
        if source.is_dir():
            views.sync(source, v4.label_view(experiment, seg_id) / "0")


def _remove_views(experiment: Path, conn: sqlite3.Connection) -> None:
    """The views a failed upgrade made (new paths only)."""
    for (fov,) in conn.execute("SELECT id FROM fovs").fetchall():
        views.remove(v4.image_view(experiment, fov))
    for (seg,) in conn.execute("SELECT id FROM segmentations").fetchall():
        views.remove(v4.label_view(experiment, seg))
    for (thr,) in conn.execute("SELECT id FROM thresholds").fetchall():
        views.remove(v4.mask_view(experiment, thr))
