"""The workflow on a real SLURM through the profile in workflow/profiles/slurm.

Runs where a SLURM answers (CI starts a single-node one with .ci/slurm-up.sh);
skipped elsewhere. Without slurmdbd there is no sacct, so the CI override asks
the executor to use squeue for job states, and no account is given.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import zlib

import numpy as np
import pytest
import tifffile

from percell.demo import synthetic_cells
from percell.storage import open_group
from tests.conftest import REPO, base_config, snakemake_command, write_config


def slurm_is_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(s in out for s in ("idle", "mix", "alloc"))


pytestmark = pytest.mark.skipif(not slurm_is_up(), reason="no SLURM cluster answers")

REGIONS = [("ctrl", "r1"), ("ctrl", "r2"), ("drug", "r1"), ("drug", "r2")]
LOCAL_STEPS = {"hierarchy", "register"}


def make_raw(root):
    rows = []
    for i, (cond, region) in enumerate(REGIONS):
        dapi, gfp, _, _ = synthetic_cells((300, 420), np.random.default_rng(90 + i))
        for ch, img in (("DAPI", dapi), ("GFP", gfp)):
            path = root / f"{cond}_{region}_{ch}.tif"
            tifffile.imwrite(path, img, tile=(128, 128), compression="zlib")
            rows.append(f"{cond}\t{region}\t{ch}\t{path}")
    sheet = root / "samples.tsv"
    sheet.write_text("condition\tregion\tchannel\tpath\n" + "\n".join(rows) + "\n")
    return sheet


def break_tile_data(path):
    """Garble compressed pixel data, leaving the TIFF header intact: only a job
    that decodes the pixels notices, so the failure happens on the cluster."""
    with tifffile.TiffFile(path) as tf:
        offset = tf.pages[0].dataoffsets[3]
    data = bytearray(path.read_bytes())
    data[offset : offset + 64] = zlib.compress(b"x")[:2] + b"\xff" * 62
    path.write_bytes(bytes(data))


def config_for(sheet):
    return base_config(
        {"sample_sheet": str(sheet)},
        segmentation={
            "channel": "DAPI",
            "diameter": 16,
            "min_size": 30,
            "resources": {"threads": 1, "mem_mb": 1000, "runtime": 10},
        },
        thresholds=[{"channel": "GFP", "method": "otsu", "scope": "experiment"}],
        grouping={"regions_per_job": 2},
        **{
            step: {"resources": {"threads": 1, "mem_mb": 1000, "runtime": 10}}
            for step in ("import", "pyramid", "threshold", "measure")
        },
    )


def run(work, *extra, slurm: bool, check: bool = True):
    cmd = snakemake_command(work)
    if slurm:
        cmd += [
            "--profile",
            str(REPO / "workflow/profiles/slurm"),
            # the CI override: no sacct without slurmdbd; a tiny cluster
            # answers at once, so poll early
            "--slurm-status-command",
            "squeue",
            "--slurm-init-seconds-before-status-checks",
            "2",
            "--latency-wait",
            "10",
            "--retries",
            "0",
        ]
    else:
        cmd += ["--cores", "2"]
    proc = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=1500)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def db_rows(exp):
    conn = sqlite3.connect(exp / "experiment.db")
    out = {}
    for table, cols in {
        "regions": "name, condition_id, timepoint_id, width, height, zarr_path",
        "cells": "id, region_id, label_value, centroid_x, centroid_y, area_pixels, "
        "perimeter",
        "measurements": "cell_id, channel_id, metric, value",
        "threshold_runs": "channel_id, method, threshold_value",
        "percell_cell_masks": "cell_id, pixels_inside, positive",
    }.items():
        out[table] = conn.execute(
            f"SELECT {cols} FROM {table} ORDER BY 1, 2, 3"
        ).fetchall()
    return out


def arrays(exp):
    out = {}
    for store in ("images.zarr", "labels.zarr", "masks.zarr"):
        for zarray in sorted((exp / store).rglob(".zarray")):
            arr = zarray.parent
            group = open_group(arr.parent)
            out[str(arr.relative_to(exp))] = group[arr.name][...]
    return out


def test_a_failed_cluster_job_is_named_and_the_rerun_equals_a_local_run(tmp_path):
    """One story on the cluster (a SLURM run costs minutes, so there is one):
    a job fails on a garbled TIFF and the terminal names its log; the file is
    mended and the rerun completes. What the cluster leaves equals a local run
    of the mended files, array for array and row for row, and every per-group
    step ran as a SLURM job of its own."""
    raw = tmp_path / "raw"
    raw.mkdir()
    sheet = make_raw(raw)
    garbled = raw / "drug_r2_GFP.tif"
    intact = garbled.read_bytes()
    break_tile_data(garbled)
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    for work in (local, cluster):
        work.mkdir()
        write_config(work, config_for(sheet))

    proc = run(cluster, slurm=True, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "slurm" in out.lower()
    assert "Error in rule import_images" in out
    assert "logs/exp/import/drug.log" in out, out[-4000:]
    log = cluster / "logs/exp/import/drug.log"
    assert "region drug/r2" in log.read_text() and "drug_r2_GFP.tif" in log.read_text()

    garbled.write_bytes(intact)  # only this file changes: the rest is kept
    run(local, slurm=False)
    run(cluster, slurm=True)

    exp = cluster / "out/exp.percell"
    job_ids = {}
    for sentinel in (exp / ".workflow").rglob("*.json"):
        step = sentinel.relative_to(exp / ".workflow").parts[0]
        record = json.loads(sentinel.read_text())
        if "step" not in record:  # e.g. threshold_value/<run>.json: not a sentinel
            continue
        if step in LOCAL_STEPS:
            assert record["slurm_job_id"] is None, sentinel
        else:
            assert record["slurm_job_id"], f"{sentinel} did not run as a SLURM job"
            job_ids[str(sentinel)] = record["slurm_job_id"]
    # import, pyramid, segment, threshold, measure for 2 groups
    assert len(job_ids) == 5 * 2
    assert len(set(job_ids.values())) == len(job_ids)

    a, b = arrays(local / "out/exp.percell"), arrays(exp)
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert db_rows(local / "out/exp.percell") == db_rows(exp)
    conn = sqlite3.connect(exp / "experiment.db")
    assert conn.execute("SELECT count(*) FROM regions").fetchone() == (4,)
    assert conn.execute("SELECT count(DISTINCT region_id) FROM cells").fetchone() == (
        4,
    )
    assert (exp / "masks.zarr/drug/r2/threshold_GFP/0/.zarray").is_file()
