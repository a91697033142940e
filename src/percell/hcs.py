"""High-content screening plates: field files → one stitched image per well.

The plate follows the layout Fractal uses (seed 001): ``images.zarr/<plate>``
is an NGFF 0.4 plate, ``<plate>/<row>/<column>`` a well, and the well's
image ``0`` (``1``, ``2``… for further acquisitions, i.e. timepoints) holds
all its fields stitched into one (C, [Z,] Y, X) array whose level-0 chunk is
exactly one field. A well is a region for the rest of the chain: named by
the well ("B03"), its condition from the plate map.

This module turns the ``input.plate`` config into the manifest's well
regions (file names parsed by a pattern, fields placed on a grid or by
stage positions, conditions from the plate map) and stitches a well field
by field, so memory holds one field at a time whatever the well size.
"""

from __future__ import annotations

import logging
import math
import re
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from percell.errors import ConfigError, SourceImageError
from percell.names import check_name
from percell.ngff import NGFF_VERSION, display_windows
from percell.plan import RegionPlan, plan_region
from percell.sources import SourceInfo, SourceReader, probe_source

log = logging.getLogger(__name__)

#: File-name patterns of common screening microscopes, as regular
#: expressions over the path relative to the plate directory.
PRESETS = {
    # MetaXpress: [TimePoint_<t>/][ZStep_<z>/][<prefix>_]<well>_s<field>_w<channel>.tif
    "metaxpress": (
        r"(?:TimePoint_(?P<timepoint>\d+)/)?(?:ZStep_(?P<z>\d+)/)?"
        r"(?:[^/]*_)?(?P<well>[A-Za-z]{1,2}\d{1,3})_s(?P<field>\d+)"
        r"_w(?P<channel>\d+)(?!_thumb)[^/_]*\.tiff?"
    ),
    # CellVoyager: <prefix>_<well>_T<t>F<field>L<l>A<a>Z<z>C<channel>.tif
    "cellvoyager": (
        r"(?:[^/]*_)?(?P<well>[A-Za-z]{1,2}\d{1,3})_T(?P<timepoint>\d+)"
        r"F(?P<field>\d+)L\d+A\d+Z(?P<z>\d+)C(?P<channel>\d+)\.tiff?"
    ),
}
_PLACEHOLDERS = {
    "well": r"[A-Za-z]{1,2}\d{1,3}",
    "field": r"\d+",
    "channel": r"[A-Za-z0-9-]+",
    "z": r"\d+",
    "timepoint": r"\d+",
}
_WELL = re.compile(r"^([A-Za-z]{1,2})(\d{1,3})$")


def compile_pattern(pattern: str) -> re.Pattern:
    """A preset name, or a pattern with {well}, {field}, [{channel}], [{z}],
    [{timepoint}] and ``*`` (any characters but "/"), as a regex."""
    if pattern in PRESETS:
        return re.compile(PRESETS[pattern], re.IGNORECASE)
    parts = re.split(r"(\{[a-z]+\}|\*)", pattern)
    out = []
    for part in parts:
        if part == "*":
            out.append(r"[^/]*")
        elif part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            if name not in _PLACEHOLDERS:
                raise ConfigError(
                    f"input.plate.pattern {pattern!r}: unknown placeholder {part}; "
                    f"use {', '.join('{' + p + '}' for p in _PLACEHOLDERS)}"
                )
            if f"(?P<{name}>" in "".join(out):
                raise ConfigError(
                    f"input.plate.pattern {pattern!r}: {part} appears twice"
                )
            out.append(f"(?P<{name}>{_PLACEHOLDERS[name]})")
        else:
            out.append(re.escape(part))
    regex = "".join(out)
    for needed in ("well", "field"):
        if f"(?P<{needed}>" not in regex:
            raise ConfigError(
                f"input.plate.pattern {pattern!r} lacks {{{needed}}} "
                f"(or use a preset: {', '.join(PRESETS)})"
            )
    return re.compile(regex)


def split_well(token: str) -> tuple[str, str]:
    """ "B3" / "b03" → ("B", "03"): row letters, column zero-padded to 2."""
    m = _WELL.match(token.strip())
    if not m:
        raise ConfigError(f"{token!r} is not a well name (row letters, column number)")
    return m.group(1).upper(), f"{int(m.group(2)):02d}"


def row_index(row: str) -> int:
    """ "A" → 0, "Z" → 25, "AA" → 26 (1536-well plates)."""
    index = 0
    for ch in row:
        index = index * 26 + (ord(ch) - ord("A") + 1)
    return index - 1


def row_name(index: int) -> str:
    name = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        name = chr(ord("A") + rem) + name
    return name


def timepoint_name(token: str | None) -> str | None:
    """Timepoint number in a file name → the PerCell timepoint name ("t1")."""
    return None if token is None else f"t{int(token)}"


def discover_files(directory: str | Path, pattern: str) -> list[dict]:
    """Every file under ``directory`` whose relative path matches ``pattern``.

    Returns:
        One dict per file: path, well, row, column, field (int), channel
        (token or None), z (int or None), timepoint (token or None) and the
        match spans (to name files that should exist but do not).

    Raises:
        ConfigError: no directory, nothing matched, or two files for the same
            well, field, channel, z and timepoint.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"input.plate.directory {directory} is not a directory")
    names = sorted(
        p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()
    )
    found = parse_names(directory, names, pattern)
    if not found:
        raise ConfigError(
            f"input.plate.pattern {pattern!r} matches no file under {directory} "
            f"({len(names)} file(s) looked at)"
        )
    seen: dict[tuple, str] = {}
    dupes = []
    for f in found:
        key = (f["well"], f["field"], f["channel"], f["z"], f["timepoint"])
        if key in seen:
            dupes.append(f"{seen[key]} and {f['path']}")
        seen[key] = f["path"]
    if dupes:
        raise ConfigError(
            "duplicate fields (same well, field, channel, z and timepoint): "
            + "; ".join(dupes[:5])
            + (f" and {len(dupes) - 5} more" if len(dupes) > 5 else "")
        )
    log.info(
        "plate: %d file(s) matched, %d skipped", len(found), len(names) - len(found)
    )
    return found


def parse_names(directory: str | Path, names: list[str], pattern: str) -> list[dict]:
    """The matching ones of ``names`` (relative paths), parsed."""
    regex = compile_pattern(pattern)
    found = []
    for rel in names:
        m = regex.fullmatch(rel)
        if not m:
            continue
        groups = m.groupdict()
        row, column = split_well(groups["well"])
        found.append(
            {
                "path": f"{directory}/{rel}",
                "relative": rel,
                "well": f"{row}{column}",
                "row": row,
                "column": column,
                "field": int(groups["field"]),
                "channel": groups.get("channel"),
                "z": None if groups.get("z") is None else int(groups["z"]),
                "timepoint": groups.get("timepoint"),
                "spans": {k: m.span(k) for k, v in groups.items() if v is not None},
            }
        )
    return found


def channel_of(token: str | None, channel_names: list[str], mapping: dict) -> str:
    """The configured channel a file's channel token stands for."""
    if token is None:
        return None
    if token in mapping:
        name = mapping[token]
    elif token in channel_names:
        name = token
    elif token.isdigit() and 1 <= int(token) <= len(channel_names):
        name = channel_names[int(token) - 1]
    else:
        raise ConfigError(
            f"channel {token!r} of the file names is neither a configured channel "
            f"({', '.join(channel_names)}), a 1-based channel number, nor in "
            "input.plate.channel_map"
        )
    if name not in channel_names:
        raise ConfigError(
            f"input.plate.channel_map maps {token!r} to {name!r}, which is not a "
            f"configured channel ({', '.join(channel_names)})"
        )
    return name


def _read_table(path: Path, what: str, columns: tuple[str, ...]):
    """A CSV (or TSV) as strings, with lower-case column names; refused with
    a message naming the file when it or one of ``columns`` is missing."""
    if not path.is_file():
        raise ConfigError(f"{what} {path} not found")
    import pandas as pd  # here, not at the top: import jobs stay small

    sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    df.columns = [c.strip().lower() for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(
            f"{what} {path}: missing column(s) {missing}; expected {', '.join(columns)}"
        )
    return df


def read_plate_map(path: str | Path) -> dict[str, str]:
    """Plate map CSV/TSV (columns well, condition) → well ("B03") → condition."""
    path = Path(path)
    df = _read_table(path, "plate map", ("well", "condition"))
    out: dict[str, str] = {}
    for i, row in enumerate(df.itertuples(), start=2):
        try:
            well = "".join(split_well(row.well))
        except ConfigError as exc:
            raise ConfigError(f"plate map {path}, line {i}: {exc}") from None
        if well in out:
            raise ConfigError(f"plate map {path}, line {i}: well {well} appears twice")
        try:
            check_name(row.condition.strip(), "condition")
        except ConfigError as exc:
            raise ConfigError(f"plate map {path}, line {i}: {exc}") from None
        out[well] = row.condition.strip()
    return out


def grid_position(field: int, rows: int, columns: int, order: str) -> tuple[int, int]:
    """(grid row, grid column) of 1-based field number ``field``."""
    i = field - 1
    r, c = divmod(i, columns)
    if order == "snake" and r % 2:
        c = columns - 1 - c
    return r, c


def grid_overlap(grid: dict) -> tuple[int, int]:
    """``grid.overlap`` as (y, x): one number stands for both."""
    ov = grid.get("overlap", 0)
    return (ov, ov) if isinstance(ov, int) else (ov[0], ov[1])


def _clusters(values: list[float]) -> list[float]:
    """Sorted cluster centres of 1-D positions: a gap above a fifth of the
    largest gap starts a new cluster (stage jitter stays in one)."""
    xs = sorted(set(values))
    if len(xs) == 1:
        return xs
    gaps = np.diff(xs)
    cut = gaps.max() / 5
    groups, current = [], [xs[0]]
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
    df = _read_table(path, "positions file", ("well", "field", "x_um", "y_um"))
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
) -> tuple[dict[int, tuple[int, int]], tuple[int, int], list[float | None]]:
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
    stride = [float(np.median(np.diff(cs))) if len(cs) > 1 else None for cs in (ys, xs)]
    return place, (len(ys), len(xs)), stride


def plate_regions(plate: dict, channel_names: list[str]) -> list[dict]:
    """The well regions of an ``input.plate`` config (files found on disk).

    Each region is one well at one timepoint: the manifest's region dict
    (condition, timepoint, region, key, files) plus a "well" entry with the
    plate position, field grid and every field's files.

    Raises:
        ConfigError: naming the file, well or field that is wrong.
    """
    files = discover_files(plate["directory"], plate["pattern"])
    return wells_from_files(plate, files, channel_names)


def wells_from_files(
    plate: dict,
    files: list[dict],
    channel_names: list[str],
    conditions: dict[str, str] | None = None,
) -> list[dict]:
    """Group matched files into well regions (see ``plate_regions``).

    ``conditions`` (well → condition) stands in for the plate map (demo).
    """
    mapping = {str(k): v for k, v in (plate.get("channel_map") or {}).items()}
    for f in files:
        f["channel_name"] = channel_of(f["channel"], channel_names, mapping)
    plate_map = conditions or (
        read_plate_map(plate["plate_map"]) if plate.get("plate_map") else None
    )
    wells = sorted({f["well"] for f in files}, key=lambda w: (row_index(w[:-2]), w))
    if plate_map is not None:
        absent = [w for w in wells if w not in plate_map]
        if absent:
            raise ConfigError(
                f"well(s) {', '.join(absent)} have images but are not in the plate "
                f"map {plate['plate_map']}"
            )
    timepoints = sorted(
        {f["timepoint"] for f in files if f["timepoint"] is not None}, key=int
    )
    if timepoints and any(f["timepoint"] is None for f in files):
        raise ConfigError("some file names carry a timepoint and some do not")
    acquisition = {t: i for i, t in enumerate(timepoints)}
    channel_tokens = sorted({f["channel"] for f in files if f["channel"]}, key=str)
    zs = sorted({f["z"] for f in files if f["z"] is not None})
    z0 = zs[0] if zs else 0  # microscopes number planes from 1 (or 0)
    positions = read_positions(plate["positions"]) if plate.get("positions") else None
    grid = plate.get("grid") or {}
    by_unit: dict[tuple[str, str | None], list[dict]] = defaultdict(list)
    for f in files:
        by_unit[(f["well"], f["timepoint"])].append(f)
    regions = []
    for (well, tp), unit in sorted(
        by_unit.items(),
        key=lambda kv: (row_index(kv[1][0]["row"]), kv[0][0], int(kv[0][1] or 0)),
    ):
        row, column = unit[0]["row"], unit[0]["column"]
        by_field: dict[int, list[dict]] = defaultdict(list)
        for f in unit:
            by_field[f["field"]].append(f)
        field_numbers = sorted(by_field)
        stride_um = None
        if positions is not None:
            place, shape, stride_um = place_by_positions(
                well, field_numbers, positions, plate["positions"]
            )
            overlap = [0, 0]
        else:
            shape = (grid["rows"], grid["columns"])
            outside = [f for f in field_numbers if f > shape[0] * shape[1] or f < 1]
            if outside:
                raise ConfigError(
                    f"well {well}: field(s) {outside} lie outside the "
                    f"{shape[0]}x{shape[1]} grid of input.plate.grid"
                )
            place = {
                f: grid_position(f, shape[0], shape[1], grid["order"])
                for f in range(1, shape[0] * shape[1] + 1)
            }
            overlap = list(grid_overlap(grid))
        expected_fields = sorted(place)
        _check_complete(well, tp, unit, expected_fields, channel_tokens, zs, plate)
        fields = []
        for number in expected_fields:
            own = by_field.get(number)
            if not own:
                continue  # a missing field, allowed by missing_fields: zeros
            own.sort(
                key=lambda f: (
                    channel_names.index(f["channel_name"]) if f["channel_name"] else -1,
                    f["z"] or 0,
                )
            )
            fields.append(
                {
                    "field": number,
                    "grid_row": place[number][0],
                    "grid_column": place[number][1],
                    "stage_um": list(positions[(well, number)]) if positions else None,
                    "files": [
                        {
                            "path": f["path"],
                            "channel": f["channel_name"],
                            "z": None if f["z"] is None else f["z"] - z0,
                        }
                        for f in own
                    ],
                }
            )
        acq = acquisition.get(tp, 0)
        regions.append(
            {
                "condition": plate_map[well]
                if plate_map is not None
                else plate["name"],
                "timepoint": timepoint_name(tp),
                "region": well,
                "key": f"{plate['name']}/{row}/{column}/{acq}",
                "files": [f for fld in fields for f in fld["files"]],
                "well": {
                    "plate": plate["name"],
                    "row": row,
                    "column": column,
                    "acquisition": acq,
                    "grid": list(shape),
                    "overlap": overlap,
                    "stride_um": stride_um,
                    "missing_fields": plate["missing_fields"],
                    "fields": fields,
                },
            }
        )
    return regions


def _check_complete(well, tp, unit, fields, channel_tokens, zs, plate) -> None:
    """Refuse missing files: a field with some files but not all always; a
    field with none unless ``missing_fields`` is "zeros" (then warn)."""
    have = {(f["field"], f["channel"], f["z"]) for f in unit}
    chans = channel_tokens or [None]
    planes = zs or [None]
    template = unit[0]
    missing_files, empty = [], []
    for number in fields:
        wanted = [(number, c, z) for c in chans for z in planes]
        absent = [w for w in wanted if w not in have]
        if not absent:
            continue
        if len(absent) == len(wanted) and plate["missing_fields"] == "zeros":
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


def _expected_name(template: dict, field: int, channel, z) -> str:
    """The path a missing file would have: a sibling's name, its field,
    channel and z numbers replaced (keeping their zero padding)."""
    rel = template["relative"]
    spans = template["spans"]
    values = {"field": field, "channel": channel, "z": z}
    for name in sorted(values, key=lambda n: spans.get(n, (-1,))[0], reverse=True):
        if name not in spans or values[name] is None:
            continue
        a, b = spans[name]
        value = str(values[name])
        if value.isdigit() and rel[a:b].isdigit():
            value = value.zfill(b - a)
        rel = rel[:a] + value + rel[b:]
    base = template["path"][: len(template["path"]) - len(template["relative"])]
    return base + rel


# --- planning and stitching one well ------------------------------------------


@dataclass(frozen=True)
class WellPlan:
    """A well's stitched image: its shape, and where each field goes."""

    shape: tuple[int, ...]
    dtype: str
    has_z: bool
    chunk_yx: tuple[int, int]
    fields: tuple[tuple[dict, RegionPlan, tuple[SourceInfo, ...]], ...]
    pixel_size_um: float | None
    z_step_um: float | None


def plan_well(
    region: dict,
    channel_names: list[str],
    pixel_size_um: float | None,
    infos: dict[str, SourceInfo] | None = None,
) -> WellPlan:
    """Probe every field file of a well and plan the stitched image.

    Raises:
        SourceImageError: a field whose files do not fit together, or fields
            of different shapes or types.
    """
    spec = region["well"]
    planned = []
    for fld in spec["fields"]:
        label = f"well {region['region']} field {fld['field']}"
        found = tuple(
            infos[f["path"]] if infos else probe_source(f["path"], f["channel"] is None)
            for f in fld["files"]
        )
        planned.append(
            (fld, plan_region(label, fld["files"], found, channel_names), found)
        )

    def shape_of(plan):
        return plan.shape, np.dtype(plan.dtype).name

    shapes = [shape_of(p) for _, p, _ in planned]
    usual = max(set(shapes), key=shapes.count)
    odd = [(fld, p) for fld, p, _ in planned if shape_of(p) != usual]
    if odd:
        detail = "; ".join(
            f"field {fld['field']} ({fld['files'][0]['path']}): {p.shape} "
            f"{np.dtype(p.dtype).name}"
            for fld, p in odd[:5]
        )
        raise SourceImageError(
            f"well {region['region']}: fields differ in shape or type: most are "
            f"{usual[0]} {usual[1]}, but {detail}"
            + (f" and {len(odd) - 5} more" if len(odd) > 5 else "")
        )
    first = planned[0][1]
    fy, fx = first.shape[-2:]
    pixel_size = pixel_size_um or first.pixel_size_um
    overlap = list(spec["overlap"])
    if spec.get("stride_um"):
        for axis, stride in enumerate(spec["stride_um"]):
            if stride is None:
                continue
            if not pixel_size:
                raise SourceImageError(
                    f"well {region['region']}: stage positions need a pixel size "
                    "(set pixel_size_um)"
                )
            size = (fy, fx)[axis]
            overlap[axis] = max(0, size - round(stride / pixel_size))
    sy, sx = fy - overlap[0], fx - overlap[1]
    if sy <= 0 or sx <= 0:
        raise SourceImageError(
            f"well {region['region']}: overlap {overlap} is not smaller than the "
            f"field ({fy}x{fx})"
        )
    rows, cols = spec["grid"]
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


def stitch_well(blocks, plan: WellPlan, label: str = "") -> list[tuple[float, ...]]:
    """Write every field of a well into its chunk of level 0.

    ``blocks`` is the level-0 array's ``BlockIO``; its chunks are one field
    (less the overlap, cropped from the field's far edges). One field plane
    is in memory at a time. Missing fields stay unwritten: zarr reads them
    as the fill value 0.

    Returns:
        The display window (min, max, start, end) of each channel.
    """
    n_c = plan.shape[0]
    lo = np.full(n_c, np.inf)
    hi = np.full(n_c, -np.inf)
    sy, sx = plan.chunk_yx
    for i, (fld, fplan, infos) in enumerate(plan.fields, start=1):
        y0, x0 = fld["grid_row"] * sy, fld["grid_column"] * sx
        with ExitStack() as stack:
            readers = [stack.enter_context(SourceReader(info)) for info in infos]
            for p in fplan.planes:
                plane = readers[p.source].read(p.source_c, p.source_z, 0, sy)[:, :sx]
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


def field_records(region: dict, plan: WellPlan) -> list[dict]:
    """Where each field sits in the stitched well (for experiment.db)."""
    sy, sx = plan.chunk_yx
    return [
        {
            "field": fld["field"],
            "x": fld["grid_column"] * sx,
            "y": fld["grid_row"] * sy,
            "width": sx,
            "height": sy,
            "grid_row": fld["grid_row"],
            "grid_column": fld["grid_column"],
            "stage_x_um": fld["stage_um"][0] if fld["stage_um"] else None,
            "stage_y_um": fld["stage_um"][1] if fld["stage_um"] else None,
            "source_files": [str(Path(f["path"]).resolve()) for f in fld["files"]],
        }
        for fld, _, _ in plan.fields
    ]


# --- NGFF plate and well metadata ---------------------------------------------


def plate_attrs(name: str, regions: list[dict]) -> dict:
    """``.zattrs`` of the plate group: rows A.. and columns 01.. up to the
    last used, every imaged well, and one acquisition per timepoint."""
    wells = sorted(
        {(r["well"]["row"], r["well"]["column"]) for r in regions},
        key=lambda rc: (row_index(rc[0]), rc[1]),
    )
    n_rows = max(row_index(r) for r, _ in wells) + 1
    n_cols = max(int(c) for _, c in wells)
    acquisitions = {}
    for r in regions:
        acquisitions[r["well"]["acquisition"]] = r["timepoint"] or name
    return {
        "plate": {
            "version": NGFF_VERSION,
            "name": name,
            "rows": [{"name": row_name(i)} for i in range(n_rows)],
            "columns": [{"name": f"{i:02d}"} for i in range(1, n_cols + 1)],
            "wells": [
                {
                    "path": f"{row}/{col}",
                    "rowIndex": row_index(row),
                    "columnIndex": int(col) - 1,
                }
                for row, col in wells
            ],
            "acquisitions": [
                {"id": i, "name": acquisitions[i]} for i in sorted(acquisitions)
            ],
            "field_count": 1,
        }
    }


def well_attrs(regions: list[dict]) -> dict:
    """``.zattrs`` of a well group: its image per acquisition."""
    acqs = sorted({r["well"]["acquisition"] for r in regions})
    return {
        "well": {
            "version": NGFF_VERSION,
            "images": [{"path": str(a), "acquisition": a} for a in acqs],
        }
    }
