"""Sample sheets: read from a TSV/CSV, or built by scanning a directory.

Either way the result is one validated table with a row per raw image file
and the columns condition, timepoint, region, channel, path, z, scene, t.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from percell import remote
from percell.config import validate
from percell.errors import ConfigError
from percell.formats import find_scene
from percell.names import check_name, is_valid_name

COLUMNS = [
    "condition",
    "timepoint",
    "region",
    "channel",
    "path",
    "z",
    "scene",
    "t",
    "bio_rep",
]
_FIELDS = ("condition", "timepoint", "region", "channel", "z")


def read_sample_sheet(path: str | Path) -> pd.DataFrame:
    """Read and validate a TSV or CSV sample sheet.

    Relative image paths are taken relative to the sheet's directory.

    Raises:
        ConfigError: naming the sheet, the row and the column that are wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sample sheet {path} not found")
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise ConfigError(f"sample sheet {path}: cannot be parsed ({exc})") from None
    df.columns = [c.strip() for c in df.columns]
    df = df.map(lambda v: v.strip() if isinstance(v, str) else v)
    unknown = sorted(set(df.columns) - set(COLUMNS))
    if unknown:
        raise ConfigError(
            f"sample sheet {path}: unknown columns {unknown}; expected "
            f"{', '.join(COLUMNS)}"
        )
    base = path.parent
    if "path" in df.columns:
        df["path"] = [
            p if not p or Path(p).is_absolute() or remote.is_url(p) else str(base / p)
            for p in df["path"]
        ]
    return check_sheet(df, str(path))


def _row_dict(row: pd.Series) -> dict:
    out: dict = {}
    for col, value in row.items():
        if (
            value == ""
            or value is None
            or (isinstance(value, float) and pd.isna(value))
        ):
            if col in ("timepoint", "channel", "z", "scene", "t", "bio_rep"):
                out[col] = None
            continue
        if col in ("z", "t"):
            try:
                out[col] = int(value)
            except (TypeError, ValueError):
                out[col] = value  # the schema reports the wrong type
        else:
            out[col] = value
    return out


def check_sheet(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Validate every row and the sheet as a whole; return a normalised copy."""
    rows = []
    for i, row in df.iterrows():
        where = f"{source}, row {int(i) + 2}"  # +1 header, +1 one-based
        record = _row_dict(row)
        validate(record, "samples", where)
        for col in ("condition", "timepoint", "region", "channel", "bio_rep"):
            if record.get(col) is not None:
                check_name(record[col], col, where)
        rows.append({c: record.get(c) for c in COLUMNS})
    if not rows:
        raise ConfigError(f"{source}: the sample sheet has no rows")
    out = pd.DataFrame(rows, columns=COLUMNS)
    key = ["condition", "timepoint", "region", "channel", "z", "scene", "t"]
    filled = out[key].map(lambda v: "" if v is None else str(v))
    dup = out[filled.duplicated(keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        same = dup[(filled.loc[dup.index] == filled.loc[first.name]).all(axis=1)]
        raise ConfigError(
            f"{source}: duplicate rows for condition={first.condition!r} "
            f"timepoint={first.timepoint!r} region={first.region!r} "
            f"channel={first.channel!r} z={first.z!r}: files {', '.join(same.path)}"
        )
    reps = out.groupby(["condition", "timepoint", "region"], dropna=False)["bio_rep"]
    mixed = reps.nunique(dropna=False)
    if (mixed > 1).any():
        cond, tp, region = mixed[mixed > 1].index[0]
        raise ConfigError(
            f"{source}: region condition={cond!r} timepoint={tp!r} region={region!r} "
            "has rows with different bio_rep values; a region belongs to one "
            "biological replicate"
        )
    return out


def pattern_to_regex(
    pattern: str, channels: Sequence[str] | None = None
) -> re.Pattern[str]:
    """Compile a file pattern such as ``{condition}/{region}_{channel}.tif``.

    ``{channel}`` matches only the configured channel names when given, which
    resolves names like ``r_1_DAPI.tif`` against ``{region}_{channel}``.
    """
    out, pos = [], 0
    for m in re.finditer(r"\{(\w+)\}", pattern):
        field = m.group(1)
        if field not in _FIELDS:
            raise ConfigError(
                f"input.scan.pattern {pattern!r}: unknown field {{{field}}}; "
                f"allowed: {', '.join('{' + f + '}' for f in _FIELDS)}"
            )
        out.append(re.escape(pattern[pos : m.start()]))
        if field == "z":
            out.append("(?P<z>[0-9]+)")
        elif field == "channel" and channels:
            alternatives = "|".join(re.escape(c) for c in channels)
            out.append(f"(?P<channel>{alternatives})")
        else:
            out.append(f"(?P<{field}>[^/]+?)")
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    try:
        return re.compile("".join(out) + r"\Z")
    except re.error as exc:
        raise ConfigError(f"input.scan.pattern {pattern!r}: {exc}") from None


def scan_directory(
    directory: str | Path, pattern: str, channels: Sequence[str] | None = None
) -> pd.DataFrame:
    """Build a sample sheet from the files under ``directory`` matching ``pattern``.

    Raises:
        ConfigError: if the directory is missing or nothing matches.
    """
    regex = pattern_to_regex(pattern, channels)
    rows = []
    for relative in remote.files_under(directory, "input.scan.directory"):
        m = regex.match(relative)
        if m:
            rows.append(
                {**m.groupdict(), "path": remote.join(str(directory), relative)}
            )
    if not rows:
        raise ConfigError(
            f"input.scan.pattern {pattern!r} matches no file under {directory}"
        )
    df = pd.DataFrame(rows).reindex(columns=COLUMNS)
    df = df.map(lambda v: "" if v is None or v != v else str(v))  # v != v: NaN
    return check_sheet(df, f"scan of {directory}")


def expand_files(
    sheet: pd.DataFrame,
    is_vendor_file: Callable[[str], bool],
    contents_of: Callable[[list[str]], dict[str, tuple[tuple[str, int], ...]]],
    file_timepoints: Sequence[str] | None,
) -> pd.DataFrame:
    """Rows for what vendor files hold beyond one image.

    - A row that leaves the scene of a file of several scenes empty becomes
      one row per scene, its region named ``<region>_<scene>`` (characters
      a name may not hold become ``_``; ``<region>_s<index>`` where the
      names still are not valid, distinct names).
    - A row that leaves both ``timepoint`` and ``t`` empty, for a scene of
      several timepoints, becomes one row per timepoint when
      ``file_timepoints`` names them (in the file's order); without that
      setting the import refuses the file, with this advice.
    """
    vendor = sorted({p for p in sheet["path"] if is_vendor_file(p)})
    if not vendor:
        return sheet
    contents = contents_of(vendor)
    rows = []
    grown: dict[int, list[dict]] = {}  # sheet row -> the rows it became
    for i, row in enumerate(sheet.to_dict("records")):
        made = [
            r
            for scene_row in _scene_rows(row, contents.get(row["path"]))
            for r in _timepoint_rows(scene_row, contents, file_timepoints)
        ]
        if len(made) > 1:
            grown[i] = made
        rows.extend(made)
    if len(rows) == len(sheet):
        return sheet
    _check_expanded_timepoints(rows, grown, contents)
    return check_sheet(pd.DataFrame(rows, columns=COLUMNS), "the sample sheet")


def _check_expanded_timepoints(
    rows: list[dict],
    grown: dict[int, list[dict]],
    contents: dict[str, tuple[tuple[str, int], ...]],
) -> None:
    """A condition's rows all have a timepoint or none: where a file's
    expansion broke that (scenes of several timepoints beside scenes of
    one), say what the file expanded into, not only that the condition is
    mixed (the user's sheet may have one row)."""
    with_tp = {r["condition"] for r in rows if r["timepoint"] is not None}
    without = {r["condition"] for r in rows if r["timepoint"] is None}
    for i, made in grown.items():
        condition = made[0]["condition"]
        if condition not in with_tp & without:
            continue
        scenes = ", ".join(
            f"{scene} ({n} timepoint{'s' * (n != 1)})"
            for scene, n in contents[made[0]["path"]]
        )
        regions = ", ".join(
            f"{r['region']}" + (f" at {r['timepoint']}" if r["timepoint"] else "")
            for r in made
        )
        raise ConfigError(
            f"the sample sheet, row {i + 2} ({condition}, {made[0]['path']}): the "
            f"file holds scenes {scenes}, so the row became regions {regions}; a "
            "condition's regions all have a timepoint or none. Give each scene a "
            "row of its own (with a timepoint, or t, where it has one), or put "
            "the scenes of one timepoint in a condition of their own"
        )


def _scene_rows(row: dict, contents: tuple[tuple[str, int], ...] | None) -> list[dict]:
    if not contents or len(contents) == 1 or row["scene"] is not None:
        return [row]
    names = [scene for scene, _ in contents]
    safe = [re.sub(r"[^A-Za-z0-9._-]", "_", n) for n in names]
    if not all(is_valid_name(n) for n in safe) or len(set(safe)) < len(safe):
        safe = [f"s{i}" for i in range(len(names))]
    return [
        {**row, "region": f"{row['region']}_{suffix}", "scene": name}
        for name, suffix in zip(names, safe, strict=True)
    ]


def _timepoint_rows(
    row: dict,
    contents: dict[str, tuple[tuple[str, int], ...]],
    file_timepoints: Sequence[str] | None,
) -> list[dict]:
    scenes = contents.get(row["path"])
    if not scenes or row["timepoint"] is not None or pd.notna(row["t"]):
        return [row]
    timepoints = dict(scenes)
    names = list(timepoints)
    scene = names[0] if row["scene"] is None else find_scene(names, row["scene"])
    if scene is None:
        return [row]  # no such scene: the probe says so, naming the file
    count = timepoints[scene]
    if count <= 1 or file_timepoints is None:
        return [row]
    if count != len(file_timepoints):
        raise ConfigError(
            f"{row['path']}: holds {count} timepoints, but file_timepoints "
            f"names {len(file_timepoints)} ({', '.join(file_timepoints)})"
        )
    return [
        {**row, "timepoint": name, "t": t} for t, name in enumerate(file_timepoints)
    ]
