"""Inputs behind URLs: S3 (``s3://bucket/key``) and HTTP(S).

Raw files may live in object storage. They are read where they are, by
byte ranges (a TIFF's header, its strips or tiles, a band), never copied
whole: S3 through obstore (the Rust ``object_store`` client: 0.3-1.8 ms of
CPU per request in bench/bench_s3.py where botocore spent ~5, and no
botocore to import in every job), HTTP through fsspec. OME-Zarr inputs are
read by zarr and bioio through fsspec (s3fs), which they speak. Planning
stamps every object by its ETag with one paged listing per bucket prefix,
not one request per file, so a changed object reruns exactly its region
group and an unchanged bucket plans nothing.

Credentials and the endpoint come the way the AWS tools take them
(environment, ``AWS_PROFILE`` and the shared files read by boto3,
``AWS_ENDPOINT_URL``, instance roles); ``storage.endpoints``
in the config names an endpoint per URL prefix. Nothing secret is ever part
of a URL, a param or a log line: only URLs and endpoints are.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, cast

from percell.errors import ConfigError, SourceImageError

#: URL schemes read from where they are
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


#: a request that fails for a transient reason (a 5xx such as SlowDown, a
#: dropped connection) is tried again this many times, with backoff
RETRIES = 3


@functools.cache
def _store(bucket: str, endpoint: str | None) -> Any:
    """The obstore client of one bucket, behind ``endpoint`` (None: the AWS
    environment decides)."""
    from datetime import timedelta

    try:
        from obstore.store import S3Store
    except ImportError:
        raise _missing_extra("s3://") from None

    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL")
    options: Any = {  # obstore's ClientConfig
        # an endpoint that does not answer is reported in seconds, not minutes
        "connect_timeout": timedelta(seconds=5),
        "timeout": timedelta(minutes=5),  # a band of a large plane
        "allow_http": bool(endpoint and endpoint.startswith("http://")),
    }
    retry: Any = {  # obstore's RetryConfig
        "max_retries": RETRIES,
        "backoff": {
            "init_backoff": timedelta(milliseconds=200),
            "max_backoff": timedelta(seconds=5),
            "base": 2,
        },
        "retry_timeout": timedelta(minutes=2),
    }
    extra: dict[str, Any] = {} if endpoint is None else {"endpoint": endpoint}
    provider = _profile_credentials()
    if provider is not None:
        extra["credential_provider"] = provider
        extra.update(provider.config)  # the profile's region
    return S3Store(bucket, client_options=options, retry_config=retry, **extra)


def _profile_credentials() -> Any:
    """Credentials from the AWS profiles (``AWS_PROFILE``, ``~/.aws/``), read
    by boto3 as the AWS tools read them, or None where the environment holds
    a key (which the AWS tools prefer) or no profile is set up: then
    object_store takes the environment, or an instance's role."""
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return None
    files = [
        os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
        os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"),
    ]
    if not os.environ.get("AWS_PROFILE") and not any(
        Path(f).expanduser().is_file() for f in files
    ):
        return None
    try:
        import boto3
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        raise _missing_extra("s3://") from None
    try:
        return Boto3CredentialProvider(boto3.Session())
    except Exception as exc:  # no such profile, or a profile with no key
        raise SourceImageError(
            f"AWS profile {os.environ.get('AWS_PROFILE', 'default')!r}: "
            f"no credentials ({type(exc).__name__}: {exc})"
        ) from None


def _bucket_and_key(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → ("bucket", "a/b")."""
    bucket, _, key = url[len("s3://") :].partition("/")
    return bucket, key


def _s3_object(url: str) -> tuple[Any, str]:
    """The client of ``url``'s bucket and the object's key in it."""
    bucket, key = _bucket_and_key(url)
    return _store(bucket, endpoint_for(url)), key


def _stamped_etag(url: str) -> str | None:
    """The ETag an object had when this job first asked (``remembering_heads``),
    which its reads must still match; None when not asked."""
    return _infos[url][1] if url in _infos else None


@functools.cache
def _http() -> Any:
    import fsspec

    try:
        return fsspec.filesystem("http")
    except ImportError:
        raise _missing_extra("http://") from None


def _head(url: str) -> tuple[int, str]:
    """An object's size and ETag (one HEAD)."""
    if url.startswith("s3://"):
        import obstore

        store, key = _s3_object(url)
        meta = obstore.head(store, key)
        return int(meta["size"]), str(meta["e_tag"] or "")
    info = _http().info(url)
    tag = info.get("ETag") or info.get("Last-Modified") or ""
    return int(info.get("size") or 0), str(tag)


def _fetch(url: str, start: int, end: int, etag: str | None = None) -> Any:
    """Bytes ``start:end`` of an object (one ranged GET), as a buffer. With
    ``etag``, an object changed since it was stamped fails instead of
    mixing two versions' bytes."""
    if url.startswith("s3://"):
        import obstore

        store, key = _s3_object(url)
        if etag:
            options: Any = {"range": (start, end), "if_match": etag}
            return obstore.get(store, key, options=options).bytes()
        return obstore.get_range(store, key, start=start, end=end)
    return _http().cat_file(url, start=start, end=end)


def explain(url: str, exc: BaseException) -> SourceImageError:
    """A user's error for a failed request: the URL, the reason in words."""
    if isinstance(exc, SourceImageError):
        return exc if url in str(exc) else SourceImageError(f"{url}: {exc}")
    text = _reason(exc)
    name = type(exc).__name__
    where = endpoint_for(url) or os.environ.get("AWS_ENDPOINT_URL") or "AWS"
    if "NoSuchBucket" in str(exc) or "bucket does not exist" in str(exc).lower():
        what = "no such bucket"
    elif isinstance(exc, FileNotFoundError) or name == "NotFoundError":
        what = "no such object (check the bucket and key)"
    elif (
        isinstance(exc, PermissionError)
        or name in ("PermissionDeniedError", "UnauthenticatedError")
        or text.startswith(("401 ", "403 "))  # a listing's refusal
    ):
        what = (
            f"access refused ({text}): check the credentials "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and the "
            "bucket's permissions"
        )
    elif "connect" in str(exc).lower():
        what = f"the endpoint {where} does not answer ({text})"
    elif name == "PreconditionError":
        what = "the object changed while it was read: run again"
    elif name == "NoCredentialsError":
        what = "no credentials found (set AWS_ACCESS_KEY_ID or AWS_PROFILE)"
    else:
        what = f"{name}: {text}"
    return SourceImageError(f"{url}: {what}")


def _reason(exc: BaseException) -> str:
    """The reason a request failed, in one line: obstore's messages carry
    the server's status, its S3 error code and a multi-line debug dump."""
    text = str(exc) or type(exc).__name__
    status = re.search(r"status code: (\d{3} [^:]+)", text)
    code = re.search(r"<Code>(\w+)</Code>", text)
    if status is None:
        return text.splitlines()[0].strip()
    return status.group(1).strip() + (f" ({code.group(1)})" if code else "")


#: objects up to this size are fetched whole by one GET when opened (a
#: plate's small field files: their header and pixels in one request)
WHOLE_OBJECT = 2**20

#: bytes of objects' first blocks kept by ``remembering_heads``
HEADS_BYTES = 16 * 2**20

#: the first block of each object opened (a whole small object), while a
#: job has ``remembering_heads`` on: None when off
_heads: OrderedDict[str, bytes] | None = None
#: each object's (size, ETag) while ``remembering_heads`` is on
_infos: dict[str, tuple[int, str]] = {}


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


def open_url(url: str) -> IO[bytes]:
    """A seekable file object over ``url`` that fetches byte ranges, reading
    ahead by ``READ_BLOCK`` (headers, strips, tiles)."""
    try:
        if _heads is not None and url not in _infos:
            _infos[url] = _head(url)  # once per job, not per open
            _sizes[url] = _infos[url][0]
        if url not in _sizes:
            _sizes[url] = _head(url)[0]
        size = _sizes[url]
        etag = _stamped_etag(url)
        if size <= WHOLE_OBJECT:
            if _heads is not None and url in _heads:
                return io.BytesIO(_heads[url])
            whole = bytes(_fetch(url, 0, size, etag)) if size else b""
            if _heads is not None:
                _remember(url, whole)
            return io.BytesIO(whole)
        head, fresh = b"", False
        if _heads is not None:
            if url not in _heads:
                _remember(url, bytes(_fetch(url, 0, READ_BLOCK, etag)))
                fresh = True
            head = _heads[url]
        return cast(IO[bytes], _Ranged(url, size, etag, head, trim_head=fresh))
    except Exception as exc:
        raise explain(url, exc) from None


def read_range(url: str, start: int, end: int) -> Any:
    """Bytes ``start:end`` of ``url`` by one ranged GET (a band of an
    uncompressed plane), as the response's buffer: not copied. A small
    object remembered whole (``remembering_heads``) is not asked again."""
    head = None if _heads is None else _heads.get(url)
    if head is not None and end <= len(head):
        return memoryview(head)[start:end]
    try:
        return _fetch(url, start, end, _stamped_etag(url))
    except Exception as exc:
        raise explain(url, exc) from None


class _Ranged(io.RawIOBase):
    """An object's bytes by ranged GETs, each asking for at least
    ``READ_BLOCK`` bytes; the last block is kept (a TIFF's header and IFDs
    are many small reads near each other).

    ``trim_head``: the remembered first block was fetched for this reader; on
    closing, only as much of it as was read stays remembered (a TIFF's
    header, kilobytes, for the reopening reader), not the pixels after it: a
    job that probes many large files would otherwise hold a megabyte each."""

    def __init__(
        self,
        url: str,
        size: int,
        etag: str | None,
        head: bytes,
        trim_head: bool = False,
    ) -> None:
        self._url, self._size, self._etag = url, size, etag
        self._block_at, self._block = 0, memoryview(head)
        self._pos = 0
        self._head = head if trim_head else None
        self._head_read = 0  # bytes of the head read, from its start

    def close(self) -> None:
        head, self._head = self._head, None
        if head is not None and _heads is not None and _heads.get(self._url) is head:
            _heads[self._url] = head[: self._head_read]
        super().close()

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
        start = self._pos
        n = min(len(view), max(0, self._size - start))
        at = start - self._block_at
        if n and not (0 <= at and at + n <= len(self._block)):
            end = min(self._size, start + max(n, READ_BLOCK))
            try:
                data = memoryview(_fetch(self._url, start, end, self._etag))
            except Exception as exc:
                raise explain(self._url, exc) from None
            self._block_at, self._block, at = start, data, 0
            n = min(n, len(data))
        view[:n] = self._block[at : at + n]
        if self._head is not None and self._block.obj is self._head:
            self._head_read = max(self._head_read, at + n)
        self._pos += n
        return n


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
            by_bucket.setdefault(_bucket_and_key(url)[0], []).append(url)
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
    found = listing(_shared_folder(urls))
    return {url: found[url] for url in urls if url in found}


def _shared_folder(urls: list[str]) -> str:
    """The deepest folder (``s3://bucket/a/b``) that holds every URL."""
    parts = [u.split("/") for u in urls]
    n = 0
    while all(len(p) > n + 1 and p[n] == parts[0][n] for p in parts):
        n += 1
    return "/".join(parts[0][:n])


def listing(prefix_url: str) -> dict[str, tuple[int, str]]:
    """(size, ETag) of every object under ``prefix_url`` (``s3://bucket`` or
    ``s3://bucket/folder``), by URL: ListObjectsV2, paged, no delimiter (one
    request per thousand objects), fresh each time (a rerun must see what
    changed in the bucket)."""
    import obstore

    out = {}
    bucket = _bucket_and_key(prefix_url)[0]
    try:
        store, prefix = _s3_object(prefix_url)
        for page in obstore.list(store, prefix=prefix or None, chunk_size=1000):
            for meta in page:
                tag = meta["e_tag"] or meta["version"] or str(meta["last_modified"])
                out[f"s3://{bucket}/{meta['path']}"] = (
                    int(meta["size"]),
                    str(tag).strip('"'),
                )
    except Exception as exc:
        raise explain(prefix_url, exc) from None
    return out


def upload(path: Path, url: str) -> str:
    """Put the local file ``path`` at ``url`` (multipart when large); the
    object's ETag."""
    import obstore

    try:
        store, key = _s3_object(url)
        return str(obstore.put(store, key, path)["e_tag"] or "").strip('"')
    except Exception as exc:
        raise explain(url, exc) from None


def remove(urls: Iterable[str]) -> None:
    """Delete the objects ``urls`` (one request per thousand, per bucket)."""
    import obstore

    by_bucket: dict[str, list[str]] = {}
    for url in urls:
        by_bucket.setdefault(_bucket_and_key(url)[0], []).append(url)
    for objects in by_bucket.values():
        try:
            store = _s3_object(objects[0])[0]
            obstore.delete(store, [_bucket_and_key(url)[1] for url in objects])
        except Exception as exc:
            raise explain(objects[0], exc) from None


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
        found = listing(base)
        if not found:
            raise explain(url, FileNotFoundError(url))
        h = hashlib.sha256()
        for key in sorted(found):  # keys as s3fs named them (bucket/key)
            h.update(f"{key[len('s3://') :]}\0{found[key][1]}\n".encode())
        return sum(size for size, _ in found.values()), h.hexdigest()
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
    try:
        size, tag = _head(url)
    except Exception as exc:
        raise explain(url, exc) from None
    return size, tag.strip('"')


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
    root = base + "/"
    names = []
    for url, stamp in listing(base).items():
        if url.startswith(root) and not url.endswith("/"):
            names.append(url[len(root) :])
            _listed[url] = stamp
    return sorted(names)


def join(directory: str, relative: str) -> str:
    """``relative`` under ``directory``, for URLs and local paths alike."""
    if is_url(directory):
        return directory.rstrip("/") + "/" + relative
    return os.path.join(directory, relative)


def canonical(path: str) -> str:
    """How a source is recorded: a URL as given, a local file resolved."""
    return path if is_url(path) else str(Path(path).resolve())
