"""A synthetic experiment drawn: nuclei, cytoplasm and puncta in three channels.

Used by the default config so that ``snakemake --cores 2`` has something real
to process on a fresh machine, and by the tests, which need images whose
objects are known.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import tifffile
from scipy import ndimage

from percell.demo_names import plate_demo_condition, plate_demo_name, region_seed
from percell.plate_files import grid_position
from percell.storage import staged_file

if TYPE_CHECKING:
    from percell.contracts import PlateInput


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


def vignette_profile(shape: tuple[int, int], strength: float) -> np.ndarray:
    """An uneven illumination: 1 at the centre, ``1 - strength`` at the corners."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    r2 = ((yy - (h - 1) / 2) / h) ** 2 + ((xx - (w - 1) / 2) / w) ** 2
    return 1 - strength * r2 / r2.max()


def write_demo_region(
    paths: dict[str, str],
    size: int,
    seed: int,
    signal_scale: float = 1.0,
    vignette: float = 0.0,
) -> None:
    """Write one demo region: one 2-D TIFF per channel.

    ``paths`` maps channel names to files in display order; the first three
    channels get nuclei, cytoplasm and puncta, any further one noise; every
    channel is dimmed towards the corners by ``vignette``.
    """
    rng = np.random.default_rng(seed)
    images = list(synthetic_cells((size, size), rng, signal_scale=signal_scale)[:3])
    if vignette:
        profile = vignette_profile((size, size), vignette)
        images = [np.rint(im * profile).astype(np.uint16) for im in images]
    for i, (_, path) in enumerate(paths.items()):
        img = (
            images[i] if i < 3 else rng.normal(100, 10, (size, size)).astype(np.uint16)
        )
        with staged_file(path) as tmp:
            tifffile.imwrite(tmp, img)


def write_demo_well(
    plate: PlateInput, well: str, paths: Sequence[str], n_channels: int
) -> None:
    """Write the field files of one demo well.

    The whole well is drawn first (cells cross field borders, as on a real
    plate) and cut into fields on the configured grid, neighbours sharing
    the configured overlap; z-planes differ by focus (intensity and blur).
    """
    demo, grid = plate.demo, plate.grid
    if demo is None or grid is None:
        raise ValueError(f"plate {plate.name} is not a demo plate on a grid")
    fy, fx = demo.field_size
    oy, ox = grid.overlap_yx()
    sy, sx = fy - oy, fx - ox
    rows, cols = grid.rows, grid.columns
    rng = np.random.default_rng(region_seed(demo.seed, plate.name, well))
    scale = 1.0 + demo.conditions.index(plate_demo_condition(demo, well))
    channels = synthetic_cells(
        (rows * sy + oy, cols * sx + ox),
        rng,
        spacing=30,
        nucleus_radius=6.0,
        signal_scale=scale,
    )[:3]
    focus = [1.0 - 0.3 * abs(z - (demo.z - 1) / 2) for z in range(demo.z)]
    outputs = {str(p): p for p in paths}
    for z, weight in enumerate(focus):
        planes = [
            ndimage.gaussian_filter(ch.astype(np.float32), 2 * (1 - weight)) * weight
            for ch in channels
        ]
        for f in range(1, rows * cols + 1):
            r, c = grid_position(f, rows, cols, grid.order)
            for ci in range(n_channels):
                img = planes[ci] if ci < 3 else np.full((fy, fx), 100, np.float32)
                tile = img[r * sy : r * sy + fy, c * sx : c * sx + fx]
                name = plate_demo_name(demo, well, f, ci, z)
                with staged_file(outputs[f"{plate.directory}/{name}"]) as tmp:
                    tifffile.imwrite(tmp, np.clip(tile, 0, 65535).astype(np.uint16))


def synthetic_nuclei(
    shape: tuple[int, int],
    diameter: float,
    rng: np.random.Generator,
    density: float = 0.7,
) -> tuple[np.ndarray, np.ndarray]:
    """Nuclei as a fluorescence microscope shows them, with their ground truth:
    a hard case for a classical segmentation.

    Elliptical nuclei of the given mean ``diameter`` (±20 %, eccentric, at
    random angles) packed so that many touch; each with its own brightness
    (a log-normal spread over about 8x) and a textured interior; blurred;
    on a dim background that rises across the field; with shot and camera
    noise. ``density`` is the share of a hexagonal packing of ``diameter``
    spacing that is kept.

    Returns:
        (uint16 image, int32 labels of the nuclei, ids 1..n)
    """
    h, w = shape
    labels = np.zeros(shape, np.int32)
    clean = np.zeros(shape, np.float64)
    spacing = diameter * 0.95  # closer than a diameter: neighbours touch
    rows = np.arange(spacing / 2, h, spacing * np.sqrt(3) / 2)
    centres = [
        (y, x + (spacing / 2) * (i % 2))
        for i, y in enumerate(rows)
        for x in np.arange(spacing / 2, w, spacing)
    ]
    keep = rng.random(len(centres)) < density
    yy, xx = np.mgrid[:h, :w]
    n = 0
    for (cy, cx), kept in zip(centres, keep, strict=True):
        if not kept:
            continue
        cy += rng.normal(0, diameter * 0.1)
        cx += rng.normal(0, diameter * 0.1)
        a = diameter / 2 * rng.uniform(0.8, 1.2) * rng.uniform(1.0, 1.25)
        b = a / rng.uniform(1.0, 1.5)
        t = rng.uniform(0, np.pi)
        r = int(np.ceil(a)) + 2
        y0, y1 = max(0, int(cy) - r), min(h, int(cy) + r + 1)
        x0, x1 = max(0, int(cx) - r), min(w, int(cx) + r + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
        u = dx * np.cos(t) + dy * np.sin(t)
        v = -dx * np.sin(t) + dy * np.cos(t)
        inside = (u / a) ** 2 + (v / b) ** 2 <= 1
        free = inside & (labels[y0:y1, x0:x1] == 0)
        if free.sum() < 0.5 * inside.sum():
            continue  # hidden under its neighbours
        n += 1
        labels[y0:y1, x0:x1][free] = n
        brightness = np.exp(rng.normal(0, 0.55))
        clean[y0:y1, x0:x1][free] = brightness
    texture = 1 + 0.25 * ndimage.gaussian_filter(rng.normal(0, 1, shape), 1.5)
    signal = ndimage.gaussian_filter(clean * texture, 1.5) * 1500
    background = 100 + 150 * (xx / w) + 80 * (yy / h)
    image = rng.poisson(np.maximum(signal + background, 0)) + rng.normal(0, 8, shape)
    return np.clip(image, 0, 65535).astype(np.uint16), labels


def synthetic_nuclei_3d(
    shape: tuple[int, int, int],
    diameter: float,
    anisotropy: float,
    rng: np.random.Generator,
    density: float = 0.45,
) -> tuple[np.ndarray, np.ndarray]:
    """Nuclei in tissue as a confocal stack shows them, with their ground
    truth: ellipsoids of the given mean ``diameter`` (in xy pixels, ±20 %)
    at random depths, so that many overlap in XY while lying apart in z;
    ``anisotropy`` xy pixels per z step; each with its own brightness (about
    4x), blurred more along z than in xy, on a dim background, with shot and
    camera noise. ``density``: the share of the volume the nuclei fill.

    Returns:
        (uint16 stack (Z, Y, X), int32 labels of the nuclei, ids 1..n)
    """
    nz, h, w = shape
    labels = np.zeros(shape, np.int32)
    clean = np.zeros(shape, np.float64)
    zz, yy, xx = np.mgrid[:nz, :h, :w]
    depth = nz * anisotropy  # the stack's depth in xy pixels
    volume = depth * h * w
    wanted = int(density * volume / (np.pi / 6 * diameter**3))
    n = 0
    for _ in range(wanted * 20):
        if n >= wanted:
            break
        r = diameter / 2 * rng.uniform(0.8, 1.2)
        rz = r * rng.uniform(0.8, 1.1)  # a little flatter, as nuclei sit
        cz, cy, cx = rng.uniform(0, depth), rng.uniform(0, h), rng.uniform(0, w)
        z0 = max(0, int((cz - rz) / anisotropy))
        z1 = min(nz, int((cz + rz) / anisotropy) + 2)
        y0, y1 = max(0, int(cy - r)), min(h, int(cy + r) + 2)
        x0, x1 = max(0, int(cx - r)), min(w, int(cx + r) + 2)
        if z0 >= z1 or y0 >= y1 or x0 >= x1:
            continue
        box = (slice(z0, z1), slice(y0, y1), slice(x0, x1))
        dz = (zz[box] * anisotropy - cz) / rz
        inside = dz**2 + ((yy[box] - cy) / r) ** 2 + ((xx[box] - cx) / r) ** 2 <= 1
        if not inside.any() or (labels[box][inside] > 0).any():
            continue  # nuclei do not overlap in 3-D
        n += 1
        labels[box][inside] = n
        clean[box][inside] = np.exp(rng.normal(0, 0.35))
    texture = 1 + 0.2 * ndimage.gaussian_filter(rng.normal(0, 1, shape), 1.0)
    blur = (1.5 * 2 / anisotropy, 1.2, 1.2)  # the point spread is longer in z
    signal = ndimage.gaussian_filter(clean * texture, blur) * 1200
    background = 100 + 60 * (xx / w)
    image = rng.poisson(np.maximum(signal + background, 0)) + rng.normal(0, 8, shape)
    return np.clip(image, 0, 65535).astype(np.uint16), labels
