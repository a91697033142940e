"""Schema 3.0.0, the seeds' format (the PerCell 3 application up to February
2026): regions at ``images.zarr/<condition>/[<timepoint>/]<region>``, the
paths the workflow writes anyway for free-form experiments; one segmentation
run and one threshold run per settings, shared by the regions that used them.

The application computes a region's paths from its condition, timepoint and
name and never reads ``regions.zarr_path``; a plate's wells live in the NGFF
plate (``images.zarr/<plate>/<row>/<col>/0``), so each well also gets the
application's paths as hard-linked views (``views``): no pixel is stored
twice, and the NGFF plate stays as Fractal, napari and ngio read it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from percell import db, layout
from percell.contracts import ImportedRegion, SegmentationRun, ThresholdRun
from percell.experiment_format import views
from percell.experiment_format.base import DEFAULT_BIO_REP, ExperimentFormat

#: 3.0.0 has no bio reps: those a sheet or plate map names are kept here
#: (made when the first is named), so an upgrade carries them to 4.0.0
BIO_REPS_SQL = """
CREATE TABLE IF NOT EXISTS percell_bio_reps (
    region_id INTEGER PRIMARY KEY REFERENCES regions(id),
    bio_rep TEXT NOT NULL
)
"""


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        is not None
    )


class V3(ExperimentFormat):
    version = "3.0.0"
    application = "PerCell 3 up to February 2026 (commit c4330ca)"
    names = db.V3_NAMES
    schema_sql = db.SCHEMA_SQL

    def upsert_region(
        self,
        conn: sqlite3.Connection,
        rec: ImportedRegion,
        condition_id: int,
        timepoint_id: int | None,
        bio_rep: str = DEFAULT_BIO_REP,
    ) -> int:
        region_id = db.upsert_region(
            conn,
            rec.region,
            condition_id,
            timepoint_id,
            width=rec.shape[-1],
            height=rec.shape[-2],
            pixel_size_um=rec.pixel_size_um,
            source_file=rec.source_file,
            zarr_path=rec.zarr_path,
        )
        if bio_rep != DEFAULT_BIO_REP:
            conn.execute(BIO_REPS_SQL)
            conn.execute(
                "INSERT INTO percell_bio_reps (region_id, bio_rep) VALUES (?, ?) "
                "ON CONFLICT(region_id) DO UPDATE SET bio_rep = excluded.bio_rep",
                (region_id, bio_rep),
            )
        elif has_table(conn, "percell_bio_reps"):
            conn.execute(
                "DELETE FROM percell_bio_reps WHERE region_id = ?", (region_id,)
            )
        return region_id

    def segmentation(
        self,
        conn: sqlite3.Connection,
        region_id: int,
        channel_id: int,
        run: SegmentationRun,
        rec: ImportedRegion,
    ) -> int:
        return db.upsert_segmentation_run(
            conn, channel_id, run.model_name, run.parameters_json()
        )

    def threshold(
        self,
        conn: sqlite3.Connection,
        region_id: int,
        run: ThresholdRun,
        parameters: dict[str, Any],
        value: float,
        rec: ImportedRegion,
    ) -> int:
        return db.upsert_threshold_run(
            conn, db.channel_id(conn, run.channel), run.method, parameters, value
        )

    # --- the application's paths, for regions stored elsewhere (plates) --------

    def _moved(
        self, conn: sqlite3.Connection, region_ids: list[int]
    ) -> Iterator[tuple[int, str, str]]:
        """(region, key of the workflow's layout, key the application
        computes) of each region stored away from where the application
        looks for it."""
        for region_id in region_ids:
            condition, timepoint, name, zarr_path = conn.execute(
                "SELECT c.name, t.name, r.name, r.zarr_path FROM regions r "
                "JOIN conditions c ON c.id = r.condition_id "
                "LEFT JOIN timepoints t ON t.id = r.timepoint_id WHERE r.id = ?",
                (region_id,),
            ).fetchone()
            key = str(zarr_path).removeprefix(f"{layout.IMAGES}/")
            app_key = layout.region_key(condition, timepoint, name)
            if key != app_key:
                yield region_id, key, app_key

    def check_views(
        self, experiment: Path, conn: sqlite3.Connection, region_ids: list[int]
    ) -> None:
        for _, key, app_key in self._moved(conn, region_ids):
            views.refuse_replacing_edited_labels(
                key,
                layout.label_path(experiment, key),
                layout.label_path(experiment, app_key),
            )

    def label_view_of(
        self, experiment: Path, conn: sqlite3.Connection, key: str
    ) -> Path | None:
        row = conn.execute(
            "SELECT id FROM regions WHERE zarr_path = ?", (f"{layout.IMAGES}/{key}",)
        ).fetchone()
        moved = [app for _, k, app in self._moved(conn, [row[0]])] if row else []
        return layout.label_path(experiment, moved[0]) if moved else None

    def publish_views(
        self, experiment: Path, conn: sqlite3.Connection, region_ids: list[int]
    ) -> None:
        for region_id, key, app_key in self._moved(conn, region_ids):
            for store in layout.STORES:
                views.parent_groups(Path(experiment) / store, app_key)
            views.level0_view(
                layout.image_path(experiment, key),
                layout.image_path(experiment, app_key),
            )
            labels = layout.label_path(experiment, key)
            if (labels / "0").is_dir():
                views.label_view(
                    labels,
                    layout.label_path(experiment, app_key),
                    layout.relative_image_path(layout.LABELS, app_key),
                )
            runs = {
                run
                for (run,) in conn.execute(
                    "SELECT run_name FROM percell_region_thresholds "
                    "WHERE region_id = ?",
                    (region_id,),
                )
            }
            for run in runs:
                views.level0_view(
                    layout.mask_path(experiment, key, run),
                    layout.mask_path(experiment, app_key, run),
                )
            app_masks = layout.mask_path(experiment, app_key, "").parent
            for old in app_masks.glob("threshold_*"):
                if old.name.removeprefix("threshold_") not in runs:
                    views.remove(old)
