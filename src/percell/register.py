"""The register step: the single writer of ``experiment.db``.

It reads what each region group's steps staged in their sentinels and upserts
it in one transaction. Regions that are not part of this run keep their rows.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from percell import db, layout
from percell.segmentation import parameters_json
from percell.sentinel import read_sentinel, write_sentinel

log = logging.getLogger(__name__)


def register(
    experiment: str | Path,
    params: dict,
    import_sentinels: list[str],
    other_inputs: list[str],
    sentinel: str | Path,
    segment_sentinels: list[str] = (),
) -> dict:
    """Upsert experiment, channels, conditions, timepoints, regions and cells.

    Args:
        experiment: The ``.percell`` directory.
        params: ``Manifest.register_params()``.
        import_sentinels: Sentinels of every group's import step.
        other_inputs: Further sentinels this step waits for (recorded only).
        segment_sentinels: Sentinels of every group's segment step, if any.
        sentinel: This step's sentinel, written after the commit.

    Returns:
        Counts of what was written.
    """
    experiment = Path(experiment)
    records = [rec for s in import_sentinels for rec in read_sentinel(s)["outputs"]]
    segmented = [(Path(s), read_sentinel(s)) for s in segment_sentinels]
    conn = db.connect(experiment / layout.DATABASE)
    try:
        with db.transaction(conn):
            db.upsert_experiment(conn, params["name"], params["description"])
            for order, ch in enumerate(params["channels"]):
                db.upsert_channel(conn, ch, order)
            conditions = {c: db.upsert_condition(conn, c) for c in params["conditions"]}
            timepoints = {
                t["name"]: db.upsert_timepoint(
                    conn, t["name"], t["time_seconds"], t["order"]
                )
                for t in params["timepoints"]
            }
            region_ids: dict[str, int] = {}
            n_cells = 0
            for rec in records:
                region_id = db.upsert_region(
                    conn,
                    rec["region"],
                    conditions[rec["condition"]],
                    timepoints.get(rec["timepoint"]) if rec["timepoint"] else None,
                    width=rec["shape"][-1],
                    height=rec["shape"][-2],
                    pixel_size_um=rec["pixel_size_um"],
                    source_file=rec["source_file"],
                    zarr_path=rec["zarr_path"],
                )
                db.replace_region_sources(conn, region_id, rec["source_files"])
                region_ids[rec["key"]] = region_id
            for path, seg in segmented:
                n_cells += register_segmentation(conn, path, seg, region_ids)
            db.touch_experiment(conn)
    finally:
        conn.close()
    counts = {
        "regions": len(records),
        "channels": len(params["channels"]),
        "cells": n_cells,
    }
    log.info(
        "registered %d region(s) in %s", len(records), experiment / layout.DATABASE
    )
    write_sentinel(
        sentinel, "register", "all", params, [*import_sentinels, *other_inputs], counts
    )
    return counts


def register_segmentation(
    conn, sentinel: Path, seg: dict, region_ids: dict[str, int]
) -> int:
    """Replace the cells of the group's regions with the staged ones.

    The run is found (or created) by its channel, model and parameters; the
    regions' previous cells, with their measurements and tags, go first, so
    a changed setting leaves no orphan and no duplicate.
    """
    run = seg["outputs"]["run"]
    table = pd.read_parquet(sentinel.with_name(seg["outputs"]["cells_table"]))
    channel_id = db.channel_id(conn, run["channel"])
    seg_id = db.upsert_segmentation_run(
        conn, channel_id, run["model_name"], parameters_json(run)
    )
    db.set_segmentation_channel(conn, channel_id)
    keys = [r["key"] for r in seg["outputs"]["regions"]]
    for key in keys:
        db.delete_region_cells(conn, region_ids[key])
    table["region_id"] = table["key"].map(region_ids)
    table["segmentation_id"] = seg_id
    db.insert_cells(conn, table)
    db.refresh_segmentation_counts(conn)
    log.info("group %s: %d cells registered", seg["group"], len(table))
    return len(table)
