"""Wells: a plate's field files planned into wells, and stitched.

Fields are placed on a grid (``input.plate.grid``) or by their stage
positions; a well is one region for the rest of the chain, named by the well
("B03"), its condition from the plate map. Stitching goes field by field, so
memory holds one field plane at a time whatever the well size.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from percell import remote
from percell.chunks import BlockIO
from percell.config import pixel_size_or_error
from percell.contracts import (
    FieldRecord,
    FieldSpec,
    PlateInput,
    Region,
    SourceFile,
    WellSpec,
)
from percell.dtypes import cast_to
from percell.errors import ConfigError, SourceImageError
from percell.ngff import display_windows
from percell.plan import RegionPlan, plan_region
from percell.plate_files import (
    MatchedFile,
    channel_of,
    discover_files,
    grid_position,
    split_well,
    timepoint_name,
)
from percell.plate_layout import read_plate_map, read_table, row_index
from percell.source_info import SourceInfo
from percell.sources import open_source, probe_source

log = logging.getLogger(__name__)


def _clusters(values: list[float]) -> list[float]:
    """Sorted cluster centres of 1-D positions: a gap above a fifth of the
    largest gap starts a new cluster (stage jitter stays in one)."""
    xs = sorted(set(values))
    if len(xs) == 1:
        return xs
    gaps = np.diff(xs)
    cut = gaps.max() / 5
    groups: list[list[float]] = []
    current = [xs[0]]
    for x, gap in zip(xs[1:], gaps, strict=True):
        if gap > cut:
            groups.append(current)
            current = []
        current.append(x)
    groups.append(current)
    return [float(np.mean(g)) for g in groups]


def read_positions(path: str | Path) -> dict[tuple[str, int], tuple[float, float]]:
    """Stage positions CSV (well, field, x_um, y_um) → (well, field) → (x, y)."""
    path = Path(path)
    df = read_table(path, "positions file", ("well", "field", "x_um", "y_um"))
    out = {}
    for i, row in enumerate(df.itertuples(), start=2):
        try:
            key = ("".join(split_well(row.well)), int(row.field))
            out[key] = (float(row.x_um), float(row.y_um))
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"positions file {path}, line {i}: {exc}") from None
    return out


def place_by_positions(
    well: str,
    fields: list[int],
    positions: dict[tuple[str, int], tuple[float, float]],
    source: str,
) -> tuple[
    dict[int, tuple[int, int]],
    tuple[int, int],
    tuple[float | None, float | None],
]:
    """Grid cells of a well's fields from their stage positions.

    Returns:
        field → (grid row, grid column); (rows, columns); and the stride
        between neighbouring fields in µm as [y, x] (None along an axis with
        one field), from which the import derives the overlap.
    """
    absent = [f for f in fields if (well, f) not in positions]
    if absent:
        raise ConfigError(
            f"positions file {source}: no position for well {well} field(s) {absent}"
        )
    xs = _clusters([positions[(well, f)][0] for f in fields])
    ys = _clusters([positions[(well, f)][1] for f in fields])
    place = {}
    for f in fields:
        x, y = positions[(well, f)]
        place[f] = (
            int(np.argmin([abs(y - c) for c in ys])),
            int(np.argmin([abs(x - c) for c in xs])),
        )
    sy, sx = (float(np.median(np.diff(cs))) if len(cs) > 1 else None for cs in (ys, xs))
    return place, (len(ys), len(xs)), (sy, sx)


def plate_regions(plate: PlateInput, channel_names: list[str]) -> list[Region]:
    """The well regions of an ``input.plate`` config (files found on disk).

    Each region is one well at one timepoint, with a ``well`` entry holding
    the plate position, field grid and every field's files.

    Raises:
        ConfigError: naming the file, well or field that is wrong.
    """
    files = discover_files(plate.directory, plate.pattern)
    return wells_from_files(plate, files, channel_names)


def wells_from_files(
    plate: PlateInput,
    files: Sequence[MatchedFile],
    channel_names: list[str],
    conditions: dict[str, str] | None = None,
) -> list[Region]:
    """Group matched files into well regions (see ``plate_regions``).

    ``conditions`` (well → condition) stands in for the plate map (demo).
    """
    mapping = {str(k): v for k, v in plate.channel_map.items()}
    channel_name = {
        token: channel_of(token, channel_names, mapping)
        for token in {f.channel for f in files}
    }
    plate_map = conditions or (
        read_plate_map(plate.plate_map) if plate.plate_map else None
    )
    wells = sorted({f.well for f in files}, key=lambda w: (row_index(w[:-2]), w))
    if plate_map is not None:
        absent = [w for w in wells if w not in plate_map]
        if absent:
            raise ConfigError(
                f"well(s) {', '.join(absent)} have images but are not in the plate "
                f"map {plate.plate_map}"
            )
    timepoints = sorted(
        {f.timepoint for f in files if f.timepoint is not None}, key=int
    )
    if timepoints and any(f.timepoint is None for f in files):
        raise ConfigError("some file names carry a timepoint and some do not")
    acquisition = {t: i for i, t in enumerate(timepoints)}
    channel_tokens = sorted({f.channel for f in files if f.channel}, key=str)
    zs = sorted({f.z for f in files if f.z is not None})
    z0 = zs[0] if zs else 0  # microscopes number planes from 1 (or 0)
    positions = read_positions(plate.positions) if plate.positions else None
    by_unit: dict[tuple[str, str | None], list[MatchedFile]] = defaultdict(list)
    for f in files:
        by_unit[(f.well, f.timepoint)].append(f)
    regions = []
    for (well, tp), unit in sorted(
        by_unit.items(),
        key=lambda kv: (row_index(kv[1][0].row), kv[0][0], int(kv[0][1] or 0)),
    ):
        row, column = unit[0].row, unit[0].column
        by_field: dict[int, list[MatchedFile]] = defaultdict(list)
        for f in unit:
            by_field[f.field].append(f)
        field_numbers = sorted(by_field)
        stride_um: tuple[float | None, float | None] | None = None
        if positions is not None:
            assert plate.positions is not None
            place, shape, stride_um = place_by_positions(
                well, field_numbers, positions, plate.positions
            )
            overlap = (0, 0)
        else:
            grid = plate.grid
            assert grid is not None  # the config has a grid or positions
            shape = (grid.rows, grid.columns)
            outside = [f for f in field_numbers if f > shape[0] * shape[1] or f < 1]
            if outside:
                raise ConfigError(
                    f"well {well}: field(s) {outside} lie outside the "
                    f"{shape[0]}x{shape[1]} grid of input.plate.grid"
                )
            place = {
                f: grid_position(f, shape[0], shape[1], grid.order)
                for f in range(1, shape[0] * shape[1] + 1)
            }
            overlap = grid.overlap_yx()
        expected_fields = sorted(place)
        _check_complete(well, tp, unit, expected_fields, channel_tokens, zs, plate)
        fields = []
        for number in expected_fields:
            own = by_field.get(number)
            if not own:
                continue  # a missing field, allowed by missing_fields: zeros
            named = sorted(
                ((f, channel_name[f.channel]) for f in own),
                key=lambda fc: (
                    channel_names.index(fc[1]) if fc[1] else -1,
                    fc[0].z or 0,
                ),
            )
            fields.append(
                FieldSpec(
                    field=number,
                    grid_row=place[number][0],
                    grid_column=place[number][1],
                    stage_um=positions[(well, number)] if positions else None,
                    files=tuple(
                        SourceFile(
                            path=f.path,
                            channel=name,
                            z=None if f.z is None else f.z - z0,
                        )
                        for f, name in named
                    ),
                )
            )
        acq = acquisition.get(tp, 0) if tp is not None else 0
        regions.append(
            Region(
                condition=plate_map[well] if plate_map is not None else plate.name,
                timepoint=timepoint_name(tp),
                region=well,
                key=f"{plate.name}/{row}/{column}/{acq}",
                files=tuple(f for fld in fields for f in fld.files),
                well=WellSpec(
                    plate=plate.name,
                    row=row,
                    column=column,
                    acquisition=acq,
                    grid=shape,
                    overlap=overlap,
                    stride_um=stride_um,
                    missing_fields=plate.missing_fields,
                    fields=tuple(fields),
                ),
            )
        )
    return regions


def _check_complete(
    well: str,
    tp: str | None,
    unit: list[MatchedFile],
    fields: list[int],
    channel_tokens: list[str],
    zs: list[int],
    plate: PlateInput,
) -> None:
    """Refuse missing files: a field with some files but not all always; a
    field with none unless ``missing_fields`` is "zeros" (then warn)."""
    have = {(f.field, f.channel, f.z) for f in unit}
    chans: list[str | None] = list(channel_tokens) or [None]
    planes: list[int | None] = list(zs) or [None]
    template = unit[0]
    missing_files, empty = [], []
    for number in fields:
        wanted = [(number, c, z) for c in chans for z in planes]
        absent = [w for w in wanted if w not in have]
        if not absent:
            continue
        if len(absent) == len(wanted) and plate.missing_fields == "zeros":
            empty.append(number)
            continue
        missing_files += [_expected_name(template, *w) for w in absent]
    if missing_files:
        where = f"well {well}" + (f" timepoint {tp}" if tp else "")
        more = f" and {len(missing_files) - 10} more" if len(missing_files) > 10 else ""
        raise ConfigError(
            f"{where}: missing field file(s) {', '.join(missing_files[:10])}{more} "
            "(set input.plate.missing_fields: zeros to fill missing fields with zeros)"
        )
    if empty:
        log.warning(
            "well %s%s: field(s) %s missing, filled with zeros",
            well,
            f" timepoint {tp}" if tp else "",
            empty,
        )


def _expected_name(
    template: MatchedFile, field: int, channel: str | None, z: int | None
) -> str:
    """The path a missing file would have: a sibling's name, its field,
    channel and z numbers replaced (keeping their zero padding)."""
    rel = template.relative
    spans = template.spans
    values = {"field": field, "channel": channel, "z": z}
    for name in sorted(values, key=lambda n: spans.get(n, (-1,))[0], reverse=True):
        if name not in spans or values[name] is None:
            continue
        a, b = spans[name]
        value = str(values[name])
        if value.isdigit() and rel[a:b].isdigit():
            value = value.zfill(b - a)
        rel = rel[:a] + value + rel[b:]
    base = template.path[: len(template.path) - len(template.relative)]
    return base + rel


# --- planning and stitching one well ------------------------------------------


@dataclass(frozen=True)
class PlannedField:
    """A field of a well, its files' plan and probes."""

    spec: FieldSpec
    plan: RegionPlan
    infos: tuple[SourceInfo, ...]


@dataclass(frozen=True)
class WellPlan:
    """A well's stitched image: its shape, and where each field goes."""

    shape: tuple[int, ...]
    dtype: str
    has_z: bool
    chunk_yx: tuple[int, int]
    fields: tuple[PlannedField, ...]
    pixel_size_um: float | None
    z_step_um: float | None


def plan_well(
    region: Region,
    channel_names: list[str],
    pixel_size_um: float | None,
    infos: dict[str, SourceInfo] | None = None,
) -> WellPlan:
    """Probe every field file of a well and plan the stitched image.

    Raises:
        SourceImageError: a field whose files do not fit together, or fields
            of different shapes or types.
    """
    spec = region.well
    if spec is None:
        raise ValueError(f"region {region.key} is not a well")
    planned = []
    for fld in spec.fields:
        label = f"well {region.region} field {fld.field}"
        found = tuple(
            infos[f.path] if infos else probe_source(f.path, f.channel is None)
            for f in fld.files
        )
        planned.append(
            PlannedField(
                fld, plan_region(label, fld.files, found, channel_names), found
            )
        )

    def shape_of(plan: RegionPlan) -> tuple[tuple[int, ...], str]:
        return plan.shape, np.dtype(plan.dtype).name

    shapes = [shape_of(p.plan) for p in planned]
    usual = max(set(shapes), key=shapes.count)
    odd = [p for p in planned if shape_of(p.plan) != usual]
    if odd:
        detail = "; ".join(
            f"field {p.spec.field} ({p.spec.files[0].path}): {p.plan.shape} "
            f"{np.dtype(p.plan.dtype).name}"
            for p in odd[:5]
        )
        raise SourceImageError(
            f"well {region.region}: fields differ in shape or type: most are "
            f"{usual[0]} {usual[1]}, but {detail}"
            + (f" and {len(odd) - 5} more" if len(odd) > 5 else "")
        )
    first = planned[0].plan
    fy, fx = first.shape[-2:]
    overlap = list(spec.overlap)
    if spec.stride_um:
        for axis, stride in enumerate(spec.stride_um):
            if stride is None:
                continue
            pixel_size = pixel_size_or_error(
                pixel_size_um,
                first.pixel_size_um,
                f"well {region.region}",
                spec.fields[0].files[0].path,
                why="stage positions need a pixel size",
            )
            size = (fy, fx)[axis]
            overlap[axis] = max(0, size - round(stride / pixel_size))
    sy, sx = fy - overlap[0], fx - overlap[1]
    if sy <= 0 or sx <= 0:
        raise SourceImageError(
            f"well {region.region}: overlap {overlap} is not smaller than the "
            f"field ({fy}x{fx})"
        )
    rows, cols = spec.grid
    shape = (*first.shape[:-2], rows * sy, cols * sx)
    return WellPlan(
        shape=shape,
        dtype=first.dtype,
        has_z=first.has_z,
        chunk_yx=(sy, sx),
        fields=tuple(planned),
        pixel_size_um=first.pixel_size_um,
        z_step_um=first.z_step_um,
    )


def stitch_well(
    blocks: BlockIO,
    plan: WellPlan,
    label: str = "",
    flat: dict[int, np.ndarray] | None = None,
) -> list[tuple[float, ...]]:
    """Write every field of a well into its chunk of level 0.

    ``blocks`` is the level-0 array's ``BlockIO``; its chunks are one field
    (less the overlap, cropped from the field's far edges). One field plane
    is in memory at a time. Missing fields stay unwritten: zarr reads them
    as the fill value 0.

    ``flat``: field-sized flat-fields by channel index, divided out of
    each field before it is written.

    Returns:
        The display window (min, max, start, end) of each channel.
    """
    n_c = plan.shape[0]
    lo = np.full(n_c, np.inf)
    hi = np.full(n_c, -np.inf)
    sy, sx = plan.chunk_yx
    for i, fld in enumerate(plan.fields, start=1):
        y0, x0 = fld.spec.grid_row * sy, fld.spec.grid_column * sx
        with ExitStack() as stack:
            readers = [stack.enter_context(open_source(info)) for info in fld.infos]
            for p in fld.plan.planes:
                plane = readers[p.source].read(p.source_c, p.source_z, 0, sy)[:, :sx]
                if flat and p.c in flat:  # the field's flat-field, cropped alike
                    plane = cast_to(plane / flat[p.c][:sy, :sx], plane.dtype)
                start = (p.c, p.z, y0, x0) if plan.has_z else (p.c, y0, x0)
                blocks.write(
                    start, plane.reshape((1,) * (len(start) - 2) + plane.shape)
                )
                lo[p.c] = min(lo[p.c], float(plane.min()))
                hi[p.c] = max(hi[p.c], float(plane.max()))
        if i % max(1, len(plan.fields) // 10) == 0 or i == len(plan.fields):
            log.info("  %s: field %d/%d stitched", label, i, len(plan.fields))
    if len(plan.fields) < math.prod(plan.shape[-2:]) // (sy * sx):
        lo = np.minimum(lo, 0)  # zero-filled fields are part of the image
    return display_windows(plan.dtype, lo, hi)


def field_records(plan: WellPlan) -> list[FieldRecord]:
    """Where each field sits in the stitched well (for experiment.db)."""
    sy, sx = plan.chunk_yx
    return [
        FieldRecord(
            field=f.spec.field,
            x=f.spec.grid_column * sx,
            y=f.spec.grid_row * sy,
            width=sx,
            height=sy,
            grid_row=f.spec.grid_row,
            grid_column=f.spec.grid_column,
            stage_x_um=f.spec.stage_um[0] if f.spec.stage_um else None,
            stage_y_um=f.spec.stage_um[1] if f.spec.stage_um else None,
            source_files=_resolved(f.spec.files),
        )
        for f in plan.fields
    ]


def _resolved(files: Iterable[SourceFile]) -> tuple[str, ...]:
    return tuple(remote.canonical(f.path) for f in files)
