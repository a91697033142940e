"""Plate file names: which well, field, channel, z and timepoint a file is.

A screening microscope writes one file per field (and per channel, z and
timepoint); the names carry the coordinates. A pattern (a preset such as
``metaxpress`` or ``cellvoyager``, or the user's own with ``{well}``,
``{field}``…) turns a relative path into a ``MatchedFile``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import NamedTuple

from percell import remote
from percell.errors import ConfigError

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


class MatchedFile(NamedTuple):
    """A field file whose relative path matched the plate's pattern (a named
    tuple: a plate has tens of thousands, made at every parse)."""

    path: str
    relative: str
    well: str
    row: str
    column: str
    field: int
    #: the channel token in the name (a number or a name), None if absent
    channel: str | None
    z: int | None
    timepoint: str | None
    #: where each coordinate sits in ``relative`` (to name missing files)
    spans: dict[str, tuple[int, int]]


def compile_pattern(pattern: str) -> re.Pattern[str]:
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


def grid_position(field: int, rows: int, columns: int, order: str) -> tuple[int, int]:
    """(grid row, grid column) of 1-based field number ``field``."""
    i = field - 1
    r, c = divmod(i, columns)
    if order == "snake" and r % 2:
        c = columns - 1 - c
    return r, c


def timepoint_name(token: str | None) -> str | None:
    """Timepoint number in a file name → the PerCell timepoint name ("t1")."""
    return None if token is None else f"t{int(token)}"


def discover_files(directory: str | Path, pattern: str) -> list[MatchedFile]:
    """Every file under ``directory`` whose relative path matches ``pattern``.

    Raises:
        ConfigError: no directory, nothing matched, or two files for the same
            well, field, channel, z and timepoint.
    """
    names = remote.files_under(directory, "input.plate.directory")
    found = parse_names(directory, names, pattern)
    if not found:
        raise ConfigError(
            f"input.plate.pattern {pattern!r} matches no file under {directory} "
            f"({len(names)} file(s) looked at)"
        )
    seen: dict[tuple[str, int, str | None, int | None, str | None], str] = {}
    dupes = []
    for f in found:
        key = (f.well, f.field, f.channel, f.z, f.timepoint)
        if key in seen:
            dupes.append(f"{seen[key]} and {f.path}")
        seen[key] = f.path
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


def parse_names(
    directory: str | Path, names: list[str], pattern: str
) -> list[MatchedFile]:
    """The matching ones of ``names`` (relative paths), parsed."""
    regex = compile_pattern(pattern)
    found: list[MatchedFile] = []
    for rel in names:
        m = regex.fullmatch(rel)
        if not m:
            continue
        groups = m.groupdict()
        row, column = split_well(groups["well"])
        found.append(
            MatchedFile(
                path=f"{directory}/{rel}",
                relative=rel,
                well=f"{row}{column}",
                row=row,
                column=column,
                field=int(groups["field"]),
                channel=groups.get("channel"),
                z=None if groups.get("z") is None else int(groups["z"]),
                timepoint=groups.get("timepoint"),
                spans={k: m.span(k) for k, v in groups.items() if v is not None},
            )
        )
    return found


def channel_of(
    token: str | None, channel_names: list[str], mapping: dict[str, str]
) -> str | None:
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
