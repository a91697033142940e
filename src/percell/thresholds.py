"""Threshold runs: a value per region (or per pooled scope) and a binary mask.

Every method works on the intensity histogram, so a region is read band by
band and a pooled scope (condition × timepoint, or the whole experiment) sums
its regions' histograms: memory stays bounded and a pooled value is exactly
the value of the concatenated pixels. For integer images the histogram has one
bin per value — exactly what scikit-image builds for such images — so every
method returns scikit-image's value; float images use 65,536 bins over their
range.

With smoothing, the image is Gaussian-smoothed in y and x and rounded back to
its own type; the value and the mask (``smoothed > value``) both use it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import zarr

from percell import layout, ngff
from percell.chunks import BlockIO
from percell.contracts import (
    ImportedRegion,
    PooledValues,
    Thresholded,
    ThresholdedRegion,
    ThresholdRun,
)
from percell.dtypes import cast_to
from percell.errors import ConfigError, ExperimentError
from percell.pyramid import build_levels, max_2x2
from percell.sentinel import write_sentinel
from percell.storage import (
    MASK_COMPRESSOR,
    Staging,
    array_of,
    attrs_of,
    create_array,
    level_paths,
    open_group,
    staged_file,
)

log = logging.getLogger(__name__)

METHODS = ("otsu", "li", "triangle", "yen", "isodata", "mean", "percentile", "manual")
FLOAT_BINS = 65536
#: integer histograms wider than this get FLOAT_BINS bins (8 MB at most)
MAX_DENSE_BINS = 1 << 20
#: distinct values a histogram holds exactly (32 MB of values and counts)
MAX_DISTINCT = 1 << 21


def smooth_band(band: np.ndarray, sigma: float, dtype: np.dtype) -> np.ndarray:
    """Gaussian-smooth a (rows, cols) band in both axes, back in ``dtype``."""
    if sigma <= 0:
        return band
    from scipy import ndimage  # here: most histogram and mask jobs never smooth

    # float64: exact for every accepted type (float32 would round 32-bit data)
    return cast_to(ndimage.gaussian_filter(band.astype(np.float64), sigma), dtype)


def iter_planes(
    arr: zarr.Array, channel: int, sigma: float, band: int = 512
) -> Iterator[tuple[tuple, int, np.ndarray]]:
    """Smoothed bands of one channel: (z index or (), y0, band).

    Bands are read with a halo of 4·sigma rows so smoothing is exact at their
    edges, then cropped.
    """
    io = BlockIO(arr)
    height = arr.shape[-2]
    halo = math.ceil(4 * sigma) if sigma > 0 else 0
    planes = [()] if arr.ndim == 3 else [(z,) for z in range(arr.shape[1])]
    for zi in planes:
        for y0 in range(0, height, band):
            y1 = min(y0 + band, height)
            lo, hi = max(0, y0 - halo), min(height, y1 + halo)
            rows = _read_rows(io, arr, channel, zi, lo, hi)
            sm = smooth_band(rows, sigma, arr.dtype)
            yield zi, y0, sm[y0 - lo : y0 - lo + (y1 - y0)]


def _read_rows(
    io: BlockIO, arr: zarr.Array, c: int, zi: tuple, lo: int, hi: int
) -> np.ndarray:
    """Rows lo:hi of channel c (and plane zi) as a 2-D array."""
    start = (c, *zi, lo, 0)
    shape = (1, *(1 for _ in zi), hi - lo, arr.shape[-1])
    return io.read(start, shape).reshape(hi - lo, arr.shape[-1])


class Histogram:
    """Counts per intensity value.

    Exact (one entry per distinct value) up to MAX_DISTINCT values, which
    8/16-bit images and real 32-bit integer images never exceed; beyond that
    (float images with millions of distinct values) the values are floored
    to a power-of-two step fine enough to leave MAX_DISTINCT / 2 entries, so
    memory stays bounded whatever the image size.
    """

    def __init__(
        self, values: np.ndarray | None = None, counts: np.ndarray | None = None
    ) -> None:
        self.values = np.zeros(0) if values is None else np.asarray(values)
        self.counts = (
            np.zeros(0, np.int64) if counts is None else np.asarray(counts, np.int64)
        )

    def add(self, data: np.ndarray) -> None:
        """Count the values of ``data``."""
        vals, cnts = np.unique(data, return_counts=True)
        self.merge(Histogram(vals, cnts))

    def merge(self, other: Histogram) -> None:
        """Add another histogram's counts to this one."""
        if self.values.size == 0:
            self.values, self.counts = other.values.copy(), other.counts.copy()
            return
        vals, inverse = np.unique(
            np.concatenate([self.values, other.values]), return_inverse=True
        )
        counts = np.bincount(
            inverse,
            weights=np.concatenate([self.counts, other.counts]),
            minlength=vals.size,
        )
        self.values, self.counts = vals, counts.astype(np.int64)
        if self.values.size > MAX_DISTINCT:
            self._coarsen()

    def _coarsen(self) -> None:
        values = self.values.astype(np.float64)
        span = float(values[-1] - values[0])
        step = 2.0 ** math.ceil(math.log2(span / (MAX_DISTINCT // 2)))
        vals, inverse = np.unique(np.floor(values / step) * step, return_inverse=True)
        counts = np.bincount(inverse, weights=self.counts, minlength=vals.size)
        log.info("histogram of %d values coarsened to a step of %g", values.size, step)
        self.values, self.counts = vals, counts.astype(np.int64)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def fits_dense(self) -> bool:
        """Whether one bin per integer value stays small (≤ MAX_DENSE_BINS)."""
        if self.values.dtype.kind not in "ui":
            return True
        return int(self.values.max()) - int(self.values.min()) < MAX_DENSE_BINS

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """(counts, bin centres) as scikit-image's ``histogram`` gives them.

        Integers: one bin per value from min to max, empty ones included, as
        long as that is at most MAX_DENSE_BINS bins (8/16-bit data always);
        a wider integer range (32-bit data) gets FLOAT_BINS equal bins, like
        floats, so memory stays bounded. Floats: FLOAT_BINS equal bins over
        the range.
        """
        if self.values.dtype.kind in "ui" and self.fits_dense():
            lo = int(self.values.min())
            counts = np.zeros(int(self.values.max()) - lo + 1, np.int64)
            counts[(self.values.astype(np.int64) - lo)] = self.counts
            return counts, np.arange(lo, lo + counts.size)
        values = self.values.astype(np.float64)
        counts, edges = np.histogram(values, bins=FLOAT_BINS, weights=self.counts)
        return counts.astype(np.int64), (edges[:-1] + edges[1:]) / 2


def region_histogram(arr: zarr.Array, channel: int, sigma: float) -> Histogram:
    """The histogram of one (smoothed) channel of a region, read band by band."""
    hist = Histogram()
    for _, _, band in iter_planes(arr, channel, sigma):
        hist.add(band)
    return hist


def threshold_value(
    hist: Histogram,
    method: str,
    percentile: float | None = None,
    value: float | None = None,
    label: str = "",
) -> float:
    """The threshold of a histogram by ``method`` (before any correction).

    A histogram of a single value (a constant region) has that value as its
    threshold whatever the method, so its mask (``> value``) is empty.

    Args:
        label: What the histogram is of (a region, a scope), for messages.
    """
    if method == "manual":
        if value is None:
            raise ConfigError(f"{label or 'threshold'}: method manual needs a value")
        return float(value)
    if hist.total == 0:
        raise ExperimentError(f"{label or 'threshold'}: no pixels to threshold")
    if method not in METHODS:
        raise ConfigError(
            f"unknown threshold method {method!r}; expected one of {METHODS}"
        )
    if hist.values.size == 1:
        log.info("%s: constant image, threshold = its value", label or "histogram")
        return float(hist.values[0])
    if method == "mean":
        return float(np.sum(hist.values.astype(np.float64) * hist.counts) / hist.total)
    if method == "percentile":
        if percentile is None:
            raise ConfigError(
                f"{label or 'threshold'}: method percentile needs a percentile"
            )
        return _percentile(hist, float(percentile))
    if method in ("otsu", "yen", "li") and not hist.fits_dense():
        # both criteria are constant over a run of empty bins and the first
        # maximum is taken, so the histogram of the values present gives the
        # dense histogram's answer without one bin per integer
        counts, centers = hist.counts, hist.values.astype(np.float64)
    else:
        counts, centers = hist.dense()
    if method in ("otsu", "yen", "isodata"):
        from skimage import filters  # here: histogram jobs never choose a value

        fn = getattr(filters, f"threshold_{method}")
        return float(fn(hist=(counts, centers)))
    if method == "li":
        return _li(counts, centers, integer=hist.values.dtype.kind in "ui")
    return _triangle(counts, centers)


def _percentile(hist: Histogram, p: float) -> float:
    """numpy's default (linear) percentile of the pixels the histogram counts."""
    position = (hist.total - 1) * p / 100.0
    cum = np.cumsum(hist.counts)
    lo_i, hi_i = math.floor(position), math.ceil(position)
    lo = hist.values[np.searchsorted(cum, lo_i, side="right")]
    hi = hist.values[np.searchsorted(cum, hi_i, side="right")]
    return float(lo + (float(hi) - float(lo)) * (position - lo_i))


def _li(counts: np.ndarray, centers: np.ndarray, integer: bool) -> float:
    """Li's minimum cross-entropy threshold (iterative), on a histogram."""
    nonzero = counts > 0
    if nonzero.sum() == 1:
        return float(centers[nonzero][0])
    offset = float(centers[nonzero][0])
    x = centers.astype(np.float64) - offset
    w = counts.astype(np.float64)
    tolerance = 0.5 if integer else float(np.min(np.diff(x[nonzero]))) / 2
    t_next = float(np.sum(x * w) / w.sum())
    t_curr = -2 * tolerance
    while abs(t_next - t_curr) > tolerance:
        t_curr = t_next
        fore = x > t_curr
        mean_fore = np.sum(x[fore] * w[fore]) / w[fore].sum()
        mean_back = np.sum(x[~fore] * w[~fore]) / w[~fore].sum()
        if mean_back == 0:
            break
        t_next = (mean_back - mean_fore) / (np.log(mean_back) - np.log(mean_fore))
    return float(t_next + offset)


def _triangle(counts: np.ndarray, centers: np.ndarray) -> float:
    """Zack's triangle threshold, on a histogram."""
    hist = counts.astype(np.float64)
    nbins = hist.size
    peak = int(np.argmax(hist))
    low, high = np.flatnonzero(hist)[[0, -1]]
    if low == high:
        return float(centers[low])
    flip = peak - low < high - peak
    if flip:
        hist = hist[::-1]
        low, peak = nbins - high - 1, nbins - peak - 1
    width = peak - low
    x = np.arange(width)
    y = hist[x + low]
    norm = math.hypot(hist[peak], width)
    level = int(np.argmax(hist[peak] / norm * x - width / norm * y)) + low
    if flip:
        level = nbins - level - 1
    return float(centers[level])


def write_mask(
    arr: zarr.Array, channel: int, sigma: float, value: float, out: zarr.Array
) -> int:
    """Write ``smoothed > value`` as uint8 0/255 into ``out``; return pixels on."""
    io = BlockIO(out)
    on = 0
    for zi, y0, band in iter_planes(arr, channel, sigma, band=out.chunks[-2]):
        mask = np.where(band > value, np.uint8(255), np.uint8(0))
        on += int(np.count_nonzero(mask))
        if zi:
            out[(zi[0], slice(y0, y0 + band.shape[0]), slice(None))] = mask
        else:
            io.write((y0, 0), mask)
    return on


def save_histograms(path: Path, hists: dict[str, Histogram]) -> None:
    """Stage per-region histograms (for pooled scopes) in one .npz file."""
    arrays = {}
    for i, (key, h) in enumerate(sorted(hists.items())):
        arrays[f"key_{i}"] = np.array(key)
        arrays[f"values_{i}"] = h.values
        arrays[f"counts_{i}"] = h.counts
    with staged_file(path) as tmp:
        np.savez(tmp, **arrays)


def load_histograms(path: str | Path) -> dict[str, Histogram]:
    """Read what save_histograms wrote."""
    with np.load(path) as data:
        n = sum(1 for k in data.files if k.startswith("key_"))
        return {
            str(data[f"key_{i}"]): Histogram(data[f"values_{i}"], data[f"counts_{i}"])
            for i in range(n)
        }


# --- the workflow steps --------------------------------------------------------


def scope_key(scope: str, record: ImportedRegion) -> str:
    """Which pooled value a region uses: its own, its condition × timepoint's, or
    the experiment's."""
    if scope == "region":
        return record.key
    if scope == "condition_timepoint":
        return "/".join(p for p in (record.condition, record.timepoint) if p)
    return "experiment"


def histogram_group(
    records: Sequence[ImportedRegion],
    *,
    experiment: str | Path,
    run: ThresholdRun,
    channels: Sequence[str],
    out: str | Path,
) -> None:
    """Stage the histogram of each region of a group (pooled runs only)."""
    channel = list(channels).index(run.channel)
    hists = {}
    for rec in records:
        arr = array_of(open_group(layout.image_path(Path(experiment), rec.key)))
        hists[rec.key] = region_histogram(arr, channel, run.sigma)
        log.info(
            "region %s: histogram of %s (%d pixels)",
            rec.key,
            run.channel,
            hists[rec.key].total,
        )
    save_histograms(Path(out), hists)


def pooled_values(
    run: ThresholdRun,
    histogram_files: Sequence[str],
    records: Sequence[ImportedRegion],
) -> PooledValues:
    """Threshold value of each scope unit from the summed histograms in it."""
    by_key = {r.key: r for r in records}
    pooled: dict[str, Histogram] = {}
    for path in histogram_files:
        for key, hist in load_histograms(path).items():
            pooled.setdefault(scope_key(run.scope, by_key[key]), Histogram()).merge(
                hist
            )
    values = {
        unit: threshold_value(
            h,
            run.method,
            run.percentile,
            run.value,
            label=f"threshold run {run.name}, scope {unit}",
        )
        for unit, h in sorted(pooled.items())
    }
    return PooledValues(run=run, values=values)


def threshold_group(
    records: Sequence[ImportedRegion],
    *,
    run: ThresholdRun,
    channels: Sequence[str],
    sentinel: str | Path,
    group: str,
    inputs: Sequence[str] = (),
    pooled: PooledValues | None = None,
) -> Thresholded:
    """Write the masks of one run for every region of a group; sentinel last."""
    experiment = Path(layout.experiment_of_sentinel(sentinel))
    channel = list(channels).index(run.channel)
    outputs = []
    # every region's mask is built aside; all are swapped in together
    with Staging() as staged:
        for rec in records:
            outputs.append(
                _threshold_region(staged, experiment, rec, run, channel, pooled)
            )
    done = Thresholded(run=run, regions=tuple(outputs))
    write_sentinel(sentinel, "threshold", group, run, list(inputs), done)
    return done


def _threshold_region(
    staged: Staging,
    experiment: Path,
    rec: ImportedRegion,
    run: ThresholdRun,
    channel: int,
    pooled: PooledValues | None,
) -> ThresholdedRegion:
    """Build one region's mask of ``run`` aside; return its sentinel record."""
    image = open_group(layout.image_path(experiment, rec.key))
    arr = array_of(image)
    unit = scope_key(run.scope, rec)
    if run.method == "manual":
        assert run.value is not None  # the config check requires one
        raw = float(run.value)
    elif run.scope == "region":
        raw = threshold_value(
            region_histogram(arr, channel, run.sigma),
            run.method,
            run.percentile,
            label=f"region {rec.key}, channel {run.channel}",
        )
    else:
        if pooled is None:
            raise ValueError(f"run {run.name} ({run.scope} scope) needs its values")
        raw = pooled.values[unit]
    value = raw * run.correction
    built = staged.directory(layout.mask_path(experiment, rec.key, run.name))
    group_ = open_group(built, mode="w")
    shape = arr.shape[1:]
    chunks = ((1,) if arr.ndim == 4 else ()) + (512, 512)
    out = create_array(group_, "0", shape, chunks, np.uint8, MASK_COMPRESSOR)
    on = write_mask(arr, channel, run.sigma, value, out)
    n_levels = len(level_paths(image))
    group_.attrs.put(
        {
            "multiscales": ngff.spatial_multiscales(attrs_of(image)),
            "percell": {"threshold_run": run.name, "threshold_value": value},
        }
    )
    build_levels(built, n_levels, max_2x2, MASK_COMPRESSOR, label=rec.key)
    log.info(
        "region %s: %s threshold %.4g (%s scope), %d pixels on",
        rec.key,
        run.name,
        value,
        run.scope,
        on,
    )
    return ThresholdedRegion(
        key=rec.key, scope_key=unit, value=value, raw_value=raw, pixels_on=on
    )
