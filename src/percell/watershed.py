"""The classical method: smoothing, threshold, distance transform, seeded watershed.

Needs no model, so the demo and CI use it. Works on 2-D planes and 3-D stacks.
The threshold is computed once per region (``region_threshold``) and passed to
every tile, so tiles agree with each other and with an untiled run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from skimage import filters, segmentation
from skimage.feature import peak_local_max

THRESHOLDS = {
    "otsu": filters.threshold_otsu,
    "li": filters.threshold_li,
    "triangle": filters.threshold_triangle,
}


def smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing in y and x (not z) as float32."""
    image = image.astype(np.float32)
    if sigma <= 0:
        return image
    sigmas = (0,) * (image.ndim - 2) + (sigma, sigma)
    return ndimage.gaussian_filter(image, sigmas)


def region_threshold(sample: np.ndarray, sigma: float, method: str = "otsu") -> float:
    """The foreground threshold of a region, from a (downsampled) sample of it."""
    threshold: Any = THRESHOLDS[method]  # scikit-image has no types
    return float(threshold(smooth(sample, sigma)))


def watershed_segment(
    image: np.ndarray,
    diameter_px: float,
    threshold: float,
    sigma: float = 1.0,
    min_size: int = 15,
) -> np.ndarray:
    """Label the objects of one tile.

    Args:
        image: 2-D (Y, X) or 3-D (Z, Y, X) intensities of the channel.
        diameter_px: Expected object diameter; seeds closer than about a third
            of it merge.
        threshold: Foreground threshold (on the smoothed image).
        sigma: Gaussian smoothing in pixels.
        min_size: Objects smaller than this many pixels are dropped.

    Returns:
        int32 labels, 0 = background, ids 1..n.
    """
    smoothed = smooth(image, sigma)
    components, _ = ndimage.label(smoothed > threshold)
    if min_size > 0:  # drop specks before they become seeds
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        components[sizes[components] < min_size] = 0
    mask = components > 0
    if not mask.any():
        return np.zeros(image.shape, np.int32)
    distance = ndimage.distance_transform_edt(mask)
    min_distance = max(1, round(diameter_px / 3))
    # without labels= (which loops over components): a component that gets no
    # peak this way is seeded below
    peaks = peak_local_max(
        distance, min_distance=min_distance, threshold_abs=0.5, exclude_border=False
    )
    markers = np.zeros(image.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # components without a peak (tiny or flat) still get one seed each
    seeded = np.unique(components[tuple(peaks.T)])
    missing = np.setdiff1d(np.arange(1, components.max() + 1), seeded)
    if missing.size:
        spots = ndimage.maximum_position(distance, components, missing)
        for i, spot in enumerate(spots, start=len(peaks) + 1):
            markers[spot] = i
    labels = segmentation.watershed(-distance, markers, mask=mask)
    if min_size > 0:
        sizes = np.bincount(labels.ravel())
        labels[sizes[labels] < min_size] = 0
    return labels.astype(np.int32)
