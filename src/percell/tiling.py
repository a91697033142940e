"""Segmenting large images in overlapping tiles without cutting or doubling cells.

The image is cut into a grid of *cores* (``tile_size`` square, the last ones
smaller). Each core is segmented with an ``overlap`` margin of context on every
side. An object found in a padded tile is kept only if its centroid lies in
that tile's core — so each cell belongs to exactly one tile — and is pasted
into the region's label image where no earlier tile already put a cell. With
an overlap of at least two cell diameters, an object whose centroid is in the
core lies wholly inside the padded tile, so no cell is cut at a tile border.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import zarr
from scipy import ndimage

from percell.cells import cell_table
from percell.errors import ExperimentError
from percell.logs import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tile:
    """One core and its padded window, as (start, stop) in y and x."""

    core_y: tuple[int, int]
    core_x: tuple[int, int]
    pad_y: tuple[int, int]
    pad_x: tuple[int, int]


def tile_grid(
    height: int, width: int, tile_size: int | tuple[int, int], overlap: int
) -> list[Tile]:
    """Cores of ``tile_size`` (an edge, or (y, x)) covering the image, each
    padded by ``overlap``."""
    ty, tx = (tile_size, tile_size) if isinstance(tile_size, int) else tile_size
    tiles = []
    for y0 in range(0, height, ty):
        for x0 in range(0, width, tx):
            y1, x1 = min(y0 + ty, height), min(x0 + tx, width)
            tiles.append(
                Tile(
                    (y0, y1),
                    (x0, x1),
                    (max(0, y0 - overlap), min(height, y1 + overlap)),
                    (max(0, x0 - overlap), min(width, x1 + overlap)),
                )
            )
    return tiles


def _kept_objects(local: np.ndarray, tile: Tile) -> np.ndarray:
    """Ids of ``local`` objects whose centroid falls in the tile's core."""
    ids = np.unique(local)
    ids = ids[ids > 0]
    if ids.size == 0:
        return ids
    centroids = np.asarray(
        ndimage.center_of_mass(np.ones_like(local, np.uint8), local, ids)
    )
    cy = centroids[:, -2] + tile.pad_y[0]
    cx = centroids[:, -1] + tile.pad_x[0]
    inside = (
        (cy >= tile.core_y[0])
        & (cy < tile.core_y[1])
        & (cx >= tile.core_x[0])
        & (cx < tile.core_x[1])
    )
    return ids[inside]


def _segmented(
    tiles: Sequence[Tile],
    read_tile: Callable[[Tile], np.ndarray],
    segment: Callable[[np.ndarray], np.ndarray],
    threads: int,
) -> Iterator[np.ndarray]:
    """Each tile's segmentation, in tile order; with ``threads`` > 1 the
    tiles ahead are read and segmented in a pool (at most two per thread in
    flight, so memory stays a few tiles)."""

    def one(tile: Tile) -> np.ndarray:
        return np.asarray(segment(read_tile(tile)))

    if threads <= 1:
        yield from (one(tile) for tile in tiles)
        return
    ahead = iter(tiles)
    with ThreadPoolExecutor(threads) as pool:
        pending = deque(
            pool.submit(one, t) for t in itertools.islice(ahead, 2 * threads)
        )
        while pending:
            done = pending.popleft().result()
            following = next(ahead, None)
            if following is not None:
                pending.append(pool.submit(one, following))
            yield done


def segment_tiled(
    read_tile: Callable[[Tile], np.ndarray],
    segment: Callable[[np.ndarray], np.ndarray],
    labels: zarr.Array,
    tile_size: int | tuple[int, int],
    overlap: int,
    pixel_size_um: float,
    label: str = "",
    layers: Sequence[zarr.Array] = (),
    threads: int = 1,
) -> pd.DataFrame:
    """Segment every tile, paste kept objects into ``labels``, measure them.

    Args:
        read_tile: Returns the input of ``segment`` for a tile's padded window.
        segment: Method: image tile → label tile (ids local to the tile); with
            ``layers``, a stack: the cells, then one label tile per layer whose
            objects carry their cell's id (a cell's nucleus, its cytoplasm).
        labels: The region's int32 label array, zero-filled; (Y, X) or (Z, Y, X).
        tile_size: Edge of a core in pixels, or (y, x): a plate's field.
        overlap: Context margin in pixels on every side of a core.
        pixel_size_um: For areas in µm².
        label: The region, for progress messages.
        layers: Zero-filled int32 arrays shaped like ``labels``, one per
            further layer of the stack: each gets the parts of the cells
            pasted into ``labels``, under the same ids.
        threads: Tiles segmented at once (``segment`` must be thread-safe);
            they are pasted in tile order, so the labels are those of one
            thread.

    Returns:
        One row per cell (see ``percell.cells.cell_table``), label ids 1..n.
    """
    height, width = labels.shape[-2:]
    tiles = tile_grid(height, width, tile_size, overlap)
    progress = Progress(f"segment {label}", len(tiles), "tiles")
    next_id = 1
    tables = []
    results = _segmented(tiles, read_tile, segment, threads)
    for i, (tile, local) in enumerate(zip(tiles, results, strict=True), start=1):
        parts = []
        if layers:  # a stack: cells first, then the layers
            local, parts = local[0], list(local[1:])
        keep = _kept_objects(local, tile)
        window = (..., slice(*tile.pad_y), slice(*tile.pad_x))
        current = np.asarray(labels[window])
        new = np.zeros(local.shape, np.int32)
        if keep.size:
            # local id → new global id, for kept objects only
            lut = np.zeros(int(local.max()) + 1, np.int64)
            lut[keep] = np.arange(next_id, next_id + keep.size)
            if next_id + keep.size > np.iinfo(np.int32).max:
                raise ExperimentError(
                    f"{label}: more than 2**31-1 cells, more than an int32 label "
                    "image holds"
                )
            new = np.where(current == 0, lut[local], 0).astype(np.int32)
            next_id += keep.size
            labels[window] = np.where(new > 0, new, current)
            for layer, part in zip(layers, parts, strict=True):
                # a layer's pixel is kept where its cell was pasted
                pasted = np.where((part > 0) & (part == local), new, 0)
                layer[window] = np.where(pasted > 0, pasted, layer[window])
            table = cell_table(
                new, pixel_size_um, offset=(tile.pad_y[0], tile.pad_x[0])
            )
            tables.append(table)
        progress.step(i, f"{keep.size} cell(s) kept, {next_id - 1} so far")
    if not tables:
        return cell_table(np.zeros((1, 1), np.int32), pixel_size_um)
    cells = pd.concat(tables, ignore_index=True)
    return cells.sort_values("label_value", ignore_index=True)
