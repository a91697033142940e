"""Per-cell measurements.

For every cell and channel: the PerCell 3 metrics ``mean_intensity``,
``max_intensity``, ``min_intensity``, ``integrated_intensity``,
``std_intensity`` (population, as numpy's default), ``median_intensity`` and
``area`` (pixels). For every cell and threshold run: pixels inside the mask,
the fraction of the cell inside, the mean intensity of the run's channel
inside and outside the mask, and whether the cell is positive; where the
experiment's format has them (4.0.0), also the seven metrics of every
channel inside and outside the mask (``mask_inside`` / ``mask_outside``).

The pixels are grouped by cell once per label image; compiled loops
(``cell_kernels``) then read each channel and mask one cell at a time. No
Python loop over cells.
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
from percell.cell_kernels import (
    accumulator,
    cell_mask_sums,
    cell_metrics,
    count_labels,
    group_by_cell,
)
from percell.cells import METRICS
from percell.compartments import compartment_path
from percell.contracts import (
    ImportedRegion,
    MaskRun,
    Measured,
    MeasuredRegion,
    MeasureParams,
    compartment_metric,
)
from percell.errors import ExperimentError
from percell.experiment_format import application_label_view
from percell.experiment_format.views import digest_attr, edited_digest
from percell.label_digest import label_state
from percell.logs import Progress
from percell.projection import ZProjected, is_stack
from percell.sentinel import write_sentinel
from percell.storage import Staging, array_of, open_group

log = logging.getLogger(__name__)


class LabelIndex:
    """Which pixels are each cell's: computed once per label image, shared by
    every channel and mask measured on it."""

    def __init__(self, labels: np.ndarray, ids: np.ndarray | None = None) -> None:
        flat = np.ascontiguousarray(labels).ravel()
        if flat.size and flat.dtype.kind == "i" and flat.min() < 0:
            raise ValueError("a label image holds negative labels")
        size = int(flat.max()) + 1 if flat.size else 1
        per_label = count_labels(flat, size)
        if ids is None:
            ids = np.flatnonzero(per_label)
            ids = ids[ids > 0]
        self.ids = np.asarray(ids)
        # label value -> cell row; -1 for the background and labels not asked for
        lut = np.full(size, -1, np.int64)
        wanted = (self.ids > 0) & (self.ids < size)
        lut[self.ids[wanted]] = np.flatnonzero(wanted)
        counts = np.zeros(self.ids.size, np.int64)
        counts[wanted] = per_label[self.ids[wanted]]
        self.order, self.starts = group_by_cell(flat, lut, counts)
        self.counts = counts

    @property
    def area(self) -> np.ndarray:
        """Pixels per cell, as the tables hold it (float)."""
        return self.counts.astype(np.float64)


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
    pixels = np.ascontiguousarray(image).ravel()
    mean, maximum, minimum, total, std, median = cell_metrics(
        pixels, index.order, index.starts, index.counts, accumulator(pixels.dtype)
    )
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
    pixels = np.ascontiguousarray(image).ravel()
    n_in, sum_in, sum_all = cell_mask_sums(
        pixels,
        np.ascontiguousarray(mask).ravel(),
        index.order,
        index.starts,
        index.counts,
        accumulator(pixels.dtype),
    )
    area = index.area
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = n_in / area
        mean_in = sum_in / n_in
        mean_out = (sum_all - sum_in) / (area - n_in)
    return pd.DataFrame(
        {
            "pixels_inside": n_in,
            "fraction_inside": fraction,
            "mean_inside": mean_in,
            "mean_outside": mean_out,
            "positive": (fraction >= min_fraction).astype(np.int64),
        },
        index=pd.Index(index.ids, name="label_value"),
    )


#: the 4.0.0 measurement scopes of a threshold's mask
MASK_SCOPES = ("mask_inside", "mask_outside")


def scoped_column(channel: str, scope: str, metric: str) -> str:
    """The staged column of a channel's metric inside or outside a mask."""
    return f"{channel}|{scope}|{metric}"


def scoped_metrics(
    labels: np.ndarray,
    values: Sequence[np.ndarray],
    on: np.ndarray,
    ids: np.ndarray,
    channels: Sequence[str],
    threads: int = 1,
) -> pd.DataFrame:
    """Every channel's metrics of each cell over its pixels inside the mask
    and over those outside it: 0 for every metric where a cell has no pixel
    there, as the PerCell 3 application stores it.

    Args:
        labels: The label of each pixel (flat, cells' pixels only).
        values: Each channel's value of the same pixels.
        on: Whether each pixel is inside the mask.
        ids: The cells (sorted label values) to report, in this order.
    """
    parts = []
    for scope, where in zip(MASK_SCOPES, (on, ~on), strict=True):
        index = LabelIndex(labels[where], ids)
        wide = _wide(index, [v[where] for v in values], channels, threads)
        wide.loc[index.counts == 0, :] = 0.0
        wide.columns = [scoped_column(ch, scope, m) for ch in channels for m in METRICS]
        parts.append(wide)
    return pd.concat(parts, axis=1)


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
    mask_scopes: bool = False,
    key: str = "",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every metric of every cell of a region (``key``, for progress
    lines), streamed by bands of rows.

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
        mask_scopes: Also every channel's metrics inside and outside each
            mask (``scoped_metrics``).

    Returns:
        The wide table (label_value, then ``<channel>|<metric>`` columns) and
        the mask statistics (run, label_value, then ``db.MASK_COLUMNS``, then
        with ``mask_scopes`` the ``scoped_column`` columns), both sorted by
        label.
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
    n_bands = -(-labels.shape[-2] // rows)
    progress = Progress(f"measure {key}", n_bands, "bands")
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
                stats = mask_metrics(index, value, on, run.min_fraction)
                if mask_scopes:
                    stats = stats.join(
                        scoped_metrics(
                            finished, values, on, index.ids, channels, threads
                        )
                    )
                mask_parts[m].append(stats)
            keep = ~done
            held_labels = held_labels[keep]
            held_values = [v[keep] for v in held_values]
            held_masks = [on[keep] for on in held_masks]
        if rows < labels.shape[-2]:
            progress.step(
                b + 1,
                f"rows {y0}-{min(y0 + rows, labels.shape[-2]) - 1}: "
                f"{sum(len(p) for p in wide_parts)} cells measured so far, "
                f"{held_labels.size} pixels carried",
            )
    if not wide_parts:  # no cell at all: the tables' columns, no rows
        empty = LabelIndex(np.zeros(0, np.int64))
        wide_parts.append(_wide(empty, held_values, channels, threads))
        for m, (run, _) in enumerate(masks):
            value = held_values[channel_of[run.channel]]
            stats = mask_metrics(empty, value, held_masks[m], 0.0)
            if mask_scopes:
                stats = stats.join(
                    scoped_metrics(
                        held_labels, held_values, held_masks[m], empty.ids, channels
                    )
                )
            mask_parts[m].append(stats)
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


def _compartment_metrics(
    labels: zarr.Array[Any],
    image: zarr.Array[Any],
    channels: Sequence[str],
    compartment: str,
    threads: int,
) -> pd.DataFrame:
    """The wide table of one compartment's label image, its columns named
    ``<channel>|<compartment>_<metric>``."""
    wide, _ = measure_region(labels, image, channels, (), threads)
    return wide.rename(
        columns={
            f"{ch}|{m}": f"{ch}|{compartment_metric(compartment, m)}"
            for ch in channels
            for m in METRICS
        }
    )


def check_labels_as_segmented(experiment: str | Path, key: str) -> None:
    """Refuse to measure a label image edited since the segment step wrote it:
    its cells would no longer be the ones in experiment.db."""
    group = layout.label_path(Path(experiment), key)
    edited = label_state(group)[1]
    # where the application edits a view: the edits of the labels measured
    # (a view made of older labels is replaced by register, as segment chose)
    view = application_label_view(experiment, key)
    if (
        not edited
        and view is not None
        and digest_attr(view) == digest_attr(group)
        and edited_digest(group, view) is not None
    ):
        group, edited = view, True
    if edited:
        raise ExperimentError(
            f"region {key}: the label image {group}/0 was changed after the "
            "segment step wrote it (edited in the PerCell 3 application or by "
            "hand), so its cells are no longer those in experiment.db. Measuring "
            "needs the workflow's own labels: set segmentation."
            "overwrite_edited_labels: true to segment the region again (the edits "
            "are replaced), or keep the edits and leave the measure settings as "
            "they were."
        )


def _level0(group: Path, how: str | None, channels: bool = False) -> Any:
    """Level 0 of a group, or its projection along z: an image's by ``how``,
    labels' and masks' by their maximum (as the application's views)."""
    array = array_of(open_group(group))
    if how is None:
        return array
    return ZProjected(array, how if channels else "max", channels)


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
    ``<channel>|<metric>`` per channel and metric, the metrics of
    ``params.metrics``) and
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
        image = array_of(open_group(layout.image_path(experiment, key)))
        # a stack measured as its projection: what the application reads
        how = params.z_projection if is_stack(image.shape) else None
        labels = _level0(layout.label_path(experiment, key), how)
        image = _level0(layout.image_path(experiment, key), how, channels=True)
        masks = [
            (run, _level0(layout.mask_path(experiment, key, run.name), how))
            for run in params.runs
        ]
        wide, stats = measure_region(
            labels,
            image,
            channel_names,
            masks,
            threads,
            mask_scopes=params.mask_scopes,
            key=key,
        )
        for name in params.compartments:
            part = _level0(compartment_path(experiment, key, name), how)
            wide = wide.merge(
                _compartment_metrics(part, image, channel_names, name, threads),
                on="label_value",
                how="left",  # a cell without this compartment: NaN, no row
            )
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
        if how:
            log.info("region %s: measured on its %s projection along z", key, how)
        projected = {"projected": True} if how else {}
        outputs.append(MeasuredRegion(key=key, cells=len(wide), **projected))
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
