"""Crash safety: SIGKILL a real running import, rerun, and get a clean result."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time

import numpy as np
import psutil
import tifffile

from percell.storage import open_group
from tests.conftest import base_config, run_workflow, snakemake_command, write_config

SHAPE = (6144, 6144)


def make_big_raw(root):
    rows = []
    rng = np.random.default_rng(7)
    for region in ("r1", "r2"):
        for ch in ("DAPI", "GFP"):
            path = root / f"{region}_{ch}.tif"
            img = rng.integers(0, 4000, SHAPE, dtype=np.uint16)
            # tiled + compressed: decoding keeps the import busy long enough to kill
            tifffile.imwrite(path, img, tile=(512, 512), compression="zlib")
            rows.append(f"ctrl\t\t{region}\t{ch}\t{path}")
    sheet = root / "samples.tsv"
    sheet.write_text("condition\ttimepoint\tregion\tchannel\tpath\n" + "\n".join(rows))
    return sheet


def kill_import_when_writing(work, exp) -> bool:
    cmd = [*snakemake_command(work), "--cores", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    partial = exp / "images.zarr/ctrl/.r1.partial/0/0"
    killed = False
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if partial.is_dir() and any(partial.iterdir()):
            for child in psutil.Process(proc.pid).children(recursive=True):
                if any("import_images" in part for part in child.cmdline()):
                    os.kill(child.pid, signal.SIGKILL)
                    killed = True
            if killed:
                break
        time.sleep(0.005)
    proc.communicate(timeout=300)
    assert proc.returncode != 0
    return killed


def db_rows(exp):
    conn = sqlite3.connect(exp / "experiment.db")
    tables = [
        "channels",
        "conditions",
        "timepoints",
        "regions",
        "percell_region_sources",
    ]
    rows = {
        t: conn.execute(
            f"SELECT * FROM {t} ORDER BY id"
            if t != "percell_region_sources"
            else f"SELECT * FROM {t} ORDER BY 1, 2"
        ).fetchall()
        for t in tables
    }
    rows["experiments"] = conn.execute(
        "SELECT id, name, description, percell_version FROM experiments"
    ).fetchall()
    return rows


def test_sigkill_during_import_then_rerun_equals_clean_run(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    sheet = make_big_raw(raw)
    config = base_config(
        {"sample_sheet": str(sheet)}, **{"import": {"resources": {"threads": 1}}}
    )

    crashed, clean = tmp_path / "crashed", tmp_path / "clean"
    for work in (crashed, clean):
        work.mkdir()
        write_config(work, config)
    exp = crashed / "out/exp.percell"

    assert kill_import_when_writing(crashed, exp), "the import was never caught writing"
    assert not (exp / ".workflow/import/ctrl.json").exists()
    assert not (exp / "experiment.db").exists()

    run_workflow(crashed)
    run_workflow(clean)
    clean_exp = clean / "out/exp.percell"
    assert not list((exp / "images.zarr/ctrl").glob(".*partial"))
    for region in ("r1", "r2"):
        a = open_group(exp / "images.zarr/ctrl" / region)
        b = open_group(clean_exp / "images.zarr/ctrl" / region)
        assert sorted(a.array_keys()) == sorted(b.array_keys())
        for level in a.array_keys():
            np.testing.assert_array_equal(a[level][:], b[level][:])
        assert dict(a.attrs) == dict(b.attrs)
    assert db_rows(exp) == db_rows(clean_exp)
