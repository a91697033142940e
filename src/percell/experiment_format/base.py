"""What the register step asks of an experiment format.

The register step's incremental, living logic (digests, stable cell ids,
tags that follow their cells, what the workflow may delete) is written once,
in ``percell.register``, in terms of regions, segmentations and thresholds.
Each PerCell 3 format says where those live: its tables (``names``), how a
region, a segmentation and a threshold get their rows, which rows a
measurement carries, and which extra paths the application reads.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from percell import db
from percell.contracts import ImportedRegion, SegmentationRun, ThresholdRun

#: the bio rep of a region the sample sheet or plate map names none for (the
#: application's own default)
DEFAULT_BIO_REP = "N1"


class ExperimentFormat:
    """One PerCell 3 experiment format (a schema version and its layout)."""

    #: ``experiments.percell_version``
    version: str
    #: the application that reads it
    application: str
    names: db.Names
    schema_sql: str
    #: whether a segmentation that lost all its cells is removed (3.0.0:
    #: runs shared by regions; 4.0.0: a FOV's label image, which stays)
    drops_empty_segmentations: bool = True
    #: whether measure also stages each threshold run's ``mask_inside`` /
    #: ``mask_outside`` metrics for every channel
    mask_scopes: bool = False

    def upsert_region(
        self,
        conn: sqlite3.Connection,
        rec: ImportedRegion,
        condition_id: int,
        timepoint_id: int | None,
        bio_rep: str = DEFAULT_BIO_REP,
    ) -> int:
        """The region's row (and its biological replicate), created or
        brought up to date; its id."""
        raise NotImplementedError

    def segmentation(
        self,
        conn: sqlite3.Connection,
        region_id: int,
        channel_id: int,
        run: SegmentationRun,
        rec: ImportedRegion,
    ) -> int:
        """The id of the workflow's segmentation that the region's cells
        belong to, created or brought up to date."""
        raise NotImplementedError

    def threshold(
        self,
        conn: sqlite3.Connection,
        region_id: int,
        run: ThresholdRun,
        parameters: dict[str, Any],
        value: float,
        rec: ImportedRegion,
    ) -> int:
        """The id of the workflow's threshold row a region's mask of ``run``
        is described by, created or updated in place."""
        raise NotImplementedError

    def forget_thresholds(self, conn: sqlite3.Connection, ids: list[int]) -> None:
        """Rows that referred to threshold rows the workflow just removed."""

    def whole_cell_scope(
        self, conn: sqlite3.Connection, region_id: int
    ) -> db.Scope | None:
        """The scope whole-cell measurements of the region are written with."""
        return None

    def mask_scopes_of(
        self, conn: sqlite3.Connection, region_id: int, threshold_id: int
    ) -> tuple[db.Scope, ...]:
        """The scopes a threshold's per-channel metrics inside and outside
        its mask are written with (none: the format has no such rows)."""
        return ()

    def configure(
        self, conn: sqlite3.Connection, region_ids: list[int], runs: list[str]
    ) -> None:
        """Rows that tell the application which segmentation and thresholds
        each region uses (after its segmentation and thresholds are in)."""

    def check_views(
        self, experiment: Path, conn: sqlite3.Connection, region_ids: list[int]
    ) -> None:
        """Before the commit: refuse anything the views cannot carry."""

    def label_view_of(
        self, experiment: Path, conn: sqlite3.Connection, key: str
    ) -> Path | None:
        """The label group the application reads (and edits) for region
        ``key`` where it is a view, not the workflow's own group."""
        return None

    def publish_views(
        self, experiment: Path, conn: sqlite3.Connection, region_ids: list[int]
    ) -> None:
        """After the commit: the paths the application reads, made to match
        what the database now says."""
