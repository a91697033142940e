"""The register step: the single writer of ``experiment.db``.

It reads what each region group's steps staged in their sentinels and upserts
it in one transaction. Regions that are not part of this run keep their rows.
"""

from __future__ import annotations

import logging
from pathlib import Path

from percell import db, layout
from percell.sentinel import read_sentinel, write_sentinel

log = logging.getLogger(__name__)


def register(
    experiment: str | Path,
    params: dict,
    import_sentinels: list[str],
    other_inputs: list[str],
    sentinel: str | Path,
) -> dict:
    """Upsert experiment, channels, conditions, timepoints and regions.

    Args:
        experiment: The ``.percell`` directory.
        params: ``Manifest.register_params()``.
        import_sentinels: Sentinels of every group's import step.
        other_inputs: Further sentinels this step waits for (recorded only).
        sentinel: This step's sentinel, written after the commit.

    Returns:
        Counts of what was written.
    """
    experiment = Path(experiment)
    records = [rec for s in import_sentinels for rec in read_sentinel(s)["outputs"]]
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
            db.touch_experiment(conn)
    finally:
        conn.close()
    counts = {"regions": len(records), "channels": len(params["channels"])}
    log.info(
        "registered %d region(s) in %s", len(records), experiment / layout.DATABASE
    )
    write_sentinel(
        sentinel, "register", "all", params, [*import_sentinels, *other_inputs], counts
    )
    return counts
