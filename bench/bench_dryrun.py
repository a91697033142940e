"""Benchmark: how ``snakemake -n`` scales with the number of wells.

Run from the repository root:

    python bench/bench_dryrun.py
    python bench/bench_dryrun.py --regions-per-job 1   # one job per well

Builds sample sheets of 96, 384, 768 and 1,536 wells (1 to 4 plates of 384,
3 channels each, tiny TIFFs; plates as conditions and wells as regions, the
free-form stand-in for a plate until HCS input lands), with segmentation and
a threshold run on, and times a dry run of the full workflow on each: parsing
the config, probing every file header, building the DAG. Prints seconds and
job counts. Target: 4 plates × 384 wells in under 20 s on 2 cores.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
ROWS, COLS = "ABCDEFGHIJKLMNOP", range(1, 25)


def make_sheet(root: Path, n_wells: int) -> Path:
    tile = np.zeros((16, 16), np.uint16)
    rows = []
    for i in range(n_wells):
        plate, well = f"plate{i // 384 + 1}", i % 384
        name = f"{ROWS[well // 24]}{COLS[well % 24]:02d}"
        for ch in ("DAPI", "GFP", "RFP"):
            path = root / plate / f"{name}_{ch}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, tile)
            rows.append(f"{plate}\t{name}\t{ch}\t{path}")
    sheet = root / f"wells{n_wells}.tsv"
    sheet.write_text("condition\tregion\tchannel\tpath\n" + "\n".join(rows) + "\n")
    return sheet


def dry_run(work: Path, sheet: Path, per_job: int | None) -> tuple[float, dict]:
    config = {
        "experiment": {"name": "scale", "path": "out/scale.percell"},
        "input": {"sample_sheet": str(sheet)},
        "channels": [{"name": n} for n in ("DAPI", "GFP", "RFP")],
        "pixel_size_um": 0.5,
        "grouping": {"regions_per_job": per_job},
        "segmentation": {"channel": "DAPI", "diameter": 8},
        "thresholds": [{"channel": "GFP", "method": "otsu", "scope": "experiment"}],
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    proc = subprocess.run(
        [
            SNAKEMAKE,
            "-n",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(work),
            "--configfile",
            str(work / "config.yaml"),
            "--cores",
            "2",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - start
    table = proc.stdout[proc.stdout.index("Job stats:") :].split("\n\n")[0]
    jobs = {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)}
    return elapsed, jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--regions-per-job", type=int, default=16)
    parser.add_argument("--wells", type=int, nargs="+", default=[96, 384, 768, 1536])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="percell-bench-dry-"))
    try:
        print(
            f"snakemake -n, regions_per_job={args.regions_per_job}, "
            "3 channels, segmentation + 1 threshold run"
        )
        print(f"{'wells':>6} {'seconds':>8} {'jobs':>7} {'import jobs':>12}")
        for n in args.wells:
            work = root / f"w{n}"
            work.mkdir()
            sheet = make_sheet(root / "raw", n)
            seconds, jobs = dry_run(work, sheet, args.regions_per_job)
            print(
                f"{n:>6} {seconds:8.1f} {jobs['total']:>7} {jobs['import_images']:>12}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
