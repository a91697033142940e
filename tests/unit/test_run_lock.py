"""The experiment's run lock: one run at a time, a killed run's lock taken over."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from percell import run_lock
from percell.cli import main
from percell.errors import ExperimentError


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_run_holds_the_experiment_and_is_named(tmp_path, sleeper):
    exp = tmp_path / "exp.percell"
    exp.mkdir()
    run_lock.acquire(exp, pid=sleeper.pid)
    with pytest.raises(ExperimentError) as err:
        run_lock.acquire(exp)
    message = str(err.value)
    assert str(exp) in message
    assert f"process {sleeper.pid}" in message
    assert f"working directory {os.getcwd()}" in message
    assert "changed nothing" in message
    # the refused run did not touch the holder's lock
    assert run_lock.read_holder(exp)["pid"] == sleeper.pid


def test_a_killed_runs_lock_is_stale_and_taken_over(tmp_path, caplog):
    exp = tmp_path / "exp.percell"
    exp.mkdir()
    gone = dead_pid()
    run_lock.acquire(exp, pid=gone)
    with caplog.at_level(logging.WARNING):
        run_lock.acquire(exp)
    assert run_lock.read_holder(exp)["pid"] == os.getpid()
    assert f"process {gone}" in caplog.text and "stale" in caplog.text
    run_lock.release(exp)
    assert run_lock.read_holder(exp) is None


def test_a_reused_pid_is_not_taken_for_the_killed_run(tmp_path, sleeper):
    """The pid is alive again, but in another process (another start time)."""
    exp = tmp_path / "exp.percell"
    exp.mkdir()
    run_lock.acquire(exp, pid=sleeper.pid)
    path = run_lock.lock_path(exp)
    holder = json.loads(path.read_text())
    path.write_text(json.dumps({**holder, "started": "1"}))
    run_lock.acquire(exp)
    assert run_lock.read_holder(exp)["pid"] == os.getpid()


def test_a_lock_from_another_host_is_refused_until_unlocked(tmp_path, capsys):
    exp = tmp_path / "exp.percell"
    run_lock.lock_path(exp).parent.mkdir(parents=True)
    holder = {"host": "node-17", "pid": 4242, "user": "ana", "workdir": "/w"}
    run_lock.lock_path(exp).write_text(json.dumps({**holder, "since": 0}))
    with pytest.raises(ExperimentError, match=r"another host.*percell unlock"):
        run_lock.acquire(exp)
    assert main(["unlock", str(exp)]) == 0
    assert "host node-17, process 4242 of user ana" in capsys.readouterr().out
    run_lock.acquire(exp)
    run_lock.release(exp)


def test_release_leaves_only_what_was_there(tmp_path):
    new = tmp_path / "new.percell"
    run_lock.acquire(new)
    run_lock.release(new)
    assert not new.exists()  # a run that wrote nothing leaves nothing
    existing = tmp_path / "existing.percell"
    existing.mkdir()
    run_lock.acquire(existing)
    run_lock.release(existing)
    assert existing.is_dir() and list(existing.iterdir()) == []


def test_release_does_not_remove_another_runs_lock(tmp_path, sleeper):
    exp = tmp_path / "exp.percell"
    run_lock.acquire(exp, pid=sleeper.pid)
    run_lock.release(exp)
    assert run_lock.read_holder(exp)["pid"] == sleeper.pid
