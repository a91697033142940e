"""Inputs behind URLs: S3 (``s3://bucket/key``) and HTTP(S).

Raw files may live in object storage. They are read where they are, through
fsspec file objects that fetch byte ranges (a TIFF's strips, a band's
chunks), never copied whole. Planning stamps every object by its ETag with
one paged listing per bucket prefix, not one request per file, so a changed
object reruns exactly its region group and an unchanged bucket plans nothing.

Credentials and the endpoint come the way the AWS tools take them
(environment, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL``); ``storage.endpoints``
in the config names an endpoint per URL prefix. Nothing secret is ever part
of a URL, a param or a log line: only URLs and endpoints are.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from percell.errors import ConfigError, SourceImageError

#: URL schemes read through fsspec
SCHEMES = ("s3://", "http://", "https://")

#: bytes read ahead per range request (a header, strips, tiles); a band of
#: an uncompressed plane is fetched as one range of its own size instead
READ_BLOCK = 2**20

_endpoints: dict[str, str] = {}
#: sizes the listings told, by URL: opening a small object is then one GET
_sizes: dict[str, int] = {}
#: (size, ETag) of the objects a directory listing just found: the stamps
#: that follow in the same parse take them instead of listing again
_listed: dict[str, tuple[int, str]] = {}


def is_url(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an object behind a URL (not a local file)."""
    return str(path).startswith(SCHEMES)


def configure(endpoints: Mapping[str, str]) -> None:
    """Use ``endpoints`` (URL prefix → S3 endpoint URL) from now on, in this
    process: the config's ``storage.endpoints``, at parse time and in jobs."""
    _endpoints.clear()
    _endpoints.update({k.rstrip("/"): v for k, v in endpoints.items()})


def endpoint_for(url: str) -> str | None:
    """The endpoint configured for ``url`` (the longest matching prefix), or
    None: then the AWS environment decides (``AWS_ENDPOINT_URL``, profiles)."""
    best = None
    for prefix in _endpoints:
        if (url == prefix or url.startswith(prefix + "/")) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    return None if best is None else _endpoints[best]


def _missing_extra(url: str) -> SourceImageError:
    return SourceImageError(
        f"{url}: reading inputs by URL needs the s3 extra: pip install 'percell[s3]'"
    )


@functools.cache
def _s3(endpoint: str | None) -> Any:
    try:
        import s3fs
    except ImportError:
        raise _missing_extra("s3://") from None

    client: dict[str, Any] = {}
    if endpoint is not None:
        client["endpoint_url"] = endpoint
    # an endpoint that does not answer is reported in seconds, not minutes;
    # s3fs itself retries transient errors with backoff during reads
    return s3fs.S3FileSystem(
        client_kwargs=client,
        config_kwargs={
            "connect_timeout": 5,
            "retries": {"max_attempts": 3},
        },
        skip_instance_cache=True,
    )


@functools.cache
def _http() -> Any:
    import fsspec

    try:
        return fsspec.filesystem("http")
    except ImportError:
        raise _missing_extra("http://") from None


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem that reads ``url``, and the path it knows it by."""
    if url.startswith("s3://"):
        return _s3(endpoint_for(url)), url[len("s3://") :]
    return _http(), url


def explain(url: str, exc: BaseException) -> SourceImageError:
    """A user's error for a failed request: the URL, the reason in words."""
    text = str(exc) or type(exc).__name__
    name = type(exc).__name__
    where = endpoint_for(url) or os.environ.get("AWS_ENDPOINT_URL") or "AWS"
    if isinstance(exc, FileNotFoundError):
        what = (
            "no such bucket"
            if "bucket does not exist" in text.lower()
            else "no such object (check the bucket and key)"
        )
    elif isinstance(exc, PermissionError):
        what = (
            f"access refused ({text}): check the credentials "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and the "
            "bucket's permissions"
        )
    elif "Connect" in name or "connect" in text.lower():
        what = f"the endpoint {where} does not answer ({text})"
    elif name == "NoCredentialsError":
        what = "no credentials found (set AWS_ACCESS_KEY_ID or AWS_PROFILE)"
    else:
        what = f"{name}: {text}"
    return SourceImageError(f"{url}: {what}")


#: objects up to this size are fetched whole by one GET when opened (a
#: plate's small field files: their header and pixels in one request)
WHOLE_OBJECT = 2**20

#: bytes of objects' first blocks kept by ``remembering_heads``
HEADS_BYTES = 16 * 2**20

#: the first block of each object opened (a whole small object), while a
#: job has ``remembering_heads`` on: None when off
_heads: OrderedDict[str, bytes] | None = None
#: each object's details (size, ETag) while ``remembering_heads`` is on
_infos: dict[str, dict[str, Any]] = {}


@contextlib.contextmanager
def remembering_heads() -> Iterator[None]:
    """Within the block, each object's size and first ``READ_BLOCK`` bytes
    (its TIFF header; a small object whole) are fetched once: an import job
    probes a file, then opens it again to read it, and each open would ask
    for the size (a HEAD) and the header again. At most ``HEADS_BYTES`` are
    kept (the oldest go first); forgotten on leaving, so an object changed
    since is read afresh by the next job."""
    global _heads
    outer, _heads = _heads, OrderedDict()
    sizes, infos = dict(_sizes), dict(_infos)
    try:
        yield
    finally:
        _heads = outer
        _sizes.clear()
        _sizes.update(sizes)
        _infos.clear()
        _infos.update(infos)


def _remember(url: str, head: bytes) -> None:
    assert _heads is not None
    _heads[url] = head
    while sum(map(len, _heads.values())) > HEADS_BYTES and len(_heads) > 1:
        _heads.popitem(last=False)


def open_url(url: str, cache: str = "readahead") -> IO[bytes]:
    """A seekable file object over ``url`` that fetches byte ranges: reads
    ahead by ``READ_BLOCK`` (headers, strips, tiles), or with ``cache="none"``
    exactly the ranges asked for (a band of an uncompressed plane)."""
    fs, path = filesystem(url)
    try:
        if _heads is not None and url not in _infos:
            _infos[url] = fs.info(path)  # once per job, not per open
            _sizes[url] = int(_infos[url]["size"])
        size = _sizes.get(url)
        if size is not None and size <= WHOLE_OBJECT:
            if _heads is not None and url in _heads:
                return io.BytesIO(_heads[url])
            # one ranged GET: without the range s3fs first asks for the size
            # (a HEAD, unless a listing in this process left it in its cache)
            whole = fs.cat_file(path, start=0, end=size) if size else b""
            if _heads is not None:
                _remember(url, whole)
            return io.BytesIO(whole)
        known = {} if size is None or not url.startswith("s3://") else {"size": size}

        def opened() -> IO[bytes]:
            f = fs.open(path, "rb", block_size=READ_BLOCK, cache_type=cache, **known)
            if url in _infos:  # else its first read asks for them (a HEAD)
                f.details = _infos[url]  # (its ETag: a change mid-read fails)
            return f

        if _heads is None or cache == "none" or size is None:
            return opened()
        if url not in _heads:
            _remember(url, fs.cat_file(path, start=0, end=READ_BLOCK))
        return io.BufferedReader(_HeadFirst(_heads[url], size, opened))
    except Exception as exc:
        raise explain(url, exc) from None


class _HeadFirst(io.RawIOBase):
    """An object's bytes: its first block from memory, the rest from a file
    object opened only when a read goes beyond it."""

    def __init__(self, head: bytes, size: int, opened: Any) -> None:
        self._head, self._size, self._opened = head, size, opened
        self._rest: Any = None
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}
        self._pos = max(0, base[whence] + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), max(0, self._size - self._pos))
        if self._pos + n <= len(self._head):
            view[:n] = self._head[self._pos : self._pos + n]
        else:
            if self._rest is None:
                self._rest = self._opened()
            self._rest.seek(self._pos)
            data = self._rest.read(n)
            n = len(data)
            view[:n] = data
        self._pos += n
        return n

    def close(self) -> None:
        if self._rest is not None:
            self._rest.close()
        super().close()


def stamps(urls: Iterable[str]) -> dict[str, tuple[int, str]]:
    """(size, ETag) of every URL: one paged listing per bucket (under the
    prefix the URLs share), one HEAD per HTTP URL. Missing objects are named
    together."""
    urls = sorted(set(urls))
    out: dict[str, tuple[int, str]] = {}
    by_bucket: dict[str, list[str]] = {}
    for url in urls:
        if is_zarr(url):
            out[url] = _zarr_stamp(url)
        elif url in _listed:
            out[url] = _listed.pop(url)
        elif url.startswith("s3://"):
            by_bucket.setdefault(url[5:].split("/", 1)[0], []).append(url)
        else:
            out[url] = _http_stamp(url)
    for group in by_bucket.values():
        out.update(_listed_stamps(group))
    _sizes.update((url, size) for url, (size, _) in out.items())
    missing = [u for u in urls if u not in out]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise SourceImageError(
            f"object(s) not found: {', '.join(missing[:5])}{more} "
            "(check the bucket and the keys)"
        )
    return out


def _listed_stamps(urls: list[str]) -> dict[str, tuple[int, str]]:
    listing = _find(_shared_folder(urls))
    found = {}
    for url in urls:
        entry = listing.get(url[len("s3://") :])
        if entry is not None:
            found[url] = (int(entry["size"]), _etag(entry))
    return found


def _shared_folder(urls: list[str]) -> str:
    """The deepest folder (``s3://bucket/a/b``) that holds every URL."""
    parts = [u.split("/") for u in urls]
    n = 0
    while all(len(p) > n + 1 and p[n] == parts[0][n] for p in parts):
        n += 1
    return "/".join(parts[0][:n])


def _find(prefix_url: str) -> dict[str, Any]:
    """Every object under ``prefix_url`` with its details: ListObjectsV2,
    paged, no delimiter (one request per thousand objects)."""
    fs, path = filesystem(prefix_url)
    try:
        # a fresh listing: a rerun must see what changed in the bucket
        fs.invalidate_cache()
        return fs.find(path, detail=True)
    except Exception as exc:
        raise explain(prefix_url, exc) from None


def _etag(entry: Mapping[str, Any]) -> str:
    tag = entry.get("ETag") or entry.get("VersionId") or entry.get("LastModified")
    return str(tag).strip('"')


def is_zarr(url: str) -> bool:
    """Whether ``url`` names an OME-Zarr (a prefix of many objects)."""
    return url.rstrip("/").lower().endswith(".zarr")


def _zarr_stamp(url: str) -> tuple[int, str]:
    """An OME-Zarr is many objects: in S3, the digest of every object's ETag
    under it (one paged listing); over HTTP, which cannot list, that of its
    root metadata (``zarr.json`` or ``.zattrs``)."""
    import hashlib

    base = url.rstrip("/")
    if base.startswith("s3://"):
        listing = _find(base)
        if not listing:
            raise explain(url, FileNotFoundError(url))
        h = hashlib.sha256()
        for key in sorted(listing):
            h.update(f"{key}\0{_etag(listing[key])}\n".encode())
        return sum(int(e["size"]) for e in listing.values()), h.hexdigest()
    for name in ("zarr.json", ".zattrs"):
        try:
            size, tag = _http_stamp(f"{base}/{name}")
        except SourceImageError:
            continue
        return size, f"{name}:{tag}"
    raise SourceImageError(f"{url}: no OME-Zarr there (neither zarr.json nor .zattrs)")


def fs_kwargs(url: str) -> dict[str, Any]:
    """What fsspec needs beyond the environment to reach ``url`` (a readers'
    ``storage_options``): the configured endpoint, if any."""
    endpoint = endpoint_for(url) if url.startswith("s3://") else None
    return {} if endpoint is None else {"endpoint_url": endpoint}


#: where vendor files behind URLs are staged (their readers need a local
#: file); PERCELL_REMOTE_CACHE overrides it
STAGING_DIR = Path("~/.cache/percell/remote")
#: the most the staging cache keeps, in GB (PERCELL_REMOTE_CACHE_GB)
STAGING_LIMIT_GB = 20.0


def local_copy(url: str) -> Path:
    """A local copy of ``url`` for readers that need a file (CZI, ND2, LIF
    through bioio): staged once per ETag into a bounded cache, the least
    recently used copies removed beyond its limit. Said in the log."""
    import hashlib
    import logging
    import shutil
    import uuid

    log = logging.getLogger("percell")
    size, etag = stamps([url])[url]
    cache = Path(os.environ.get("PERCELL_REMOTE_CACHE", STAGING_DIR)).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(f"{url}\0{etag}".encode()).hexdigest()[:24]
    target = cache / f"{name}{Path(url.split('?')[0]).suffix}"
    if target.exists() and target.stat().st_size == size:
        os.utime(target)  # recently used
        return target
    log.info("staging %s (%.1f MB) into %s", url, size / 1e6, cache)
    part = cache / f".{name}.{uuid.uuid4().hex}.part"
    try:
        with open_url(url) as src, part.open("wb") as dst:
            shutil.copyfileobj(src, dst, length=READ_BLOCK)
        os.replace(part, target)
    except Exception as exc:
        part.unlink(missing_ok=True)
        if isinstance(exc, SourceImageError):
            raise
        raise explain(url, exc) from None
    _evict(cache, keep=target, log=log)
    return target


def _evict(cache: Path, keep: Path, log: Any) -> None:
    limit = float(os.environ.get("PERCELL_REMOTE_CACHE_GB", STAGING_LIMIT_GB)) * 1e9
    files = sorted(
        (f for f in cache.iterdir() if f.is_file() and not f.name.startswith(".")),
        key=lambda f: f.stat().st_mtime,
    )
    total = sum(f.stat().st_size for f in files)
    for f in files:
        if total <= limit:
            break
        if f == keep:
            continue
        total -= f.stat().st_size
        f.unlink(missing_ok=True)
        log.info("staging cache over %.1f GB: removed %s", limit / 1e9, f.name)


def _http_stamp(url: str) -> tuple[int, str]:
    fs, path = filesystem(url)
    try:
        info = fs.info(path)
    except Exception as exc:
        raise explain(url, exc) from None
    tag = info.get("ETag") or info.get("Last-Modified") or ""
    return int(info.get("size") or 0), str(tag).strip('"')


def files_under(directory: str | Path, key: str) -> list[str]:
    """The files under a local directory or an S3 prefix, as sorted relative
    paths (one paged listing for a bucket, not one request per file).

    Raises:
        ConfigError: a local directory that is not one (``key`` names the
            config key).
    """
    if is_url(directory):
        return list_files(str(directory))
    local = Path(directory)
    if not local.is_dir():
        raise ConfigError(f"{key} {local} is not a directory")
    return sorted(
        p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()
    )


def list_files(directory: str) -> list[str]:
    """The objects under a directory URL, relative to it (one paged listing).
    HTTP has no listing: a directory must be in S3."""
    if not directory.startswith("s3://"):
        raise SourceImageError(
            f"{directory}: a directory to scan must be local or in S3 (s3://); "
            "HTTP servers cannot list files (give a sample sheet of URLs)"
        )
    base = directory.rstrip("/")
    listing = _find(base)
    root = base[len("s3://") :] + "/"
    names = []
    for key, entry in listing.items():
        if key.startswith(root) and entry.get("type") != "directory":
            names.append(key[len(root) :])
            _listed[f"s3://{key}"] = (int(entry["size"]), _etag(entry))
    return sorted(names)


def join(directory: str, relative: str) -> str:
    """``relative`` under ``directory``, for URLs and local paths alike."""
    if is_url(directory):
        return directory.rstrip("/") + "/" + relative
    return os.path.join(directory, relative)


def canonical(path: str) -> str:
    """How a source is recorded: a URL as given, a local file resolved."""
    return path if is_url(path) else str(Path(path).resolve())
