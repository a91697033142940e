"""Shared zarr hierarchy metadata, written once per run from the manifest.

Parallel jobs write only inside their own region groups; the store roots and
the condition / timepoint groups above them belong to this one step, so no
two jobs ever read-modify-write the same metadata file.
"""

from __future__ import annotations

from pathlib import Path

from percell import layout
from percell.contracts import HierarchyParams
from percell.ngff import PERCELL_VERSION
from percell.sentinel import write_sentinel
from percell.storage import write_json_if_changed

ZGROUP = {"zarr_format": 2}


def write_hierarchy(params: HierarchyParams, sentinel: str | Path) -> None:
    """Write root and intermediate group metadata of all three stores.

    Args:
        params: Store name → plain group paths to write in it, and store →
            group path → its ``.zattrs`` (NGFF plate and wells).
        sentinel: This step's sentinel (inside the experiment, which it names).

    Files whose content is already right are left alone (mtime included).
    """
    experiment = Path(layout.experiment_of_sentinel(sentinel))
    for store in layout.STORES:
        root = experiment / store
        write_json_if_changed(root / ".zgroup", ZGROUP)
        write_json_if_changed(root / ".zattrs", {"percell_version": PERCELL_VERSION})
        for path in params.groups.get(store, ()):
            write_json_if_changed(root / path / ".zgroup", ZGROUP)
        for path, content in params.attrs.get(store, {}).items():
            write_json_if_changed(root / path / ".zattrs", content)
    write_sentinel(
        sentinel, "hierarchy", "all", params, [], {"stores": list(layout.STORES)}
    )
