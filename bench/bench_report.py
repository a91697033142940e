"""Benchmark: what the report's figures add to the demo's run time.

Run from the repository root:

    python bench/bench_report.py            # 2 runs of each, alternating

The demo config runs from nothing in a fresh directory, once whole and once
with ``--omit-from qc_regions qc_experiment`` (the same chain without the
QC figures), alternating; each run's wall time is measured around the
``snakemake`` process. It prints the fastest and the median run of each and
their ratio (on a busy machine the fastest is the steadier figure). Target:
the figures add less than 10 %.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def run(extra: list[str]) -> float:
    with tempfile.TemporaryDirectory(prefix="percell-bench-report-") as tmp:
        cmd = [
            SNAKEMAKE,
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            tmp,
            "--configfile",
            str(REPO / "config/config.yaml"),
            "--cores",
            "2",
            *extra,
        ]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    with_qc, without = [], []
    for _ in range(args.runs):
        without.append(run(["--omit-from", "qc_regions", "qc_experiment"]))
        with_qc.append(run([]))
    for name, pick in (("fastest", min), ("median", statistics.median)):
        a, b = pick(without), pick(with_qc)
        print(
            f"{name:8s} run: without the QC figures {a:5.1f} s, with them {b:5.1f} s:"
            f" the figures add {100 * (b / a - 1):.1f} % (target < 10 %)"
        )
    print(f"runs without: {[round(t, 1) for t in without]}")
    print(f"runs with:    {[round(t, 1) for t in with_qc]}")


if __name__ == "__main__":
    main()
