"""A second path to the same pixels: an array whose chunk files are hard
links of another array's.

The workflow writes one NGFF layout (images, labels and masks by condition,
timepoint and region, or by plate, row, column and field, with pyramids).
An application that computes other paths (PerCell 3 4.0.0 reads
``images.zarr/fov_<id>/0``) gets a view: a zarr array directory whose
``.zarray`` and chunk files are hard links of the source level's. No pixel
is stored twice, and the view needs no rewrite when nothing changed.

The workflow never writes into an array in place: a step that changes an
array builds a new one aside and swaps it in, so the source's files get new
inodes while a view keeps the old ones. A view therefore stays what it was
(consistent with the database rows that describe it) until ``sync`` links it
anew; ``sync`` is idempotent and cheap when nothing changed (one ``stat`` per
chunk file).
"""

from __future__ import annotations

import os
from pathlib import Path

from percell.storage import link_tree, partial_path, remove_tree, replace_directory


def _inodes(array: Path) -> list[tuple[str, int]]:
    """(path below ``array``, inode) of every file of an array directory."""
    out = []
    for top, _, names in os.walk(array):
        for name in names:
            path = Path(top) / name
            out.append((str(path.relative_to(array)), os.stat(path).st_ino))
    return sorted(out)


def is_view_of(view: Path, source: Path) -> bool:
    """Whether ``view`` holds exactly the files of ``source`` (same inodes)."""
    return view.is_dir() and _inodes(view) == _inodes(source)


def sync(source: Path, view: Path) -> bool:
    """Make ``view`` a hard-linked copy of the array directory ``source``.

    Built aside and swapped in, so a reader sees the old view or the new one.
    Where the file system has no hard links the files are copied (pixels
    then take twice the space, but both paths still read the same).

    Returns:
        Whether the view was (re)made.
    """
    if is_view_of(view, source):
        return False
    built = partial_path(view)
    remove_tree(built)
    link_tree(source, built)
    replace_directory(built, view)
    return True


def remove(view: Path) -> None:
    """Remove a view (its source keeps its files)."""
    remove_tree(view)
