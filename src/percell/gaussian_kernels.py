"""Gaussian filters equal bit for bit to scipy's, vectorised (numba).

``ndimage.gaussian_filter`` runs one 1-D correlation per axis, each over
lines copied into a float64 buffer, one output pixel at a time; the
watershed's smoothing, Laplacian of Gaussian and distance smoothing spent
much of their time there. (The demo's drawing and the thresholds keep
scipy's: for their small jobs, importing numba costs more than it saves.)
Here each pass does the same arithmetic in the same
order (the centre tap, then the pairs of taps from the outermost inward, in
float64, rounded to the image's dtype after each axis) over whole rows at a
time, which the compiler turns into vector instructions: the results are
scipy's, bit for bit, several times faster (``tests/unit/test_gaussian_kernels``).

Only what percell uses takes this path: float32/float64 images, the default
``reflect`` boundary, kernels that are symmetric (orders 0 and 2); anything
else goes to scipy. Compiled code is cached on disk (numba's
``cache=True``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True)


def gaussian_filter(
    image: np.ndarray,
    sigma: float | Sequence[float],
    order: int | Sequence[int] = 0,
    truncate: float = 4.0,
) -> np.ndarray:
    """``ndimage.gaussian_filter(image, sigma, order, truncate=truncate)``:
    a new array of the image's dtype."""
    from scipy import ndimage

    image = np.asarray(image)
    sigmas = _per_axis(sigma, image.ndim)
    orders = [int(o) for o in _per_axis(order, image.ndim)]
    if image.dtype not in (np.float32, np.float64) or any(o % 2 for o in orders):
        return ndimage.gaussian_filter(image, sigmas, orders, truncate=truncate)
    out = image
    for axis, (s, o) in enumerate(zip(sigmas, orders, strict=True)):
        if s > 1e-15:  # scipy skips an axis whose sigma is (nearly) zero
            out = _correlate_axis(out, _weights(float(s), o, truncate), axis)
    return out.copy() if out is image else out


def _per_axis(value: float | Sequence[float], ndim: int) -> list[float]:
    if isinstance(value, (int, float, np.integer, np.floating)):
        return [float(value)] * ndim
    values = [float(v) for v in value]
    if len(values) != ndim:
        raise ValueError(f"{len(values)} values for an image of {ndim} axes")
    return values


def _weights(sigma: float, order: int, truncate: float) -> np.ndarray:
    """The taps scipy correlates with: its own 1-D filter of an impulse (each
    output is one tap plus zeros, so exact)."""
    from scipy import ndimage

    radius = int(truncate * sigma + 0.5)
    impulse = np.zeros(2 * radius + 1)
    impulse[radius] = 1.0
    return ndimage.gaussian_filter1d(
        impulse, sigma, order=order, mode="constant", truncate=truncate
    )


def _correlate_axis(image: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """One pass along ``axis``: the image as (outer, n, inner) lines."""
    shape = image.shape
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1 :], dtype=np.int64))
    src = np.ascontiguousarray(image).reshape(outer, shape[axis], inner)
    out = np.empty_like(src)
    if inner == 1:
        _along_lines(src[:, :, 0], out[:, :, 0], weights)
    else:
        _across_lines(src, out, weights)
    return out.reshape(shape)


@_jit
def _reflect(i: int, n: int) -> int:
    """scipy's ``reflect`` boundary (d c b a | a b c d | d c b a), repeated
    for a kernel longer than the line."""
    m = i % (2 * n)
    return m if m < n else 2 * n - 1 - m


@_jit
def _along_lines(src: np.ndarray, out: np.ndarray, weights: np.ndarray) -> None:
    """Each row of ``src`` (contiguous) correlated with ``weights``."""
    rows, n = src.shape
    r = weights.size // 2
    line = np.empty(n + 2 * r)
    acc = np.empty(n)
    centre = weights[r]
    # (the loops index views by their own counter: indices the compiler
    # knows are not negative, so it vectorises them)
    middle = line[r : r + n]
    for y in range(rows):
        row = src[y]
        for x in range(n):
            middle[x] = row[x]
        for i in range(r):  # the borders, reflected
            line[i] = row[_reflect(i - r, n)]
            line[r + n + i] = row[_reflect(n + i, n)]
        for x in range(n):
            acc[x] = middle[x] * centre
        for k in range(r):  # scipy's order: outermost pair first
            w = weights[k]
            left = line[k : k + n]
            right = line[2 * r - k : 2 * r - k + n]
            for x in range(n):
                acc[x] += (left[x] + right[x]) * w
        out_row = out[y]
        for x in range(n):
            out_row[x] = acc[x]


@_jit
def _across_lines(src: np.ndarray, out: np.ndarray, weights: np.ndarray) -> None:
    """``src`` (outer, n, inner) correlated along its middle axis, a whole
    row of ``inner`` values at a time."""
    outer, n, inner = src.shape
    r = weights.size // 2
    acc = np.empty(inner)
    centre = weights[r]
    for o in range(outer):
        plane = src[o]
        for y in range(n):
            row = plane[y]
            for x in range(inner):
                acc[x] = np.float64(row[x]) * centre
            for k in range(r):
                w = weights[k]
                above = plane[_reflect(y - r + k, n)]
                below = plane[_reflect(y + r - k, n)]
                for x in range(inner):
                    acc[x] += (np.float64(above[x]) + np.float64(below[x])) * w
            out_row = out[o, y]
            for x in range(inner):
                out_row[x] = acc[x]
