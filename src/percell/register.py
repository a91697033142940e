"""The register step: the single writer of ``experiment.db``, incremental.

An experiment lives for months and people work in it between runs (tags,
edited labels, the PerCell 3 application's own rows), so register writes only
what changed since it last ran and never renumbers a cell whose segmentation
did not change. It remembers what it wrote in ``percell_registered`` (one
digest per unit: a region's labels and cells, a region's measurements, a
region's mask statistics and threshold of each run) and compares:

- labels unchanged: the region's cells keep their ids and every row that
  refers to them; geometry is updated in place where it changed;
- labels changed: the old cells go, the new ones come in, and each tag moves
  to the new cell that overlaps its old cell best (IoU ≥ 0.5, computed by
  the segment step before it replaced the labels); tags that find no cell are
  kept in ``percell_orphan_tags`` with the old cell's position;
- measurements and mask statistics are upserted (ids stay), only for regions
  whose staged values changed.

Regions that are not part of this run keep their rows as they were. Rows the
workflow did not write (the application's tags, analysis runs, segmentation
and threshold runs, measurements of other metrics) are never deleted, unless
the cells they refer to are replaced.

All of this is the same for both PerCell 3 formats; where a region, its
segmentation, its thresholds and their measurements are written, and which
paths the application reads, is the experiment format's
(``percell.experiment_format``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from percell import db, experiment_format, layout, ngff
from percell.cells import METRICS, SHAPE_COLUMNS
from percell.contracts import (
    ImportedRegion,
    Measured,
    MeasureParams,
    RegisterParams,
    Segmented,
    Thresholded,
)
from percell.errors import ExperimentError
from percell.experiment_format import DEFAULT_BIO_REP, ExperimentFormat
from percell.matching import MIN_IOU
from percell.sentinel import contract_of, read_outputs, read_sentinel, write_sentinel
from percell.storage import read_json, write_json_if_changed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepSentinels:
    """The sentinels register reads, by step."""

    imported: Sequence[str]
    segmented: Sequence[str] = ()
    thresholded: Sequence[str] = ()
    measured: Sequence[str] = ()
    #: waited for and recorded only (pyramids, hierarchy)
    other: Sequence[str] = ()

    def all(self) -> list[str]:
        return [
            *self.imported,
            *self.segmented,
            *self.thresholded,
            *self.measured,
            *self.other,
        ]


def register(
    params: RegisterParams, sentinels: StepSentinels, sentinel: str | Path
) -> dict[str, int]:
    """Write what changed in the run's staged outputs into ``experiment.db``.

    Args:
        params: ``Manifest.register_params()``.
        sentinels: The sentinels of the steps before, by step.
        sentinel: This step's sentinel, written after the commit (inside the
            experiment, which it names).

    Returns:
        Counts of what was written.
    """
    experiment = Path(layout.experiment_of_sentinel(sentinel))
    fmt = experiment_format.get(params.format, params.z_projection)
    stored = experiment_format.stored_version(experiment)
    if stored is not None and not experiment_format.same_major(stored, fmt.version):
        raise ExperimentError(
            f"{experiment}: schema {stored}, but this run writes {fmt.version}; "
            "nothing was written"
        )
    records = [
        r for s in sentinels.imported for r in read_outputs(s, list[ImportedRegion])
    ]
    counts = {
        "regions": len(records),
        "cells_kept": 0,
        "cells_replaced": 0,
        "tags_moved": 0,
        "tags_orphaned": 0,
        "measurements": 0,
        "mask_rows": 0,
        "threshold_regions": 0,
    }
    # every id written here comes from this transaction's own inserts and
    # lookups, so the per-row foreign-key checks are skipped (tests run
    # PRAGMA foreign_key_check on the result)
    conn = db.connect(
        experiment / layout.DATABASE,
        foreign_keys=False,
        timeout=params.busy_timeout_s,
        create=False,
    )
    try:
        with db.transaction(conn):
            db.create_schema(conn, fmt.schema_sql)
            run = _Registration(conn, counts, fmt, records)
            region_ids = run.regions(params, records)
            for path in sentinels.segmented:
                run.segmentation(Path(path), region_ids)
            for path in sentinels.thresholded:
                run.thresholds(Path(path), region_ids)
            run.remove_threshold_runs(region_ids, list(params.threshold_runs))
            fmt.forget_thresholds(conn, db.drop_unused_threshold_runs(conn, fmt.names))
            bulk = run.bulk = run.first_load(sentinels.measured)
            dropped = db.drop_indexes(conn, "measurements") if bulk else []
            for path in sentinels.measured:
                run.measurements(Path(path), region_ids)
            db.restore_indexes(conn, dropped)
            db.create_measurement_indexes(conn)
            db.refresh_segmentation_counts(
                conn, fmt.names, drop_empty=fmt.drops_empty_segmentations
            )
            fmt.configure(conn, list(region_ids.values()), list(params.threshold_runs))
            fmt.check_views(experiment, conn, list(region_ids.values()))
            db.record_digests(conn, run.written)
            db.touch_experiment(conn)
        # the display colours, which the import leaves to register (a colour
        # change re-imports nothing); then the paths the application reads
        # follow the committed rows. A kill here leaves the register
        # sentinel unwritten, and the rerun syncs them
        for record in records:
            colour_channels(layout.image_path(experiment, record.key), params)
        fmt.publish_views(experiment, conn, list(region_ids.values()))
    finally:
        conn.close()
    log.info("registered %s in %s", counts, experiment / layout.DATABASE)
    write_sentinel(sentinel, "register", "all", params, sentinels.all(), counts)
    return counts


def colour_channels(image: Path, params: RegisterParams) -> None:
    """Give a region's image the configured channel colours (its attributes
    rewritten only where they change)."""
    path = image / ".zattrs"
    if not path.is_file():  # (no image: nothing to show)
        return
    attrs = read_json(path)
    write_json_if_changed(path, ngff.with_channel_colours(attrs, params.channels))


def _digest(*parts: object) -> str:
    """A digest of JSON-able parts."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _file_digest(path: Path) -> str:
    """A digest of a file's bytes (staged Parquet tables are written the same
    way for the same values, so equal bytes mean nothing changed)."""
    h = hashlib.sha256()  # SHA-NI: twice BLAKE2's speed here
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _row_digests(table: pd.DataFrame, columns: list[str]) -> dict[str, str]:
    """Per region key, a digest of its rows' numeric ``columns`` (in table
    order)."""
    if table.empty:
        return {}
    values = table[columns].to_numpy(np.float64)
    out = {}
    for key, idx in table.groupby("key", sort=False).indices.items():
        data = np.ascontiguousarray(values[idx]).tobytes()
        out[key] = hashlib.sha256(data).hexdigest()
    return out


class _Registration:
    """One register transaction: what is recorded, and what this run wrote."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        counts: dict[str, int],
        fmt: ExperimentFormat,
        records: Sequence[ImportedRegion],
    ) -> None:
        self.conn = conn
        self.counts = counts
        self.fmt = fmt
        self.names = fmt.names
        #: key -> the region as imported
        self.records = {r.key: r for r in records}
        self.state = db.registered_digests(conn)
        self.written: dict[str, str] = {}
        #: regions whose cells were replaced in this transaction
        self.replaced: set[str] = set()
        #: measurements were empty: rows are inserted without conflict checks
        self.bulk = False

    def changed(self, unit: str, digest: str) -> bool:
        """Whether ``unit`` differs from what was last registered; remembers it."""
        self.written[unit] = digest
        return self.state.get(unit) != digest

    # --- regions ------------------------------------------------------------

    def regions(
        self, params: RegisterParams, records: Sequence[ImportedRegion]
    ) -> dict[str, int]:
        """Experiment, channels, conditions, timepoints, regions; key → id."""
        conn = self.conn
        db.upsert_experiment(conn, params.name, params.description, self.fmt.version)
        for order, ch in enumerate(params.channels):
            db.upsert_channel(conn, ch, order)
        conditions = {c: db.upsert_condition(conn, c) for c in params.conditions}
        timepoints = {
            t.name: db.upsert_timepoint(conn, t.name, t.time_seconds, t.order)
            for t in params.timepoints
        }
        region_ids = {}
        for rec in records:
            region_id = self.fmt.upsert_region(
                conn,
                rec,
                conditions[rec.condition],
                timepoints[rec.timepoint] if rec.timepoint else None,
                params.bio_reps.get(rec.key, DEFAULT_BIO_REP),
            )
            fields = [f.to_params() for f in rec.fields] if rec.fields else None
            files: tuple = (list(rec.source_files), fields)
            background = [b.to_params() for b in rec.background or ()]
            if background:  # (digests of regions without one stay as they were)
                files = (*files, background)
            if self.changed(f"import:{rec.key}", _digest(region_id, files)):
                db.replace_region_sources(conn, region_id, list(rec.source_files))
                if fields is not None:
                    db.replace_region_fields(conn, region_id, fields)
                db.replace_region_background(conn, region_id, background)
            region_ids[rec.key] = region_id
        return region_ids

    # --- cells --------------------------------------------------------------

    def segmentation(self, sentinel: Path, region_ids: dict[str, int]) -> None:
        """Bring a group's cells up to date with its staged segmentation."""
        conn = self.conn
        data = read_sentinel(sentinel)
        group = data["group"]
        seg = contract_of(data, "outputs", Segmented, sentinel)
        run = seg.run
        cells_file = sentinel.with_name(seg.cells_table)
        # the staged files and what they describe are unchanged: nothing to do
        if not self.changed(
            f"segment:{group}",
            _digest(
                run.to_params(),
                [r.to_params() for r in seg.regions],
                _file_digest(cells_file),
            ),
        ) and not any(self.state.get(f"labels:{r.key}") is None for r in seg.regions):
            self.counts["cells_kept"] += sum(r.cells for r in seg.regions)
            return
        table = pd.read_parquet(cells_file).sort_values(
            ["key", "label_value"], kind="stable"
        )
        matches = pd.read_parquet(sentinel.with_name(seg.matches_table))
        channel_id = db.channel_id(conn, run.channel)
        db.set_segmentation_channel(conn, channel_id)
        # tables staged before shape features existed have none
        has_shape = set(db.SHAPE_TABLE_COLUMNS) <= set(table.columns)
        described = list(db.CELL_GEOMETRY) + (list(SHAPE_COLUMNS) if has_shape else [])
        cell_digests = _row_digests(table, described)
        by_key = dict(tuple(table.groupby("key", sort=False)))
        for region in seg.regions:
            key = region.key
            region_id = region_ids[key]
            seg_id = self.fmt.segmentation(
                conn, region_id, channel_id, run, self.records[key]
            )
            cells = by_key.get(key, table.iloc[:0])
            labels_unit = f"labels:{key}"
            recorded_labels = self.state.get(labels_unit)
            same_labels = recorded_labels == region.labels_digest
            self.written[labels_unit] = region.labels_digest
            cells_changed = self.changed(f"cells:{key}", cell_digests.get(key, ""))
            if same_labels:
                # same label image: the same cells, whatever else changed
                db.move_cells_to_run(conn, region_id, seg_id, self.names)
                if cells_changed:  # e.g. a new pixel size: new areas in µm²
                    old = db.workflow_cells(conn, region_id, self.names)
                    db.update_cell_geometry(conn, old["id"].tolist(), cells)
                    if has_shape:
                        db.upsert_cell_shapes(conn, old["id"].to_numpy(), cells)
                self.counts["cells_kept"] += len(cells)
                continue
            # matches relate the label image the database describes only if
            # the segment step replaced exactly that one
            usable = (
                recorded_labels is None or region.previous_digest == recorded_labels
            )
            region_matches = matches[matches["key"] == key] if usable else None
            old = db.workflow_cells(conn, region_id, self.names)
            self._replace_cells(region_id, key, seg_id, old, cells, region_matches)

    def _replace_cells(
        self,
        region_id: int,
        key: str,
        seg_id: int,
        old: pd.DataFrame,
        cells: pd.DataFrame,
        matches: pd.DataFrame | None,
    ) -> None:
        conn = self.conn
        tags = db.cell_tags_of(conn, old["id"].tolist()) if len(old) else []
        if len(old):
            db.delete_cells(conn, old["id"].tolist())
        new = cells.copy()
        new[self.names.region_id] = region_id
        new["segmentation_id"] = seg_id
        ids = db.insert_cells(conn, new, self.names)
        if set(db.SHAPE_TABLE_COLUMNS) <= set(new.columns):
            db.upsert_cell_shapes(conn, ids, new)
        self.replaced.add(key)
        self.counts["cells_replaced"] += len(new)
        if not tags:
            return
        new_id = dict(zip(new["label_value"].tolist(), ids.tolist(), strict=True))
        successor = {}
        if matches is not None:
            good = matches[matches["iou"] >= MIN_IOU]
            successor = dict(
                zip(
                    good["old_label"].astype(np.int64).tolist(),
                    good["new_label"].astype(np.int64).tolist(),
                    strict=True,
                )
            )
        old_by_id = old.set_index("id")
        moved, orphans = [], []
        for cell_id, tag_id in tags:
            row = old_by_id.loc[cell_id]
            label = int(row["label_value"])
            target = new_id.get(successor.get(label, -1))
            if target is not None:
                moved.append((target, tag_id))
                continue
            orphans.append(
                (
                    region_id,
                    tag_id,
                    int(cell_id),
                    label,
                    float(row["centroid_x"]),
                    float(row["centroid_y"]),
                    int(row["bbox_x"]),
                    int(row["bbox_y"]),
                    int(row["bbox_w"]),
                    int(row["bbox_h"]),
                )
            )
        db.tag_cells(conn, moved)
        db.keep_orphan_tags(conn, orphans)
        self.counts["tags_moved"] += len(moved)
        self.counts["tags_orphaned"] += len(orphans)
        log.info(
            "region %s: segmentation changed; %d tag(s) moved to the best-"
            "overlapping new cell, %d kept in percell_orphan_tags (no new cell "
            "with IoU >= %.1f)",
            key,
            len(moved),
            len(orphans),
            MIN_IOU,
        )

    # --- thresholds ---------------------------------------------------------

    def thresholds(self, sentinel: Path, region_ids: dict[str, int]) -> None:
        """The threshold row of each region's mask (3.0.0: one per run and
        scope unit, shared; 4.0.0: one per FOV); region → row."""
        conn = self.conn
        staged = read_outputs(sentinel, Thresholded)
        run = staged.run.to_params()
        for region in staged.regions:
            key = region.key
            unit = f"threshold:{staged.run.name}:{key}"
            if not self.changed(unit, _digest(run, region.to_params())):
                continue
            parameters = {
                **run,
                "scope_key": region.scope_key,
                "raw_value": region.raw_value,
            }
            run_id = self.fmt.threshold(
                conn,
                region_ids[key],
                staged.run,
                parameters,
                region.value,
                self.records[key],
            )
            db.set_region_threshold(
                conn, region_ids[key], staged.run.name, run_id, region.pixels_on
            )
            self.counts["threshold_regions"] += 1

    def remove_threshold_runs(
        self, region_ids: dict[str, int], keep: list[str]
    ) -> None:
        """Rows of threshold runs no longer configured, in this run's regions."""
        if not db.has_other_threshold_runs(self.conn, keep):
            return
        for region_id in region_ids.values():
            db.remove_threshold_runs(self.conn, region_id, keep, self.names)
        # one pass over what was recorded: <kind>:<run>:<region key>
        for unit in self.state:
            kind, _, rest = unit.partition(":")
            name, _, key = rest.partition(":")
            if kind in ("threshold", "masks") and key in region_ids:
                if name not in keep:
                    db.forget_digests(self.conn, unit)

    # --- measurements -------------------------------------------------------

    def first_load(self, measure_sentinels: Sequence[str]) -> bool:
        """Whether measurements are empty: a bulk load, indexes built after."""
        if not measure_sentinels:
            return False
        return (
            self.conn.execute("SELECT 1 FROM measurements LIMIT 1").fetchone() is None
        )

    def measurements(self, sentinel: Path, region_ids: dict[str, int]) -> None:
        """Upsert the measurements and mask statistics of regions that changed."""
        conn = self.conn
        data = read_sentinel(sentinel)  # read once: group, params and outputs
        group = data["group"]
        params = contract_of(data, "params", MeasureParams, sentinel)
        staged = contract_of(data, "outputs", Measured, sentinel)
        channels = list(params.channels)
        wide_file = sentinel.with_name(staged.measurements)
        masks_file = sentinel.with_name(staged.masks)
        keys = [r.key for r in staged.regions]
        forced = any(k in self.replaced for k in keys)
        # each staged file is looked into only if its bytes changed (a new
        # threshold leaves the measurements file as it was)
        wide_changed = self.changed(
            f"measure-values:{group}",
            _digest(params.to_params(), keys, _file_digest(wide_file)),
        )
        masks_changed = self.changed(
            f"measure-masks:{group}",
            _digest(params.to_params(), keys, _file_digest(masks_file)),
        )
        if not (wide_changed or masks_changed or forced):
            return
        metrics = params.metrics(METRICS)
        columns = [f"{ch}|{m}" for ch in channels for m in metrics]
        wide, wide_digests, wide_rows = None, {}, {}
        if wide_changed or forced:
            wide = pd.read_parquet(wide_file)
            wide_digests = _row_digests(wide, ["label_value", *columns])
            wide_rows = wide.groupby("key", sort=False).indices
        mask_digests, mask_rows = {}, {}
        masks = pd.DataFrame()
        if masks_changed or forced:
            masks = pd.read_parquet(masks_file)
        if not masks.empty:  # (no threshold runs: an empty table)
            # the mask statistics, and in 4.0.0 the metrics inside and outside
            numeric = [c for c in masks.columns if c not in ("key", "run")]
            for name, part in masks.groupby("run", sort=False):
                for key, d in _row_digests(part, numeric).items():
                    mask_digests[(name, key)] = d
            mask_rows = masks.groupby(["key", "run"], sort=False).indices
        channel_ids = np.array([db.channel_id(conn, ch) for ch in channels], np.int64)
        run_ids = self._threshold_run_ids()
        for region in staged.regions:
            key = region.key
            region_id = region_ids[key]
            forced = key in self.replaced
            todo_wide = wide is not None and (
                self.changed(f"measurements:{key}", wide_digests.get(key, "")) or forced
            )
            todo_masks = [
                name
                for (name, k), d in mask_digests.items()
                if k == key and (self.changed(f"masks:{name}:{key}", d) or forced)
            ]
            if not (todo_wide or todo_masks):
                continue
            cell_ids = db.workflow_cell_ids(self.conn, region_id, self.names)
            if todo_wide and wide is not None:
                # (a region without cells has no rows)
                part = wide.iloc[wide_rows.get(key, np.zeros(0, np.int64))]
                ids = _cell_ids(part, cell_ids, sentinel, key)
                order = np.argsort(ids, kind="stable")
                values = (
                    part[columns]
                    .to_numpy(np.float64)[order]
                    .reshape(len(part), len(channels), len(metrics))
                )
                db.upsert_measurements(
                    conn,
                    ids[order],
                    channel_ids,
                    metrics,
                    values,
                    new_cells=self.bulk or key in self.replaced,
                    scope=self.fmt.whole_cell_scope(conn, region_id),
                )
                self.counts["measurements"] += int(values.size)
                area = f"{channels[0]}|area"
                if region.projected and area in part.columns:
                    # the application sees the projected labels: a cell's
                    # area is its pixels there, not its voxels in the stack
                    db.set_cell_areas(conn, ids, part[area].to_numpy(np.float64))
            for name in todo_masks:
                part = masks.iloc[mask_rows[(key, name)]]
                run_id = run_ids.get((name, region_id))
                if run_id is None:
                    raise ExperimentError(
                        f"{sentinel}: region {key} has mask statistics of "
                        f"threshold run {name!r} but no registered threshold"
                    )
                ids = _cell_ids(part, cell_ids, sentinel, key)
                db.upsert_cell_masks(
                    conn, ids, np.full(len(ids), run_id, np.int64), part
                )
                self.counts["mask_rows"] += len(ids)
                self._scoped(
                    part,
                    ids,
                    region_id,
                    run_id,
                    channels,
                    channel_ids,
                    new_cells=self.bulk or key in self.replaced,
                )

    def _scoped(
        self,
        part: pd.DataFrame,
        ids: np.ndarray,
        region_id: int,
        threshold_id: int,
        channels: list[str],
        channel_ids: np.ndarray,
        new_cells: bool,
    ) -> None:
        """A threshold's metrics inside and outside its mask, as measurements
        of the format's mask scopes (4.0.0: ``mask_inside`` and
        ``mask_outside``; 3.0.0 has none)."""
        order = np.argsort(ids, kind="stable")
        for scope in self.fmt.mask_scopes_of(self.conn, region_id, threshold_id):
            columns = [f"{ch}|{scope.scope}|{m}" for ch in channels for m in METRICS]
            values = (
                part[columns]
                .to_numpy(np.float64)[order]
                .reshape(len(part), len(channels), len(METRICS))
            )
            db.upsert_measurements(
                self.conn,
                ids[order],
                channel_ids,
                list(METRICS),
                values,
                new_cells=new_cells,
                scope=scope,
            )
            self.counts["measurements"] += int(values.size)

    def _threshold_run_ids(self) -> dict[tuple[str, int], int]:
        """(run name, region id) → threshold_runs id, as registered."""
        rows = self.conn.execute(
            "SELECT run_name, region_id, threshold_run_id "
            "FROM percell_region_thresholds"
        )
        return {(name, region): run for name, region, run in rows}


def _cell_ids(
    table: pd.DataFrame,
    cell_ids: tuple[np.ndarray, np.ndarray],
    sentinel: Path,
    key: str,
) -> np.ndarray:
    """The cell id of each staged row, by its label value."""
    labels, ids = cell_ids
    wanted = table["label_value"].to_numpy(np.int64)
    at = np.searchsorted(labels, wanted)
    found = at < labels.size
    found[found] = labels[at[found]] == wanted[found]
    if not found.all():
        raise ExperimentError(
            f"{sentinel}: region {key}: measured cell {int(wanted[~found][0])} is "
            "not in experiment.db (its labels changed after the segment step)"
        )
    return ids[at]
