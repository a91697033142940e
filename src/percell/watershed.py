"""The classical method: a watershed that needs no model, built for nuclei.

Real fluorescence nuclei touch, differ in brightness several-fold, are
blurred and noisy and sit on an uneven background; one global threshold and
a distance-transform watershed (scikit-image's textbook recipe) lose the dim
ones and merge the touching ones. So, with ``diameter`` the only size it is
given:

1. **Background.** The region's background is a coarse grid of low
   percentiles (2 %) of blocks two diameters wide, read once per region from a
   downsampled pyramid level and interpolated at every pixel
   (``RegionBackground``): a dim gradient is taken out, and every tile sees
   the same background.
2. **Detection.** The smoothed image minus its background is the signal; its
   noise (σ, from the region's pixels) sets the detection level, 6σ. Seeds
   are the maxima, a quarter diameter apart, of the signal's negative
   Laplacian of Gaussian at a quarter of the diameter (a blob detector: a dim
   nucleus beside a bright one is still a maximum); a watershed of that
   response from them gives each nucleus its basin.
3. **Each nucleus its own threshold.** A pixel belongs to its nucleus if it
   is above half that nucleus's peak signal, so a dim nucleus is as whole as
   a bright one, and touching nuclei part along the dim seam between them.
4. **Splitting.** A second watershed on the (lightly smoothed) distance
   transform of those nuclei, cut along the first pass's borders, with seeds
   a quarter diameter apart, splits what is still joined. Objects smaller
   than 15 % of a nucleus of the configured diameter, or ``min_size``, go.

``bench/bench_watershed.py`` measures it against scikit-image's textbook
watershed on synthetic nuclei with those properties and on a real annotated
image (matched F1 at IoU 0.5). Works on 2-D planes and 3-D stacks (each
plane's background is the region's; smoothing and seeds in y and x).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from percell.gaussian_kernels import gaussian_filter
from percell.label_edges import distance_inside, inner_boundaries
from percell.watershed_kernels import (
    drop_small,
    flood_parts,
    keep_above_peak_share,
    spaced_peaks,
)

#: detection level: signal above this many noise σ
DETECTION_SIGMAS = 6.0
#: a pixel is its nucleus's above this fraction of the nucleus's peak
NUCLEUS_FRACTION = 0.5
#: the background: this percentile of blocks of BLOCK_DIAMETERS diameters
BACKGROUND_PERCENTILE = 2.0
BLOCK_DIAMETERS = 2.0
#: the background is read from the smallest pyramid level at least this wide
SAMPLE_PX = 512
#: seeds: the Laplacian of Gaussian's scale and the seeds' spacing, in diameters
BLOB_SCALE = 0.3
SEED_SPACING = 0.25
DISTANCE_SMOOTHING = 0.05
#: objects smaller than this share of a disk of the diameter are dropped
MIN_AREA_FRACTION = 0.15
#: in a volume the point spread blurs nuclei along z into their neighbours:
#: a finer blob scale and seeds further apart (chosen on bench_watershed's
#: synthetic stacks)
VOLUME_BLOB_SCALE = 0.2
VOLUME_SEED_SPACING = 0.4


def smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing in y and x (not z) as float32."""
    image = image.astype(np.float32)
    if sigma <= 0:
        return image
    sigmas = (0,) * (image.ndim - 2) + (sigma, sigma)
    return gaussian_filter(image, sigmas)


def region_threshold(sample: np.ndarray, sigma: float, method: str = "otsu") -> float:
    """A foreground threshold of a (downsampled) sample of a region by
    ``method`` (otsu, li, triangle): the cytoplasm of grown compartments."""
    from skimage import filters

    threshold: Any = {  # scikit-image has no types
        "otsu": filters.threshold_otsu,
        "li": filters.threshold_li,
        "triangle": filters.threshold_triangle,
    }[method]
    return float(threshold(smooth(sample, sigma)))


def smoothing_sigma(diameter_px: float, sigma: float) -> float:
    """The smoothing of the signal: the configured sigma, at least d/12."""
    return max(float(sigma), diameter_px / 12)


@dataclass(frozen=True)
class RegionBackground:
    """A region's background and noise, the same for every tile of it.

    ``grid`` holds the background at the centres of square blocks of
    ``block`` level-0 pixels; ``noise`` is the σ of the smoothed signal.
    """

    grid: np.ndarray
    block: float
    noise: float

    def window(self, y: tuple[int, int], x: tuple[int, int]) -> np.ndarray:
        """The background of level-0 rows y[0]:y[1], columns x[0]:x[1]
        (bilinear between block centres, constant beyond the outer ones)."""
        rows = _linear_weights(y, self.block, self.grid.shape[0])
        columns = _linear_weights(x, self.block, self.grid.shape[1])
        # bilinear is separable: two small matrix products
        return (rows @ self.grid @ columns.T).astype(np.float32)


def _linear_weights(span: tuple[int, int], block: float, n: int) -> np.ndarray:
    """The weights of the ``n`` block centres in the linear interpolation of
    level-0 pixels span[0]:span[1] (constant beyond the outer centres):
    ``ndimage.map_coordinates(order=1, mode="nearest")`` along one axis."""
    at = (np.arange(*span) + 0.5) / block - 0.5
    below = np.floor(at)
    share = at - below
    below = below.astype(np.int64)
    weights = np.zeros((at.size, n))
    rows = np.arange(at.size)
    np.add.at(weights, (rows, np.clip(below, 0, n - 1)), 1 - share)
    np.add.at(weights, (rows, np.clip(below + 1, 0, n - 1)), share)
    return weights


def region_background(
    sample: np.ndarray,
    scale: float,
    crop: np.ndarray,
    diameter_px: float,
    sigma: float,
    volume: bool = False,
) -> RegionBackground:
    """The background grid and noise of a region.

    Args:
        sample: A downsampled plane or stack of the region (a pyramid level).
        scale: Level-0 pixels per sample pixel (in y and x).
        crop: A 2-D window of level 0, for the noise.
        diameter_px: The nucleus diameter in level-0 pixels.
        sigma: The configured smoothing sigma (level-0 pixels).
        volume: A stack segmented as a volume: a block's background is the
            percentile of its voxels on every plane (in tissue, a stack's
            maximum over z is nuclei nearly everywhere). A stack segmented as
            columns takes its maximum over z, where its nuclei are on any
            plane.
    """
    if sample.ndim == 3 and not volume:
        sample = sample.max(axis=0)
    s1 = smoothing_sigma(diameter_px, sigma)
    block = max(8.0, BLOCK_DIAMETERS * diameter_px)
    step = max(1, round(block / scale))  # block edge in sample pixels
    smoothed = smooth(sample, max(s1 / scale, 0.5))
    smoothed = smoothed.reshape(-1, *smoothed.shape[-2:])  # (planes, y, x)
    nz, h, w = smoothed.shape
    ny, nx = max(1, math.ceil(h / step)), max(1, math.ceil(w / step))
    grid = np.empty((ny, nx), np.float64)
    # the whole blocks at once, then the partial ones of the last row/column
    fy, fx = h // step, w // step
    if fy and fx:
        whole = smoothed[:, : fy * step, : fx * step].reshape(nz, fy, step, fx, step)
        blocks = whole.transpose(1, 3, 0, 2, 4).reshape(fy, fx, nz * step * step)
        grid[:fy, :fx] = np.percentile(blocks, BACKGROUND_PERCENTILE, axis=-1)
    for i, j in itertools.product(range(ny), range(nx)):
        if i >= fy or j >= fx:
            part = smoothed[:, i * step : (i + 1) * step, j * step : (j + 1) * step]
            grid[i, j] = np.percentile(part, BACKGROUND_PERCENTILE)
    grid = ndimage.median_filter(grid, 3, mode="nearest")
    residual = crop.astype(np.float32) - smooth(crop, s1)
    mad = float(np.median(np.abs(residual - np.median(residual))))
    # the noise left in a Gaussian-smoothed image: σ / (2 √π s)
    noise = 1.4826 * mad / (2 * math.sqrt(math.pi) * s1)
    # an image without noise (rendered, or quantised flat) still needs a level
    low, high = np.percentile(crop, [0.1, 99.9])
    floor = max(1e-3 * float(high - low), 1e-6)
    return RegionBackground(grid=grid, block=step * scale, noise=max(noise, floor))


def _peaks(
    surface: np.ndarray,
    spacing: float,
    mask: np.ndarray,
    threshold: float | None = None,
) -> np.ndarray:
    """Seed markers (ids 1..n) at the local maxima of ``surface`` inside
    ``mask``, ``spacing`` apart, above ``threshold`` (default: the surface's
    minimum), as ``peak_local_max`` finds them. A stack's seeds are found on
    its maximum over z and run through every plane (a nucleus is one column
    of planes, never split between them)."""
    flat = surface.max(axis=0) if surface.ndim == 3 else surface
    inside = mask.any(axis=0) if mask.ndim == 3 else mask
    level = float(flat.min()) if threshold is None else threshold
    markers = spaced_peaks(flat, max(1, int(spacing)), level, inside)
    if surface.ndim == 3:
        markers = np.broadcast_to(markers, surface.shape).copy()
        markers[~mask] = 0
    return markers


def _watershed(
    surface: np.ndarray, markers: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """scikit-image's seeded watershed of ``surface`` inside ``mask``, on the
    surface's values cut into ``LEVELS`` levels (``watershed_kernels.flood``).

    Only the parts of the mask that hold two seeds or more are flooded: a
    part with one seed is all that seed's, one without stays 0, whatever the
    order of the flood."""
    parts, _ = ndimage.label(mask)  # 4- (6-) connected, as the flood
    seeded = (markers > 0) & mask  # a seed outside the mask floods nothing
    ids = int(markers.max()) + 1
    # each (part, seed id) once: a seed may be several pixels
    pairs = np.unique(parts[seeded].astype(np.int64) * ids + markers[seeded])
    part_of, seed_of = np.divmod(pairs, ids)
    seeds = np.bincount(part_of, minlength=parts.max() + 1)
    owner = np.zeros(seeds.size, np.int32)
    lone = seeds[part_of] == 1
    owner[part_of[lone]] = seed_of[lone]
    labels = owner[parts]
    shared = seeds >= 2
    if shared.any():
        flood_parts(surface, markers, mask, parts, shared, labels)
    return labels


def _laplace_yx(image: np.ndarray, scale: float) -> np.ndarray:
    """The Laplacian of Gaussian in y and x only (each plane of a stack)."""
    sigmas = (0,) * (image.ndim - 2) + (scale, scale)
    lead = (0,) * (image.ndim - 2)
    return gaussian_filter(image, sigmas, order=(*lead, 2, 0)) + gaussian_filter(
        image, sigmas, order=(*lead, 0, 2)
    )


def watershed_segment(
    image: np.ndarray,
    background: np.ndarray,
    diameter_px: float,
    noise: float,
    sigma: float = 1.0,
    min_size: int = 15,
) -> np.ndarray:
    """Label the nuclei of one tile.

    Args:
        image: 2-D (Y, X) or 3-D (Z, Y, X) intensities of the channel.
        background: The region's background over the same window
            (``RegionBackground.window``), (Y, X) or broadcast to the image.
        diameter_px: Expected nucleus diameter in pixels.
        noise: σ of the smoothed signal (``RegionBackground.noise``).
        sigma: Gaussian smoothing in pixels (at least d/12 is used).
        min_size: Objects smaller than this many pixels are dropped.

    Returns:
        int32 labels, 0 = background, ids 1..n.
    """
    d = float(diameter_px)
    yx = (0,) * (image.ndim - 2) + (1, 1)
    signal = smooth(image, smoothing_sigma(d, sigma)) - background
    level = DETECTION_SIGMAS * noise
    # blobs of the nucleus size: a dim nucleus on a bright one's shoulder is
    # still a maximum of the negative Laplacian of Gaussian
    blobs = -_laplace_yx(signal, d * BLOB_SCALE)
    inside = signal > level
    markers = _peaks(blobs, d * SEED_SPACING, mask=inside, threshold=0.0)
    if not markers.any():
        return np.zeros(image.shape, np.int32)
    basins = _watershed(-blobs, markers, inside)
    return _trim_and_split(
        signal,
        basins,
        int(markers.max()),
        NUCLEUS_FRACTION,
        sampling=None,
        smoothing=tuple(max(0.5, d * DISTANCE_SMOOTHING) * a for a in yx),
        seeds=lambda distance, nuclei: _peaks(distance, d * SEED_SPACING, mask=nuclei),
        smallest=max(min_size, MIN_AREA_FRACTION * math.pi * (d / 2) ** 2),
    )


def _trim_and_split(
    signal: np.ndarray,
    basins: np.ndarray,
    n: int,
    fraction: float,
    sampling: tuple[float, ...] | None,
    smoothing: tuple[float, ...],
    seeds: Callable[[np.ndarray, np.ndarray], np.ndarray],
    smallest: float,
) -> np.ndarray:
    """Steps 3 and 4 of both the planar and the volume watershed: each of
    the ``n`` basins keeps its pixels above ``fraction`` of its own peak;
    what is still joined is split on the distance transform (``sampling``:
    the voxel's size by axis; ``smoothing``: its Gaussian sigmas), from the
    ``seeds(distance, nuclei)`` markers; objects under ``smallest`` pixels
    go."""
    keep_above_peak_share(signal, basins, n, fraction)
    nuclei = basins > 0
    # split what is still joined: distance to the background or to a seam
    seams = inner_boundaries(basins)
    distance = distance_inside(nuclei & ~seams, sampling)
    distance = gaussian_filter(distance, smoothing)
    labels = _watershed(-distance, seeds(distance, nuclei), nuclei)
    drop_small(labels, smallest)
    return labels


def volume_segment(
    image: np.ndarray,
    background: np.ndarray,
    diameter_px: float,
    noise: float,
    anisotropy: float,
    sigma: float = 1.0,
    min_size: int = 15,
) -> np.ndarray:
    """Label the nuclei of a (Z, Y, X) tile in 3-D: the same four steps as
    ``watershed_segment``, with smoothing, blobs, seeds and distances in
    three dimensions, z scaled by ``anisotropy`` (the z step in xy pixels),
    so nuclei at different depths that overlap in XY come out apart.

    ``min_size`` and the smallest kept object are volumes, in voxels.
    """
    d = float(diameter_px)
    per_axis = (1.0 / anisotropy, 1.0, 1.0)  # voxels per xy pixel, by axis
    smoothing = tuple(smoothing_sigma(d, sigma) * k for k in per_axis)
    signal = gaussian_filter(image.astype(np.float32), smoothing) - background
    level = DETECTION_SIGMAS * noise
    inside = signal > level
    # the Laplacian of Gaussian in xy-pixel units (z's term scaled back)
    scale = tuple(d * VOLUME_BLOB_SCALE * k for k in per_axis)
    blobs = np.zeros_like(signal)
    for axis, weight in enumerate((1.0 / anisotropy**2, 1.0, 1.0)):
        order = [0, 0, 0]
        order[axis] = 2
        blobs -= weight * gaussian_filter(signal, scale, order=order)
    markers = _maxima(blobs, d * VOLUME_SEED_SPACING, per_axis, inside & (blobs > 0))
    if not markers.any():
        return np.zeros(image.shape, np.int32)
    basins = _watershed(-blobs, markers, inside)
    sphere = math.pi / 6 * d**3 / anisotropy  # a nucleus's volume in voxels
    return _trim_and_split(
        signal,
        basins,
        int(markers.max()),
        NUCLEUS_FRACTION,
        sampling=(anisotropy, 1.0, 1.0),
        smoothing=tuple(max(0.5, d * DISTANCE_SMOOTHING) * k for k in per_axis),
        seeds=lambda distance, nuclei: _maxima(
            distance, d * VOLUME_SEED_SPACING, per_axis, nuclei
        ),
        smallest=max(min_size, MIN_AREA_FRACTION * sphere),
    )


def _maxima(
    surface: np.ndarray,
    spacing: float,
    per_axis: tuple[float, ...],
    mask: np.ndarray,
) -> np.ndarray:
    """Seed markers (ids 1..n) at the maxima of ``surface`` inside ``mask``
    that are the highest within an ellipsoid of radius ``spacing`` (xy
    pixels; ``per_axis`` converts to voxels); a plateau is one seed."""
    radii = [max(1, round(spacing * k)) for k in per_axis]
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in radii)]
    footprint = np.asarray(
        sum((g / r) ** 2 for g, r in zip(grid, radii, strict=True)) <= 1
    )
    top = footprint_maximum(surface, footprint)
    markers, _ = ndimage.label((surface == top) & mask, np.ones((3,) * surface.ndim))
    return markers.astype(np.int32)


def footprint_maximum(surface: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """``ndimage.maximum_filter(surface, footprint=footprint, mode="nearest")``
    for a footprint whose rows along the last axis are centred runs (a disk,
    an ellipsoid): the maximum of shifted 1-D running maxima, one per row,
    linear in the row's length where the footprint filter is quadratic."""
    radii = [n // 2 for n in footprint.shape]
    padded = np.pad(surface, [(r, r) for r in radii], mode="edge")
    rx = radii[-1]
    halves: dict[int, list[tuple[int, ...]]] = {}
    for lead in np.ndindex(footprint.shape[:-1]):
        run = np.flatnonzero(footprint[lead])
        if run.size:
            half = rx - int(run[0])
            if not np.array_equal(run, np.arange(rx - half, rx + half + 1)):
                raise ValueError("footprint rows must be centred runs")
            halves.setdefault(half, []).append(lead)
    top = np.full(surface.shape, -np.inf, dtype=np.result_type(surface, np.float32))
    for half, leads in halves.items():
        running = ndimage.maximum_filter1d(
            padded, 2 * half + 1, axis=-1, mode="nearest"
        )
        for lead in leads:
            window = tuple(
                slice(o, o + n) for o, n in zip(lead, surface.shape, strict=False)
            )
            np.maximum(
                top, running[(*window, slice(rx, rx + surface.shape[-1]))], out=top
            )
    return top.astype(surface.dtype, copy=False)


def segment_nuclei(
    image: np.ndarray,
    background: np.ndarray,
    diameter_px: float,
    noise: float,
    sigma: float = 1.0,
    min_size: int = 15,
    anisotropy: float | None = None,
) -> np.ndarray:
    """The watershed of one tile: a stack given its ``anisotropy`` (z step
    in xy pixels) as a volume (``volume_segment``), anything else as planes,
    a stack's nuclei as columns through its planes (``watershed_segment``)."""
    if anisotropy is not None and image.ndim == 3:
        return volume_segment(
            image, background, diameter_px, noise, anisotropy, sigma, min_size
        )
    return watershed_segment(image, background, diameter_px, noise, sigma, min_size)


def segment_image(
    image: np.ndarray,
    diameter_px: float,
    sigma: float = 1.0,
    min_size: int = 15,
    anisotropy: float | None = None,
) -> np.ndarray:
    """The whole method on one in-memory image, (Y, X) or (Z, Y, X): its
    background and noise from the image itself, as the segment step takes
    them from a region's pyramid (the smallest 2×2-mean level at least
    ``SAMPLE_PX`` wide), then ``watershed_segment`` (``segment_nuclei``: as a volume
    where a stack's ``anisotropy`` is given)."""
    from percell.pyramid import mean_2x2

    middle = image[image.shape[0] // 2] if image.ndim == 3 else image
    h, w = middle.shape
    y0, x0 = max(0, h // 2 - 256), max(0, w // 2 - 256)
    crop = middle[y0 : y0 + 512, x0 : x0 + 512]
    sample = image
    while max(sample.shape[-2:]) >= 2 * SAMPLE_PX:  # its next level is wide enough
        sample = mean_2x2(sample)
    background = region_background(
        sample,
        w / sample.shape[-1],
        crop,
        diameter_px,
        sigma,
        volume=anisotropy is not None,
    )
    behind = background.window((0, h), (0, w))
    return segment_nuclei(
        image,
        np.broadcast_to(behind, image.shape),
        diameter_px,
        background.noise,
        sigma,
        min_size,
        anisotropy,
    )
