"""The import step: raw files of a region group → ``images.zarr`` level 0.

Every file of the group is probed and every region planned before anything is
written, so a bad file fails the job with the experiment untouched. Each
region is then written to a hidden sibling directory, band by band (memory is
bounded by a band, not the image), and moved into place whole.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from percell import layout, ngff, remote
from percell.background import subtract_background
from percell.chunks import BlockIO
from percell.config import pixel_size_or_error
from percell.contracts import ImportedRegion, ImportParams, Region
from percell.errors import SourceImageError
from percell.illumination import STORE as ILLUMINATION_STORE
from percell.illumination import check_field_shape, divide, load_profiles
from percell.logs import Progress
from percell.plan import RegionPlan, plan_region
from percell.sentinel import write_sentinel
from percell.source_info import SourceInfo
from percell.sources import open_source, probe_source
from percell.storage import (
    IMAGE_COMPRESSOR,
    Staging,
    create_array,
    open_group,
)
from percell.wells import WellPlan, field_records, plan_well, stitch_well

log = logging.getLogger(__name__)

CHUNK_YX = 512
CHUNK_Z = 10


def image_chunks(has_z: bool) -> tuple[int, ...]:
    """Chunk shape of an image array (PerCell 3: one channel, 512×512)."""
    return (1, CHUNK_Z, CHUNK_YX, CHUNK_YX) if has_z else (1, CHUNK_YX, CHUNK_YX)


@dataclass(frozen=True)
class _Planned:
    """A region checked and planned, ready to write."""

    region: Region
    plan: RegionPlan | WellPlan
    infos: list[SourceInfo]
    pixel_size_um: float
    z_step_um: float | None


def _plan_group(params: ImportParams) -> list[_Planned]:
    names = params.channel_names
    planned = []
    for region in params.regions:
        plan: RegionPlan | WellPlan
        if region.well is not None:
            plan = plan_well(region, names, params.pixel_size_um)
            infos = []
        else:
            infos = [
                replace(probe_source(f.path, f.channel is None, f.scene), t=f.t)
                for f in region.files
            ]
            plan = plan_region(
                region.key, region.files, infos, names, params.channel_map
            )
        pixel_size = pixel_size_or_error(
            params.pixel_size_um,
            plan.pixel_size_um,
            f"region {region.key}",
            region.files[0].path,
        )
        z_step = (params.z_step_um or plan.z_step_um or 1.0) if plan.has_z else None
        planned.append(_Planned(region, plan, infos, pixel_size, z_step))
    return planned


def import_group(
    params: ImportParams, sentinel: str | Path, threads: int = 1
) -> list[ImportedRegion]:
    """Import every region of a group and write the group's sentinel last.

    Args:
        params: The group's import params (``Manifest.import_params``).
        sentinel: Path of the sentinel to write when everything is in place
            (inside the experiment, which it names).
        threads: Bands written in parallel.

    Returns:
        One record per region (what later steps need), also stored in the
        sentinel.
    """
    experiment = Path(layout.experiment_of_sentinel(sentinel))
    remote.configure(params.endpoints)
    records = []
    # an object behind a URL: its size and header fetched once, for the
    # probe and the read
    with remote.remembering_heads():
        planned = _plan_group(params)
        log.info(
            "group %s: %d region(s) checked, importing", params.group, len(planned)
        )
        # every region is built aside and swapped in only when all of them
        # are written: a file that fails half-way leaves the group as it was
        with Staging() as staged:
            for item in planned:
                records.append(
                    _import_region(staged, experiment, item, params, threads)
                )
    inputs = [f.path for r in params.regions for f in r.files]
    write_sentinel(sentinel, "import", params.group, params, inputs, records)
    return records


def _import_region(
    staged: Staging,
    experiment: Path,
    item: _Planned,
    settings: ImportParams,
    threads: int,
) -> ImportedRegion:
    """Write one region's level 0 aside; return its record."""
    start = time.monotonic()
    region, plan = item.region, item.plan
    built = staged.directory(layout.image_path(experiment, region.key))
    scope = settings.illumination.get(region.key)
    flat = {}
    if scope is not None:  # flat-fields by channel index, divided out below
        flat = load_profiles(experiment, scope, settings.channel_names)
        field = plan.fields[0].plan.shape[-2:] if isinstance(plan, WellPlan) else None
        check_field_shape(flat, field or plan.shape[-2:], f"region {region.key}")
    try:
        if isinstance(plan, WellPlan):
            windows = write_well(built, plan, label=region.key, flat=flat)
        else:
            windows = write_image(
                built, plan, item.infos, threads, label=region.key, flat=flat
            )
    except SourceImageError as exc:
        raise SourceImageError(f"region {region.key}: {exc}") from None
    group = open_group(built, mode="r+")
    background = None
    if settings.background:
        records, ranges = subtract_background(
            group, settings.channel_names, settings.background, label=region.key
        )
        background = tuple(records)
        windows = _windows_after(np.dtype(plan.dtype), windows, ranges)
    corrections: dict[str, Any] = {}  # what was done to the raw data, for readers
    if scope is not None:
        corrections["illumination"] = f"{ILLUMINATION_STORE}/{scope}"
    if background is not None:
        corrections["background"] = [b.to_params() for b in background]
    group.attrs.put(
        ngff.image_attrs(
            region.region,
            1,
            item.pixel_size_um,
            item.z_step_um,
            plan.has_z,
            settings.channels,
            windows,
        )
        | ({"percell": corrections} if corrections else {})
    )
    mb = np.prod(plan.shape) * np.dtype(plan.dtype).itemsize / 1e6
    elapsed = time.monotonic() - start
    log.info(
        "region %s: %s %s written (%.0f MB in %.1f s)",
        region.key,
        plan.shape,
        np.dtype(plan.dtype).name,
        mb,
        elapsed,
    )
    # plate wells also record their field layout (set only for wells, so a
    # free-form region's record has no such keys)
    well: dict[str, Any] = {}
    if background is not None:  # (set only where configured, as ``well``)
        well["background"] = background
    if isinstance(plan, WellPlan) and region.well is not None:
        well |= {
            "chunk_yx": plan.chunk_yx,
            "well": region.well.layout(),
            "fields": tuple(field_records(plan)),
        }
    return ImportedRegion(
        condition=region.condition,
        timepoint=region.timepoint,
        region=region.region,
        key=region.key,
        zarr_path=f"{layout.IMAGES}/{region.key}",
        shape=plan.shape,
        dtype=np.dtype(plan.dtype).name,
        pixel_size_um=item.pixel_size_um,
        z_step_um=item.z_step_um,
        source_file=remote.canonical(region.files[0].path),
        source_files=tuple(remote.canonical(f.path) for f in region.files),
        **well,
    )


def _windows_after(
    dtype: np.dtype,
    windows: list[tuple[float, ...]],
    ranges: dict[int, tuple[float, float]],
) -> list[tuple[float, ...]]:
    """Display windows with the corrected channels' new data ranges."""
    lo = [ranges.get(c, w[2:])[0] for c, w in enumerate(windows)]
    hi = [ranges.get(c, w[2:])[1] for c, w in enumerate(windows)]
    return ngff.display_windows(dtype, lo, hi)


def write_well(
    target: Path,
    plan: WellPlan,
    label: str = "",
    flat: dict[int, np.ndarray] | None = None,
) -> list[tuple[float, ...]]:
    """Write level 0 of one well, stitched field by field: a chunk per field;
    ``flat``: flat-fields (field-sized) by channel index, divided out."""
    group = open_group(target, mode="w")
    chunks = (1, 1, *plan.chunk_yx) if plan.has_z else (1, *plan.chunk_yx)
    arr = create_array(group, "0", plan.shape, chunks, plan.dtype, IMAGE_COMPRESSOR)
    return stitch_well(BlockIO(arr), plan, label=label, flat=flat or {})


def write_image(
    target: Path,
    plan: RegionPlan,
    infos: list[SourceInfo],
    threads: int = 1,
    label: str = "",
    flat: dict[int, np.ndarray] | None = None,
) -> list[tuple[float, ...]]:
    """Write level 0 of one region into a new group at ``target``; ``flat``:
    flat-fields (image-sized) by channel index, divided out.

    Returns the display window (min, max, start, end) of each channel: the
    dtype's range as min/max for integers, the data's range as start/end.
    """
    group = open_group(target, mode="w")
    arr = create_array(
        group, "0", plan.shape, image_chunks(plan.has_z), plan.dtype, IMAGE_COMPRESSOR
    )
    blocks = BlockIO(arr)
    height = plan.shape[-2]
    zc = CHUNK_Z if plan.has_z else 1
    by_cz = {(p.c, p.z): p for p in plan.planes}
    tasks = [
        (c, z0, min(z0 + zc, plan.n_z), y0, min(y0 + CHUNK_YX, height))
        for c in range(plan.n_channels)
        for z0 in range(0, plan.n_z, zc)
        for y0 in range(0, height, CHUNK_YX)
    ]
    lo = np.full(plan.n_channels, np.inf)
    hi = np.full(plan.n_channels, -np.inf)
    flat = flat or {}
    with ExitStack() as stack:
        readers = [stack.enter_context(open_source(i)) for i in infos]

        def write_band(
            task: tuple[int, int, int, int, int],
        ) -> tuple[int, float, float]:
            c, z0, z1, y0, y1 = task
            planes = []
            for z in range(z0, z1):
                p = by_cz[(c, z)]
                rows = readers[p.source].read(p.source_c, p.source_z, y0, y1)
                if c in flat:
                    rows = divide(rows, flat[c][y0:y1], np.dtype(plan.dtype))
                planes.append(rows)
            block = np.stack(planes) if plan.has_z else planes[0]
            start = (c, z0, y0, 0) if plan.has_z else (c, y0, 0)
            blocks.write(start, block[np.newaxis])
            return c, float(block.min()), float(block.max())

        done = 0
        report_every = max(1, len(tasks) // 10)
        progress = Progress(f"import {label or target}", len(tasks), "bands")
        with ThreadPoolExecutor(max(1, threads)) as pool:
            for c, bmin, bmax in pool.map(write_band, tasks):
                lo[c] = min(lo[c], bmin)
                hi[c] = max(hi[c], bmax)
                done += 1
                if done % report_every == 0 or done == len(tasks):
                    progress.step(done)
    return ngff.display_windows(plan.dtype, lo, hi)
