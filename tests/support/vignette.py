"""Synthetic fields under a known vignette, for flat-field tests."""

from __future__ import annotations

import numpy as np


def vignette(shape: tuple[int, int]) -> np.ndarray:
    """A smooth, off-centre fall-off to about half at the corners; mean 1."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    r2 = ((yy - 0.45 * h) / h) ** 2 + ((xx - 0.55 * w) / w) ** 2
    profile = 1 - 1.0 * r2
    return profile / profile.mean()


def vignetted_fields(
    n: int, shape: tuple[int, int], rng: np.random.Generator, spots: int = 15
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint16 fields: a flat background with sparse bright spots, each
    field at its own brightness, times ``vignette`` (with shot noise).

    Returns:
        (fields (n, Y, X), the vignette)
    """
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    truth = vignette(shape)
    out = []
    for _ in range(n):
        img = np.full(shape, 400.0)
        for y, x in rng.integers(0, (h, w), (spots, 2)):
            s = rng.uniform(2, 4)
            img += 3000 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s * s))
        img *= rng.uniform(0.8, 1.2)
        out.append(rng.poisson(img * truth))
    return np.clip(out, 0, 65535).astype(np.uint16), truth


def field_variation(fields: np.ndarray) -> float:
    """How much the background varies across the field: the coefficient of
    variation of the per-pixel median over fields (objects are sparse, so
    the median is the background)."""
    from scipy import ndimage

    background = ndimage.uniform_filter(np.median(fields, axis=0).astype(float), 9)
    return float(background.std() / background.mean())
