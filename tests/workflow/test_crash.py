"""Killed anywhere, one command recovers.

The whole Snakemake process group is SIGKILLed during each step in turn
(import, pyramid, segment, threshold, measure, register), each time at a
random moment of that step's job; every run after the first is the README's
recovery command. The experiment it leaves equals a clean run's.
"""

from __future__ import annotations

import os
import random
import shlex
import signal
import sqlite3
import subprocess
import time

import numpy as np
import psutil
import pytest
import tifffile

from percell.demo import synthetic_cells
from percell.storage import open_group
from tests.conftest import base_config, snakemake_command, write_config

#: the README's "after a crash" command, with this test's Snakemake invocation
RECOVERY = "{sm} --unlock && {sm} --cores 2"
STEPS = ["import_images", "pyramid", "segment", "threshold", "measure", "register"]
REGIONS = [("ctrl", "r1"), ("ctrl", "r2"), ("drug", "r1"), ("drug", "r2")]


def make_raw(root, size: int = 1024):
    rows = []
    for i, (cond, region) in enumerate(REGIONS):
        dapi, gfp, _, _ = synthetic_cells((size, size), np.random.default_rng(40 + i))
        for ch, img in (("DAPI", dapi), ("GFP", gfp)):
            path = root / f"{cond}_{region}_{ch}.tif"
            tifffile.imwrite(path, img)
            rows.append(f"{cond}\tt0\t{region}\t{ch}\t{path}")
    sheet = root / "samples.tsv"
    sheet.write_text("condition\ttimepoint\tregion\tchannel\tpath\n" + "\n".join(rows))
    return sheet


def start(command: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", "-c", command],
        start_new_session=True,  # its own process group, as a terminal would make
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def job_running(proc: subprocess.Popen, step: str) -> bool:
    """Whether a job of ``step`` runs (Snakemake runs scripts as
    ``.snakemake/scripts/tmpXXXX.<script>.py``)."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    for child in children:
        try:
            if any(part.endswith(f".{step}.py") for part in child.cmdline()):
                return True
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return False


def kill_during(command: str, step: str, delay: float) -> bool:
    """Run ``command``; SIGKILL its whole process group ``delay`` seconds after
    a job of ``step`` is seen. False if the step never ran."""
    proc = start(command)
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        if job_running(proc, step):
            time.sleep(delay)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)
            return True
        time.sleep(0.005)
    proc.communicate(timeout=600)
    return False


def kill_partway(command: str, step: str, delay: float) -> float | None:
    """Run ``command``; SIGKILL its process group once a job of ``step`` has run
    ``delay`` seconds. None when the kill landed inside the job; otherwise how
    long the job was seen running (0.0 if it never ran), the run left to end."""
    proc = start(command)
    deadline = time.monotonic() + 600
    seen = ended = None
    while proc.poll() is None and time.monotonic() < deadline:
        running = job_running(proc, step)
        now = time.monotonic()
        if running and seen is None:
            seen = now
        if running and now - seen >= delay:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)
            return None
        if seen is not None and not running:
            time.sleep(0.02)  # a second look: one psutil read may miss the job
            if not job_running(proc, step):
                ended = time.monotonic()
                break  # the job ended before the moment chosen for the kill
        time.sleep(0.005)
    ended = ended or time.monotonic()
    proc.communicate(timeout=600)
    return 0.0 if seen is None else ended - seen


def natural_rows(exp) -> dict:
    """Database rows keyed by names (region path, label, channel, metric, run)
    rather than ids, which may differ between two histories."""
    conn = sqlite3.connect(exp / "experiment.db")
    region = (
        "(SELECT c.name || '/' || coalesce(t.name, '') || '/' || r.name FROM regions r "
        "JOIN conditions c ON c.id = r.condition_id LEFT JOIN timepoints t "
        "ON t.id = r.timepoint_id WHERE r.id = {})"
    )
    queries = {
        "channels": "SELECT name, role, color, is_segmentation, display_order "
        "FROM channels",
        "regions": f"SELECT {region.format('regions.id')}, width, height, "
        "pixel_size_um, source_file, zarr_path FROM regions",
        "cells": f"SELECT {region.format('cells.region_id')}, label_value, centroid_x, "
        "centroid_y, bbox_x, bbox_y, bbox_w, bbox_h, area_pixels, area_um2, "
        "perimeter, circularity FROM cells",
        "measurements": f"SELECT {region.format('c.region_id')}, c.label_value, "
        "ch.name, m.metric, m.value FROM measurements m JOIN cells c "
        "ON c.id = m.cell_id JOIN channels ch ON ch.id = m.channel_id",
        "masks": f"SELECT {region.format('c.region_id')}, c.label_value, "
        "json_extract(t.parameters, '$.name'), m.pixels_inside, m.fraction_inside, "
        "m.mean_inside, m.mean_outside, m.positive FROM percell_cell_masks m "
        "JOIN cells c ON c.id = m.cell_id JOIN threshold_runs t "
        "ON t.id = m.threshold_run_id",
        "thresholds": f"SELECT {region.format('p.region_id')}, p.run_name, "
        "p.pixels_on, t.threshold_value FROM percell_region_thresholds p "
        "JOIN threshold_runs t ON t.id = p.threshold_run_id",
        "segmentation_runs": "SELECT model_name, parameters, cell_count "
        "FROM segmentation_runs",
    }
    rows = {name: sorted(conn.execute(q).fetchall()) for name, q in queries.items()}
    rows["integrity"] = conn.execute("PRAGMA integrity_check").fetchall()
    rows["journal"] = conn.execute("PRAGMA journal_mode").fetchall()
    conn.close()
    return rows


def arrays(exp) -> dict:
    out = {}
    for store in ("images.zarr", "labels.zarr", "masks.zarr"):
        for zarray in sorted((exp / store).rglob(".zarray")):
            group = zarray.parent.parent
            name = str(zarray.parent.relative_to(exp))
            out[name] = open_group(group)[zarray.parent.name][...]
            out[f"{name}/attrs"] = dict(open_group(group).attrs)
    return out


@pytest.mark.slow
def test_sigkill_at_every_step_then_the_readme_command_recovers(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    sheet = make_raw(raw)
    config = base_config(
        {"sample_sheet": str(sheet)},
        segmentation={"channel": "DAPI", "diameter": 16, "min_size": 30},
        thresholds=[
            {"channel": "GFP", "method": "otsu", "scope": "experiment"},
            {"name": "GFPr", "channel": "GFP", "method": "li", "sigma": 1.0},
        ],
    )
    crashed, clean = tmp_path / "crashed", tmp_path / "clean"
    for work in (crashed, clean):
        work.mkdir()
        write_config(work, config)

    sm = shlex.join(snakemake_command(crashed))
    recovery = RECOVERY.format(sm=sm)
    rng = random.Random(11)
    killed = []
    for i, step in enumerate(STEPS):
        command = f"{sm} --cores 2" if i == 0 else recovery
        if kill_during(command, step, delay=rng.uniform(0.0, 0.6)):
            killed.append(step)
    # a step may finish before the kill lands in it; most must be hit
    assert len(killed) >= 5, killed

    proc = subprocess.run(["bash", "-c", recovery], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    clean_run = subprocess.run(
        [*snakemake_command(clean), "--cores", "2"], capture_output=True, text=True
    )
    assert clean_run.returncode == 0, clean_run.stderr[-3000:]

    exp, ref = crashed / "out/exp.percell", clean / "out/exp.percell"
    got, want = arrays(exp), arrays(ref)
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        if isinstance(value, dict):
            assert got[name] == value, name
        else:
            np.testing.assert_array_equal(got[name], value, err_msg=name)
    rows = natural_rows(exp)
    assert rows["integrity"] == [("ok",)]
    assert rows["journal"] == [("delete",)]
    assert rows == natural_rows(ref)
    debris = [
        p for p in exp.rglob("*") if ".partial" in p.name or p.name.endswith(".old")
    ]
    assert debris == []


def rows_4_0_0(exp) -> dict:
    """A 4.0.0 experiment's rows keyed by names rather than ids."""
    conn = sqlite3.connect(exp / "experiment.db")
    cell = "(SELECT f.display_name FROM fovs f WHERE f.id = c.fov_id), c.label_value"
    queries = {
        "fovs": "SELECT display_name, width, height, pixel_size_um FROM fovs",
        "cells": f"SELECT {cell}, c.centroid_x, c.centroid_y, c.bbox_x, c.bbox_y, "
        "c.bbox_w, c.bbox_h, c.area_pixels, c.area_um2, c.perimeter FROM cells c",
        "measurements": f"SELECT {cell}, ch.name, m.metric, m.scope, m.value, "
        "(SELECT t.name FROM thresholds t WHERE t.id = m.threshold_id) "
        "FROM measurements m JOIN cells c ON c.id = m.cell_id "
        "JOIN channels ch ON ch.id = m.channel_id",
        "segmentations": "SELECT name, cell_count FROM segmentations",
        "thresholds": "SELECT name, threshold_value FROM thresholds",
        "fov_config": "SELECT * FROM fov_config",
    }
    rows = {name: sorted(conn.execute(q).fetchall()) for name, q in queries.items()}
    rows["integrity"] = conn.execute("PRAGMA integrity_check").fetchall()
    conn.close()
    return rows


@pytest.mark.slow
def test_sigkill_during_a_4_0_0_register_and_its_views_then_recovery(tmp_path):
    """Schema 4.0.0's register commits, then writes the views the
    application reads (paths by id): killed at moments across both, the
    README's command leaves what a clean run leaves, views included."""
    raw = tmp_path / "raw"
    raw.mkdir()
    config = base_config(
        {"sample_sheet": str(make_raw(raw, size=512))},
        segmentation={"channel": "DAPI", "diameter": 16, "min_size": 30},
        thresholds=[{"channel": "GFP", "method": "otsu", "scope": "experiment"}],
    )
    config["experiment"]["format"] = "4.0.0"
    crashed, clean = tmp_path / "crashed", tmp_path / "clean"
    for work in (crashed, clean):
        work.mkdir()
        write_config(work, config)
    clean_run = subprocess.run(
        [*snakemake_command(clean), "--cores", "2"], capture_output=True, text=True
    )
    assert clean_run.returncode == 0, clean_run.stderr[-3000:]
    # how long a register job lasts here (its benchmark): the kills are
    # spread over it, the later ones in the views written after the commit
    (bench,) = (clean / "benchmarks").rglob("register*.tsv")
    header, values = (line.split("\t") for line in bench.read_text().splitlines()[:2])
    seconds = float(values[header.index("s")])
    sm = shlex.join(snakemake_command(crashed))
    before = subprocess.run(
        ["bash", "-c", f"{sm} --cores 2 --until measure"], capture_output=True
    )
    assert before.returncode == 0, before.stderr[-3000:]
    # The register job may run faster here than in the clean run (the other
    # test worker's load differs): a kill that misses shortens the estimate and
    # the same moment is tried again, the completed register forced to rerun.
    killed, missed, forced = [], 0, ""
    for share in (0.3, 0.7, 0.9, 0.97):
        while missed < 6:
            command = RECOVERY.format(sm=sm) + forced
            ran = kill_partway(command, "register", share * seconds)
            if ran is None:
                killed.append(share)
                forced = ""
                break
            missed += 1
            forced = " --forcerun register"
            seconds = min(seconds, ran) if ran else seconds
    assert len(killed) >= 3, (killed, missed)
    proc = subprocess.run(
        ["bash", "-c", RECOVERY.format(sm=sm)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp, ref = crashed / "out/exp.percell", clean / "out/exp.percell"
    got, want = arrays(exp), arrays(ref)
    assert sorted(got) == sorted(want)
    assert any(name.startswith("labels.zarr/seg_") for name in want)  # views
    for name, value in want.items():
        if isinstance(value, dict):
            assert got[name] == value, name
        else:
            np.testing.assert_array_equal(got[name], value, err_msg=name)
    rows = rows_4_0_0(exp)
    assert rows["integrity"] == [("ok",)]
    assert rows == rows_4_0_0(ref)
    debris = [
        p for p in exp.rglob("*") if ".partial" in p.name or p.name.endswith(".old")
    ]
    assert debris == []
