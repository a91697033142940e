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

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from percell import ngff
from percell.errors import ExperimentError
from percell.label_digest import labels_digest
from percell.projection import write_projection
from percell.storage import (
    array_of,
    attrs_of,
    link_tree,
    open_group,
    partial_path,
    read_json,
    remove_tree,
    replace_directory,
    write_json,
    write_json_if_changed,
)

log = logging.getLogger(__name__)


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


# --- views of NGFF groups: level 0 and the group's attributes ----------------


def write_group(group: Path, attrs: dict[str, Any]) -> None:
    """A zarr v2 group's ``.zgroup`` and ``.zattrs`` (written only where
    they change, each atomically)."""
    group.mkdir(parents=True, exist_ok=True)
    zgroup = group / ".zgroup"
    if not zgroup.is_file():
        write_json(zgroup, {"zarr_format": 2})
    zattrs = group / ".zattrs"
    if not zattrs.is_file() or read_json(zattrs) != attrs:
        write_json(zattrs, attrs)


def parent_groups(store: Path, key: str) -> None:
    """A ``.zgroup`` in each group above ``key`` inside ``store``, so that
    readers that walk the hierarchy find the view."""
    parts = key.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        zgroup = store.joinpath(*parts[:depth], ".zgroup")
        if not zgroup.is_file():
            write_json(zgroup, {"zarr_format": 2})


def level0_view(source: Path, view: Path, extra: dict[str, Any] | None = None) -> None:
    """``view`` as an NGFF group of one level: a view of ``source``'s level 0,
    with ``source``'s attributes (and ``extra``)."""
    sync(source / "0", view / "0")
    write_group(view, ngff.with_levels(attrs_of(open_group(source)), 1) | (extra or {}))


def _stamp(source: Path, how: str) -> str:
    """What a projection was made from: the source array's files (inodes:
    the workflow replaces an array it changes) and the projection."""
    data = json.dumps([how, _inodes(source)]).encode()
    return hashlib.sha256(data).hexdigest()


def projected_view(
    source: Path,
    view: Path,
    how: str,
    channels: bool,
    extra: dict[str, Any] | None = None,
    labels: bool = False,
) -> bool:
    """``view`` as the projection along z of ``source``'s level 0 (written,
    not linked: its pixels are new), remade only when the source or the
    projection changed. Label views record the digest of the projected
    labels, so that edits made in the application are recognised.

    Returns:
        Whether the view was (re)made.
    """
    stamp = _stamp(source / "0", how)
    attrs = ngff.without_z(attrs_of(open_group(source))) | (extra or {})
    if (view / ".zattrs").is_file():
        current = read_json(view / ".zattrs")
        made = current.get("percell", {})
        if made.get("projected_from") == stamp:
            if channels:  # an image's pixels stand, but its display
                # metadata (channel colours, which register sets) may not
                write_json_if_changed(view / ".zattrs", attrs | {"percell": made})
            return False
    attrs["percell"] = {"projected_from": stamp, "z_projection": how}
    built = partial_path(view)
    remove_tree(built)
    write_projection(array_of(open_group(source)), built, how, channels, attrs)
    if labels:
        attrs["percell"]["labels_digest"] = labels_digest(built)
        write_json(built / ".zattrs", attrs)
    replace_directory(built, view)
    return True


def edited_digest(source: Path, view: Path) -> str | None:
    """The digest of a label view's level 0 where the application edited it
    after the workflow wrote it (None where it did not, or there is none).
    The application writes a chunk by replacing its file, so an edited
    view no longer shares the source's files; a projected view is compared
    with the digest recorded when it was made."""
    if not (view / "0").is_dir() or not (view / ".zattrs").is_file():
        return None
    recorded = read_json(view / ".zattrs").get("percell", {})
    if "projected_from" not in recorded and is_view_of(view / "0", source / "0"):
        return None
    made = recorded.get("labels_digest")
    current = labels_digest(view)
    return current if made is not None and current != made else None


def replace_edits(source: Path, view: Path) -> None:
    """The user chose to replace the application's edits of a label view
    (``segmentation.overwrite_edited_labels``): the view shows the
    workflow's labels again, even where they came out as before. A
    projection is left for register to make anew."""
    attrs = read_json(view / ".zattrs")
    recorded = attrs.get("percell", {})
    if "projected_from" in recorded:
        remove_tree(view / "0")
        recorded.pop("projected_from")
    else:
        sync(source / "0", view / "0")
        recorded["labels_digest"] = digest_attr(source)
    write_json(view / ".zattrs", attrs | {"percell": recorded})


def refuse_replacing_edited_projection(key: str, source: Path, view: Path) -> None:
    """Before the commit: ExperimentError when the application edited a
    projected label view and the workflow has new labels for the region
    (edited after the segment step checked)."""
    if not (view / ".zattrs").is_file():
        return
    recorded = read_json(view / ".zattrs").get("percell", {})
    if recorded.get("projected_from") == _stamp(
        source / "0", str(recorded.get("z_projection"))
    ):
        return  # the workflow's labels did not change; the view is kept
    if edited_digest(source, view) is not None:
        raise _edits_error(key, f"its projected label image {view}/0")


def digest_attr(group: Path) -> str | None:
    """The labels digest the workflow recorded in a label group's attributes
    (copied into its view, where the application keeps it when it edits)."""
    path = group / ".zattrs"
    if not path.is_file():
        return None
    digest = read_json(path).get("percell", {}).get("labels_digest")
    return None if digest is None else str(digest)


def refuse_replacing_edited_labels(key: str, source: Path, view: Path) -> None:
    """Before the commit: ExperimentError when the application edited the
    label view and the workflow has new labels for the region (edited after
    the segment step checked)."""
    if not (view / "0").is_dir() or is_view_of(view / "0", source / "0"):
        return
    if digest_attr(view) == digest_attr(source):
        return  # the workflow's labels did not change; the view is kept
    if edited_digest(source, view) is not None:
        raise _edits_error(key, f"its label image {view}/0")


def _edits_error(key: str, image: str) -> ExperimentError:
    return ExperimentError(
        f"region {key}: {image} was edited in the PerCell 3 application after "
        "the workflow wrote it, and the workflow has segmented the region "
        "again. Registering the new cells would replace the edits: keep them "
        "by putting the segmentation settings back, or set segmentation."
        "overwrite_edited_labels: true to replace them."
    )


def label_view(source: Path, view: Path, image: str) -> None:
    """``view`` made a view of the label group ``source`` (``image``: the
    path from the view to its image), unless the application edited it and
    the workflow's labels did not change since."""
    if digest_attr(view) == digest_attr(source) and (view / "0").is_dir():
        if not is_view_of(view / "0", source / "0"):
            log.warning(
                "%s/0 differs from the workflow's labels (edited in the "
                "application?): kept as it is",
                view,
            )
            return
    level0_view(
        source,
        view,
        {"image-label": {"version": ngff.NGFF_VERSION, "source": {"image": image}}},
    )
