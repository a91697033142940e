"""The pyramid step: levels 1..n, each from the previous stored level.

Images are reduced by the 2×2 mean in y and x (never z); label images (by the
segmentation step) by taking one pixel of each 2×2 block, so no label id is
ever invented by interpolation. Work goes band by band: a band of output rows
needs twice as many rows of the previous level, whatever the image size.
"""

from __future__ import annotations

import itertools
import logging
import math
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from percell import layout, ngff
from percell.chunks import BlockIO
from percell.contracts import ImportedRegion, PyramidParams, PyramidRegion
from percell.sentinel import write_sentinel
from percell.storage import (
    IMAGE_COMPRESSOR,
    Staging,
    array_of,
    attrs_of,
    create_array,
    link_tree,
    open_group,
)

log = logging.getLogger(__name__)

#: An image larger than this in y or x always gets pyramid levels.
ALWAYS_PYRAMID_ABOVE = 4096


def levels_to_one_chunk(height: int, width: int, chunk: tuple[int, int]) -> int:
    """Levels (level 0 included) until the image fits in one chunk."""
    n = 1
    while height > chunk[0] or width > chunk[1]:
        height, width = math.ceil(height / 2), math.ceil(width / 2)
        n += 1
    return n


def count_levels(
    height: int,
    width: int,
    levels: int | str,
    chunk: int | tuple[int, int] = 512,
    at_least_one_chunk: bool = False,
) -> int:
    """Number of resolution levels (level 0 included) for an image.

    ``"auto"`` halves until the image fits in one chunk (``chunk`` is an edge
    or (y, x)). An image larger than ALWAYS_PYRAMID_ABOVE gets at least one
    extra level; with ``at_least_one_chunk`` (plate wells) a count never
    stops before the one-chunk level.
    """
    yx = (chunk, chunk) if isinstance(chunk, int) else (chunk[0], chunk[1])
    needed = levels_to_one_chunk(height, width, yx)
    if levels == "auto":
        return needed
    n = int(levels)
    if at_least_one_chunk and n < needed:
        log.warning(
            "pyramid.levels %d stops before the well fits one chunk: using %d",
            n,
            needed,
        )
        return needed
    if n == 1 and max(height, width) > ALWAYS_PYRAMID_ABOVE:
        log.warning(
            "image %dx%d is larger than %d px: adding one pyramid level "
            "although pyramid.levels is 1",
            height,
            width,
            ALWAYS_PYRAMID_ABOVE,
        )
        n = 2
    # never reduce past a single pixel
    max_n = 1 + max(0, math.ceil(math.log2(max(height, width, 1))))
    return min(n, max_n)


def _pad_even(block: np.ndarray) -> np.ndarray:
    """Repeat the last row/column where y or x is odd, so 2×2 blocks tile it."""
    pad = [(0, 0)] * (block.ndim - 2) + [
        (0, block.shape[-2] % 2),
        (0, block.shape[-1] % 2),
    ]
    return np.pad(block, pad, mode="edge") if any(p[1] for p in pad[-2:]) else block


def mean_2x2(block: np.ndarray) -> np.ndarray:
    """2×2 mean over the last two axes, rounded half up for integer types."""
    b = _pad_even(block)
    dtype = b.dtype
    if dtype.kind == "f":
        acc = b[..., 0::2, 0::2].astype(np.float64)
    else:
        acc = b[..., 0::2, 0::2].astype(
            np.uint32 if dtype.itemsize <= 2 and dtype.kind == "u" else np.int64
        )
    acc += b[..., 1::2, 0::2]
    acc += b[..., 0::2, 1::2]
    acc += b[..., 1::2, 1::2]
    # in place: a plate field's worth of temporaries is worth saving
    if dtype.kind == "f":
        acc /= 4
    else:
        acc += 2
        acc //= 4
    return acc.astype(dtype)


def nearest_2x2(block: np.ndarray) -> np.ndarray:
    """Top-left pixel of each 2×2 block: keeps label ids exact."""
    return np.ascontiguousarray(block[..., 0::2, 0::2])


def max_2x2(block: np.ndarray) -> np.ndarray:
    """2×2 maximum: keeps thin foreground of binary masks visible."""
    b = _pad_even(block)
    return np.maximum(
        np.maximum(b[..., 0::2, 0::2], b[..., 1::2, 0::2]),
        np.maximum(b[..., 0::2, 1::2], b[..., 1::2, 1::2]),
    )


def downsample_level(
    prev: zarr.Array,
    out: zarr.Array,
    reduce: Callable[[np.ndarray], np.ndarray],
    threads: int = 1,
) -> None:
    """Fill ``out`` from ``prev``, one output chunk per task.

    An output chunk covers 2×2 chunks' worth of ``prev``. Where the previous
    level's chunks split evenly into 2×2 blocks, each of its chunks is read
    and reduced on its own into a quadrant of the output chunk, so a task
    holds one previous chunk and one output chunk (for a plate well, about
    two fields); otherwise the task reads its whole window. No two tasks
    touch the same chunk, so they run in parallel safely.
    """
    src, dst = BlockIO(prev), BlockIO(out)
    lead = out.chunks[:-2]
    cy, cx = out.chunks[-2:]
    py, px = prev.chunks[-2:]
    # per-chunk reduction is exact when each previous chunk holds whole 2x2
    # blocks along an axis, or is the only chunk along it
    by_chunk = (
        (py % 2 == 0 or py >= prev.shape[-2])
        and (px % 2 == 0 or px >= prev.shape[-1])
        and prev.chunks[:-2] == lead
    )
    lead_starts = itertools.product(
        *[range(0, s, c) for s, c in zip(prev.shape[:-2], lead, strict=True)]
    )
    tasks = [
        (start, y0, x0)
        for start in lead_starts
        for y0 in range(0, out.shape[-2], cy)
        for x0 in range(0, out.shape[-1], cx)
    ]

    def work(task: tuple[tuple[int, ...], int, int]) -> None:
        start, y0, x0 = task
        if not by_chunk:
            block = src.read((*start, 2 * y0, 2 * x0), (*lead, 2 * cy, 2 * cx))
            dst.write((*start, y0, x0), reduce(block))
            return
        h, w = min(cy, out.shape[-2] - y0), min(cx, out.shape[-1] - x0)
        n_lead = tuple(
            min(c, s - a) for c, s, a in zip(lead, out.shape[:-2], start, strict=True)
        )
        result = np.empty((*n_lead, h, w), out.dtype)
        for ys in range(2 * y0, min(2 * (y0 + cy), prev.shape[-2]), py):
            for xs in range(2 * x0, min(2 * (x0 + cx), prev.shape[-1]), px):
                part = reduce(src.read((*start, ys, xs), (*lead, py, px)))
                oy, ox = ys // 2 - y0, xs // 2 - x0
                result[..., oy : oy + part.shape[-2], ox : ox + part.shape[-1]] = part
        dst.write((*start, y0, x0), result)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        list(pool.map(work, tasks))


def build_levels(
    group_path: str | Path,
    n_levels: int,
    reduce: Callable[[np.ndarray], np.ndarray],
    compressor: Any,
    threads: int = 1,
    label: str = "",
) -> None:
    """Replace levels 1.. of the group at ``group_path`` with ``n_levels`` in all.

    The multiscales metadata first drops to level 0 alone and lists the new
    levels only once they are all written, so a killed job leaves a valid
    (if shallower) image.
    """
    group = open_group(group_path, mode="r+")
    attrs = attrs_of(group)
    group.attrs.put(ngff.with_levels(attrs, 1))
    for name in [k for k in group.array_keys() if k != "0"]:
        del group[name]
    prev = array_of(group)
    for level in range(1, n_levels):
        shape = (
            *prev.shape[:-2],
            math.ceil(prev.shape[-2] / 2),
            math.ceil(prev.shape[-1] / 2),
        )
        # same chunk shape as level 0 (create_array clips it to the shape)
        out = create_array(
            group, str(level), shape, array_of(group).chunks, prev.dtype, compressor
        )
        downsample_level(prev, out, reduce, threads)
        log.info("  %s: level %d %s", label or group_path, level, shape)
        prev = out
    group.attrs.put(ngff.with_levels(attrs, n_levels))


def share_level0(group: Path, target: Path) -> None:
    """A copy of ``group`` at ``target`` holding level 0 and what import put
    beside it (a background image), not the other levels; their chunks are
    hard links (never written again, so sharing them is safe); the metadata
    files are copied, since zarr rewrites them in place."""
    for name in (".zgroup", ".zattrs"):
        if (group / name).exists():
            shutil.copy2(group / name, target / name)
    for child in group.iterdir():
        if child.is_dir() and (child.name == "0" or not child.name.isdigit()):
            link_tree(child, target / child.name)


def pyramid_group(
    records: Sequence[ImportedRegion],
    *,
    params: PyramidParams,
    sentinel: str | Path,
    group: str,
    inputs: Sequence[str] = (),
    threads: int = 1,
) -> list[PyramidRegion]:
    """Build the image pyramid of every region a group's import wrote.

    Args:
        records: The region records of the group's import sentinel.
        params: ``pyramid.levels`` from the config ("auto" or a count).
        sentinel: Path of this step's sentinel, written last (inside the
            experiment, which it names).
        group: The region group id.
        inputs: Files this step read (recorded in the sentinel).
        threads: Bands processed in parallel.
    """
    experiment = Path(layout.experiment_of_sentinel(sentinel))
    outputs = []
    # each region's new group (level 0 hard-linked, new levels written) is
    # built aside and all are swapped in together, so a failure or a kill
    # leaves every region with its old, complete pyramid
    with Staging() as staged:
        for rec in records:
            height, width = rec.shape[-2:]
            # plate wells: chunk = one field, and levels go on to a single chunk
            n = count_levels(
                height,
                width,
                params.levels,
                chunk=rec.chunk_yx or 512,
                at_least_one_chunk=rec.well is not None,
            )
            final = layout.image_path(experiment, rec.key)
            built = staged.directory(final)
            share_level0(final, built)
            build_levels(built, n, mean_2x2, IMAGE_COMPRESSOR, threads, label=rec.key)
            log.info("region %s: %d level(s)", rec.key, n)
            outputs.append(PyramidRegion(key=rec.key, levels=n))
    write_sentinel(sentinel, "pyramid", group, params, list(inputs), outputs)
    return outputs
