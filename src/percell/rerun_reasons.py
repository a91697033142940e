"""Why a step runs again, in words.

When a setting changes, Snakemake says only "Params have changed since last
execution" and prints the whole params before and after. Each sentinel
records the params that made it, so at parse time the settings that changed
are named here, as key paths with their old and new values, one line per
step and set of groups that share the change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from percell import layout
from percell.contracts import PyramidParams
from percell.manifest import Manifest

#: changes named per line; the rest are counted
SHOWN = 4
#: characters of a value shown
VALUE_CHARS = 60

_UNSET = object()


def changes(old: Any, new: Any, path: str = "") -> list[str]:
    """Each difference between two params trees: ``key.path: old → new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in [*old, *(k for k in new if k not in old)]:
            sub = f"{path}.{key}" if path else str(key)
            out += changes(old.get(key, _UNSET), new.get(key, _UNSET), sub)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += changes(a, b, f"{path}[{i}]")
        return out
    if old == new:
        return []
    return [f"{path or 'params'}: {_short(old)} → {_short(new)}"]


def _short(value: Any) -> str:
    if value is _UNSET:
        return "(not set)"
    text = json.dumps(value, default=str)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def reasons(manifest: Manifest) -> list[str]:
    """One line per step and change: the groups it reruns and what changed
    (only groups already made: a new group is simply new)."""
    steps: list[tuple[str, Callable[[str], dict[str, Any]]]] = [
        ("import", lambda g: manifest.import_params(g).to_params()),
        (
            "pyramid",
            lambda g: PyramidParams(levels=manifest.config.pyramid.levels).to_params(),
        ),
        ("measure", lambda g: manifest.measure_params().to_params()),
    ]
    lines = []
    for step, params_of in steps:
        by_change: dict[tuple[str, ...], list[str]] = {}
        for group in sorted(manifest.groups):
            path = Path(layout.sentinel_path(manifest.experiment, step, group))
            try:
                recorded = json.loads(path.read_text())["params"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not made yet, or unreadable: Snakemake says why
            try:
                current = params_of(group)
            except Exception:  # the step is no longer configured
                continue
            found = changes(recorded, current)
            if found:
                by_change.setdefault(tuple(found), []).append(group)
        for change, groups in by_change.items():
            where = ", ".join(groups[:3]) + (
                f" and {len(groups) - 3} more" if len(groups) > 3 else ""
            )
            shown = "; ".join(change[:SHOWN])
            more = f" (and {len(change) - SHOWN} more)" if len(change) > SHOWN else ""
            lines.append(f"{step} of {where} runs again: {shown}{more}")
    return lines
