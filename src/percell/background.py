"""Background subtraction per channel, applied to level 0 at import.

Configured channels lose their background before anything downstream sees
them (segmentation, thresholds, measure): level 0 holds ``raw - background``,
rounded and clipped to the image's dtype for integer images (so an unsigned
image floors at 0), exact for float images. Methods:

- ``constant``: a given value;
- ``percentile``: numpy's linear percentile of the region's channel (all of
  its pixels, every z), from an exact histogram;
- ``rolling_ball``: scikit-image's ``rolling_ball`` of each plane, computed
  band by band with ``radius`` rows of context, so it equals the whole-plane
  result; the subtracted image is kept in the region's image group
  (``background/<channel>``, float32, level 0's chunks).

Each channel's record (method, parameters, the value subtracted or the range
of the subtracted image) goes into the import sentinel and experiment.db
(``percell_background``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import zarr

from percell.chunks import BlockIO
from percell.contracts import BackgroundRecord, BackgroundSettings
from percell.dtypes import cast_to
from percell.storage import IMAGE_COMPRESSOR, array_of, create_array

log = logging.getLogger(__name__)

#: the sub-group of a region's image group holding rolling-ball backgrounds
SUBGROUP = "background"


def _rows(io: BlockIO, c: int, zi: tuple, lo: int, hi: int) -> np.ndarray:
    start = (c, *zi, lo, 0)
    shape = (1, *(1 for _ in zi), hi - lo, io.shape[-1])
    return io.read(start, shape).reshape(hi - lo, io.shape[-1])


def percentile_of(arr: zarr.Array, channel: int, percentile: float) -> float:
    """numpy's linear percentile of one channel, read band by band."""
    from percell.thresholds import region_histogram, threshold_value

    hist = region_histogram(arr, channel, 0.0)
    return threshold_value(hist, "percentile", percentile=percentile)


def subtract_background(
    group: zarr.Group,
    channels: Sequence[str],
    settings: Mapping[str, BackgroundSettings],
    label: str = "",
) -> tuple[list[BackgroundRecord], dict[int, tuple[float, float]]]:
    """Subtract each configured channel's background from level 0 in place.

    Args:
        group: The region's image group (being built aside), level 0 written.
        channels: Channel names in C order.
        settings: Channel name → its background settings.

    Returns:
        A record per corrected channel, and for each its new (min, max).
    """
    arr = array_of(group)
    io = BlockIO(arr)
    dtype = np.dtype(arr.dtype)
    height = arr.shape[-2]
    band = arr.chunks[-2]
    planes = [()] if arr.ndim == 3 else [(z,) for z in range(arr.shape[1])]
    records, ranges = [], {}
    for name, setting in settings.items():
        c = list(channels).index(name)
        value = None
        radius = 0
        kept: Any = None
        if setting.method == "constant":
            value = float(setting.value or 0)
        elif setting.method == "percentile":
            value = percentile_of(arr, c, float(setting.percentile or 0))
        else:
            from skimage.restoration import rolling_ball

            radius = math.ceil(float(setting.radius or 0))
            kept = create_array(
                group.require_group(SUBGROUP),
                name,
                arr.shape[1:],
                arr.chunks[1:],
                np.float32,
                IMAGE_COMPRESSOR,
            )
        lo, hi = math.inf, -math.inf
        sub_lo, sub_hi, sub_sum, n = math.inf, -math.inf, 0.0, 0
        for zi in planes:
            carry = np.zeros((0, arr.shape[-1]), dtype)  # raw rows above y0
            for y0 in range(0, height, band):
                y1 = min(y0 + band, height)
                below = _rows(io, c, zi, y0, min(height, y1 + radius))
                if value is not None:
                    background = np.full((y1 - y0, arr.shape[-1]), value)
                    raw = below[: y1 - y0]
                else:
                    context = np.concatenate([carry, below]).astype(np.float64)
                    top = carry.shape[0]
                    background = rolling_ball(context, radius=radius)[
                        top : top + y1 - y0
                    ]
                    raw = below[: y1 - y0]
                    carry = np.concatenate([carry, raw])[-radius:] if radius else carry
                    kept[(*zi, slice(y0, y1), slice(None))] = background.astype(
                        np.float32
                    )
                out = cast_to(raw.astype(np.float64) - background, dtype)
                io.write((c, *zi, y0, 0), out.reshape((1,) * (1 + len(zi)) + out.shape))
                lo, hi = min(lo, float(out.min())), max(hi, float(out.max()))
                sub_lo = min(sub_lo, float(background.min()))
                sub_hi = max(sub_hi, float(background.max()))
                sub_sum += float(background.sum())
                n += background.size
        record = BackgroundRecord(
            channel=name,
            method=setting.method,
            parameters=setting.to_params(),
            value=value,
            subtracted_min=sub_lo,
            subtracted_max=sub_hi,
            subtracted_mean=sub_sum / max(n, 1),
        )
        log.info(
            "  %s: %s background of %s subtracted (%s)",
            label,
            setting.method,
            name,
            f"{value:g}" if value is not None else f"mean {record.subtracted_mean:.4g}",
        )
        records.append(record)
        ranges[c] = (lo, hi)
    return records, ranges
