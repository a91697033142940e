"""Synthetic plates on disk for the HCS tests: field files cut from a known
well image, so the stitched result can be checked pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from percell.plate_files import grid_position


def write_plate(
    root: Path,
    wells: list[str],
    grid: tuple[int, int] = (2, 3),
    field: tuple[int, int] = (40, 50),
    overlap: tuple[int, int] = (0, 0),
    n_channels: int = 2,
    n_z: int = 1,
    timepoints: list[int] | None = None,
    style: str = "metaxpress",
    order: str = "row-major",
    skip: set[tuple[str, int]] = frozenset(),
    seed: int = 0,
) -> dict:
    """Write field files; return {(well, timepoint): expected stitched image}.

    The expected image is (C, [Z,] Y, X): each field's part without the
    overlap on its far edges, on the grid. ``skip`` leaves (well, field)
    files out (they are zeros in the expectation).
    """
    rows, cols = grid
    fy, fx = field
    oy, ox = overlap
    sy, sx = fy - oy, fx - ox
    rng = np.random.default_rng(seed)
    truth = {}
    for well in wells:
        for t in timepoints or [None]:
            full = rng.integers(
                1, 4000, (n_channels, n_z, rows * sy + oy, cols * sx + ox)
            ).astype(np.uint16)
            expected = np.zeros((n_channels, n_z, rows * sy, cols * sx), np.uint16)
            for f in range(1, rows * cols + 1):
                r, c = grid_position(f, rows, cols, order)
                tile = full[..., r * sy : r * sy + fy, c * sx : c * sx + fx]
                if (well, f) in skip:
                    continue
                expected[..., r * sy : (r + 1) * sy, c * sx : (c + 1) * sx] = tile[
                    ..., :sy, :sx
                ]
                for ch in range(n_channels):
                    for z in range(n_z):
                        path = root / _name(style, well, f, ch + 1, z + 1, t, n_z)
                        path.parent.mkdir(parents=True, exist_ok=True)
                        tifffile.imwrite(path, tile[ch, z])
            truth[(well, t)] = expected if n_z > 1 else expected[:, 0]
    return truth


def _name(style, well, f, ch, z, t, n_z) -> str:
    if style == "metaxpress":
        sub = f"ZStep_{z}/" if n_z > 1 else ""
        tp = f"TimePoint_{t}/" if t is not None else ""
        return f"{tp}{sub}Plate_{well}_s{f}_w{ch}.tif"
    return (
        f"AssayPlate_Greiner_#655090_{well}_T{(t or 1):04d}F{f:03d}L01A01"
        f"Z{z:02d}C{ch:02d}.tif"
    )
