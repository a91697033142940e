"""Zarr arrays in the PerCell 3 encoding, and crash-safe file operations.

Every store is zarr format 2 with "/" as the dimension separator, as NGFF 0.4
requires. Writes that must not look complete before they are go to a hidden
sibling first and are moved into place when all of a job's writes are done
(``Staging``).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numcodecs
import zarr
from zarr.storage import LocalStore

from percell.errors import ExperimentError

IMAGE_COMPRESSOR = numcodecs.Blosc(
    cname="lz4", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE
)
LABEL_COMPRESSOR = numcodecs.Blosc(
    cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE
)
MASK_COMPRESSOR = numcodecs.Zstd(level=3)
_V2_KEYS: dict[str, Any] = {"name": "v2", "separator": "/"}


def open_group(
    path: str | os.PathLike[str], mode: Literal["r", "r+", "a", "w", "w-"] = "r"
) -> zarr.Group:
    """Open the zarr v2 group stored at ``path`` (its own store root)."""
    return zarr.open_group(LocalStore(str(path)), mode=mode, zarr_format=2)


def array_of(group: zarr.Group, path: str = "0") -> zarr.Array[Any]:
    """Array ``path`` of ``group`` (a level of an image, labels or mask)."""
    found = group[path]
    if not isinstance(found, zarr.Array):
        raise ExperimentError(f"{group.store}/{path} is a group, not an array")
    return found


def attrs_of(group: zarr.Group | zarr.Array[Any]) -> dict[str, Any]:
    """A group's ``.zattrs`` as plain JSON data."""
    return dict(group.attrs.asdict())


def level_paths(group: zarr.Group) -> list[str]:
    """The multiscales levels of an image, labels or mask group, in order."""
    return [str(d["path"]) for d in attrs_of(group)["multiscales"][0]["datasets"]]


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
    write_file_atomic(
        path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode()
    )


def write_file_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` aside, fsync it and rename it over ``path``."""
    with staged_file(path) as tmp:
        tmp.write_bytes(data)


@contextmanager
def staged_file(path: str | os.PathLike) -> Iterator[Path]:
    """A hidden sibling of ``path`` to write; moved over ``path`` (fsync'ed) when
    the block succeeds, removed when it fails (``Staging`` for one file)."""
    with Staging() as staged:
        yield staged.file(Path(path))


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


def fsync_file(path: str | os.PathLike) -> None:
    """Flush one file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(path: str | os.PathLike) -> None:
    """Flush a directory's entries (new names, renames) to the disk."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path, threads: int = 4) -> None:
    """fsync every file and directory under ``root`` (files in parallel: fsync
    releases the GIL and the disk queues them)."""
    files: list[str] = []
    dirs: list[str] = []
    for top, _, names in os.walk(root):
        dirs.append(top)
        files.extend(os.path.join(top, n) for n in names)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fsync_file, files))
    for d in reversed(dirs):
        fsync_directory(d)


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where unsupported."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_directory(built: Path, final: Path) -> None:
    """Move the finished directory ``built`` to ``final``, replacing any old one.

    ``built`` is fsync'ed first. Where the file system can swap two names
    atomically (Linux renameat2), a reader sees the old directory or the new
    one, never none; elsewhere the old one is renamed aside first, so
    ``final`` never holds a mix of old and new files.
    """
    fsync_tree(built)
    if final.exists() and _exchange(built, final):
        shutil.rmtree(built)  # now the old directory
    else:
        old = final.with_name(f".{final.name}.old")
        remove_tree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(built, final)
        remove_tree(old)
    fsync_directory(final.parent)


class Staging:
    """Write-aside-then-swap, the one way the workflow replaces what it wrote.

    ``directory(final)`` and ``file(final)`` give a hidden sibling to build
    ``final`` in. Used as a context manager: a block that raises removes every
    sibling and touches nothing final, so a failed job leaves the experiment
    as it was; a block that succeeds fsyncs and swaps every directory in
    (``replace_directory``), then every file (``os.replace``).
    """

    def __init__(self) -> None:
        self.directories: list[tuple[Path, Path]] = []
        self.files: list[tuple[Path, Path]] = []
        #: parent directories this staging made, deepest last
        self.made: list[Path] = []

    def _parents(self, final: Path) -> None:
        """Make ``final``'s missing parents, remembering them: a failed block
        removes them again (no empty ``images.zarr/<condition>/`` left)."""
        missing = [p for p in [final.parent, *final.parent.parents] if not p.exists()]
        final.parent.mkdir(parents=True, exist_ok=True)
        self.made.extend(reversed(missing))

    def directory(self, final: Path) -> Path:
        """A fresh hidden sibling directory of ``final`` to build into."""
        self._parents(final)
        built = partial_path(final)
        remove_tree(built)
        built.mkdir(parents=True)  # (parents: another job's failure may race)
        self.directories.append((built, final))
        return built

    def file(self, final: Path) -> Path:
        """A hidden sibling path of file ``final`` to write (same suffix, so
        libraries that look at it write the right format)."""
        self._parents(final)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.partial{final.suffix}")
        self.files.append((tmp, final))
        return tmp

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            for built, _final in self.directories:
                remove_tree(built)
            for tmp, _final in self.files:
                tmp.unlink(missing_ok=True)
            for made in reversed(self.made):
                try:
                    made.rmdir()  # only if empty: another job may use it now
                except OSError:
                    pass
            return
        for built, final in self.directories:
            replace_directory(built, final)
        for tmp, final in self.files:
            fsync_file(tmp)
            os.replace(tmp, final)
            fsync_directory(final.parent)


def link_tree(source: Path, target: Path) -> None:
    """Recreate ``source`` at ``target`` with hard links (copies where the file
    system has none): a new directory that shares the old files' data."""
    for top, dirs, names in os.walk(source):
        rel = Path(top).relative_to(source)
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in names:
            src, dst = Path(top) / name, target / rel / name
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
        dirs.sort()


def remove_tree(path: Path) -> None:
    """Remove a directory tree if it exists."""
    if path.exists():
        shutil.rmtree(path)


def tree_digest(path: Path) -> str:
    """SHA-256 digest of every file under ``path``, names and bytes: tells
    whether an array on disk is still the one the workflow wrote."""
    h = hashlib.sha256()
    files: list[Path] = []
    for top, _, names in os.walk(path):
        files.extend(Path(top) / n for n in names)
    for f in sorted(files):
        h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()
