"""Z projections: what a reader of 2-D planes only (PerCell 3, schema 4.0.0)
gets of a Z-stack.

The full stack stays in the experiment (NGFF, with its pyramid); the
projection is derived from it, band by band of rows, so memory holds one
band of every plane. Images are projected the way the config names
(``max``: the brightest plane, same dtype; ``mean``: float64, every plane
weighted alike); labels and masks by their maximum (a cell or mask pixel
anywhere in the column), so a monolayer's cell keeps its outline.

``ZProjected`` shows a stack's projection with the indexing the measure
step uses on arrays (``[..., rows, :]`` and ``[c, ..., rows, :]``), so the
measurements of a projected region are computed by the same code, on the
same values, as the application's own measurer on the stored projection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from percell.storage import create_array, open_group

Projection = Literal["max", "mean"]
PROJECTIONS: tuple[str, ...] = ("max", "mean")
#: rows of every plane held at once while a projection is written
BAND_PIXELS = 1 << 24


def project(block: np.ndarray, how: str, z_axis: int) -> np.ndarray:
    """A block's projection along ``z_axis``: the maximum (dtype kept) or the
    mean (float64)."""
    if how == "max":
        return block.max(axis=z_axis)
    if how == "mean":
        return block.mean(axis=z_axis, dtype=np.float64)
    raise ValueError(f"unknown projection {how!r}; expected one of {PROJECTIONS}")


def projected_dtype(dtype: Any, how: str) -> np.dtype:
    return np.dtype(np.float64) if how == "mean" else np.dtype(dtype)


class ZProjected:
    """A (C, Z, Y, X) image or (Z, Y, X) label or mask array, seen as its
    projection along Z, read band by band on demand."""

    def __init__(self, array: Any, how: str, channels: bool) -> None:
        self.array = array
        self.how = how
        self.z_axis = 1 if channels else 0
        shape = list(array.shape)
        del shape[self.z_axis]
        chunks = list(array.chunks)
        del chunks[self.z_axis]
        self.shape = tuple(shape)
        self.chunks = tuple(chunks)
        self.dtype = projected_dtype(array.dtype, how)
        self.ndim = len(self.shape)

    def __getitem__(self, window: tuple) -> np.ndarray:
        """``(..., rows, cols)`` or ``(c, ..., rows, cols)``."""
        if window[0] is Ellipsis:
            full = (slice(None),) * (self.z_axis + 1) + tuple(window[1:])
            return project(np.asarray(self.array[full]), self.how, self.z_axis)
        c, _, rows, cols = window
        return project(np.asarray(self.array[c, :, rows, cols]), self.how, 0)


def is_stack(shape: tuple[int, ...] | list[int], channels: bool = True) -> bool:
    """Whether an array of ``shape`` has a Z axis."""
    return len(shape) == (4 if channels else 3)


def write_projection(
    source: Any, target: Path, how: str, channels: bool, attrs: dict[str, Any]
) -> None:
    """``target`` (a new zarr group, built aside by the caller) holding the
    projection of ``source`` as level ``0``, with ``attrs``."""
    view = ZProjected(source, how, channels)
    group = open_group(target, mode="w")
    group.attrs.update(attrs)
    out = create_array(
        group,
        "0",
        view.shape,
        view.chunks,
        view.dtype,
        source.compressors[0] if source.compressors else None,
    )
    per_row = int(np.prod(source.shape)) // source.shape[-2]
    rows = max(1, BAND_PIXELS // max(per_row, 1))
    chunk_rows = view.chunks[-2]
    rows = max(chunk_rows, rows // chunk_rows * chunk_rows)
    for y0 in range(0, view.shape[-2], rows):
        band = (..., slice(y0, y0 + rows), slice(None))
        out[band] = view[band]
