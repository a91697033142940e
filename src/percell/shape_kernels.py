"""Compiled 2-D shape features of every label at once (numba).

scikit-image's ``regionprops`` measures one region at a time in Python: on a
tile of 8,000 nuclei its inertia and convex-hull features cost two seconds,
more than the segmentation itself. The same features here come from passes
over the label image, with the definitions regionprops uses:

- moments: integer sums of the pixels' row and column and their products,
  so the central moments are exact (regionprops rounds them);
- perimeter: regionprops' 4-neighbourhood perimeter, which counts each
  border pixel (one with a 4-neighbour outside the object) by the pattern of
  border pixels around it; ``perimeter_codes`` gives each object the counts of
  those patterns, the same histogram regionprops builds;
- convex area: the pixel centres inside or on the convex hull of the midpoints
  of the object's pixel edges (regionprops' ``convex_hull_image``), counted
  with integer arithmetic on doubled coordinates.

Objects are numbered 1..n (0 is background); arrays are indexed by number.
"""

from __future__ import annotations

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True)

#: the border-pixel patterns regionprops' perimeter weighs (its histogram bins)
PERIMETER_CODES = np.array([5, 7, 13, 15, 17, 21, 23, 25, 27, 33])


@_jit
def moments_and_boxes(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per object: pixel count and the sums of r, c, r², c², r·c (int64, r and c
    relative to the object's box); its box as (min row, min col, max row,
    max col), inclusive. Returns (sums (n+1, 6), boxes (n+1, 4))."""
    rows, cols = labels.shape
    boxes = np.empty((n + 1, 4), np.int64)
    boxes[:, 0] = rows
    boxes[:, 1] = cols
    boxes[:, 2] = -1
    boxes[:, 3] = -1
    for r in range(rows):
        for c in range(cols):
            k = labels[r, c]
            if k > 0:
                boxes[k, 0] = min(boxes[k, 0], r)
                boxes[k, 1] = min(boxes[k, 1], c)
                boxes[k, 2] = max(boxes[k, 2], r)
                boxes[k, 3] = max(boxes[k, 3], c)
    sums = np.zeros((n + 1, 6), np.int64)
    for r in range(rows):
        for c in range(cols):
            k = labels[r, c]
            if k > 0:
                y = r - boxes[k, 0]
                x = c - boxes[k, 1]
                sums[k, 0] += 1
                sums[k, 1] += y
                sums[k, 2] += x
                sums[k, 3] += y * y
                sums[k, 4] += x * x
                sums[k, 5] += y * x
    return sums, boxes


@_jit
def _inside(labels: np.ndarray, r: int, c: int, k: int) -> bool:
    return 0 <= r < labels.shape[0] and 0 <= c < labels.shape[1] and labels[r, c] == k


@_jit
def perimeter_codes(labels: np.ndarray, n: int) -> np.ndarray:
    """(n+1, 50) counts of regionprops' perimeter patterns per object: a
    border pixel's pattern is 1 + 2·(border 4-neighbours) + 10·(border
    diagonal neighbours), neighbours of the same object only."""
    rows, cols = labels.shape
    border = np.zeros((rows, cols), np.bool_)
    for r in range(rows):
        for c in range(cols):
            k = labels[r, c]
            if k > 0 and not (
                _inside(labels, r - 1, c, k)
                and _inside(labels, r + 1, c, k)
                and _inside(labels, r, c - 1, k)
                and _inside(labels, r, c + 1, k)
            ):
                border[r, c] = True
    counts = np.zeros((n + 1, 50), np.int64)
    for r in range(rows):
        for c in range(cols):
            if not border[r, c]:
                continue
            k = labels[r, c]
            code = 1
            for dr in range(-1, 2):
                for dc in range(-1, 2):
                    if dr == 0 and dc == 0:
                        continue
                    rr, cc = r + dr, c + dc
                    if _inside(labels, rr, cc, k) and border[rr, cc]:
                        code += 10 if dr != 0 and dc != 0 else 2
            counts[k, code] += 1
    return counts


@_jit
def _cross(oy: int, ox: int, ay: int, ax: int, by: int, bx: int) -> int:
    return (ay - oy) * (bx - ox) - (ax - ox) * (by - oy)


@_jit
def _push(hy: np.ndarray, hx: np.ndarray, size: int, floor: int, y: int, x: int) -> int:
    """Add (y, x) to the chain hy/hx[:size], first dropping its last points
    (down to ``floor`` kept) where they would not make a left turn; the new
    size."""
    while size >= floor and (
        _cross(hy[size - 2], hx[size - 2], hy[size - 1], hx[size - 1], y, x) <= 0
    ):
        size -= 1
    hy[size] = y
    hx[size] = x
    return size + 1


@_jit
def _hull(ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convex hull (monotone chain) of points sorted by (y, x), counter-
    clockwise in (y, x): the inside is where ``_cross`` of an edge is ≥ 0."""
    m = ys.shape[0]
    hy = np.empty(2 * m + 1, np.int64)
    hx = np.empty(2 * m + 1, np.int64)
    size = 0
    for i in range(m):  # lower chain
        size = _push(hy, hx, size, 2, ys[i], xs[i])
    lower = size + 1
    for i in range(m - 2, -1, -1):  # upper chain, on top of the lower
        size = _push(hy, hx, size, lower, ys[i], xs[i])
    return hy[: size - 1], hx[: size - 1]  # the last point repeats the first


@_jit
def convex_areas(labels: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Per object, the pixel centres inside or on the convex hull of the
    midpoints of its pixels' edges (regionprops' ``area_convex``)."""
    n = boxes.shape[0] - 1
    # each object's leftmost and rightmost column per row of its box
    start = np.zeros(n + 2, np.int64)
    for k in range(1, n + 1):
        height = boxes[k, 2] - boxes[k, 0] + 1 if boxes[k, 2] >= 0 else 0
        start[k + 1] = start[k] + height
    left = np.full(start[n + 1], np.iinfo(np.int64).max, np.int64)
    right = np.full(start[n + 1], -1, np.int64)
    rows, cols = labels.shape
    for r in range(rows):
        for c in range(cols):
            k = labels[r, c]
            if k > 0:
                i = start[k] + r - boxes[k, 0]
                left[i] = min(left[i], c)
                right[i] = max(right[i], c)
    areas = np.zeros(n + 1, np.int64)
    for k in range(1, n + 1):
        height = start[k + 1] - start[k]
        if height == 0:
            continue
        # in doubled coordinates a pixel (r, c) has edge midpoints
        # (2r±1, 2c) and (2r, 2c±1); per doubled row only the outermost count
        top = 2 * boxes[k, 0] - 1
        span = 2 * height + 1
        lo = np.full(span, np.iinfo(np.int64).max, np.int64)
        hi = np.full(span, np.iinfo(np.int64).min, np.int64)
        for j in range(height):
            if right[start[k] + j] < 0:
                continue  # a row of the box the object does not reach
            y = 2 * j + 1  # pixel row's centre, relative to ``top``
            a, b = 2 * left[start[k] + j], 2 * right[start[k] + j]
            lo[y] = min(lo[y], a - 1)
            hi[y] = max(hi[y], b + 1)
            for dy in (-1, 1):
                lo[y + dy] = min(lo[y + dy], a)
                hi[y + dy] = max(hi[y + dy], b)
        m = 0
        ys = np.empty(2 * span, np.int64)
        xs = np.empty(2 * span, np.int64)
        for y in range(span):
            if hi[y] >= lo[y]:
                ys[m], xs[m] = y + top, lo[y]
                m += 1
                if hi[y] > lo[y]:
                    ys[m], xs[m] = y + top, hi[y]
                    m += 1
        hy, hx = _hull(ys[:m], xs[:m])
        total = 0
        for j in range(height):
            y = 2 * (boxes[k, 0] + j)
            first, last = -(2**62), 2**62  # columns c with 2c inside every edge
            for e in range(hy.shape[0]):
                py, px = hy[e], hx[e]
                qy, qx = hy[(e + 1) % hy.shape[0]], hx[(e + 1) % hy.shape[0]]
                # _cross(p, q, (y, 2c)) = a·c + b ≥ 0
                a = 2 * (qy - py)
                b = -(qy - py) * px - (qx - px) * (y - py)
                if a > 0:
                    first = max(first, -(b // a))  # ceil(-b / a)
                elif a < 0:
                    last = min(last, b // -a)  # floor(b / -a)
                elif b < 0:
                    first, last = 1, 0
            if last >= first:
                total += last - first + 1
        areas[k] = total
    return areas
