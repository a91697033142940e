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

import functools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from percell.errors import ConfigError, SourceImageError

#: URL schemes read through fsspec
SCHEMES = ("s3://", "http://", "https://")

#: bytes fetched per range request: a band of a large plane is one or two
READ_BLOCK = 8 * 2**20

_endpoints: dict[str, str] = {}


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
        config_kwargs={"connect_timeout": 5, "retries": {"max_attempts": 3}},
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


def open_url(url: str) -> IO[bytes]:
    """A seekable file object over ``url`` that fetches byte ranges."""
    fs, path = filesystem(url)
    try:
        return fs.open(path, "rb", block_size=READ_BLOCK, cache_type="readahead")
    except Exception as exc:
        raise explain(url, exc) from None


def stamps(urls: Iterable[str]) -> dict[str, tuple[int, str]]:
    """(size, ETag) of every URL: one paged listing per bucket (under the
    prefix the URLs share), one HEAD per HTTP URL. Missing objects are named
    together."""
    urls = sorted(set(urls))
    out: dict[str, tuple[int, str]] = {}
    by_bucket: dict[str, list[str]] = {}
    for url in urls:
        if url.startswith("s3://"):
            by_bucket.setdefault(url[5:].split("/", 1)[0], []).append(url)
        else:
            out[url] = _http_stamp(url)
    for group in by_bucket.values():
        out.update(_listed_stamps(group))
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
    return sorted(
        key[len(root) :]
        for key, entry in listing.items()
        if key.startswith(root) and entry.get("type") != "directory"
    )


def join(directory: str, relative: str) -> str:
    """``relative`` under ``directory``, for URLs and local paths alike."""
    if is_url(directory):
        return directory.rstrip("/") + "/" + relative
    return os.path.join(directory, relative)


def canonical(path: str) -> str:
    """How a source is recorded: a URL as given, a local file resolved."""
    return path if is_url(path) else str(Path(path).resolve())
