"""Sample sheets: read from a TSV/CSV, or built by scanning a directory.

Either way the result is one validated table with a row per raw image file
and the columns condition, timepoint, region, channel, path, z, scene.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from percell.config import validate
from percell.errors import ConfigError
from percell.names import check_name, is_valid_name

COLUMNS = ["condition", "timepoint", "region", "channel", "path", "z", "scene"]
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
            p if not p or Path(p).is_absolute() else str(base / p) for p in df["path"]
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
            if col in ("timepoint", "channel", "z", "scene"):
                out[col] = None
            continue
        if col == "z":
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
        for col in ("condition", "timepoint", "region", "channel"):
            if record.get(col) is not None:
                check_name(record[col], col, where)
        rows.append({c: record.get(c) for c in COLUMNS})
    if not rows:
        raise ConfigError(f"{source}: the sample sheet has no rows")
    out = pd.DataFrame(rows, columns=COLUMNS)
    key = ["condition", "timepoint", "region", "channel", "z", "scene"]
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
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"input.scan.directory {directory} is not a directory")
    regex = pattern_to_regex(pattern, channels)
    rows = []
    for f in sorted(directory.rglob("*")):
        if not f.is_file():
            continue
        m = regex.match(f.relative_to(directory).as_posix())
        if m:
            rows.append({**m.groupdict(), "path": str(f)})
    if not rows:
        raise ConfigError(
            f"input.scan.pattern {pattern!r} matches no file under {directory}"
        )
    df = pd.DataFrame(rows).reindex(columns=COLUMNS)
    df = df.map(lambda v: "" if v is None or v != v else str(v))  # v != v: NaN
    return check_sheet(df, f"scan of {directory}")


def expand_scenes(
    sheet: pd.DataFrame,
    is_multiscene_file: Callable[[str], bool],
    scenes_of: Callable[[list[str]], dict[str, tuple[str, ...]]],
) -> pd.DataFrame:
    """Every scene of a file its row leaves the scene of: one row per scene,
    the region named ``<region>_<scene>`` (``<region>_s<index>`` when the
    file's scene names are not all valid, distinct names). A file holding
    one scene keeps its row as it is."""
    pairs = zip(sheet["path"], sheet["scene"], strict=True)
    open_rows = {
        i
        for i, (path, scene) in enumerate(pairs)
        if scene is None and is_multiscene_file(path)
    }
    if not open_rows:
        return sheet
    scenes = scenes_of(sorted({sheet["path"].iloc[i] for i in open_rows}))
    rows = []
    for i, row in enumerate(sheet.to_dict("records")):
        names = scenes.get(row["path"], ()) if i in open_rows else ()
        if len(names) <= 1:
            rows.append(row)
            continue
        named = all(is_valid_name(n) for n in names) and len(set(names)) == len(names)
        for index, name in enumerate(names):
            suffix = name if named else f"s{index}"
            rows.append({**row, "region": f"{row['region']}_{suffix}", "scene": name})
    return check_sheet(pd.DataFrame(rows, columns=COLUMNS), "the sample sheet")
