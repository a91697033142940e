"""A synthetic experiment: nuclei, cytoplasm and puncta in three channels.

Used by the default config so that ``snakemake --cores 2`` has something real
to process on a fresh machine, and by the tests, which need images whose
objects are known.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from scipy import ndimage

from percell.hcs import grid_overlap, grid_position, split_well
from percell.sheets import COLUMNS


def demo_path(
    directory: str, condition: str, timepoint: str | None, region: str, channel: str
) -> str:
    """Where the demo writes one channel of one region."""
    sub = f"{condition}/{timepoint}" if timepoint else condition
    return f"{directory}/{sub}/{region}_{channel}.tif"


def demo_size(demo: dict, condition: str, timepoint: str | None, region: str) -> int:
    """Edge length of a demo region: the very first region is the large one."""
    first = (
        demo["conditions"][0],
        (demo["timepoints"] or [None])[0],
        demo["regions"][0],
    )
    return (
        demo["large_size"] if (condition, timepoint, region) == first else demo["size"]
    )


def demo_sheet(demo: dict, channels: Sequence[str]) -> pd.DataFrame:
    """The sample sheet of the demo experiment described by config ``demo``."""
    rows = []
    for cond in demo["conditions"]:
        for tp in demo["timepoints"] or [None]:
            for region in demo["regions"]:
                for ch in channels:
                    rows.append(
                        {
                            "condition": cond,
                            "timepoint": tp,
                            "region": region,
                            "channel": ch,
                            "z": None,
                            "path": demo_path(demo["directory"], cond, tp, region, ch),
                        }
                    )
    return pd.DataFrame(rows, columns=COLUMNS)


def region_seed(seed: int, *parts: str | None) -> int:
    """A stable per-region seed (Python's hash() changes between runs)."""
    return zlib.crc32("/".join(p or "" for p in parts).encode()) ^ seed


def synthetic_cells(
    shape: tuple[int, int],
    rng: np.random.Generator,
    spacing: int = 40,
    nucleus_radius: float = 8.0,
    signal_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Three uint16 channels (nuclei, cytoplasm, puncta) and the nucleus labels.

    Cells sit on a jittered grid, so they rarely touch; the returned int32
    label image marks each nucleus with its own id (1..n), which tests use as
    ground truth.
    """
    h, w = shape
    ys = np.arange(spacing // 2, h - spacing // 2 + 1, spacing)
    xs = np.arange(spacing // 2, w - spacing // 2 + 1, spacing)
    cy, cx = np.meshgrid(ys, xs, indexing="ij")
    keep = rng.random(cy.shape) < 0.8
    jitter = spacing * 0.2
    cy = (cy[keep] + rng.uniform(-jitter, jitter, keep.sum())).astype(int)
    cx = (cx[keep] + rng.uniform(-jitter, jitter, keep.sum())).astype(int)
    n = cy.size
    radii = rng.uniform(0.75, 1.25, n) * nucleus_radius
    labels = np.zeros(shape, np.int32)
    cyto_mask = np.zeros(shape, bool)
    r_cell = int(np.ceil(radii.max() * 2.0)) + 1
    yy, xx = np.mgrid[-r_cell : r_cell + 1, -r_cell : r_cell + 1]
    dist2 = yy**2 + xx**2
    for i in range(n):
        y0, x0 = cy[i] - r_cell, cx[i] - r_cell
        sl = (
            slice(max(y0, 0), min(y0 + 2 * r_cell + 1, h)),
            slice(max(x0, 0), min(x0 + 2 * r_cell + 1, w)),
        )
        sub = (
            slice(sl[0].start - y0, sl[0].stop - y0),
            slice(sl[1].start - x0, sl[1].stop - x0),
        )
        d2 = dist2[sub]
        nuc = d2 <= radii[i] ** 2
        labels[sl][nuc & (labels[sl] == 0)] = i + 1
        cyto_mask[sl] |= d2 <= (radii[i] * 2.0) ** 2
    nuclei = (labels > 0).astype(np.float32)
    cyto = (cyto_mask & (labels == 0)).astype(np.float32)
    puncta = np.zeros(shape, np.float32)
    n_p = max(1, n * 3)
    py, px = rng.integers(0, h, n_p), rng.integers(0, w, n_p)
    inside = cyto_mask[py, px]
    puncta[py[inside], px[inside]] = 1.0
    dapi = ndimage.gaussian_filter(nuclei, 1.0) * 3000 + 200
    gfp = ndimage.gaussian_filter(cyto, 2.0) * 1500 * signal_scale + 150
    rfp = ndimage.gaussian_filter(puncta, 1.5) * 20000 + 100
    out = []
    for img in (dapi, gfp, rfp):
        img += rng.normal(0, 30, shape).astype(np.float32)
        out.append(np.clip(img, 0, 65535).astype(np.uint16))
    return out[0], out[1], out[2], labels


def write_demo_region(
    paths: dict[str, str], size: int, seed: int, signal_scale: float = 1.0
) -> None:
    """Write one demo region: one 2-D TIFF per channel.

    ``paths`` maps channel names to files in display order; the first three
    channels get nuclei, cytoplasm and puncta, any further one noise.
    """
    rng = np.random.default_rng(seed)
    images = list(synthetic_cells((size, size), rng, signal_scale=signal_scale)[:3])
    for i, (_, path) in enumerate(paths.items()):
        img = (
            images[i] if i < 3 else rng.normal(100, 10, (size, size)).astype(np.uint16)
        )
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(path).with_name(f".{Path(path).name}.partial")
        tifffile.imwrite(tmp, img)
        tmp.replace(path)


def demo_region_params(
    demo: dict, group: str, region: str, channels: Sequence[str]
) -> dict:
    """Size, seed and signal strength of one demo region (its rule's params)."""
    condition, _, timepoint = group.partition("/")
    cond_index = demo["conditions"].index(condition)
    return {
        "size": demo_size(demo, condition, timepoint or None, region),
        "seed": region_seed(demo["seed"], condition, timepoint, region),
        # the second condition doubles the cytoplasmic signal: a visible effect
        "signal_scale": 1.0 + cond_index,
        "channels": list(channels),
    }


def plate_demo_name(demo: dict, well: str, field: int, channel: int, z: int) -> str:
    """Relative MetaXpress-style name of one demo file (0-based channel, z):
    ``[ZStep_<z>/]<well>_s<field>_w<channel>.tif``, numbered from 1."""
    sub = f"ZStep_{z + 1}/" if demo["z"] > 1 else ""
    return f"{sub}{well}_s{field}_w{channel + 1}.tif"


def plate_demo_files(plate: dict, n_channels: int) -> dict[str, list[str]]:
    """Relative file names of each demo well (see ``plate_demo_name``)."""
    demo, grid = plate["demo"], plate["grid"]
    n_fields = grid["rows"] * grid["columns"]
    return {
        well: [
            plate_demo_name(demo, well, f, c, z)
            for z in range(demo["z"])
            for f in range(1, n_fields + 1)
            for c in range(n_channels)
        ]
        for well in demo["wells"]
    }


def plate_demo_condition(demo: dict, well: str) -> str:
    """A demo well's condition: alternating by plate column."""
    column = int(split_well(well)[1])
    return demo["conditions"][column % len(demo["conditions"])]


def write_demo_well(plate: dict, well: str, paths: list[str], n_channels: int) -> None:
    """Write the field files of one demo well.

    The whole well is drawn first (cells cross field borders, as on a real
    plate) and cut into fields on the configured grid, neighbours sharing
    the configured overlap; z-planes differ by focus (intensity and blur).
    """
    demo, grid = plate["demo"], plate["grid"]
    fy, fx = demo["field_size"]
    oy, ox = grid_overlap(grid)
    sy, sx = fy - oy, fx - ox
    rows, cols = grid["rows"], grid["columns"]
    rng = np.random.default_rng(region_seed(demo["seed"], plate["name"], well))
    scale = 1.0 + demo["conditions"].index(plate_demo_condition(demo, well))
    channels = synthetic_cells(
        (rows * sy + oy, cols * sx + ox),
        rng,
        spacing=30,
        nucleus_radius=6.0,
        signal_scale=scale,
    )[:3]
    focus = [1.0 - 0.3 * abs(z - (demo["z"] - 1) / 2) for z in range(demo["z"])]
    outputs = {str(p): p for p in paths}
    for z, weight in enumerate(focus):
        planes = [
            ndimage.gaussian_filter(ch.astype(np.float32), 2 * (1 - weight)) * weight
            for ch in channels
        ]
        for f in range(1, rows * cols + 1):
            r, c = grid_position(f, rows, cols, grid["order"])
            for ci in range(n_channels):
                img = planes[ci] if ci < 3 else np.full((fy, fx), 100, np.float32)
                tile = img[r * sy : r * sy + fy, c * sx : c * sx + fx]
                name = plate_demo_name(demo, well, f, ci, z)
                path = Path(outputs[f"{plate['directory']}/{name}"])
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.partial")
                tifffile.imwrite(tmp, np.clip(tile, 0, 65535).astype(np.uint16))
                tmp.replace(path)
