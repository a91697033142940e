"""Sentinels: the file each step writes last for a region group.

A sentinel records what produced the step's output (parameters, package
versions, input files), so an experiment carries its own provenance; its
presence means the step finished.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from percell import remote
from percell.contracts import Contract
from percell.errors import ExperimentError
from percell.storage import read_json, write_json

T = TypeVar("T")

_PACKAGES = (
    "percell",
    "numpy",
    "zarr",
    "numcodecs",
    "tifffile",
    "scikit-image",
    "scipy",
    "cellpose",
    "torch",
    "snakemake",
)


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape percell's output."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def describe_inputs(paths: list[str]) -> list[dict]:
    """Path, size and modification time of each input file; URL, size and
    ETag of each object behind a URL (one listing per bucket)."""
    out = []
    objects = remote.stamps(p for p in paths if remote.is_url(p))
    for p in paths:
        if p in objects:
            size, etag = objects[p]
            out.append({"path": p, "size": size, "etag": etag})
            continue
        st = os.stat(p)
        mtime = dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).isoformat()
        out.append({"path": str(p), "size": st.st_size, "mtime": mtime})
    return out


def _plain(value: Any) -> Any:
    """Contracts (alone or in a list) as plain data."""
    if isinstance(value, Contract):
        return value.to_params()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def write_sentinel(
    path: str | Path,
    step: str,
    group: str,
    params: Any,
    inputs: list[str],
    outputs: Any,
) -> None:
    """Write the sentinel of ``step`` for ``group``; call it last.

    ``params`` and ``outputs`` are contracts (or lists of them) or plain data.
    """
    params, outputs = _plain(params), _plain(outputs)
    write_json(
        path,
        {
            "step": step,
            "group": group,
            "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "params": params,
            "versions": package_versions(),
            # set when the step ran as a SLURM job (the cluster test checks it)
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "host": platform.node(),
            "inputs": describe_inputs(inputs),
            "outputs": outputs,
        },
    )


def read_sentinel(path: str | Path) -> dict[str, Any]:
    """Read a sentinel written by write_sentinel, as plain data."""
    data: dict[str, Any] = read_json(path)
    return data


_ADAPTERS: dict[object, TypeAdapter[Any]] = {}


def _adapter(kind: object) -> TypeAdapter[Any]:
    """A validator for ``kind``, built once (building one costs milliseconds:
    register reads hundreds of sentinels)."""
    if kind not in _ADAPTERS:
        _ADAPTERS[kind] = TypeAdapter(kind)
    return _ADAPTERS[kind]


def contract_of(data: dict[str, Any], part: str, kind: type[T], path: str | Path) -> T:
    """Part ``part`` ("params" or "outputs") of a sentinel already read (from
    ``path``) as its contract (``list[ImportedRegion]``, ``Segmented``…).

    Raises:
        ExperimentError: naming the sentinel and the field that does not fit.
    """
    try:
        return _adapter(kind).validate_python(data[part])
    except (ValidationError, KeyError) as exc:
        raise ExperimentError(
            f"sentinel {path}: its {part} are not what this version of percell "
            f"expects ({exc}); rerun the step (delete the sentinel)"
        ) from None


def read_outputs(path: str | Path, kind: type[T]) -> T:
    """The outputs a step recorded in its sentinel, as their contract."""
    return contract_of(read_sentinel(path), "outputs", kind, path)
