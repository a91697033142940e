"""Whether a label image is still the one the segment step wrote.

The segment step stores the digest of a label image's level 0 in the label
group's attributes (``percell.labels_digest``); an edit in the PerCell 3
application or by hand changes level 0 and so no longer matches it.
"""

from __future__ import annotations

from pathlib import Path

from percell.storage import attrs_of, open_group, tree_digest


def labels_digest(group: str | Path) -> str:
    """Digest of a label group's level 0."""
    return tree_digest(Path(group) / "0")


def label_state(group: str | Path) -> tuple[str | None, bool]:
    """(digest of level 0 on disk, or None where there is no label image;
    whether it differs from the digest the workflow recorded). A label image
    written by an older percell (no digest recorded) counts as unedited."""
    group = Path(group)
    if not (group / "0").is_dir():
        return None, False
    current = labels_digest(group)
    recorded = attrs_of(open_group(group)).get("percell", {}).get("labels_digest")
    return current, recorded is not None and current != recorded
