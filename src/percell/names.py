"""The PerCell 3 name rule for conditions, timepoints, regions and channels.

These names become zarr group names, so the rule also keeps them from escaping
the experiment directory.
"""

from __future__ import annotations

import re

from percell.errors import ConfigError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"
_NAME_RE = re.compile(NAME_PATTERN)


def is_valid_name(name: object) -> bool:
    """Return whether ``name`` is a string PerCell 3 accepts as a group name."""
    return isinstance(name, str) and bool(_NAME_RE.match(name)) and ".." not in name


def check_name(name: object, what: str, where: str = "") -> str:
    """Return ``name`` unchanged or raise ConfigError naming the bad value.

    Args:
        name: The value to check.
        what: What the name is for ("condition", "channel", ...).
        where: Where the value came from, for the message (file and row).
    """
    if not is_valid_name(name):
        place = f" in {where}" if where else ""
        raise ConfigError(
            f"invalid {what} name {name!r}{place}: names must match "
            f"{NAME_PATTERN} and must not contain '..' (PerCell 3 name rule)"
        )
    return str(name)
