"""Benchmark: how ``snakemake -n`` scales with the number of wells.

Run from the repository root:

    python bench/bench_dryrun.py
    python bench/bench_dryrun.py --regions-per-job 1   # one job per well

Builds sample sheets of 96, 384, 768 and 1,536 wells (1 to 4 plates of 384,
3 channels each, tiny TIFFs; plates as conditions and wells as regions),
with segmentation and a threshold run on, and times a dry run of the full
workflow on each: parsing the config, probing every file header, building
the DAG. Prints seconds (of a first dry run, and of a second one, which
finds the file headers remembered) and job counts. Target: 4 plates × 384
wells in under 20 s on 2 cores.

    python bench/bench_dryrun.py --hcs         # real HCS plate input

With ``--hcs`` each size is one real plate (``input.plate``, MetaXpress
names, 3×3 fields × 3 channels per well, so 27 tiny files per well): the
dry run also matches every file name, places the fields and plans every
well's stitching. ``--plates 4`` splits the wells over that many plates
(``input.plate`` as a list), e.g. 4 × 384 wells:

    python bench/bench_dryrun.py --hcs --plates 4 --wells 1536
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


def make_plate(root: Path, n_wells: int, name: str = "") -> Path:
    """A plate directory: n wells (1536-well layout when over 384) of 3x3
    fields x 3 channels, MetaXpress names."""
    tile = np.zeros((16, 16), np.uint16)
    rows, cols = (
        ("ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "ABCDEF", 48) if n_wells > 384 else (ROWS, 24)
    )
    directory = root / (name or f"plate{n_wells}")
    for i in range(n_wells):
        r, c = divmod(i, cols)
        well = (
            ("A" if i >= 26 * cols and n_wells > 384 else "") + rows[r] + f"{c + 1:02d}"
        )
        for f in range(1, 10):
            for ch in range(1, 4):
                path = directory / f"{well}_s{f}_w{ch}.tif"
                path.parent.mkdir(parents=True, exist_ok=True)
                tifffile.imwrite(path, tile)
    return directory


def dry_run(
    work: Path, sources: list[Path], per_job: int | None, hcs: bool = False
) -> tuple[float, dict]:
    plates = [
        {"name": f"P{i + 1}", "directory": str(d), "grid": {"rows": 3, "columns": 3}}
        for i, d in enumerate(sources)
    ]
    source = (
        {"plate": plates[0] if len(plates) == 1 else plates}
        if hcs
        else {"sample_sheet": str(sources[0])}
    )
    config = {
        "experiment": {"name": "scale", "path": "out/scale.percell"},
        "input": source,
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
    parser.add_argument("--hcs", action="store_true", help="real HCS plates")
    parser.add_argument(
        "--plates",
        type=int,
        default=1,
        help="with --hcs: split the wells over N plates",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="percell-bench-dry-"))
    plates = f"{args.plates} HCS plate(s) (3x3 fields), " if args.hcs else ""
    try:
        print(
            f"snakemake -n, {plates}"
            f"regions_per_job={args.regions_per_job}, "
            "3 channels, segmentation + 1 threshold run"
        )
        print(
            f"{'wells':>6} {'seconds':>8} {'again':>7} {'jobs':>7} {'import jobs':>12}"
        )
        for n in args.wells:
            work = root / f"w{n}"
            work.mkdir()
            if args.hcs:
                sources = [
                    make_plate(root / "raw", n // args.plates, f"w{n}p{i + 1}")
                    for i in range(args.plates)
                ]
            else:
                sources = [make_sheet(root / "raw", n)]
            seconds, jobs = dry_run(work, sources, args.regions_per_job, args.hcs)
            # a second dry run: file headers are remembered from the first
            again, _ = dry_run(work, sources, args.regions_per_job, args.hcs)
            print(
                f"{n:>6} {seconds:8.1f} {again:7.1f} {jobs['total']:>7} "
                f"{jobs['import_images']:>12}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
