"""Benchmark: ``percell upgrade`` (3.0.0 → 4.0.0 in place) on a large experiment.

Run from the repository root:

    python bench/bench_upgrade.py                  # 50 regions x 20,000 cells
    python bench/bench_upgrade.py --regions 10     # smaller

A 3.0.0 experiment of ``--regions`` regions of ``--cells`` cells (3 channels
x 7 metrics, 2 threshold runs, one tag on every tenth cell; 1,000,000 cells
and 21,000,000 measurement rows by default) is built with the register step
from staged outputs (bench_register's), each region with small image, labels
and mask arrays for the views. Then the real command, ``percell upgrade
EXPERIMENT``, runs in a child process, timed, with its peak resident memory.

Anchor: a plain copy of experiment.db (``shutil.copyfile``), the least an
in-place upgrade that leaves the old file untouched until the end must do.
The upgrade is printed as a ratio against it; its peak memory beside the
database's size shows that memory does not grow with the experiment.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATABASE = "experiment.db"


def build(exp: Path, regions: int, cells: int) -> None:
    """A registered 3.0.0 experiment with arrays and tags (run in a child
    process: the parent stays small, so that the upgrade's child, forked
    from it, reports its own peak memory)."""
    import bench_register as staging

    exp.mkdir()
    values = {"GFP": 100.0, "RFP": 200.0}
    staged = []
    for i in range(regions):
        staged.append(staging.stage_region(exp, i, cells, values, "3.0.0"))
        staging.stage_arrays(exp, f"ctrl/t0/r{i:04d}")
    staging.timed_register(exp, staged, "3.0.0")
    conn = sqlite3.connect(exp / DATABASE)
    with conn:
        conn.execute("INSERT INTO tags (name) VALUES ('bench')")
        conn.execute(
            "INSERT INTO cell_tags (cell_id, tag_id) SELECT id, "
            "(SELECT id FROM tags WHERE name = 'bench') FROM cells WHERE id % 10 = 0"
        )
    conn.close()


def counts(exp: Path) -> tuple[int, int, int, str]:
    conn = sqlite3.connect(exp / DATABASE)
    try:
        return (
            conn.execute("SELECT count(*) FROM cells").fetchone()[0],
            conn.execute("SELECT count(*) FROM measurements").fetchone()[0],
            conn.execute("SELECT count(*) FROM cell_tags").fetchone()[0],
            conn.execute("SELECT percell_version FROM experiments").fetchone()[0],
        )
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--regions", type=int, default=50)
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        sys.path.insert(0, str(Path(__file__).parent))
        return build(args.build, args.regions, args.cells)
    percell = Path(sys.executable).with_name("percell")
    with tempfile.TemporaryDirectory(prefix="percell-bench-upgrade-") as tmp:
        exp = Path(tmp) / "bench.percell"
        t0 = time.perf_counter()
        subprocess.run(
            [
                *(sys.executable, __file__, "--build", str(exp)),
                *("--regions", str(args.regions), "--cells", str(args.cells)),
            ],
            check=True,
        )
        database = exp / DATABASE
        size_mb = database.stat().st_size / 1e6
        before = counts(exp)
        print(
            f"3.0.0 experiment: {before[0]:,} cells, {before[1]:,} measurements, "
            f"{before[2]:,} tags, {size_mb:,.0f} MB database "
            f"(built in {time.perf_counter() - t0:.0f} s)"
        )

        start = time.perf_counter()
        shutil.copyfile(database, Path(tmp) / "copy.db")
        t_copy = time.perf_counter() - start
        (Path(tmp) / "copy.db").unlink()
        print(f"  anchor, a copy of experiment.db: {t_copy:7.2f} s")

        start = time.perf_counter()
        proc = subprocess.Popen(
            [str(percell), "upgrade", str(exp)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        output = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak
        t_upgrade = time.perf_counter() - start
        peak_mb = usage.ru_maxrss / 1024
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"percell upgrade failed:\n{output}")
        after = counts(exp)
        print(
            f"  percell upgrade:                 {t_upgrade:7.2f} s  "
            f"({t_upgrade / t_copy:.0f}x the copy), peak RSS {peak_mb:,.0f} MB "
            f"for a {size_mb:,.0f} MB database"
        )
        print(
            f"  after: schema {after[3]}, {after[0]:,} cells, {after[1]:,} "
            f"measurements, {after[2]:,} tags"
        )
        if after[:3] != before[:3]:
            sys.exit(f"rows lost: before {before[:3]}, after {after[:3]}")


if __name__ == "__main__":
    main()
