"""Per-cell measurements, vectorised over all cells at once.

For every cell and channel: the PerCell 3 metrics ``mean_intensity``,
``max_intensity``, ``min_intensity``, ``integrated_intensity``,
``std_intensity`` (population, as numpy's default), ``median_intensity`` and
``area`` (pixels). For every cell and threshold run: pixels inside the mask,
the fraction of the cell inside, the mean intensity of the run's channel
inside and outside the mask, and whether the cell is positive.

Sums use ``np.bincount`` over label ids; one sort of the pixels by (cell,
value) gives minimum, maximum and median — no Python loop over cells.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = (
    "mean_intensity",
    "max_intensity",
    "min_intensity",
    "integrated_intensity",
    "std_intensity",
    "median_intensity",
    "area",
)


def _label_index(labels: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground pixel positions and each one's row in ``ids``."""
    flat = labels.ravel()
    fg = np.flatnonzero(flat)
    rows = np.searchsorted(ids, flat[fg])
    return fg, rows


def intensity_metrics(
    labels: np.ndarray, image: np.ndarray, ids: np.ndarray | None = None
) -> pd.DataFrame:
    """The seven metrics of every label id in ``labels`` for one channel.

    Args:
        labels: int label image, 0 = background.
        image: The channel, same shape.
        ids: Label ids to report (sorted); default: all present.

    Returns:
        DataFrame indexed by label id with one column per metric.
    """
    if ids is None:
        ids = np.unique(labels)
        ids = ids[ids > 0]
    fg, rows = _label_index(labels, ids)
    values = image.ravel()[fg].astype(np.float64)
    n = ids.size
    area = np.bincount(rows, minlength=n).astype(np.float64)
    total = np.bincount(rows, weights=values, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / area
        sq = np.bincount(rows, weights=(values - mean[rows]) ** 2, minlength=n)
        std = np.sqrt(sq / area)
    # one sort by (cell, value) gives min, max and median of every cell
    order = np.lexsort((values, rows))
    sorted_vals = values[order]
    starts = np.concatenate([[0], np.cumsum(area[:-1])]).astype(np.int64)
    counts = area.astype(np.int64)
    present = counts > 0
    minimum = np.full(n, np.nan)
    maximum = np.full(n, np.nan)
    median = np.full(n, np.nan)
    minimum[present] = sorted_vals[starts[present]]
    maximum[present] = sorted_vals[starts[present] + counts[present] - 1]
    lo = starts + (counts - 1) // 2
    hi = starts + counts // 2
    median[present] = (sorted_vals[lo[present]] + sorted_vals[hi[present]]) / 2
    return pd.DataFrame(
        {
            "mean_intensity": mean,
            "max_intensity": maximum,
            "min_intensity": minimum,
            "integrated_intensity": total,
            "std_intensity": std,
            "median_intensity": median,
            "area": area,
        },
        index=pd.Index(ids, name="label_value"),
    )


def mask_metrics(
    labels: np.ndarray,
    image: np.ndarray,
    mask: np.ndarray,
    min_fraction: float,
    ids: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per-cell statistics of one threshold run's mask.

    Returns:
        DataFrame indexed by label id: pixels_inside, fraction_inside,
        mean_inside, mean_outside (NaN where a cell has no pixel there),
        positive (fraction_inside ≥ min_fraction).
    """
    if ids is None:
        ids = np.unique(labels)
        ids = ids[ids > 0]
    fg, rows = _label_index(labels, ids)
    values = image.ravel()[fg].astype(np.float64)
    inside = mask.ravel()[fg] > 0
    n = ids.size
    area = np.bincount(rows, minlength=n).astype(np.float64)
    n_in = np.bincount(rows, weights=inside, minlength=n)
    sum_in = np.bincount(rows, weights=values * inside, minlength=n)
    sum_all = np.bincount(rows, weights=values, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = n_in / area
        mean_in = sum_in / n_in
        mean_out = (sum_all - sum_in) / (area - n_in)
    return pd.DataFrame(
        {
            "pixels_inside": n_in.astype(np.int64),
            "fraction_inside": fraction,
            "mean_inside": mean_in,
            "mean_outside": mean_out,
            "positive": (fraction >= min_fraction).astype(np.int64),
        },
        index=pd.Index(ids, name="label_value"),
    )


def measure_group(
    records: list[dict],
    experiment,
    runs: list[dict],
    channel_names: list[str],
    sentinel,
    group: str,
    inputs: list[str],
) -> list[dict]:
    """Measure every cell of every region of a group; stage tables; sentinel last.

    Stages ``<sentinel>.measurements.parquet`` (one row per cell, a column
    ``<channel>|<metric>`` per channel and metric) and
    ``<sentinel>.masks.parquet`` (one row per cell and threshold run).
    """
    import logging
    from pathlib import Path

    from percell import layout
    from percell.sentinel import write_sentinel
    from percell.storage import open_group

    log = logging.getLogger(__name__)
    experiment = Path(experiment)
    sentinel = Path(sentinel)
    wide_tables, mask_tables, outputs = [], [], []
    for rec in records:
        key = rec["key"]
        labels = np.asarray(open_group(layout.label_path(experiment, key))["0"][...])
        image = open_group(layout.image_path(experiment, key))["0"]
        ids = np.unique(labels)
        ids = ids[ids > 0]
        columns = {}
        planes = {}
        for c, name in enumerate(channel_names):
            planes[name] = np.asarray(image[c])
            metrics = intensity_metrics(labels, planes[name], ids)
            for metric in METRICS:
                columns[f"{name}|{metric}"] = metrics[metric].to_numpy()
        wide = pd.DataFrame(columns)
        wide.insert(0, "label_value", ids)
        wide.insert(0, "key", key)
        wide_tables.append(wide)
        for run in runs:
            mask_group = open_group(layout.mask_path(experiment, key, run["name"]))
            stats = mask_metrics(
                labels,
                planes[run["channel"]],
                np.asarray(mask_group["0"][...]),
                run["min_fraction"],
                ids,
            ).reset_index()
            stats.insert(0, "run", run["name"])
            stats.insert(0, "key", key)
            mask_tables.append(stats)
        del planes
        log.info(
            "region %s: %d cells x %d channels measured, %d threshold run(s)",
            key,
            ids.size,
            len(channel_names),
            len(runs),
        )
        outputs.append({"key": key, "cells": int(ids.size)})
    staged = {}
    for suffix, tables in (("measurements", wide_tables), ("masks", mask_tables)):
        path = sentinel.with_name(f"{sentinel.stem}.{suffix}.parquet")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.partial")
        frame = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
        staged[suffix] = path.name
    write_sentinel(
        sentinel,
        "measure",
        group,
        {"runs": runs, "channels": channel_names},
        inputs,
        {"regions": outputs, **staged},
    )
    return outputs
