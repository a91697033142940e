"""Per-cell measurements, vectorised over all cells at once.

For every cell and channel: the PerCell 3 metrics ``mean_intensity``,
``max_intensity``, ``min_intensity``, ``integrated_intensity``,
``std_intensity`` (population, as numpy's default), ``median_intensity`` and
``area`` (pixels). For every cell and threshold run: pixels inside the mask,
the fraction of the cell inside, the mean intensity of the run's channel
inside and outside the mask, and whether the cell is positive.

One sort of the pixels by (cell, value) — packed into a single int64 key —
gives every cell's minimum, maximum and median; sums come from
``np.add.reduceat`` over the same order. No Python loop over cells.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from percell import layout
from percell.contracts import (
    ImportedRegion,
    MaskRun,
    Measured,
    MeasuredRegion,
    MeasureParams,
)
from percell.errors import ExperimentError
from percell.label_digest import label_state
from percell.sentinel import write_sentinel
from percell.storage import Staging, array_of, open_group

log = logging.getLogger(__name__)

METRICS = (
    "mean_intensity",
    "max_intensity",
    "min_intensity",
    "integrated_intensity",
    "std_intensity",
    "median_intensity",
    "area",
)


class LabelIndex:
    """Where each cell's pixels are: computed once per label image, shared by
    every channel and mask measured on it."""

    def __init__(self, labels: np.ndarray, ids: np.ndarray | None = None) -> None:
        flat = labels.ravel()
        if ids is None:  # ids present, without sorting every pixel as np.unique would
            ids = np.flatnonzero(np.bincount(flat))
            ids = ids[ids > 0]
        self.ids = np.asarray(ids)
        self.fg = np.flatnonzero(flat)
        lut = np.full(int(flat.max(initial=0)) + 1, -1, np.int64)
        lut[self.ids[self.ids < lut.size]] = np.arange(self.ids.size)
        self.rows = lut[flat[self.fg]]
        listed = self.rows >= 0  # pixels of labels not asked for are ignored
        if not listed.all():
            self.fg, self.rows = self.fg[listed], self.rows[listed]
        self.area = np.bincount(self.rows, minlength=self.ids.size).astype(np.float64)
        self._shifted: dict[int, np.ndarray] = {}

    def shifted_rows(self, bits: int) -> np.ndarray:
        """Each pixel's cell row shifted left by ``bits`` (cached: every channel
        builds its sort key on it)."""
        if bits not in self._shifted:
            dtype = np.uint32 if bits == 16 else np.int64
            self._shifted[bits] = self.rows.astype(dtype) << dtype(bits)
        return self._shifted[bits]


def _sorted_by_cell(index: LabelIndex, values: np.ndarray) -> np.ndarray:
    """``values`` ordered by (cell, value): each cell's pixels sorted, cells in turn.

    The cell and the value are packed into one integer key whose sort is far
    faster than a two-key lexsort: 32 bits when both fit in 16 (the common case
    of < 65,536 cells and 8/16-bit images), else 64 bits; float32 values are
    mapped to integers that sort in the same order.
    """
    kind, size = values.dtype.kind, values.dtype.itemsize
    if kind in "ui" and size <= 4:
        low = int(values.min(initial=0))
        span = int(values.max(initial=0)) - low
        # offsets from the minimum, computed where they cannot overflow: in
        # the image's own type only when it is unsigned (values ≥ low ≥ 0)
        if index.ids.size <= 1 << 16 and span < 1 << 16:
            offset = values - low if kind == "u" else values.astype(np.int32) - low
            key = index.shifted_rows(16) | offset.astype(np.uint32)
            key.sort()
            return (key & 0xFFFF).astype(np.float64) + low
        key = index.shifted_rows(32) | (values.astype(np.int64) - low)
        key.sort()
        return (key & 0xFFFFFFFF).astype(np.float64) + low
    if kind == "f" and size == 4:
        raw = values.view(np.uint32).astype(np.int64)
        # IEEE floats order like integers once negatives have all bits flipped
        bits = np.where(raw >> 31, raw ^ 0xFFFFFFFF, raw | 0x80000000)
        key = index.shifted_rows(32) | bits
        key.sort()
        packed = key & 0xFFFFFFFF
        back = np.where(packed >> 31, packed ^ 0x80000000, packed ^ 0xFFFFFFFF)
        return back.astype(np.uint32).view(np.float32).astype(np.float64)
    order = np.lexsort((values, index.rows))
    return values[order].astype(np.float64)


def intensity_metrics(
    labels: np.ndarray | LabelIndex, image: np.ndarray, ids: np.ndarray | None = None
) -> pd.DataFrame:
    """The seven metrics of every cell for one channel.

    Args:
        labels: int label image (0 = background), or its LabelIndex.
        image: The channel, same shape.
        ids: Label ids to report (sorted); default: all present.

    Returns:
        DataFrame indexed by label id with one column per metric.
    """
    index = labels if isinstance(labels, LabelIndex) else LabelIndex(labels, ids)
    n = index.ids.size
    counts = index.area.astype(np.int64)
    present = counts > 0
    pixels = image.ravel()[index.fg]
    values = _sorted_by_cell(index, pixels)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    total = np.zeros(n)
    total[present] = np.add.reduceat(values, starts[present])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / index.area
        # two passes (deviations from the mean): a one-pass sum of squares
        # cancels catastrophically when a cell is bright and even
        sq = np.zeros(n)
        deviation = values - np.repeat(mean, counts)
        sq[present] = np.add.reduceat(deviation * deviation, starts[present])
        variance = sq / index.area
        std = np.sqrt(variance)
    minimum = np.full(n, np.nan)
    maximum = np.full(n, np.nan)
    median = np.full(n, np.nan)
    minimum[present] = values[starts[present]]
    maximum[present] = values[starts[present] + counts[present] - 1]
    lo = starts + (counts - 1) // 2
    hi = starts + counts // 2
    median[present] = (values[lo[present]] + values[hi[present]]) / 2
    if pixels.dtype.kind == "f":
        # as numpy's reductions: a cell with a NaN pixel has NaN metrics
        # (stored as NULL), whatever order the sort put the NaN in
        has_nan = np.bincount(index.rows, weights=np.isnan(pixels), minlength=n) > 0
        for metric in (mean, total, std, minimum, maximum, median):
            metric[has_nan] = np.nan
    return pd.DataFrame(
        {
            "mean_intensity": mean,
            "max_intensity": maximum,
            "min_intensity": minimum,
            "integrated_intensity": total,
            "std_intensity": std,
            "median_intensity": median,
            "area": index.area,
        },
        index=pd.Index(index.ids, name="label_value"),
    )


def mask_metrics(
    labels: np.ndarray | LabelIndex,
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
    index = labels if isinstance(labels, LabelIndex) else LabelIndex(labels, ids)
    ids, rows, area, n = index.ids, index.rows, index.area, index.ids.size
    values = image.ravel()[index.fg].astype(np.float64)
    inside = mask.ravel()[index.fg] > 0
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


def channel_metrics(
    index: LabelIndex, planes: list[np.ndarray], threads: int = 1
) -> list[pd.DataFrame]:
    """``intensity_metrics`` of several channels, in parallel threads (numpy's
    sort and reductions release the GIL)."""
    if threads <= 1 or len(planes) == 1:
        return [intensity_metrics(index, p) for p in planes]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda p: intensity_metrics(index, p), planes))


#: pixels per band of a streamed region (labels, every channel, every mask):
#: about 16 M, so a band holds a few hundred MB whatever the region's size
BAND_PIXELS = 1 << 24


def band_rows(shape: tuple[int, ...], chunk_rows: int, band_pixels: int) -> int:
    """Rows (y) per band: about ``band_pixels`` pixels over every z; a whole
    number of label chunks where a band holds one or more (so each chunk is
    read once), else a part of one (a plate well's chunk is a whole field,
    and a band of fields across a wide well would be too large)."""
    per_row = int(np.prod(shape)) // shape[-2]
    rows = max(1, band_pixels // max(per_row, 1))
    return rows // chunk_rows * chunk_rows if rows >= chunk_rows else rows


def _last_band(labels: zarr.Array[Any], rows: int) -> np.ndarray:
    """For each label id, the index of the last band it appears in (-1 where
    absent): a first pass over the labels alone, band by band."""
    last = np.full(1, -1, np.int64)
    for b, y0 in enumerate(range(0, labels.shape[-2], rows)):
        band = np.asarray(labels[..., y0 : y0 + rows, :]).ravel()
        present = np.flatnonzero(np.bincount(band))
        present = present[present > 0]
        if present.size and present[-1] >= last.size:
            grown = np.full(int(present[-1]) + 1, -1, np.int64)
            grown[: last.size] = last
            last = grown
        last[present] = b
    return last


def measure_region(
    labels: zarr.Array[Any],
    image: zarr.Array[Any],
    channels: Sequence[str],
    masks: Sequence[tuple[MaskRun, zarr.Array[Any]]] = (),
    threads: int = 1,
    band_pixels: int = BAND_PIXELS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every metric of every cell of a region, streamed by bands of rows.

    A cell is measured once, whole, when the band holding its last row has
    been read: the pixels of cells that go on below a band are carried to the
    next one. So memory holds a band and the cells crossing its lower edge,
    whatever the region's size, and every metric (the median included) is
    exactly what the whole image gives.

    Args:
        labels: Level 0 of the label image, ([Z,] Y, X).
        image: Level 0 of the image, (C, [Z,] Y, X).
        channels: Channel names in C order.
        masks: Each threshold run with level 0 of its mask, ([Z,] Y, X).

    Returns:
        The wide table (label_value, then ``<channel>|<metric>`` columns) and
        the mask statistics (run, label_value, then ``db.MASK_COLUMNS``), both
        sorted by label.
    """
    rows = band_rows(labels.shape, labels.chunks[-2], band_pixels)
    last = _last_band(labels, rows)
    channel_of = {name: c for c, name in enumerate(channels)}
    # pixels of cells not finished yet: label, each channel, each mask
    held_labels = np.zeros(0, labels.dtype)
    held_values = [np.zeros(0, image.dtype) for _ in channels]
    held_masks = [np.zeros(0, bool) for _ in masks]
    wide_parts: list[pd.DataFrame] = []
    mask_parts: list[list[pd.DataFrame]] = [[] for _ in masks]
    for b, y0 in enumerate(range(0, labels.shape[-2], rows)):
        window = (..., slice(y0, y0 + rows), slice(None))
        band = np.asarray(labels[window]).ravel()
        fg = np.flatnonzero(band)
        held_labels = np.concatenate([held_labels, band[fg]])
        for c in range(len(channels)):
            plane = np.asarray(image[(c, *window)]).ravel()
            held_values[c] = np.concatenate([held_values[c], plane[fg]])
        for m, (_, mask) in enumerate(masks):
            on = np.asarray(mask[window]).ravel()[fg] > 0
            held_masks[m] = np.concatenate([held_masks[m], on])
        done = last[held_labels] == b
        if done.any():
            finished = held_labels[done]
            values = [v[done] for v in held_values]
            index = LabelIndex(finished)
            wide_parts.append(_wide(index, values, channels, threads))
            for m, (run, _) in enumerate(masks):
                value = values[channel_of[run.channel]]
                on = held_masks[m][done]
                mask_parts[m].append(mask_metrics(index, value, on, run.min_fraction))
            keep = ~done
            held_labels = held_labels[keep]
            held_values = [v[keep] for v in held_values]
            held_masks = [on[keep] for on in held_masks]
        if rows < labels.shape[-2]:
            log.info(
                "  rows %d-%d: %d cells measured so far, %d pixels carried",
                y0,
                min(y0 + rows, labels.shape[-2]) - 1,
                sum(len(p) for p in wide_parts),
                held_labels.size,
            )
    if not wide_parts:  # no cell at all: the tables' columns, no rows
        empty = LabelIndex(np.zeros(0, np.int64))
        wide_parts.append(_wide(empty, held_values, channels, threads))
        for m, (run, _) in enumerate(masks):
            value = held_values[channel_of[run.channel]]
            mask_parts[m].append(mask_metrics(empty, value, held_masks[m], 0.0))
    wide = pd.concat(wide_parts).sort_index().reset_index()
    runs = []
    for (run, _), parts in zip(masks, mask_parts, strict=True):
        stats = pd.concat(parts).sort_index().reset_index()
        stats.insert(0, "run", run.name)
        runs.append(stats)
    return wide, pd.concat(runs, ignore_index=True) if runs else pd.DataFrame()


def _wide(
    index: LabelIndex,
    values: Sequence[np.ndarray],
    channels: Sequence[str],
    threads: int,
) -> pd.DataFrame:
    """One row per cell, a ``<channel>|<metric>`` column per channel and metric."""
    columns = {}
    for name, metrics in zip(
        channels, channel_metrics(index, list(values), threads), strict=True
    ):
        for metric in METRICS:
            columns[f"{name}|{metric}"] = metrics[metric].to_numpy()
    return pd.DataFrame(columns, index=pd.Index(index.ids, name="label_value"))


def check_labels_as_segmented(experiment: str | Path, key: str) -> None:
    """Refuse to measure a label image edited since the segment step wrote it:
    its cells would no longer be the ones in experiment.db."""
    group = layout.label_path(Path(experiment), key)
    if label_state(group)[1]:
        raise ExperimentError(
            f"region {key}: the label image {group}/0 was changed after the "
            "segment step wrote it (edited in the PerCell 3 application or by "
            "hand), so its cells are no longer those in experiment.db. Measuring "
            "needs the workflow's own labels: set segmentation."
            "overwrite_edited_labels: true to segment the region again (the edits "
            "are replaced), or keep the edits and leave the measure settings as "
            "they were."
        )


def measure_group(
    records: Sequence[ImportedRegion],
    *,
    params: MeasureParams,
    sentinel: str | Path,
    group: str,
    inputs: Sequence[str] = (),
    threads: int = 1,
) -> Measured:
    """Measure every cell of every region of a group; stage tables; sentinel last.

    Stages ``<sentinel>.measurements.parquet`` (one row per cell, a column
    ``<channel>|<metric>`` per channel and metric) and
    ``<sentinel>.masks.parquet`` (one row per cell and threshold run).
    """
    experiment = Path(layout.experiment_of_sentinel(sentinel))
    sentinel = Path(sentinel)
    channel_names = list(params.channels)
    wide_tables, mask_tables, outputs = [], [], []
    for rec in records:
        check_labels_as_segmented(experiment, rec.key)
    for rec in records:
        key = rec.key
        labels = array_of(open_group(layout.label_path(experiment, key)))
        image = array_of(open_group(layout.image_path(experiment, key)))
        masks = [
            (run, array_of(open_group(layout.mask_path(experiment, key, run.name))))
            for run in params.runs
        ]
        wide, stats = measure_region(labels, image, channel_names, masks, threads)
        wide.insert(0, "key", key)
        wide_tables.append(wide)
        if params.runs:
            stats.insert(0, "key", key)
            mask_tables.append(stats)
        log.info(
            "region %s: %d cells x %d channels measured, %d threshold run(s)",
            key,
            len(wide),
            len(channel_names),
            len(params.runs),
        )
        outputs.append(MeasuredRegion(key=key, cells=len(wide)))
    staged = {}
    with Staging() as staging:
        for suffix, tables in (("measurements", wide_tables), ("masks", mask_tables)):
            path = sentinel.with_name(f"{sentinel.stem}.{suffix}.parquet")
            frame = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
            frame.to_parquet(staging.file(path), index=False)
            staged[suffix] = path.name
    measured = Measured(
        regions=tuple(outputs),
        measurements=staged["measurements"],
        masks=staged["masks"],
    )
    write_sentinel(sentinel, "measure", group, params, list(inputs), measured)
    return measured
