"""Schema 3.0.0, the seeds' format (the PerCell 3 application up to February
2026): regions at ``images.zarr/<condition>/[<timepoint>/]<region>``, the
paths the workflow writes anyway; one segmentation run and one threshold
run per settings, shared by the regions that used them."""

from __future__ import annotations

import sqlite3
from typing import Any

from percell import db
from percell.contracts import ImportedRegion, SegmentationRun, ThresholdRun
from percell.experiment_format.base import ExperimentFormat


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
    ) -> int:
        return db.upsert_region(
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
