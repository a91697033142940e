"""Benchmark: incremental register on a large experiment.

Run from the repository root:

    python bench/bench_register.py                  # 50 regions x 20,000 cells
    python bench/bench_register.py --regions 10     # smaller

Staged outputs (sentinels and Parquet tables, in the layout the import,
segment, threshold and measure steps write) are made for ``--regions``
regions of ``--cells`` cells each, 3 channels x 7 metrics and 2 threshold
runs: 1,000,000 cells and 21,000,000 measurement rows by default. Then
``percell.register.register`` — the function the register rule calls — runs:

1. anchor: the full build of the whole experiment (what every rerun cost
   before register became incremental: it deleted and re-inserted every
   region of the run);
2. one region of ``--cells`` cells added;
3. one threshold run changed (new values and mask statistics for every cell);
4. nothing changed.

Each prints its time and the ratio against the anchor. Target: 2 and 3 under
5 s at 1,000,000 cells.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from percell import layout
from percell.contracts import (
    Channel,
    ImportedRegion,
    MaskRun,
    Measured,
    MeasuredRegion,
    MeasureParams,
    RegisterParams,
    SegmentationRun,
    Segmented,
    SegmentedRegion,
    Thresholded,
    ThresholdedRegion,
    ThresholdRun,
    TimepointSpec,
)
from percell.measure import METRICS
from percell.register import StepSentinels, register
from percell.sentinel import write_sentinel

CHANNELS = ["DAPI", "GFP", "RFP"]
RUNS = [
    ThresholdRun(name="GFP", channel="GFP", method="otsu", min_fraction=0.5),
    ThresholdRun(name="RFP", channel="RFP", method="li", min_fraction=0.5),
]
SEGMENTATION = SegmentationRun(
    channel="DAPI", model_name="watershed", parameters={"d": 16}
)


def params() -> RegisterParams:
    return RegisterParams(
        name="bench",
        description="",
        channels=tuple(Channel(name=c) for c in CHANNELS),
        conditions=("ctrl",),
        timepoints=(TimepointSpec(name="t0", time_seconds=0, order=0),),
        threshold_runs=tuple(r.name for r in RUNS),
        busy_timeout_s=30,
    )


def stage_region(exp: Path, i: int, n_cells: int, run_values: dict) -> dict:
    """Write one region's staged outputs (one region per group); its sentinels."""
    rng = np.random.default_rng(i)
    region, group = f"r{i:04d}", f"ctrl/t0/r{i:04d}"
    key = group
    sentinel = {
        step: Path(layout.sentinel_path(exp, step, group))
        for step in ("import", "segment", "measure")
    }
    record = ImportedRegion(
        condition="ctrl",
        timepoint="t0",
        region=region,
        key=key,
        zarr_path=f"images.zarr/{key}",
        shape=(3, 4096, 4096),
        dtype="uint16",
        pixel_size_um=0.65,
        z_step_um=None,
        source_file=f"/raw/{region}_DAPI.tif",
        source_files=tuple(f"/raw/{region}_{c}.tif" for c in CHANNELS),
    )
    write_sentinel(sentinel["import"], "import", group, {}, [], [record])

    labels = np.arange(1, n_cells + 1)
    cells = pd.DataFrame(
        {
            "key": key,
            "label_value": labels,
            "centroid_x": rng.random(n_cells) * 4096,
            "centroid_y": rng.random(n_cells) * 4096,
            "bbox_x": rng.integers(0, 4000, n_cells),
            "bbox_y": rng.integers(0, 4000, n_cells),
            "bbox_w": rng.integers(5, 30, n_cells),
            "bbox_h": rng.integers(5, 30, n_cells),
            "area_pixels": rng.integers(20, 500, n_cells).astype(float),
            "area_um2": rng.random(n_cells) * 100,
            "perimeter": rng.random(n_cells) * 80,
            "circularity": rng.random(n_cells),
        }
    )
    seg = sentinel["segment"]
    seg.parent.mkdir(parents=True, exist_ok=True)
    cells.to_parquet(seg.with_name(seg.stem + ".cells.parquet"), index=False)
    empty = pd.DataFrame({"key": [], "old_label": [], "new_label": [], "iou": []})
    empty.to_parquet(seg.with_name(seg.stem + ".matches.parquet"), index=False)
    outputs = Segmented(
        regions=(
            SegmentedRegion(
                key=key,
                cells=n_cells,
                labels=f"labels.zarr/{key}",
                labels_digest=f"labels-{i}",
                previous_digest=None,
            ),
        ),
        cells_table=seg.stem + ".cells.parquet",
        matches_table=seg.stem + ".matches.parquet",
        run=SEGMENTATION,
    )
    write_sentinel(seg, "segment", group, {}, [], outputs)

    thresholds = []
    for run in RUNS:
        path = Path(layout.sentinel_path(exp, f"threshold/{run.name}", group))
        value = run_values[run.name]
        region_out = ThresholdedRegion(
            key=key, scope_key=key, value=value, raw_value=value, pixels_on=1000
        )
        done = Thresholded(run=run, regions=(region_out,))
        write_sentinel(path, "threshold", group, run, [], done)
        thresholds.append(str(path))

    meas = sentinel["measure"]
    meas.parent.mkdir(parents=True, exist_ok=True)
    wide = pd.DataFrame({"key": key, "label_value": labels})
    values = rng.random((n_cells, len(CHANNELS) * len(METRICS))) * 1000
    for j, (c, m) in enumerate((c, m) for c in CHANNELS for m in METRICS):
        wide[f"{c}|{m}"] = values[:, j]
    wide.to_parquet(meas.with_name(meas.stem + ".measurements.parquet"), index=False)
    masks = []
    for run in RUNS:
        # the mask statistics depend on the run's value
        shift = run_values[run.name] / 1000
        fraction = np.clip(rng.random(n_cells) + shift, 0, 1)
        masks.append(
            pd.DataFrame(
                {
                    "key": key,
                    "run": run.name,
                    "label_value": labels,
                    "pixels_inside": (fraction * 100).astype(np.int64),
                    "fraction_inside": fraction,
                    "mean_inside": rng.random(n_cells) * 1000,
                    "mean_outside": rng.random(n_cells) * 1000,
                    "positive": (fraction >= 0.5).astype(np.int64),
                }
            )
        )
    pd.concat(masks).to_parquet(
        meas.with_name(meas.stem + ".masks.parquet"), index=False
    )
    measure_out = Measured(
        regions=(MeasuredRegion(key=key, cells=n_cells),),
        measurements=meas.stem + ".measurements.parquet",
        masks=meas.stem + ".masks.parquet",
    )
    measure_params = MeasureParams(
        channels=tuple(CHANNELS),
        runs=tuple(
            MaskRun(name=r.name, channel=r.channel, min_fraction=r.min_fraction)
            for r in RUNS
        ),
    )
    write_sentinel(meas, "measure", group, measure_params, [], measure_out)
    return {
        "import": str(sentinel["import"]),
        "segment": str(seg),
        "threshold": thresholds,
        "measure": str(meas),
    }


def sentinels_of(staged: list[dict]) -> StepSentinels:
    return StepSentinels(
        imported=[s["import"] for s in staged],
        segmented=[s["segment"] for s in staged],
        thresholded=[t for s in staged for t in s["threshold"]],
        measured=[s["measure"] for s in staged],
    )


def timed_register(exp: Path, staged: list[dict]) -> tuple[float, dict]:
    start = time.perf_counter()
    counts = register(
        params(), sentinels_of(staged), layout.sentinel_path(exp, "register", "all")
    )
    return time.perf_counter() - start, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--regions", type=int, default=50)
    parser.add_argument("--cells", type=int, default=20_000)
    args = parser.parse_args()
    values = {"GFP": 100.0, "RFP": 200.0}
    with tempfile.TemporaryDirectory(prefix="percell-bench-register-") as tmp:
        exp = Path(tmp) / "bench.percell"
        exp.mkdir()
        t0 = time.perf_counter()
        staged = [stage_region(exp, i, args.cells, values) for i in range(args.regions)]
        total = args.regions * args.cells
        print(
            f"staged {args.regions} regions x {args.cells} cells = {total:,} cells, "
            f"{total * len(CHANNELS) * len(METRICS):,} measurement rows "
            f"({time.perf_counter() - t0:.0f} s)"
        )

        t_full, counts = timed_register(exp, staged)
        print(f"  anchor, full build:          {t_full:7.2f} s  {counts}")

        staged.append(stage_region(exp, args.regions, args.cells, values))
        t_add, counts = timed_register(exp, staged)
        print(
            f"  one region added:            {t_add:7.2f} s  "
            f"({t_full / t_add:.0f}x faster than the anchor) {counts}"
        )

        changed = {**values, "GFP": 150.0}
        for i in range(len(staged)):
            staged[i] = stage_region(exp, i, args.cells, changed)
        t_run, counts = timed_register(exp, staged)
        print(
            f"  one threshold run changed:   {t_run:7.2f} s  "
            f"({t_full / t_run:.0f}x faster than the anchor) {counts}"
        )

        t_none, counts = timed_register(exp, staged)
        print(
            f"  nothing changed:             {t_none:7.2f} s  "
            f"({t_full / t_none:.0f}x faster than the anchor)"
        )
        conn = sqlite3.connect(exp / layout.DATABASE)
        n = conn.execute("SELECT count(*) FROM cells").fetchone()[0]
        ids = conn.execute("SELECT min(id), max(id) FROM cells").fetchone()
        conn.close()
        print(
            f"  cells in the database: {n:,}, ids {ids[0]}..{ids[1]} (never renumbered)"
        )
        verdict = "met" if max(t_add, t_run) < 5 else "NOT met"
        print(f"  target (added region and changed run < 5 s): {verdict}")
        print(json.dumps({"full": t_full, "add": t_add, "run": t_run, "none": t_none}))


if __name__ == "__main__":
    main()
