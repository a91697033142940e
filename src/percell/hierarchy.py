"""Shared zarr hierarchy metadata, written once per run from the manifest.

Parallel jobs write only inside their own region groups; the store roots and
the condition / timepoint groups above them belong to this one step, so no
two jobs ever read-modify-write the same metadata file.
"""

from __future__ import annotations

from pathlib import Path

from percell import layout
from percell.ngff import PERCELL_VERSION
from percell.sentinel import write_sentinel
from percell.storage import write_json_if_changed

ZGROUP = {"zarr_format": 2}


def write_hierarchy(
    experiment: str | Path,
    groups: dict[str, list[str]],
    sentinel: str | Path,
    attrs: dict[str, dict[str, dict]] | None = None,
) -> None:
    """Write root and intermediate group metadata of all three stores.

    Args:
        experiment: The ``.percell`` directory.
        groups: Store name → plain group paths to write in it.
        sentinel: This step's sentinel.
        attrs: Store → group path → its ``.zattrs`` (NGFF plate and wells).

    Files whose content is already right are left alone (mtime included).
    """
    experiment = Path(experiment)
    for store in layout.STORES:
        root = experiment / store
        write_json_if_changed(root / ".zgroup", ZGROUP)
        write_json_if_changed(root / ".zattrs", {"percell_version": PERCELL_VERSION})
        for path in groups[store]:
            write_json_if_changed(root / path / ".zgroup", ZGROUP)
        for path, content in (attrs or {}).get(store, {}).items():
            write_json_if_changed(root / path / ".zattrs", content)
    write_sentinel(
        sentinel,
        "hierarchy",
        "all",
        {"groups": groups, "attrs": attrs or {}},
        [],
        {"stores": list(layout.STORES)},
    )
