"""The per-cell export: one wide table, one row per cell, to CSV and Parquet.

Columns: condition, timepoint, region, cell id and label, geometry, the shape
features of ``percell_cell_shape``, then ``<channel>_<metric>`` for every
channel and metric (``<channel>_<compartment>_<metric>`` for nuclei and
cytoplasm), and
``<run>_<statistic>`` for every threshold run's mask statistics.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from percell import layout
from percell.cells import SHAPE_COLUMNS
from percell.errors import ExperimentError
from percell.experiment_format import connect_for_reading
from percell.storage import staged_file

log = logging.getLogger(__name__)


def cell_table(experiment: str | Path) -> pd.DataFrame:
    """The wide per-cell table of an experiment, read from experiment.db."""
    path = Path(experiment) / layout.DATABASE
    if not path.is_file():
        raise ExperimentError(f"{path}: no experiment database (run the workflow)")
    conn = connect_for_reading(path)
    try:
        cells = pd.read_sql_query(
            """SELECT c.id AS cell_id, co.name AS condition, t.name AS timepoint,
                      r.name AS region, c.label_value, c.centroid_x, c.centroid_y,
                      c.bbox_x, c.bbox_y, c.bbox_w, c.bbox_h, c.area_pixels,
                      c.area_um2, c.perimeter, c.circularity, {shape}
               FROM cells c JOIN regions r ON r.id = c.region_id
               LEFT JOIN percell_cell_shape s ON s.cell_id = c.id
               JOIN conditions co ON co.id = r.condition_id
               LEFT JOIN timepoints t ON t.id = r.timepoint_id
               ORDER BY c.id""".format(
                shape=", ".join(f"s.{c}" for c in SHAPE_COLUMNS)
            ),
            conn,
        )
        measurements = pd.read_sql_query(
            """SELECT m.cell_id, ch.name || '_' || m.metric AS column, m.value
               FROM measurements m JOIN channels ch ON ch.id = m.channel_id""",
            conn,
        )
        masks = pd.read_sql_query(
            """SELECT m.cell_id, json_extract(t.parameters, '$.name') AS run,
                      m.pixels_inside, m.fraction_inside, m.mean_inside,
                      m.mean_outside, m.positive
               FROM percell_cell_masks m JOIN threshold_runs t
               ON t.id = m.threshold_run_id""",
            conn,
        )
    finally:
        conn.close()
    wide = cells.set_index("cell_id")
    if not measurements.empty:
        wide = wide.join(
            measurements.pivot(index="cell_id", columns="column", values="value")
        )
    if not masks.empty:
        stats = masks.pivot(index="cell_id", columns="run")
        stats.columns = [f"{run}_{stat}" for stat, run in stats.columns]
        wide = wide.join(stats[sorted(stats.columns)])
    return wide.reset_index()


def export_cells(
    experiment: str | Path,
    csv: str | Path | None = None,
    parquet: str | Path | None = None,
) -> pd.DataFrame:
    """Write the wide per-cell table to CSV and/or Parquet (atomically)."""
    table = cell_table(experiment)
    for path, write in (
        (csv, lambda t, p: t.to_csv(p, index=False)),
        (parquet, lambda t, p: t.to_parquet(p, index=False)),
    ):
        if path is None:
            continue
        path = Path(path)
        with staged_file(path) as tmp:
            write(table, tmp)
        log.info("wrote %d cells x %d columns to %s", len(table), table.shape[1], path)
    return table
