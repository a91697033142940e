"""Benchmark: the whole chain on a well of the seed's scale, memory per step.

Run from the repository root:

    python bench/bench_seed_scale.py                 # 10000² and 20000² wells
    python bench/bench_seed_scale.py --edges 5000    # quick look

For each edge it writes (streamed, field by field, on disk) one plate well
of 3 channels × edge × edge uint16 as MetaXpress field files of 2500×2500
synthetic nuclei (a microscope's field size is fixed: a larger well has more
fields, 4×4 at 10000², 8×8 at 20000²; spacing 20 px: about 0.8 M cells at
20000²), then runs the
real workflow on it — import (stitching) → pyramid → segment (watershed) →
threshold → measure → register — with ``snakemake --cores 1``. Every rule
has a ``benchmark:`` directive, so Snakemake itself records each job's wall
time and peak RSS; the benchmark prints them per step and per edge, and
checks the target: no step above 2 GB, whatever the well size.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
FIELD = 2500
STEPS = ("import", "pyramid", "segment", "threshold", "measure", "register")


def write_well(directory: Path, grid: int) -> None:
    """grid × grid fields of synthetic nuclei, one field (3 planes) in memory
    at a time."""
    from percell.demo import synthetic_cells

    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for f in range(1, grid * grid + 1):
        cells = synthetic_cells((FIELD, FIELD), rng, spacing=20, nucleus_radius=5.0)
        planes = cells[:3]
        for c, plane in enumerate(planes, start=1):
            tifffile.imwrite(directory / f"B03_s{f}_w{c}.tif", plane)


def run_chain(work: Path, raw: Path, grid: int) -> float:
    config = {
        "experiment": {"name": "seed", "path": "out/seed.percell"},
        "input": {
            "plate": {
                "name": "P",
                "directory": str(raw),
                "grid": {"rows": grid, "columns": grid},
            }
        },
        "channels": [
            {"name": "DAPI", "role": "nucleus"},
            {"name": "GFP", "role": "cytoplasm"},
            {"name": "RFP"},
        ],
        "pixel_size_um": 0.65,
        "segmentation": {"method": "watershed", "channel": "DAPI", "diameter": 10},
        "thresholds": [{"channel": "GFP", "method": "otsu"}],
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    subprocess.run(
        [
            SNAKEMAKE,
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(work),
            "--configfile",
            str(work / "config.yaml"),
            "--cores",
            "1",
            "--until",
            "register",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - start


def step_table(work: Path) -> pd.DataFrame:
    """Seconds and peak RSS (MB) of each step's jobs, from Snakemake's
    benchmark files."""
    rows = []
    for step in STEPS:
        files = sorted((work / "benchmarks").glob(f"{step}/**/*.tsv")) + sorted(
            (work / "benchmarks").glob(f"{step}.tsv")
        )
        tables = [pd.read_csv(f, sep="\t") for f in files]
        if not tables:
            continue
        t = pd.concat(tables)
        rows.append(
            {
                "step": step,
                "seconds": float(t["s"].sum()),
                "peak_rss_mb": float(pd.to_numeric(t["max_rss"]).max()),
            }
        )
    return pd.DataFrame(rows).set_index("step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edges", type=int, nargs="+", default=[10000, 20000])
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    results = {}
    for edge in args.edges:
        work = Path(tempfile.mkdtemp(prefix="percell-bench-seed-", dir=args.workdir))
        try:
            t0 = time.perf_counter()
            grid = max(1, edge // FIELD)
            write_well(work / "raw", grid)
            made = time.perf_counter() - t0
            total = run_chain(work, work / "raw", grid)
            with sqlite3.connect(work / "out/seed.percell/experiment.db") as db:
                cells = db.execute("SELECT count(*) FROM cells").fetchone()[0]
            results[edge] = step_table(work)
            gb = 3 * edge * edge * 2 / 1e9
            print(
                f"well 3 x {edge} x {edge} uint16 ({gb:.1f} GB), {cells:,} cells; "
                f"fields written in {made:.0f} s, chain {total:.0f} s"
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
    table = pd.concat(results, axis=1)
    print(table.round(1).to_string())
    peak = max(float(t["peak_rss_mb"].max()) for t in results.values())
    verdict = "met" if peak <= 2048 else "NOT met"
    print(f"largest peak RSS of any step: {peak:.0f} MB (target <= 2048 MB): {verdict}")


if __name__ == "__main__":
    main()
