"""Compiled loops over each cell's pixels (numba).

A label image's pixels are grouped by cell once (a counting sort: ``order``
lists the pixels of cell 0, then of cell 1, ...). Every channel and every
mask is then read one cell at a time through that order: a cell's pixels sit
together in cache while its metrics are computed, and its median is a
selection in expected linear time rather than a sort of the whole image.

Sums of integer images are kept in int64 (exact), of float images in float64.
The kernels release the GIL, so channels can be measured in threads.
Compiled code is cached on disk (numba's ``cache=True``): a job pays the
compilation once per image dtype, later jobs load it.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True)


def accumulator(dtype: np.dtype[Any]) -> np.integer[Any] | np.floating[Any]:
    """The zero a cell's sum starts from: int64 for integers, float64 else."""
    return np.int64(0) if dtype.kind in "ui" else np.float64(0.0)


@_jit
def count_labels(flat: np.ndarray, size: int) -> np.ndarray:
    """Pixels of each label value (``np.bincount``, in one pass instead of
    three); every value of ``flat`` must be in [0, size)."""
    counts = np.zeros(size, np.int64)
    for i in range(flat.size):
        counts[flat[i]] += 1
    return counts


@_jit
def group_by_cell(
    flat: np.ndarray, lut: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels grouped by cell: ``order[starts[c]:starts[c] + counts[c]]`` are
    the indices into ``flat`` of cell ``c``'s pixels, in image order.

    ``lut`` maps a label value to its cell (-1: background or not asked
    for), ``counts`` gives each cell's pixels.
    """
    starts = np.zeros(counts.size, np.int64)
    total = 0
    for cell in range(counts.size):
        starts[cell] = total
        total += counts[cell]
    order = np.empty(total, np.int64)
    cursor = starts.copy()
    for i in range(flat.size):
        cell = lut[flat[i]]
        if cell >= 0:
            order[cursor[cell]] = i
            cursor[cell] += 1
    return order, starts


#: numpy reduces a long array in chunks of its buffer size (``np.getbufsize``)
NUMPY_BUFFER = 8192
#: and each chunk pairwise, in blocks of this many (``PW_BLOCKSIZE``)
_PAIRWISE_BLOCK = 128


@_jit
def _pairwise_sum(x: np.ndarray, start: int, n: int) -> float:
    """``x[start:start + n]`` summed in numpy's pairwise order (eight running
    sums per block, blocks halved at multiples of eight): the same float64
    result as ``np.add.reduce`` of one buffer."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += x[start + i]
        return res
    if n <= _PAIRWISE_BLOCK:
        r = x[start : start + 8].copy()
        i = 8
        end = n - n % 8
        while i < end:
            for j in range(8):
                r[j] += x[start + i + j]
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            res += x[start + i]
            i += 1
        return res
    half = n // 2
    half -= half % 8
    return _pairwise_sum(x, start, half) + _pairwise_sum(x, start + half, n - half)


@_jit
def numpy_sum(x: np.ndarray, n: int) -> float:
    """``np.sum(x[:n])`` of float64 values, bit for bit: pairwise sums of
    buffer-sized chunks, added in turn."""
    res = 0.0
    for start in range(0, n, NUMPY_BUFFER):
        res += _pairwise_sum(x, start, min(NUMPY_BUFFER, n - start))
    return res


@_jit
def _select(values: np.ndarray, n: int, k: int) -> Any:
    """The k-th smallest of ``values[:n]``, partitioning them in place (Wirth's
    selection: equal values split evenly, so a flat cell stays linear). After
    it, ``values[k + 1:n]`` are all >= the result."""
    left, right = 0, n - 1
    while left < right:
        pivot = values[k]
        i, j = left, right
        while i <= j:
            while values[i] < pivot:
                i += 1
            while pivot < values[j]:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if j < k:
            left = i
        if k < i:
            right = j
    return values[k]


@_jit
def _median_by_selection(values: np.ndarray, n: int) -> np.float64:
    """The median of ``values[:n]`` (reordered), by selection."""
    lower = (n - 1) // 2
    middle = np.float64(_select(values, n, lower))
    if n % 2 == 0:  # the next value up: the smallest right of the split
        upper = values[lower + 1]
        for j in range(lower + 2, n):
            if values[j] < upper:
                upper = values[j]
        middle = (middle + np.float64(upper)) / 2
    return middle


@_jit
def _median_by_counting(
    values: np.ndarray, n: int, low: np.int64, high: np.ndarray, low_bytes: np.ndarray
) -> np.float64:
    """The median of integer ``values[:n]`` whose offsets from ``low`` (their
    minimum) fit in 16 bits, by counting: the offsets' high bytes locate the
    middle rank(s), then the low bytes of the offsets in that high byte give
    the value — a few passes over the cell, no reordering, whatever the
    values (``high`` and ``low_bytes`` are scratch arrays of 256)."""
    high[:] = 0
    for j in range(n):
        high[(np.int64(values[j]) - low) >> 8] += 1
    lower = (n - 1) // 2
    n_ranks = 2 - n % 2  # the two middle ones of an even count
    total = np.float64(0.0)
    counted_byte = -1
    for rank in range(lower, lower + n_ranks):
        seen, byte = 0, 0
        while seen + high[byte] <= rank:
            seen += high[byte]
            byte += 1
        if byte != counted_byte:  # the low bytes of this high byte's offsets
            low_bytes[:] = 0
            for j in range(n):
                offset = np.int64(values[j]) - low
                if offset >> 8 == byte:
                    low_bytes[offset & 255] += 1
            counted_byte = byte
        within, low_byte = seen, 0
        while within + low_bytes[low_byte] <= rank:
            within += low_bytes[low_byte]
            low_byte += 1
        total += np.float64(low + (byte << 8) + low_byte)
    return total / n_ranks


@_jit
def cell_metrics(
    image: np.ndarray,
    order: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    zero: Any,
) -> tuple[np.ndarray, ...]:
    """Each cell's mean, max, min, sum, std (population, two passes) and median
    of ``image`` (flat). NaN for a cell without pixels, and, as numpy's
    reductions give, for a cell with a NaN pixel."""
    n = counts.size
    mean = np.full(n, np.nan)
    maximum = np.full(n, np.nan)
    minimum = np.full(n, np.nan)
    total = np.full(n, np.nan)
    std = np.full(n, np.nan)
    median = np.full(n, np.nan)
    buffer = np.empty(counts.max() if n else 0, image.dtype)
    squares_buffer = np.empty(buffer.size, np.float64)
    integer = image.dtype.kind in "ui"
    high_bytes = np.zeros(256, np.int64)
    low_bytes = np.zeros(256, np.int64)
    for cell in range(n):
        k = counts[cell]
        if k == 0:
            continue
        first = starts[cell]
        acc = zero
        low = high = image[order[first]]
        has_nan = False
        for j in range(k):
            v = image[order[first + j]]
            buffer[j] = v
            acc += v
            if v < low:
                low = v
            if v > high:
                high = v
            if v != v:
                has_nan = True
        if has_nan:
            continue
        # an integer sum is exact; a float one is summed in float64 as numpy
        # sums float64 (float32 images: numpy would sum in float32)
        cell_sum = np.float64(acc)
        if not integer:
            for j in range(k):
                squares_buffer[j] = buffer[j]
            cell_sum = np.float64(numpy_sum(squares_buffer, k))
        cell_mean = cell_sum / k
        # deviations from the mean (a one-pass sum of squares cancels
        # catastrophically when a cell is bright and even), summed as numpy
        # sums them, so that std is bit for bit the PerCell 3 application's
        for j in range(k):
            d = np.float64(buffer[j]) - cell_mean
            squares_buffer[j] = d * d
        squares = numpy_sum(squares_buffer, k)
        mean[cell] = cell_mean
        total[cell] = cell_sum
        std[cell] = np.sqrt(squares / k)
        minimum[cell] = low
        maximum[cell] = high
        if integer and np.int64(high) - np.int64(low) < 1 << 16:
            median[cell] = _median_by_counting(
                buffer, k, np.int64(low), high_bytes, low_bytes
            )
        else:
            median[cell] = _median_by_selection(buffer, k)
    return mean, maximum, minimum, total, std, median


@_jit
def cell_mask_sums(
    image: np.ndarray,
    mask: np.ndarray,
    order: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    zero: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell: pixels inside ``mask`` (flat, nonzero = inside), the sum of
    ``image`` inside, and the sum over the whole cell."""
    n = counts.size
    inside = np.zeros(n, np.int64)
    sum_inside = np.zeros(n)
    sum_all = np.zeros(n)
    for cell in range(n):
        first = starts[cell]
        acc_in = zero
        acc_all = zero
        count = 0
        for j in range(counts[cell]):
            pixel = order[first + j]
            v = image[pixel]
            acc_all += v
            if mask[pixel]:
                acc_in += v
                count += 1
        inside[cell] = count
        sum_inside[cell] = acc_in
        sum_all[cell] = acc_all
    return inside, sum_inside, sum_all
