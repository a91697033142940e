"""Two runs on one experiment from two working directories (a shared
filesystem): the second is refused before any job, naming the first; the first
finishes as if alone; a killed run's lock does not block the next run."""

from __future__ import annotations

import subprocess
import sys
import time

import yaml

from percell import run_lock
from tests.conftest import run_workflow, snakemake_command, tree_digest, write_config


def test_a_second_run_on_the_experiment_is_refused_naming_the_first(
    experiment_copy, tmp_path
):
    work, exp = experiment_copy["work"], experiment_copy["experiment"]
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["experiment"]["path"] = str(exp)  # one experiment, two directories
    write_config(work, config)
    other = tmp_path / "other"
    other.mkdir()
    write_config(other, config)

    first = subprocess.Popen(
        [*snakemake_command(work), "--cores", "1", "--forcerun", "import_images"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while run_lock.read_holder(exp) is None:
        assert first.poll() is None and time.monotonic() < deadline, "no lock"
        time.sleep(0.05)

    second = run_workflow(other, "--forcerun", "import_images", check=False)
    output = second.stdout + second.stderr
    assert second.returncode != 0
    assert f"{exp} is being written by another run" in output
    assert f"process {first.pid}" in output and f"working directory {work}" in output
    assert "Traceback" not in output
    assert not list((other / ".snakemake").glob("scripts/*"))  # no job ran

    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out[-3000:]
    assert run_lock.read_holder(exp) is None  # released at the end


def test_a_killed_runs_lock_is_taken_over_by_the_next_run(experiment_copy):
    work, exp = experiment_copy["work"], experiment_copy["experiment"]
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run_lock.acquire(exp, pid=gone.pid)  # as a SIGKILLed run leaves it
    before = tree_digest(exp)

    proc = run_workflow(work, "--forcerun", "register")
    assert "removing a stale run lock (host" in proc.stderr
    assert f"process {gone.pid}" in proc.stderr
    assert run_lock.read_holder(exp) is None
    after = tree_digest(exp)
    assert set(before) - set(after) == {str(run_lock.lock_path(exp).relative_to(exp))}
