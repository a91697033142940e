"""Publish a finished experiment's NGFF stores to an S3 prefix, for web
viewers (``percell publish EXPERIMENT s3://bucket/prefix``).

Only the OME-Zarr stores go (``images.zarr``, ``labels.zarr``,
``masks.zarr``): experiment.db and the workflow's bookkeeping stay where
they are. Publishing again sends only what changed: a file is uploaded when
it is new, or its size or mtime moved since it was last sent, or the object
is not the one sent (its ETag); objects under the prefix that no longer
exist locally are removed, so a reader never mixes chunks of two versions.
What was sent is recorded in ``.workflow/published/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from percell import layout, remote
from percell.errors import ConfigError, ExperimentError
from percell.storage import write_json

log = logging.getLogger("percell")

#: the stores published, relative to the experiment
STORES = (layout.IMAGES, layout.LABELS, layout.MASKS)
#: uploads in flight at once
UPLOADS = 8


def _local_files(experiment: Path) -> Iterator[str]:
    """Every file of the NGFF stores, relative to the experiment; hidden
    directories (arrays being built aside) are left out."""
    for store in STORES:
        root = experiment / store
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                yield (Path(dirpath) / name).relative_to(experiment).as_posix()


def publish(experiment: str | Path, url: str) -> dict[str, int]:
    """Make ``url`` (``s3://bucket/prefix``) hold the experiment's NGFF
    stores as they are now; returns counts of uploaded, removed and
    unchanged files.

    Raises:
        ConfigError: ``url`` is not an S3 prefix.
        ExperimentError: ``experiment`` holds no NGFF store.
        SourceImageError: the bucket cannot be reached (naming the reason).
    """
    experiment = Path(experiment)
    if not url.startswith("s3://") or not url[5:].strip("/"):
        raise ConfigError(f"{url}: publish to an S3 prefix, s3://bucket/prefix")
    if not (experiment / layout.IMAGES).is_dir():
        raise ExperimentError(f"{experiment}: no {layout.IMAGES} to publish")
    base = url.rstrip("/")
    record_path = (
        experiment
        / layout.WORKFLOW_DIR
        / "published"
        / f"{hashlib.sha256(base.encode()).hexdigest()[:16]}.json"
    )
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        record = {}
    remote_now = {  # what the prefix holds now
        key[len(base) + 1 :]: etag for key, (_, etag) in remote.listing(base).items()
    }

    local = list(_local_files(experiment))
    todo, kept = [], {}
    for rel in local:
        st = (experiment / rel).stat()
        sent = record.get(rel)
        if (
            sent is not None
            and sent[:2] == [st.st_size, st.st_mtime_ns]
            and remote_now.get(rel) == sent[2]
        ):
            kept[rel] = sent
        else:
            todo.append((rel, st.st_size, st.st_mtime_ns))

    def send(item: tuple[str, int, int]) -> tuple[str, list]:
        rel, size, mtime = item
        return rel, [size, mtime, remote.upload(experiment / rel, f"{base}/{rel}")]

    with ThreadPoolExecutor(UPLOADS) as pool:
        sent_now = dict(pool.map(send, todo))
    gone = sorted(set(remote_now) - set(local))
    remote.remove(f"{base}/{rel}" for rel in gone)
    write_json(record_path, kept | sent_now)
    counts = {"uploaded": len(todo), "removed": len(gone), "unchanged": len(kept)}
    log.info("published %s to %s: %s", experiment, base, counts)
    return counts
