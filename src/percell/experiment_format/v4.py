"""Schema 4.0.0, the PerCell 3 application since March 2026 (commit 45b84b7;
``../shared/PERCELL4_FORMAT.md``).

Every region is a FOV; the application reads a flat layout keyed by
database ids (``images.zarr/fov_<id>/0``, ``labels.zarr/seg_<id>/0``,
``masks.zarr/thresh_<id>/mask/0``), 2-D level 0 only. The workflow keeps
writing its NGFF layout (pyramids, plates for Fractal, napari and ngio); the
application's paths are hard-linked views of the same chunk files
(``views``), made after the database commit. Each FOV has one workflow
segmentation (its label image, updated in place when the labels change, so
its id and path stay) and one threshold row per threshold run, linked to
the FOV by ``fov_config`` in the order the application expects.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from pathlib import Path
from typing import Any

from percell import db, layout, ngff
from percell.contracts import ImportedRegion, SegmentationRun, ThresholdRun
from percell.errors import ExperimentError
from percell.experiment_format import views
from percell.experiment_format.base import DEFAULT_BIO_REP, ExperimentFormat
from percell.projection import is_stack
from percell.storage import read_json

log = logging.getLogger(__name__)

#: names of the application's groups at the top of each store (a condition
#: or plate of the workflow's layout must not take one)
VIEW_NAME = re.compile(r"^(fov|seg|thresh)_[0-9]+$")
ALL_SCOPES = '["whole_cell", "mask_inside", "mask_outside"]'
WHOLE_CELL = '["whole_cell"]'

# The application's 18 tables and 27 indexes, as PERCELL4_FORMAT.md lists
# them (checked against the application by tests/workflow/test_percell3_apps.py).
V4_TABLES_SQL = """
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    percell_version TEXT NOT NULL DEFAULT '4.0.0',
    created_at TEXT NOT NULL DEFAULT (datetime('now')),
    updated_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS bio_reps (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS fovs (
    id INTEGER PRIMARY KEY,
    display_name TEXT NOT NULL UNIQUE,
    condition_id INTEGER NOT NULL REFERENCES conditions(id),
    bio_rep_id INTEGER NOT NULL REFERENCES bio_reps(id),
    timepoint_id INTEGER REFERENCES timepoints(id),
    width INTEGER,
    height INTEGER,
    pixel_size_um REAL,
    source_file TEXT
);
CREATE TABLE IF NOT EXISTS segmentations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    seg_type TEXT NOT NULL DEFAULT 'cellular'
        CHECK(seg_type IN ('whole_field', 'cellular')),
    source_fov_id INTEGER REFERENCES fovs(id) ON DELETE SET NULL,
    source_channel TEXT,
    model_name TEXT NOT NULL DEFAULT '',
    parameters TEXT,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    cell_count INTEGER DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS cells (
    id INTEGER PRIMARY KEY,
    fov_id INTEGER NOT NULL REFERENCES fovs(id) ON DELETE CASCADE,
    segmentation_id INTEGER NOT NULL REFERENCES segmentations(id) ON DELETE CASCADE,
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
    UNIQUE(fov_id, segmentation_id, label_value)
);
CREATE TABLE IF NOT EXISTS thresholds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    source_fov_id INTEGER REFERENCES fovs(id) ON DELETE SET NULL,
    source_channel TEXT,
    grouping_channel TEXT,
    method TEXT NOT NULL DEFAULT '',
    parameters TEXT,
    threshold_value REAL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY,
    cell_id INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE,
    channel_id INTEGER NOT NULL REFERENCES channels(id),
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    scope TEXT NOT NULL DEFAULT 'whole_cell'
        CHECK(scope IN ('whole_cell', 'mask_inside', 'mask_outside')),
    segmentation_id INTEGER NOT NULL REFERENCES segmentations(id) ON DELETE CASCADE,
    threshold_id INTEGER REFERENCES thresholds(id) ON DELETE CASCADE,
    measured_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS particles (
    id INTEGER PRIMARY KEY,
    fov_id INTEGER NOT NULL REFERENCES fovs(id) ON DELETE CASCADE,
    threshold_id INTEGER NOT NULL REFERENCES thresholds(id) ON DELETE CASCADE,
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
    eccentricity REAL,
    solidity REAL,
    major_axis_length REAL,
    minor_axis_length REAL,
    mean_intensity REAL,
    max_intensity REAL,
    integrated_intensity REAL,
    UNIQUE(fov_id, threshold_id, label_value)
);
CREATE TABLE IF NOT EXISTS analysis_config (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS fov_config (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    config_id INTEGER NOT NULL REFERENCES analysis_config(id) ON DELETE CASCADE,
    fov_id INTEGER NOT NULL REFERENCES fovs(id) ON DELETE CASCADE,
    segmentation_id INTEGER NOT NULL REFERENCES segmentations(id) ON DELETE CASCADE,
    threshold_id INTEGER REFERENCES thresholds(id) ON DELETE SET NULL,
    scopes TEXT NOT NULL DEFAULT '["whole_cell"]'
);
CREATE TABLE IF NOT EXISTS cell_tags (
    cell_id INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE,
    tag_id INTEGER NOT NULL REFERENCES tags(id),
    PRIMARY KEY (cell_id, tag_id)
);
CREATE TABLE IF NOT EXISTS fov_status_cache (
    fov_id INTEGER PRIMARY KEY REFERENCES fovs(id) ON DELETE CASCADE,
    status_json TEXT NOT NULL DEFAULT '{}',
    updated_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS fov_tags (
    fov_id INTEGER NOT NULL REFERENCES fovs(id) ON DELETE CASCADE,
    tag_id INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
    PRIMARY KEY (fov_id, tag_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_meas_unique_with_thresh ON measurements(
    cell_id, channel_id, metric, scope, segmentation_id, threshold_id)
    WHERE threshold_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS idx_meas_unique_without_thresh ON measurements(
    cell_id, channel_id, metric, scope, segmentation_id)
    WHERE threshold_id IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS idx_fov_config_with_thresh ON fov_config(
    config_id, fov_id, segmentation_id, threshold_id)
    WHERE threshold_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS idx_fov_config_without_thresh ON fov_config(
    config_id, fov_id, segmentation_id)
    WHERE threshold_id IS NULL;
CREATE INDEX IF NOT EXISTS idx_cells_fov ON cells(fov_id);
CREATE INDEX IF NOT EXISTS idx_cells_fov_valid ON cells(fov_id, is_valid);
CREATE INDEX IF NOT EXISTS idx_cells_segmentation ON cells(segmentation_id);
CREATE INDEX IF NOT EXISTS idx_cells_area ON cells(area_pixels);
CREATE INDEX IF NOT EXISTS idx_measurements_cell ON measurements(cell_id);
CREATE INDEX IF NOT EXISTS idx_measurements_channel ON measurements(channel_id);
CREATE INDEX IF NOT EXISTS idx_measurements_metric ON measurements(metric);
CREATE INDEX IF NOT EXISTS idx_measurements_segmentation
    ON measurements(segmentation_id);
CREATE INDEX IF NOT EXISTS idx_measurements_threshold ON measurements(threshold_id);
CREATE INDEX IF NOT EXISTS idx_measurements_cell_scope ON measurements(cell_id, scope);
CREATE INDEX IF NOT EXISTS idx_measurements_cell_channel_scope
    ON measurements(cell_id, channel_id, scope);
CREATE INDEX IF NOT EXISTS idx_segmentations_type ON segmentations(seg_type);
CREATE INDEX IF NOT EXISTS idx_segmentations_source_fov
    ON segmentations(source_fov_id);
CREATE INDEX IF NOT EXISTS idx_thresholds_source_fov ON thresholds(source_fov_id);
CREATE INDEX IF NOT EXISTS idx_fov_config_config ON fov_config(config_id);
CREATE INDEX IF NOT EXISTS idx_fov_config_fov ON fov_config(fov_id);
CREATE INDEX IF NOT EXISTS idx_fov_config_segmentation ON fov_config(segmentation_id);
CREATE INDEX IF NOT EXISTS idx_fovs_condition ON fovs(condition_id);
CREATE INDEX IF NOT EXISTS idx_fovs_bio_rep ON fovs(bio_rep_id);
CREATE INDEX IF NOT EXISTS idx_fov_tags_fov ON fov_tags(fov_id);
CREATE INDEX IF NOT EXISTS idx_fov_tags_tag ON fov_tags(tag_id);
CREATE INDEX IF NOT EXISTS idx_particles_fov ON particles(fov_id);
CREATE INDEX IF NOT EXISTS idx_particles_threshold ON particles(threshold_id);
"""
CORE_SQL = db.SHARED_SQL + V4_TABLES_SQL

#: Which FOV is which region of the workflow (its key and NGFF path; the
#: application's display name may be renamed there).
FOV_SQL = """
CREATE TABLE IF NOT EXISTS percell_fovs (
    fov_id INTEGER PRIMARY KEY REFERENCES fovs(id),
    region TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    zarr_path TEXT NOT NULL
);
"""


def image_view(experiment: Path, fov_id: int) -> Path:
    return Path(experiment) / layout.IMAGES / f"fov_{fov_id}"


def label_view(experiment: Path, segmentation_id: int) -> Path:
    return Path(experiment) / layout.LABELS / f"seg_{segmentation_id}"


def mask_view(experiment: Path, threshold_id: int) -> Path:
    return Path(experiment) / layout.MASKS / f"thresh_{threshold_id}"


def refuse_what_4_cannot_hold(
    key: str, shape: tuple[int, ...] | list[int], z_projection: str | None = None
) -> None:
    """A region 4.0.0 cannot hold: a Z-stack without a projection (the
    application reads 2-D planes only), or one whose condition or plate
    takes the name of an application path. ExperimentError naming the
    region."""
    if len(shape) != 3 and z_projection is None:
        raise ExperimentError(
            f"region {key}: its image is {tuple(shape)} (C, Z, Y, X); the PerCell 3 "
            "application of schema 4.0.0 reads 2-D FOVs only. Set "
            "experiment.z_projection (max or mean) to give it a projection (the "
            "stack stays in the NGFF images, and experiment.db then holds the "
            "projection's measurements), or keep experiment.format 3.0.0 "
            "(nothing was changed)"
        )
    top = key.split("/")[0]
    if VIEW_NAME.match(top):
        raise ExperimentError(
            f"region {key}: {top!r} is the name of a path the PerCell 3 "
            "application (schema 4.0.0) reads (images.zarr/fov_<id>, "
            "labels.zarr/seg_<id>, masks.zarr/thresh_<id>); rename the "
            "condition or plate (nothing was changed)"
        )


def display_name(rec: ImportedRegion, bio_rep: str) -> str:
    """A FOV's name, unique over the experiment: condition, bio rep,
    timepoint (where there is one), region."""
    parts = [rec.condition, bio_rep, *([rec.timepoint] if rec.timepoint else [])]
    return "_".join([*parts, rec.region])


class V4(ExperimentFormat):
    version = "4.0.0"
    application = "PerCell 3 since March 2026 (commit 45b84b7)"
    names = db.V4_NAMES
    schema_sql = CORE_SQL + db.workflow_schema(db.V4_NAMES) + FOV_SQL
    mask_scopes = True
    drops_empty_segmentations = False

    def __init__(self, z_projection: str | None = None) -> None:
        #: mask views of thresholds removed in this transaction
        self.removed: list[int] = []
        #: how a Z-stack's FOV is projected for the application
        self.z_projection = z_projection

    # --- rows ----------------------------------------------------------------

    def upsert_region(
        self,
        conn: sqlite3.Connection,
        rec: ImportedRegion,
        condition_id: int,
        timepoint_id: int | None,
        bio_rep: str = DEFAULT_BIO_REP,
    ) -> int:
        refuse_what_4_cannot_hold(rec.key, rec.shape, self.z_projection)
        conn.execute(
            "INSERT INTO bio_reps (name) VALUES (?) ON CONFLICT(name) DO NOTHING",
            (bio_rep,),
        )
        bio_rep_id = conn.execute(
            "SELECT id FROM bio_reps WHERE name = ?", (bio_rep,)
        ).fetchone()[0]
        values = (
            condition_id,
            timepoint_id,
            rec.shape[-1],
            rec.shape[-2],
            rec.pixel_size_um,
            rec.source_file,
        )
        row = conn.execute(
            "SELECT fov_id FROM percell_fovs WHERE key = ?", (rec.key,)
        ).fetchone()
        if row is not None:
            # the display name stays as created: the application may rename it
            conn.execute(
                "UPDATE fovs SET condition_id = ?, timepoint_id = ?, width = ?, "
                "height = ?, pixel_size_um = ?, source_file = ?, bio_rep_id = ? "
                "WHERE id = ?",
                (*values, bio_rep_id, row[0]),
            )
            conn.execute(
                "UPDATE percell_fovs SET zarr_path = ? WHERE fov_id = ?",
                (rec.zarr_path, row[0]),
            )
            return int(row[0])
        name = display_name(rec, bio_rep)
        if conn.execute(
            "SELECT 1 FROM fovs WHERE display_name = ?", (name,)
        ).fetchone():
            raise ExperimentError(
                f"region {rec.key}: experiment.db already has a FOV named {name!r} "
                "that the workflow did not make (FOV names are unique in schema "
                "4.0.0); rename that FOV in the PerCell 3 application"
            )
        cur = conn.execute(
            "INSERT INTO fovs (display_name, condition_id, bio_rep_id, "
            "timepoint_id, width, height, pixel_size_um, source_file) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (name, condition_id, bio_rep_id, *values[1:]),
        )
        fov_id = int(cur.lastrowid or 0)
        conn.execute(
            "INSERT INTO percell_fovs (fov_id, region, key, zarr_path) "
            "VALUES (?, ?, ?, ?)",
            (fov_id, rec.region, rec.key, rec.zarr_path),
        )
        return fov_id

    def _workflow_segmentation(
        self, conn: sqlite3.Connection, fov_id: int
    ) -> int | None:
        row = conn.execute(
            "SELECT id FROM segmentations WHERE source_fov_id = ? AND "
            "json_extract(parameters, '$.source') = ?",
            (fov_id, db.WORKFLOW_SOURCE),
        ).fetchone()
        return None if row is None else int(row[0])

    def segmentation(
        self,
        conn: sqlite3.Connection,
        region_id: int,
        channel_id: int,
        run: SegmentationRun,
        rec: ImportedRegion,
    ) -> int:
        values = (
            run.channel,
            run.model_name,
            run.parameters_json(),
            rec.shape[-1],
            rec.shape[-2],
        )
        seg_id = self._workflow_segmentation(conn, region_id)
        if seg_id is not None:
            conn.execute(
                "UPDATE segmentations SET source_channel = ?, model_name = ?, "
                "parameters = ?, width = ?, height = ? WHERE id = ?",
                (*values, seg_id),
            )
            return seg_id
        fov_name = _fov_name(conn, region_id)
        cur = conn.execute(
            "INSERT INTO segmentations (name, seg_type, source_fov_id, "
            "source_channel, model_name, parameters, width, height, cell_count) "
            "VALUES (?, 'cellular', ?, ?, ?, ?, ?, ?, 0)",
            (f"percell_{fov_name}", region_id, *values),
        )
        return int(cur.lastrowid or 0)

    def threshold(
        self,
        conn: sqlite3.Connection,
        region_id: int,
        run: ThresholdRun,
        parameters: dict[str, Any],
        value: float,
        rec: ImportedRegion,
    ) -> int:
        params = db.workflow_parameters(parameters)
        values = (run.channel, run.method, params, value, rec.shape[-1], rec.shape[-2])
        row = conn.execute(
            "SELECT t.id FROM percell_region_thresholds p JOIN thresholds t "
            "ON t.id = p.threshold_run_id WHERE p.region_id = ? AND p.run_name = ?",
            (region_id, run.name),
        ).fetchone()
        if row is not None:
            conn.execute(
                "UPDATE thresholds SET source_channel = ?, method = ?, "
                "parameters = ?, threshold_value = ?, width = ?, height = ?, "
                "created_at = datetime('now') WHERE id = ?",
                (*values, row[0]),
            )
            return int(row[0])
        cur = conn.execute(
            "INSERT INTO thresholds (name, source_fov_id, source_channel, method, "
            "parameters, threshold_value, width, height) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (f"percell_{_fov_name(conn, region_id)}_{run.name}", region_id, *values),
        )
        return int(cur.lastrowid or 0)

    def forget_thresholds(self, conn: sqlite3.Connection, ids: list[int]) -> None:
        rows = [(i,) for i in ids]
        conn.executemany("DELETE FROM measurements WHERE threshold_id = ?", rows)
        conn.executemany("DELETE FROM fov_config WHERE threshold_id = ?", rows)
        self.removed.extend(ids)

    def whole_cell_scope(
        self, conn: sqlite3.Connection, region_id: int
    ) -> db.Scope | None:
        seg_id = self._workflow_segmentation(conn, region_id)
        if seg_id is None:
            raise ExperimentError(f"FOV {region_id} has measurements but no cells")
        return db.Scope(seg_id)

    def mask_scopes_of(
        self, conn: sqlite3.Connection, region_id: int, threshold_id: int
    ) -> tuple[db.Scope, db.Scope]:
        """The ``mask_inside`` and ``mask_outside`` scopes of a threshold."""
        whole = self.whole_cell_scope(conn, region_id)
        assert whole is not None
        return (
            db.Scope(whole.segmentation_id, "mask_inside", threshold_id),
            db.Scope(whole.segmentation_id, "mask_outside", threshold_id),
        )

    def configure(
        self, conn: sqlite3.Connection, region_ids: list[int], runs: list[str]
    ) -> None:
        row = conn.execute(
            "SELECT id FROM analysis_config WHERE experiment_id = 1 "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            cur = conn.execute("INSERT INTO analysis_config (experiment_id) VALUES (1)")
            config_id = int(cur.lastrowid or 0)
        else:
            config_id = int(row[0])
        order = {name: i for i, name in enumerate(runs)}
        for fov_id in region_ids:
            seg_id = self._workflow_segmentation(conn, fov_id)
            if seg_id is None:
                continue
            # the FOV's segmentation first (the application takes the first
            # entry as the FOV's), then one entry per threshold
            entries: list[tuple[int | None, str]] = [(None, WHOLE_CELL)]
            thresholds = conn.execute(
                "SELECT run_name, threshold_run_id FROM percell_region_thresholds "
                "WHERE region_id = ?",
                (fov_id,),
            ).fetchall()
            thresholds.sort(key=lambda r: order.get(r[0], len(order)))
            entries += [(int(t), ALL_SCOPES) for _, t in thresholds]
            conn.executemany(
                "INSERT INTO fov_config (config_id, fov_id, segmentation_id, "
                "threshold_id, scopes) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(config_id, fov_id, seg_id, t, s) for t, s in entries],
            )

    # --- the application's paths ----------------------------------------------

    def _label_views(
        self, experiment: Path, conn: sqlite3.Connection, region_ids: list[int]
    ) -> list[tuple[int, str, Path, Path]]:
        """(FOV, region key, NGFF label group, view group) of each FOV's labels."""
        out = []
        for fov_id in region_ids:
            seg_id = self._workflow_segmentation(conn, fov_id)
            if seg_id is not None:
                key = _key(conn, fov_id)
                out.append(
                    (
                        fov_id,
                        key,
                        layout.label_path(experiment, key),
                        label_view(experiment, seg_id),
                    )
                )
        return out

    def check_views(
        self, experiment: Path, conn: sqlite3.Connection, region_ids: list[int]
    ) -> None:
        for _, key, source, view in self._label_views(experiment, conn, region_ids):
            if self._projected(experiment, key):
                views.refuse_replacing_edited_projection(key, source, view)
            else:
                views.refuse_replacing_edited_labels(key, source, view)

    def label_view_of(
        self, experiment: Path, conn: sqlite3.Connection, key: str
    ) -> Path | None:
        row = conn.execute(
            "SELECT fov_id FROM percell_fovs WHERE key = ?", (key,)
        ).fetchone()
        seg_id = None if row is None else self._workflow_segmentation(conn, row[0])
        return None if seg_id is None else label_view(experiment, seg_id)

    def _projected(self, experiment: Path, key: str) -> str | None:
        """The projection a FOV's views are (a Z-stack's), else None (its
        views are hard links)."""
        meta = read_json(layout.image_path(experiment, key) / "0" / ".zarray")
        return self.z_projection if is_stack(meta["shape"]) else None

    def publish_views(
        self, experiment: Path, conn: sqlite3.Connection, region_ids: list[int]
    ) -> None:
        for fov_id in region_ids:
            key = _key(conn, fov_id)
            source = layout.image_path(experiment, key)
            view = image_view(experiment, fov_id)
            how = self._projected(experiment, key)
            if how:
                views.projected_view(source, view, how, channels=True)
            else:
                views.level0_view(source, view)
        for fov_id, key, source, view in self._label_views(
            experiment, conn, region_ids
        ):
            image = f"../../{layout.IMAGES}/fov_{fov_id}"
            if self._projected(experiment, key):
                # labels and masks by their maximum: a cell in any plane
                label = {"version": ngff.NGFF_VERSION, "source": {"image": image}}
                views.projected_view(
                    source, view, "max", False, {"image-label": label}, labels=True
                )
            else:
                views.label_view(source, view, image)
        for fov_id in region_ids:
            key = _key(conn, fov_id)
            projected = self._projected(experiment, key)
            for run, threshold_id in conn.execute(
                "SELECT run_name, threshold_run_id FROM percell_region_thresholds "
                "WHERE region_id = ?",
                (fov_id,),
            ).fetchall():
                view = mask_view(experiment, threshold_id)
                views.write_group(view, {})
                source = layout.mask_path(experiment, key, run)
                if projected:
                    views.projected_view(source, view / "mask", "max", False)
                else:
                    views.level0_view(source, view / "mask")
        for threshold_id in self.removed:
            views.remove(mask_view(experiment, threshold_id))
        self.removed = []


def _one(conn: sqlite3.Connection, query: str, value: object) -> Any:
    """The single value a query of one parameter finds."""
    return conn.execute(query, (value,)).fetchone()[0]


def _fov_name(conn: sqlite3.Connection, fov_id: int) -> str:
    return str(_one(conn, "SELECT display_name FROM fovs WHERE id = ?", fov_id))


def _key(conn: sqlite3.Connection, fov_id: int) -> str:
    return str(_one(conn, "SELECT key FROM percell_fovs WHERE fov_id = ?", fov_id))
