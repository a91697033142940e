"""Raw image files: probing their layout and reading them band by band.

Vendor formats and OME-Zarr go through bioio (``formats``); the rest of
this module is TIFF. A source is a TIFF or OME-TIFF holding one of: a 2-D
plane (YX), a Z-stack of one channel (ZYX), all channels (CYX) or all
channels as a stack (CZYX or ImageJ's ZCYX). Reading never loads a whole
file: the importer asks for one plane's rows ``y0:y1`` at a time.
"""

from __future__ import annotations

import functools
import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from percell import formats, remote
from percell.errors import SourceImageError
from percell.source_info import (
    SUPPORTED_DTYPES,
    PlaneReader,
    SourceInfo,
    file_channel_names,
)
from percell.storage import write_file_atomic


def _normalise_axes(axes: str, shape: tuple[int, ...], multichannel: bool) -> str:
    """Map tifffile's axes to our "CZYX" subset, or raise for what we refuse."""
    # tifffile names unknown leading axes Q/I; S (samples) of 1 is squeezed.
    known = {"YX": "YX", "ZYX": "ZYX", "CYX": "CYX", "CZYX": "CZYX", "ZCYX": "ZCYX"}
    if axes in known:
        return known[axes]
    if len(shape) == 3 and axes[1:] == "YX":
        return "CYX" if multichannel else "ZYX"
    if len(shape) == 4 and axes[2:] == "YX":
        return "CZYX"
    raise SourceImageError(
        f"{axes!r} layout with shape {shape} is not supported: expected a 2-D "
        "plane (YX), a Z-stack (ZYX), channels (CYX) or channels of Z-stacks "
        "(CZYX or ZCYX)"
    )


def _ome_metadata(
    xml: str | None,
) -> tuple[float | None, float | None, tuple[str, ...]]:
    """PhysicalSizeX and PhysicalSizeZ of the first OME image, in µm, and its
    channels' names (empty where a channel has none)."""
    if not xml:
        return None, None, ()
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None, None, ()
    for elem in root.iter():
        if elem.tag.endswith("}Pixels") or elem.tag == "Pixels":
            names = tuple(
                c.get("Name", "")
                for c in elem
                if c.tag.endswith("}Channel") or c.tag == "Channel"
            )
            unit = elem.get("PhysicalSizeXUnit", "µm")
            if unit not in ("µm", "um", "micrometer"):
                return None, None, names
            sx = elem.get("PhysicalSizeX")
            sz = elem.get("PhysicalSizeZ")
            return (float(sx) if sx else None, float(sz) if sz else None, names)
    return None, None, ()


def _naming(path: str | os.PathLike, exc: SourceImageError) -> SourceImageError:
    """The error with the file's name in front, once (a URL's own errors
    already name it)."""
    text = str(exc)
    return exc if text.startswith(str(path)) else SourceImageError(f"{path}: {text}")


def probe_source(
    path: str | os.PathLike, multichannel: bool = False, scene: str | None = None
) -> SourceInfo:
    """Read a file's header and check it can be imported.

    Args:
        path: The file.
        multichannel: Whether the sheet says the file holds every channel
            (this decides how an unlabelled 3-D stack is read).
        scene: The scene to read, in a vendor file that holds several.

    Raises:
        SourceImageError: Missing, unreadable, corrupt or truncated file,
            unsupported layout or dtype. The message names the file.
    """
    # a URL stays a string: Path would fold its "//"
    p = str(path) if remote.is_url(path) else Path(path)
    if formats.is_vendor_file(p):
        return formats.probe_vendor(str(p), multichannel, scene)
    if scene is not None:
        raise SourceImageError(
            f"{p}: the sample sheet gives scene {scene!r}, but a TIFF holds no "
            "scenes (leave the scene column empty)"
        )
    if isinstance(p, Path) and not p.is_file():
        raise SourceImageError(f"{p}: file not found")
    try:
        with _open_tiff(p) as tf:
            series = tf.series[0]
            shape = tuple(int(s) for s in series.shape)
            dtype = np.dtype(series.dtype)
            axes = _normalise_axes(series.axes, shape, multichannel)
            _check_not_truncated(tf)
            pixel_size, z_step, names = _ome_metadata(tf.ome_metadata)
            if pixel_size is None and tf.is_imagej:
                pixel_size = _imagej_pixel_size(tf)
    except SourceImageError as exc:
        raise _naming(p, exc) from None
    except Exception as exc:  # tifffile raises many types on corrupt files
        raise SourceImageError(
            f"{p}: not a readable TIFF ({type(exc).__name__}: {exc})"
        ) from None
    if dtype.str not in SUPPORTED_DTYPES:
        raise SourceImageError(
            f"{p}: unsupported pixel type {dtype} (expected one of uint8, uint16, "
            "uint32, int8, int16, int32, float32, float64)"
        )
    stored_axes = axes
    if axes == "ZCYX":
        axes, shape = "CZYX", (shape[1], shape[0], shape[2], shape[3])
    return SourceInfo(
        str(p),
        axes,
        shape,
        dtype.str,
        pixel_size,
        z_step,
        stored_axes,
        channel_names=file_channel_names(names),
    )


@contextmanager
def _open_tiff(path: str | Path) -> Iterator[tifffile.TiffFile]:
    """A TIFF on disk, or behind a URL read by byte ranges (its header, then
    only the strips or tiles asked for); both closed on leaving."""
    if isinstance(path, str) and remote.is_url(path):
        with (
            remote.open_url(path) as fh,
            tifffile.TiffFile(fh, name=path.rsplit("/", 1)[-1]) as tf,
        ):
            yield tf
    else:
        with tifffile.TiffFile(path) as tf:
            yield tf


def _check_not_truncated(tf: tifffile.TiffFile) -> None:
    size = tf.filehandle.size
    for page in tf.pages:
        offsets = page.dataoffsets
        counts = page.databytecounts
        if offsets and max(o + c for o, c in zip(offsets, counts, strict=True)) > size:
            raise SourceImageError(
                f"truncated: pixel data runs past the end of the file ({size} bytes)"
            )


def _imagej_pixel_size(tf: tifffile.TiffFile) -> float | None:
    page = tf.pages.first
    tag = page.tags.get("XResolution")
    meta = tf.imagej_metadata or {}
    if tag is None or meta.get("unit") not in ("micron", "um", "µm", "\\u00B5m"):
        return None
    num, den = tag.value
    return den / num if num else None


@dataclass
class SourceReader:
    """Reads rows of one plane of a probed source, a band at a time.

    Uncompressed contiguous files are read with positioned reads (no
    whole-file buffer); anything else goes through tifffile's zarr view, which
    decodes only the strips or tiles a band touches.
    """

    info: SourceInfo
    _fd: int | None = None
    _offset: int | None = None
    _zarr: zarr.Array[Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _tf: tifffile.TiffFile | None = None
    _files: ExitStack | None = None

    def __enter__(self) -> SourceReader:
        self._files = ExitStack()
        self._tf = self._files.enter_context(_open_tiff(self.info.path))
        series = self._tf.series[0]
        offset = series.dataoffset
        if offset is not None and series.keyframe.compression == 1:
            self._offset = int(offset)
            if not remote.is_url(self.info.path):  # (a URL: a band, one GET)
                self._fd = os.open(self.info.path, os.O_RDONLY)
        else:
            self._zarr = zarr.open_array(series.aszarr(), mode="r")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
        if self._files is not None:
            self._files.close()

    def read(self, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        """Rows ``y0:y1`` of channel ``c``, plane ``z`` (indices in the file)."""
        info = self.info
        stored = self._stored_index(c, z)
        dtype = np.dtype(info.dtype)
        width = info.width
        try:
            if self._offset is not None:
                lead = self._stored_lead()
                plane = int(np.ravel_multi_index(stored, lead)) if stored else 0
                row = plane * info.height + y0
                start = self._offset + row * width * dtype.itemsize
                nbytes = (y1 - y0) * width * dtype.itemsize
                buf = self._read_at(start, nbytes)
                if len(buf) != nbytes:
                    raise SourceImageError("file ends before the pixel data does")
                return np.frombuffer(buf, dtype=dtype).reshape(y1 - y0, width)
            assert self._zarr is not None  # opened by __enter__
            with self._lock:  # tifffile's zarr store shares one file handle
                return np.asarray(self._zarr[(*stored, slice(y0, y1))])  # type: ignore[index]
        except SourceImageError as exc:
            raise _naming(info.path, exc) from None
        except Exception as exc:
            raise SourceImageError(
                f"{info.path}: reading rows {y0}-{y1} failed "
                f"({type(exc).__name__}: {exc})"
            ) from None

    def _read_at(self, start: int, nbytes: int) -> Any:
        if self._fd is not None:
            return os.pread(self._fd, nbytes, start)
        # the response's own buffer, not copied (numpy views it)
        return remote.read_range(self.info.path, start, start + nbytes)

    def _stored_lead(self) -> tuple[int, ...]:
        """Shape of the non-YX axes in the file's own order."""
        sizes = dict(zip(self.info.axes, self.info.shape, strict=True))
        return tuple(sizes[a] for a in self.info.stored_axes[:-2])

    def _stored_index(self, c: int, z: int) -> tuple[int, ...]:
        """Index of plane (c, z) in the file's own axis order."""
        idx = {"C": c, "Z": z}
        return tuple(idx[a] for a in self.info.stored_axes[:-2])


def open_source(info: SourceInfo) -> PlaneReader:
    """The reader of a probed source: tifffile for TIFF, bioio for the rest."""
    if formats.is_vendor_file(info.path):
        return formats.open_vendor(info)
    return SourceReader(info)


def source_id(path: str, scene: str | None) -> str:
    """How a file's scene is named among probes: the path, plus the scene."""
    return path if scene is None else f"{path}[scene={scene}]"


#: probes of objects behind URLs in flight at once
PROBE_REQUESTS = 16

#: Where parse-time probes are remembered, relative to the working directory
#: (beside Snakemake's own metadata); PERCELL_PROBE_CACHE overrides it.
PROBE_CACHE = ".snakemake/percell/probes.json"


@functools.cache
def reader_versions() -> str:
    """The readers a probe goes through, with their versions. A probe made
    under other versions is not trusted: after an upgrade or a downgrade a
    file may decode differently, or not at all."""
    from importlib import metadata

    names = {"percell", "tifffile", "zarr"} | {
        name.lower()
        for name in (d.metadata["Name"] for d in metadata.distributions())
        if name and name.lower().startswith("bioio")
    }
    versions = []
    for name in sorted(names):
        try:
            versions.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ",".join(versions)


def file_stamps(paths: list[str]) -> dict[str, tuple[int, int | str]]:
    """(size, mtime in ns) of each file, one stat each; (size, ETag) of each
    object behind a URL, one listing per bucket. Missing ones are named."""
    out: dict[str, tuple[int, int | str]] = dict(
        remote.stamps(p for p in paths if remote.is_url(p))
    )
    missing = []
    for path in paths:
        if remote.is_url(path):
            continue
        try:
            st = os.stat(path)
        except OSError:
            missing.append(path)
            continue
        out[path] = (st.st_size, st.st_mtime_ns)
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise SourceImageError(
            f"raw image file(s) not found: {', '.join(missing[:5])}{more}"
        )
    return out


def _load_probes() -> tuple[Path, dict[str, Any]]:
    import json

    cache_path = Path(os.environ.get("PERCELL_PROBE_CACHE", PROBE_CACHE))
    try:
        return cache_path, json.loads(cache_path.read_text())
    except (OSError, ValueError):
        return cache_path, {}


def _save_probes(cache_path: Path, cache: dict[str, Any]) -> None:
    import json

    try:
        write_file_atomic(cache_path, json.dumps(cache).encode())
    except OSError:
        pass  # a read-only working directory only costs speed


def probe_many(
    sources: list[tuple[str, str | None]],
    multichannel: set[str],
    stamps: dict[str, tuple[int, int | str]] | None = None,
) -> dict[str, SourceInfo]:
    """Probe many files (each with its scene, or None), remembering results
    by ``source_id``, size, mtime and the readers' versions.

    A plate has tens of thousands of field files and the workflow is parsed
    on every invocation (dry runs too); a file probed before and unchanged
    since is not opened again. A file that fails to probe is never cached.
    ``stamps`` (from ``file_stamps``) saves stat-ing the files a second time.
    """
    import dataclasses

    if stamps is None:
        stamps = file_stamps(sorted({path for path, _ in sources}))
    cache_path, cache = _load_probes()
    out: dict[str, SourceInfo] = {}
    todo: dict[str, tuple[str, str | None, list[Any]]] = {}
    for path, scene in sources:
        key = source_id(path, scene)
        stamp = [*stamps[path], path in multichannel, reader_versions()]
        hit = cache.get(key)
        if hit and hit[0] == stamp:
            fields = hit[1]
            out[key] = SourceInfo(
                **{
                    **fields,
                    "shape": tuple(fields["shape"]),
                    "channel_names": tuple(fields.get("channel_names", ())),
                }
            )
        else:
            todo[key] = (path, scene, stamp)

    def probe(key: str) -> SourceInfo:
        path, scene, _ = todo[key]
        return probe_source(path, path in multichannel, scene)

    # objects behind URLs are probed many at a time: each probe waits on
    # the network (a header's byte range), not on a core
    remote_keys = [k for k in todo if remote.is_url(todo[k][0])]
    if remote_keys:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(PROBE_REQUESTS) as pool:
            out.update(zip(remote_keys, pool.map(probe, remote_keys), strict=True))
    for key in todo:
        if key not in out:
            out[key] = probe(key)
    for key, (_, _, stamp) in todo.items():
        cache[key] = [stamp, dataclasses.asdict(out[key])]
    if todo:
        _save_probes(cache_path, cache)
    return out


def contents_of(paths: list[str]) -> dict[str, tuple[tuple[str, int], ...]]:
    """Each vendor file's scenes with their timepoints, remembered like
    probes (the workflow is parsed on every invocation, and opening a file
    through bioio costs seconds)."""
    stamps = file_stamps(paths)
    cache_path, cache = _load_probes()
    out, changed = {}, False
    for path in paths:
        key = f"{path}[contents]"
        hit = cache.get(key)
        if hit and hit[0] == [*stamps[path], reader_versions()]:
            out[path] = tuple((str(s), int(t)) for s, t in hit[1])
            continue
        out[path] = formats.file_contents(path)
        cache[key] = [
            [*stamps[path], reader_versions()],
            [list(x) for x in out[path]],
        ]
        changed = True
    if changed:
        _save_probes(cache_path, cache)
    return out
