"""The watershed's hot loops, compiled (numba): flooding (with the levels it
floods on), seed spacing, each label's trim to a share of its peak, and the
drop of small labels.

``flood`` is scikit-image's seeded watershed (``segmentation.watershed`` with
markers, a mask and connectivity 1) on a surface quantised to ``LEVELS``
levels. scikit-image floods from a binary heap ordered by (value, age), a
pixel queued at no lower value than the pixel that reached it; on integer
levels a queue per level, first in first out, pops the same pixels in the
same order (lowest level first, the oldest first within it), in constant time
per pixel instead of a heap's logarithm. The tests hold it equal to
scikit-image's on the same levels. The mask's connected parts never touch,
so each is flooded on its own: a small part's pixels and queues stay in
cache, and a large part's flood asks for the pixels it will pop next before
it needs them.

``spaced_peaks`` is ``feature.peak_local_max`` with one label (a mask): the
maxima of a (2k+1)-wide square neighbourhood above a threshold, kept greedily
from the highest so that no two are nearer than k (Chebyshev) to each other. The
greedy pass looks only at the kept peaks in the cells of a grid around each
candidate, where scikit-image queries a k-d tree in batches from Python.

Compiled code is cached on disk (numba's ``cache=True``).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic
from scipy import ndimage

_jit = numba.njit(cache=True, nogil=True)

#: how many pixels ahead of the one it pops the flood asks the memory for
#: (bench: 25 % faster on an image-wide flood, whose pops are scattered)
PREFETCH_AHEAD = 4

#: the flooding's resolution: a surface is cut into this many levels (on the
#: bench's images, fine enough that the labels are those of the unquantised
#: surface; where each level's queue starts and ends costs 8 MB)
LEVELS = 1 << 20


def quantise(surface: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``surface`` as uint32 levels 0..LEVELS-1, its range inside ``mask``
    spread over them (the order of values kept, up to ties within a level)."""
    spread = _scale_inside(surface, mask)
    if spread is None:  # nothing inside
        return np.zeros(surface.shape, np.uint32)
    flat = np.ascontiguousarray(surface).ravel()
    return _levels(flat, *spread, LEVELS - 1).reshape(surface.shape)


def _scale_inside(surface: np.ndarray, mask: np.ndarray) -> tuple[float, float] | None:
    """The lowest value inside ``mask`` and the factor that spreads the range
    inside it over the levels (0 where the range is one value); None where
    the mask is empty."""
    flat = np.ascontiguousarray(surface).ravel()
    low, high = _range_inside(flat, np.ascontiguousarray(mask).ravel())
    if low > high:
        return None
    return low, (LEVELS - 1) / (high - low) if high > low else 0.0


@_jit
def _range_inside(values: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    low, high = np.inf, -np.inf
    for i in range(values.size):
        if mask[i]:
            v = float(values[i])
            if v < low:
                low = v
            if v > high:
                high = v
    return low, high


@_jit
def _levels(values: np.ndarray, low: float, scale: float, top: int) -> np.ndarray:
    out = np.empty(values.size, np.uint32)
    for i in range(values.size):
        out[i] = _level(values[i], low, scale, top)
    return out


@_jit
def _level(value: float, low: float, scale: float, top: int) -> np.uint32:
    """(value - low) * scale, clipped to [0, top], truncated to an integer."""
    level = (float(value) - low) * scale
    if level < 0.0:
        level = 0.0
    elif level > top:
        level = float(top)
    return np.uint32(level)


def flood(levels: np.ndarray, markers: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The seeded watershed of integer ``levels`` (< LEVELS) from ``markers``
    (ids > 0) inside ``mask``, 4-connected in 2-D and 6-connected in 3-D:
    ``skimage.segmentation.watershed(levels, markers, mask=mask)`` (where no
    two markers share a level, whose order scikit-image leaves to its heap).

    Returns:
        int32 labels, 0 outside the flooded area.
    """
    labels = np.zeros(levels.shape, np.int32)
    # the mask as one part, flooded; integer levels are their own levels
    parts = np.asarray(mask, bool).astype(np.int32)
    _flood_into(levels, markers, parts, np.array([False, True]), labels, 0.0, 1.0)
    return labels


def flood_parts(
    surface: np.ndarray,
    markers: np.ndarray,
    mask: np.ndarray,
    parts: np.ndarray,
    shared: np.ndarray,
    labels: np.ndarray,
) -> None:
    """``flood(quantise(surface, mask), markers, mask)`` on the pixels of the
    ``parts`` (ids of ``mask``'s connected parts) where ``shared[part]``,
    written into ``labels`` there; the rest of ``labels`` is left alone.

    Each pixel's label and level go straight into the flood's state: no
    quantised or masked copy of the whole image."""
    spread = _scale_inside(surface, mask)
    if spread is not None:  # (an empty mask has no shared part)
        _flood_into(surface, markers, parts, shared, labels, *spread)


def _flood_into(
    surface: np.ndarray,
    markers: np.ndarray,
    parts: np.ndarray,
    shared: np.ndarray,
    labels: np.ndarray,
    low: float,
    scale: float,
) -> None:
    """The flood of the pixels whose part is ``shared``, at the levels
    ``_level`` gives ``surface``, its labels written into ``labels``."""
    nd = surface.ndim
    as3 = (lambda a: a) if nd == 3 else (lambda a: a[np.newaxis])
    nz, h, w = as3(surface).shape
    pz = 1 if nd == 3 else 0  # a plane needs no padding across planes
    padded = (nz + 2 * pz, h + 2, w + 2)
    state = np.empty((int(np.prod(padded)), 2), np.int32)
    plane, row = padded[1] * padded[2], padded[2]
    # scikit-image's neighbour order: by offset, lowest first
    near = [-plane, -row, -1, 1, row, plane] if nd == 3 else [-row, -1, 1, row]
    # pixel indices as int32 where they fit: half the memory
    index = np.int32 if state.shape[0] < np.iinfo(np.int32).max else np.int64
    args = (as3(surface), as3(markers), as3(parts), shared, pz)
    order, starts = _fill_state(
        *args, low, scale, LEVELS - 1, state, np.zeros(1, index)
    )
    _flood_each(state, np.array(near, np.int64), order, starts, LEVELS)
    _take_labels(state, as3(parts), shared, pz, as3(labels))


@_jit
def _fill_state(
    surface: np.ndarray,
    markers: np.ndarray,
    parts: np.ndarray,
    shared: np.ndarray,
    pz: int,
    low: float,
    scale: float,
    top: int,
    state: np.ndarray,
    like: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The padded state: each pixel of a shared part its marker (0: to
    flood) beside its level (one cache line serves both reads), every other
    place -1 (never flooded). Returns the shared parts' pixels (their places
    in the state), part by part, each part's in raster order
    (``order[starts[p]:starts[p + 1]]``), parts without pixels left out.
    ``like``: the dtype of pixel indices."""
    nz, h, w = surface.shape
    sizes = np.zeros(shared.size + 1, np.int64)
    for z in range(nz):
        for y in range(h):
            for x in range(w):
                p = parts[z, y, x]
                if shared[p]:
                    sizes[p + 1] += 1
    for p in range(shared.size):
        sizes[p + 1] += sizes[p]
    order = np.empty(sizes[shared.size], like.dtype)
    fill = sizes[:-1].copy()
    for zp in range(nz + 2 * pz):
        for yp in range(h + 2):
            base = (zp * (h + 2) + yp) * (w + 2)
            z, y = zp - pz, yp - 1
            if z < 0 or z >= nz or y < 0 or y >= h:  # the padding
                state[base : base + w + 2] = -1
                continue
            state[base] = -1
            state[base + w + 1] = -1
            for x in range(w):
                p = parts[z, y, x]
                if shared[p]:
                    state[base + 1 + x, 0] = markers[z, y, x]
                    level = _level(surface[z, y, x], low, scale, top)
                    state[base + 1 + x, 1] = np.int32(level)
                    order[fill[p]] = base + 1 + x
                    fill[p] += 1
                else:
                    state[base + 1 + x] = -1
    starts = np.empty(1 + np.count_nonzero(sizes[1:] > sizes[:-1]), np.int64)
    starts[0] = 0
    k = 1
    for p in range(shared.size):
        if sizes[p + 1] > sizes[p]:
            starts[k] = sizes[p + 1]
            k += 1
    return order, starts


@_jit
def _take_labels(
    state: np.ndarray, parts: np.ndarray, shared: np.ndarray, pz: int, out: np.ndarray
) -> None:
    """The flooded labels of the shared parts' pixels, back from the state."""
    nz, h, w = parts.shape
    for z in range(nz):
        for y in range(h):
            base = ((z + pz) * (h + 2) + y + 1) * (w + 2) + 1
            for x in range(w):
                if shared[parts[z, y, x]]:
                    out[z, y, x] = state[base + x, 0]


#: a part of fewer pixels than this share of its levels floods on the ranks
#: of its own levels: queues its own size, not LEVELS long
RANKED_SHARE = 8


@_jit
def _flood_each(
    state: np.ndarray,
    offsets: np.ndarray,
    order: np.ndarray,
    starts: np.ndarray,
    n_levels: int,
) -> None:
    """Flood each part on its own (``_fill_state``'s ``order``). Parts never touch,
    so each floods as it would among the others, while its pixels and their
    queues stay in cache (one flood of the whole image pops pixels scattered
    over it). A part much smaller than ``n_levels`` floods on the ranks of
    its levels (the same order)."""
    for p in range(starts.size - 1):
        pixels = order[starts[p] : starts[p + 1]]
        levels = n_levels
        if pixels.size * RANKED_SHARE < n_levels:
            levels = _rank_levels(state, pixels, n_levels)
        _flood(state, offsets, pixels, levels)


@_jit
def _rank_levels(state: np.ndarray, pixels: np.ndarray, n_levels: int) -> int:
    """Replace the levels ``state[pixels, 1]`` by their ranks among the
    distinct ones (a radix sort, 10 bits a pass); returns how many."""
    m = pixels.size
    keys = np.empty(m, np.int64)
    for k in range(m):
        keys[k] = state[pixels[k], 1]
    index = np.arange(m)
    spare = np.empty(m, np.int64)
    count = np.empty(1025, np.int64)
    shift = 0
    while (1 << shift) < n_levels:
        count[:] = 0
        for k in range(m):
            count[((keys[index[k]] >> shift) & 1023) + 1] += 1
        for d in range(1024):
            count[d + 1] += count[d]
        for k in range(m):
            d = (keys[index[k]] >> shift) & 1023
            spare[count[d]] = index[k]
            count[d] += 1
        index, spare = spare, index
        shift += 10
    rank, last = -1, -1
    for k in range(m):
        key = keys[index[k]]
        if key != last:
            rank += 1
            last = key
        state[pixels[index[k]], 1] = rank
    return rank + 1


@_jit
def _flood(
    state: np.ndarray,
    offsets: np.ndarray,
    pixels: np.ndarray,
    n_levels: int,
) -> None:
    """Flood the labels ``state[pixels, 0]`` (ids > 0: markers; 0: to
    flood; -1: never) of ``pixels`` (a part, in raster order) at levels
    ``state[pixels, 1]`` (< ``n_levels``) in place.

    A pixel is queued at its level, or at its flooder's where that is higher
    (scikit-image: reaching a pixel costs at least what reaching its
    neighbour did), so the level only rises. A pixel queued ahead of the
    flood waits at its own level, so level v's queue holds at most the
    pixels of level v: the queues are runs of one array (``slots``), sized
    by counting the levels first, filled and read in order (no pointer to
    chase per pixel). Those queued while v is flooded are younger than all
    of v's and go to a plain first-in-first-out array, ``now``, which keeps
    the hot path in cache. A queue's pixels lie anywhere in the part, so
    the flood asks for those it will pop next while it floods this one."""
    row = offsets[offsets.size // 2 + 1]  # the next row's offset
    first = np.zeros(n_levels + 1, pixels.dtype)  # level v's run: first[v]..
    for i in pixels:
        first[state[i, 1] + 1] += 1
    for v in range(n_levels):
        first[v + 1] += first[v]
    fill = first[:-1].copy()  # ..fill[v]: the pixels queued at v so far
    slots = np.empty(pixels.size, pixels.dtype)
    now = np.empty(pixels.size, pixels.dtype)
    level = n_levels
    for i in pixels:  # the markers, in raster order
        if state[i, 0] > 0:
            v = state[i, 1]
            slots[fill[v]] = i
            fill[v] += 1
            level = min(level, v)
    while level < n_levels:
        queued = first[level]
        n_now = 0
        read = 0
        while True:
            if queued < fill[level]:
                i = slots[queued]
                if queued + PREFETCH_AHEAD < fill[level]:
                    _prefetch_pixel(state, slots[queued + PREFETCH_AHEAD], row)
                queued += 1
            elif read < n_now:
                i = now[read]
                read += 1
            else:
                break
            label = state[i, 0]
            for k in range(offsets.size):
                j = i + offsets[k]
                if state[j, 0] == 0:
                    state[j, 0] = label
                    v = state[j, 1]
                    if v <= level:
                        now[n_now] = j
                        n_now += 1
                    else:
                        slots[fill[v]] = j
                        fill[v] += 1
        level += 1


@_jit
def _prefetch_pixel(state: np.ndarray, i: int, row: int) -> None:
    """Ask for the cache lines of pixel ``i`` and its neighbours in the rows
    above and below (a hint: nothing is read)."""
    _prefetch(state, i - row)
    _prefetch(state, i)
    _prefetch(state, i + row)


def _prefetch_typed(typingctx: Any, array: Any, index: Any) -> Any:
    """LLVM's prefetch of ``array[index]`` (the row of a 2-D array), for
    writing (the flood writes its neighbours), kept in every cache level."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        kind, at = signature.args
        view = context.make_array(kind)(context, builder, args[0])
        intp = numba.types.intp
        zero = context.get_constant(intp, 0)
        where = [context.cast(builder, args[1], at, intp)] + [zero] * (kind.ndim - 1)
        pointer = cgutils.get_item_pointer(
            context, builder, kind, view, where, wraparound=False
        )
        byte = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32])
        fn = builder.module.declare_intrinsic("llvm.prefetch", [byte], fnty)
        write, keep, data = (ir.Constant(i32, k) for k in (1, 3, 1))
        builder.call(fn, [builder.bitcast(pointer, byte), write, keep, data])
        return context.get_dummy_value()

    return numba.types.void(array, index), codegen


#: (typed as Any: mypy would see the typing context as an argument)
_prefetch: Any = intrinsic(_prefetch_typed)


def keep_above_peak_share(
    values: np.ndarray, labels: np.ndarray, n: int, fraction: float
) -> None:
    """Each label 1..``n`` keeps only its pixels whose value is at least
    ``fraction`` of its largest, the others set to 0 in place: ``labels[values
    < fraction * ndimage.maximum(values, labels, range(n + 1))[labels]] = 0``
    in two passes, without a copy of the image."""
    _keep_above_peak_share(values.ravel(), _flat_view(labels), n, fraction)


def drop_small(labels: np.ndarray, smallest: float) -> None:
    """Labels of fewer than ``smallest`` pixels set to 0 in place:
    ``labels[np.bincount(labels.ravel())[labels] < smallest] = 0``."""
    flat = _flat_view(labels)
    if flat.size:
        _drop_small(flat, int(flat.max()), smallest)


def _flat_view(array: np.ndarray) -> np.ndarray:
    if not array.flags.c_contiguous:
        raise ValueError("labels must be C-contiguous (changed in place)")
    return array.reshape(-1)


@_jit
def _keep_above_peak_share(
    values: np.ndarray, labels: np.ndarray, n: int, fraction: float
) -> None:
    top = np.full(n + 1, -np.inf)
    for i in range(values.size):
        v = values[i]
        if v > top[labels[i]]:
            top[labels[i]] = v
    for i in range(values.size):
        if labels[i] and values[i] < fraction * top[labels[i]]:
            labels[i] = 0


@_jit
def _drop_small(labels: np.ndarray, n: int, smallest: float) -> None:
    sizes = np.zeros(n + 1, np.int64)
    for i in range(labels.size):
        sizes[labels[i]] += 1
    for i in range(labels.size):
        if sizes[labels[i]] < smallest:
            labels[i] = 0


def spaced_peaks(
    surface: np.ndarray, spacing: int, threshold: float, mask: np.ndarray
) -> np.ndarray:
    """Seed markers (ids 1..n, from the highest) at the peaks of ``surface``
    inside ``mask``: ``peak_local_max(surface, min_distance=spacing,
    threshold_abs=threshold, labels=mask, exclude_border=False)``, where
    pixels outside ``mask`` neither are peaks nor hide one."""
    if not mask.any():
        return np.zeros(surface.shape, np.int32)
    # numpy compares a float image with a Python float in the image's dtype
    limit = surface.dtype.type(threshold) if surface.dtype.kind == "f" else threshold
    if surface.ndim == 2:
        mask = np.asarray(mask, np.bool_)
        candidate, every = _window_maxima(surface, mask, spacing, limit)
    else:
        every = False
    if surface.ndim != 2 or every:
        # pixels outside the mask hold the dtype's least value: never above
        kind = np.finfo if surface.dtype.kind == "f" else np.iinfo
        masked = np.where(mask, surface, kind(surface.dtype).min)
        top = ndimage.maximum_filter(masked, size=2 * spacing + 1, mode="nearest")
        candidate = masked == top
        if candidate[mask].all():  # a flat object: only its isolated pixels
            candidate[:] = False
            candidate[mask ^ ndimage.binary_opening(mask)] = True
        candidate &= masked > limit
    where = np.nonzero(candidate)
    order = np.argsort(-surface[where], kind="stable")
    coords = np.stack(where, axis=1)[order].astype(np.int64)
    chosen = coords[_keep_spaced(coords, spacing)]
    markers = np.zeros(surface.shape, np.int32)
    markers[tuple(chosen.T)] = np.arange(1, len(chosen) + 1, dtype=np.int32)
    return markers


@_jit
def _window_maxima(
    values: np.ndarray, mask: np.ndarray, spacing: int, limit: float
) -> tuple[np.ndarray, bool]:
    """Pixels of ``mask`` above ``limit`` that no pixel of the mask in their
    (2 spacing + 1)² window exceeds (``maximum_filter(values, 2 spacing + 1,
    mode="nearest")`` of the image with the least value outside the mask:
    the window clipped to the image holds the same values as one padded
    with the edge's), and whether every pixel of the mask is such a maximum
    (a flat object). A pixel below one of its eight neighbours is no
    maximum, so the whole window is read only for the few that pass that
    test."""
    h, w = values.shape
    out = np.zeros((h, w), np.bool_)
    every = True
    for y in range(h):
        for x in range(w):
            if mask[y, x]:
                v = values[y, x]
                top = _nothing_above(values, mask, y, x, v, 1) and (
                    spacing <= 1 or _nothing_above(values, mask, y, x, v, spacing)
                )
                every = every and top
                out[y, x] = top and v > limit
    return out, every


@_jit
def _nothing_above(
    values: np.ndarray, mask: np.ndarray, y: int, x: int, v: float, r: int
) -> bool:
    """Whether no pixel of the mask within ``r`` (Chebyshev) of (y, x)
    exceeds ``v``."""
    h, w = values.shape
    for j in range(max(0, y - r), min(h, y + r + 1)):
        for i in range(max(0, x - r), min(w, x + r + 1)):
            if mask[j, i] and values[j, i] > v:
                return False
    return True


@_jit
def _keep_spaced(coords: np.ndarray, spacing: int) -> np.ndarray:
    """Greedy, in the given order: a point is kept unless a kept one is
    nearer than ``spacing`` in every axis (Chebyshev distance below it; one
    exactly ``spacing`` away is kept, as scikit-image keeps it)."""
    n, ndim = coords.shape
    keep = np.zeros(n, np.bool_)
    if n == 0:
        return keep
    cell = max(spacing, 1)
    lo = np.empty(ndim, np.int64)
    dims = np.empty(ndim, np.int64)
    for a in range(ndim):
        lo[a] = coords[:, a].min()
        dims[a] = (coords[:, a].max() - lo[a]) // cell + 1
    # kept points by grid cell, as linked lists
    n_cells = 1
    for a in range(ndim):
        n_cells *= dims[a]
    first = np.full(n_cells, -1, np.int64)
    after = np.full(n, -1, np.int64)
    home = np.empty(ndim, np.int64)
    for p in range(n):
        for a in range(ndim):
            home[a] = (coords[p, a] - lo[a]) // cell
        near = False
        # the 3^ndim cells around home hold every point within `cell`
        for code in range(3**ndim):
            c = code
            flat = 0
            valid = True
            for a in range(ndim):
                g = home[a] + c % 3 - 1
                c //= 3
                if g < 0 or g >= dims[a]:
                    valid = False
                    break
                flat = flat * dims[a] + g
            if not valid:
                continue
            q = first[flat]
            while q != -1:
                close = True
                for a in range(ndim):
                    if abs(coords[p, a] - coords[q, a]) >= spacing:
                        close = False
                        break
                if close:
                    near = True
                    break
                q = after[q]
            if near:
                break
        if not near:
            keep[p] = True
            flat = 0
            for a in range(ndim):
                flat = flat * dims[a] + home[a]
            after[p] = first[flat]
            first[flat] = p
    return keep
