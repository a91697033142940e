"""One run at a time per experiment, across working directories and hosts.

Snakemake's own lock lives in the working directory's ``.snakemake/``, so two
runs started from two directories (or two hosts of a shared filesystem) on
one experiment both go ahead and break each other's jobs. The workflow
therefore takes ``<experiment>/.workflow/run.lock`` when it starts executing
jobs and removes it when it ends. The lock says who holds it (host, process,
user, working directory, since when); a lock whose process is gone from this
host (a killed run) is stale and taken over, with a note in the log. A lock
held from another host cannot be checked from here: the message says how
to remove it once that run is known to be gone (``percell unlock``).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from percell import layout
from percell.errors import ExperimentError

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"


def lock_path(experiment: str | Path) -> Path:
    return Path(experiment) / layout.WORKFLOW_DIR / LOCK_NAME


def _started(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux ``/proc``), so that a new
    process reusing a dead run's pid is not taken for it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no name for this uid (containers)
        return str(os.getuid())


def _alive(holder: dict[str, Any]) -> bool:
    pid = int(holder.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's live process
    started = holder.get("started")
    return started is None or _started(pid) in (None, started)


def describe(holder: dict[str, Any]) -> str:
    since = holder.get("since", 0.0)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
    return (
        f"host {holder.get('host')}, process {holder.get('pid')} of user "
        f"{holder.get('user')}, working directory {holder.get('workdir')}, "
        f"since {when}"
    )


def read_holder(experiment: str | Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(lock_path(experiment).read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"host": "?", "pid": -1}


def acquire(experiment: str | Path, pid: int | None = None) -> None:
    """Take the experiment's run lock for process ``pid`` (this one).

    Raises:
        ExperimentError: another live run holds it, naming that run.
    """
    pid = os.getpid() if pid is None else pid
    path = lock_path(experiment)
    # the directories the lock makes, so that release leaves none behind
    created = [str(d) for d in (path.parent.parent, path.parent) if not d.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {
        "host": socket.gethostname(),
        "pid": pid,
        "started": _started(pid),
        "user": _user(),
        "workdir": os.getcwd(),
        "since": time.time(),
        "created": created,
    }
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_holder(experiment)
            if holder is None:
                continue  # released meanwhile
            same_host = holder.get("host") == me["host"]
            if same_host and int(holder.get("pid", -1)) == pid:
                return  # ours already
            if same_host and not _alive(holder):
                log.warning(
                    "%s: removing a stale run lock (%s): that run is gone",
                    experiment,
                    describe(holder),
                )
                path.unlink(missing_ok=True)
                continue
            elsewhere = (
                ""
                if same_host
                else " It was taken on another host, which this one cannot "
                "check: if that run is gone (killed, node lost), remove the lock "
                f"with `percell unlock {experiment}`."
            )
            raise ExperimentError(
                f"{experiment} is being written by another run ({describe(holder)}); "
                "this run changed nothing. Wait for it to finish." + elsewhere
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return
    raise ExperimentError(f"{experiment}: could not take the run lock {path}")


def release(experiment: str | Path, pid: int | None = None) -> None:
    """Remove the run lock if process ``pid`` (this one) holds it."""
    pid = os.getpid() if pid is None else pid
    holder = read_holder(experiment)
    if (
        holder is not None
        and holder.get("host") == socket.gethostname()
        and int(holder.get("pid", -1)) == pid
    ):
        lock_path(experiment).unlink(missing_ok=True)
        # the directories the lock made, if the run wrote nothing into them
        for made in reversed(holder.get("created", [])):
            try:
                Path(made).rmdir()
            except OSError:
                break


def unlock(experiment: str | Path) -> dict[str, Any] | None:
    """Remove the run lock whoever holds it (``percell unlock``); returns
    the holder it removed."""
    holder = read_holder(experiment)
    lock_path(experiment).unlink(missing_ok=True)
    return holder


@contextmanager
def held(experiment: str | Path) -> Iterator[None]:
    """Hold the run lock for the duration of a command (``percell upgrade``),
    so that it never runs beside a workflow run on the same experiment."""
    acquire(experiment)
    try:
        yield
    finally:
        release(experiment)
