"""Zarr arrays in the PerCell 3 encoding, and crash-safe file operations.

Every store is zarr format 2 with "/" as the dimension separator, as NGFF 0.4
requires. Writes that must not look complete before they are go to a hidden
sibling first and are moved into place with ``os.replace``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numcodecs
import zarr
from zarr.storage import LocalStore

IMAGE_COMPRESSOR = numcodecs.Blosc(
    cname="lz4", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE
)
LABEL_COMPRESSOR = numcodecs.Blosc(
    cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE
)
MASK_COMPRESSOR = numcodecs.Zstd(level=3)
_V2_KEYS = {"name": "v2", "separator": "/"}


def open_group(path: str | os.PathLike, mode: str = "r") -> zarr.Group:
    """Open the zarr v2 group stored at ``path`` (its own store root)."""
    return zarr.open_group(LocalStore(str(path)), mode=mode, zarr_format=2)


def create_array(
    group: zarr.Group,
    name: str,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    dtype: Any,
    compressor: numcodecs.abc.Codec,
) -> zarr.Array:
    """Create (or replace) array ``name`` in ``group`` with our encoding."""
    chunks = tuple(min(c, s) if s else c for c, s in zip(chunks, shape, strict=True))
    return group.create_array(
        name,
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        compressors=compressor,
        chunk_key_encoding=_V2_KEYS,
        fill_value=0,
        overwrite=True,
    )


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON so that readers see either the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def write_json_if_changed(path: str | os.PathLike, data: Any) -> bool:
    """Like write_json, but leave the file (and its mtime) alone if equal."""
    path = Path(path)
    if path.is_file():
        try:
            if json.loads(path.read_text()) == data:
                return False
        except json.JSONDecodeError:
            pass
    write_json(path, data)
    return True


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def partial_path(final: Path) -> Path:
    """Hidden sibling where ``final`` is built before it is moved into place."""
    return final.with_name(f".{final.name}.partial")


def replace_directory(built: Path, final: Path) -> None:
    """Move the finished directory ``built`` to ``final``, replacing any old one.

    The old directory is renamed aside first, so at no moment does ``final``
    hold a mix of old and new files; a crash between the two renames leaves no
    ``final`` at all, which the rerun (no sentinel) rebuilds.
    """
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(built, final)
    if old.exists():
        shutil.rmtree(old)


def remove_tree(path: Path) -> None:
    """Remove a directory tree if it exists."""
    if path.exists():
        shutil.rmtree(path)
