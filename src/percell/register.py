"""The register step: the single writer of ``experiment.db``.

It reads what each region group's steps staged (sentinels and the Parquet
tables beside them) and writes it in one transaction. Regions of this run get
their rows rebuilt — cells, measurements and mask statistics together, so a
changed setting leaves no orphan and no duplicate; regions that are not part
of this run keep their rows as they were.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from percell import db, layout
from percell.measure import METRICS
from percell.segmentation import parameters_json
from percell.sentinel import read_sentinel, write_sentinel

log = logging.getLogger(__name__)


def register(
    experiment: str | Path,
    params: dict,
    sentinels: dict[str, list[str]],
    sentinel: str | Path,
) -> dict:
    """Write everything the run's groups staged into ``experiment.db``.

    Args:
        experiment: The ``.percell`` directory.
        params: ``Manifest.register_params()``.
        sentinels: Step → that step's sentinels: "import" (required),
            "segment", "threshold", "measure", and "other" (waited for and
            recorded only).
        sentinel: This step's sentinel, written after the commit.

    Returns:
        Counts of what was written.
    """
    experiment = Path(experiment)
    records = [r for s in sentinels["import"] for r in read_sentinel(s)["outputs"]]
    counts = {
        "regions": len(records),
        "cells": 0,
        "measurements": 0,
        "threshold_regions": 0,
    }
    # every id written here comes from this transaction's own inserts and
    # lookups, so the per-row foreign-key checks are skipped (tests run
    # PRAGMA foreign_key_check on the result)
    conn = db.connect(experiment / layout.DATABASE, foreign_keys=False)
    try:
        with db.transaction(conn):
            region_ids = register_regions(conn, params, records)
            cell_ids = {}
            for path in sentinels.get("segment", []):
                cell_ids.update(register_segmentation(conn, Path(path), region_ids))
            counts["cells"] = len(cell_ids)
            run_ids = {}
            for path in sentinels.get("threshold", []):
                run_ids.update(register_thresholds(conn, Path(path), region_ids))
            counts["threshold_regions"] = len(run_ids)
            db.drop_unused_threshold_runs(conn)
            if sentinels.get("measure"):
                db.drop_measurement_indexes(conn)
            for path in sentinels.get("measure", []):
                counts["measurements"] += register_measurements(
                    conn, Path(path), cell_ids, run_ids
                )
            db.create_measurement_indexes(conn)
            db.touch_experiment(conn)
    finally:
        conn.close()
    log.info("registered %s in %s", counts, experiment / layout.DATABASE)
    inputs = [s for group in sentinels.values() for s in group]
    write_sentinel(sentinel, "register", "all", params, inputs, counts)
    return counts


def register_regions(conn, params: dict, records: list[dict]) -> dict[str, int]:
    """Experiment, channels, conditions, timepoints and regions; region key → id."""
    db.upsert_experiment(conn, params["name"], params["description"])
    for order, ch in enumerate(params["channels"]):
        db.upsert_channel(conn, ch, order)
    conditions = {c: db.upsert_condition(conn, c) for c in params["conditions"]}
    timepoints = {
        t["name"]: db.upsert_timepoint(conn, t["name"], t["time_seconds"], t["order"])
        for t in params["timepoints"]
    }
    region_ids = {}
    for rec in records:
        region_id = db.upsert_region(
            conn,
            rec["region"],
            conditions[rec["condition"]],
            timepoints[rec["timepoint"]] if rec["timepoint"] else None,
            width=rec["shape"][-1],
            height=rec["shape"][-2],
            pixel_size_um=rec["pixel_size_um"],
            source_file=rec["source_file"],
            zarr_path=rec["zarr_path"],
        )
        db.replace_region_sources(conn, region_id, rec["source_files"])
        if "fields" in rec:
            db.replace_region_fields(conn, region_id, rec["fields"])
        region_ids[rec["key"]] = region_id
    return region_ids


def register_segmentation(
    conn, sentinel: Path, region_ids: dict[str, int]
) -> dict[tuple[str, int], int]:
    """Replace the cells of a group's regions with the staged ones.

    The run is found (or created) by its channel, model and parameters; the
    regions' previous cells go first, with everything that refers to them.

    Returns:
        (region key, label value) → cell id.
    """
    seg = read_sentinel(sentinel)
    run = seg["outputs"]["run"]
    table = pd.read_parquet(sentinel.with_name(seg["outputs"]["cells_table"]))
    channel_id = db.channel_id(conn, run["channel"])
    seg_id = db.upsert_segmentation_run(
        conn, channel_id, run["model_name"], parameters_json(run)
    )
    db.set_segmentation_channel(conn, channel_id)
    for region in seg["outputs"]["regions"]:
        db.delete_region_cells(conn, region_ids[region["key"]])
    table["region_id"] = table["key"].map(region_ids)
    table["segmentation_id"] = seg_id
    ids = db.insert_cells(conn, table)
    db.refresh_segmentation_counts(conn)
    log.info("group %s: %d cells", seg["group"], len(table))
    return dict(
        zip(
            zip(table["key"], table["label_value"].tolist(), strict=True),
            ids.tolist(),
            strict=True,
        )
    )


def register_thresholds(
    conn, sentinel: Path, region_ids: dict[str, int]
) -> dict[tuple[str, str], int]:
    """One threshold_runs row per run and scope unit; region → run mapping.

    Returns:
        (run name, region key) → threshold_runs id.
    """
    staged = read_sentinel(sentinel)
    run = staged["outputs"]["run"]
    channel_id = db.channel_id(conn, run["channel"])
    out = {}
    for region in staged["outputs"]["regions"]:
        parameters = {
            **run,
            "scope_key": region["scope_key"],
            "raw_value": region["raw_value"],
        }
        run_id = db.upsert_threshold_run(
            conn, channel_id, run["method"], parameters, region["value"]
        )
        db.set_region_threshold(
            conn, region_ids[region["key"]], run["name"], run_id, region["pixels_on"]
        )
        out[(run["name"], region["key"])] = run_id
    return out


def register_measurements(
    conn,
    sentinel: Path,
    cell_ids: dict[tuple[str, int], int],
    run_ids: dict[tuple[str, str], int],
) -> int:
    """Insert a group's staged measurements and mask statistics."""
    staged = read_sentinel(sentinel)
    channels = staged["params"]["channels"]
    wide = pd.read_parquet(sentinel.with_name(staged["outputs"]["measurements"]))
    if wide.empty:
        return 0
    ids = _cell_ids(wide, cell_ids, sentinel)
    order = np.argsort(ids, kind="stable")
    columns = [f"{ch}|{m}" for ch in channels for m in METRICS]
    values = (
        wide[columns]
        .to_numpy(np.float64)[order]
        .reshape(len(wide), len(channels), len(METRICS))
    )
    channel_ids = np.array([db.channel_id(conn, ch) for ch in channels], np.int64)
    db.insert_measurements(conn, ids[order], channel_ids, list(METRICS), values)
    masks = pd.read_parquet(sentinel.with_name(staged["outputs"]["masks"]))
    if not masks.empty:
        run_col = np.array(
            [run_ids[(r, k)] for r, k in zip(masks["run"], masks["key"], strict=True)],
            np.int64,
        )
        db.insert_cell_masks(conn, _cell_ids(masks, cell_ids, sentinel), run_col, masks)
    return int(values.size)


def _cell_ids(
    table: pd.DataFrame, cell_ids: dict[tuple[str, int], int], sentinel: Path
) -> np.ndarray:
    keys = zip(table["key"], table["label_value"].tolist(), strict=True)
    try:
        return np.array([cell_ids[k] for k in keys], np.int64)
    except KeyError as exc:
        raise RuntimeError(
            f"{sentinel}: measured cell {exc} was not registered by "
            "the segment step of this run"
        ) from None
