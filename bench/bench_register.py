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

Both experiment formats run in one invocation, each on its own experiment:
3.0.0 (the seeds') and 4.0.0 (the PerCell 3 application today, which also
gets its views: each FOV's image, labels and masks at the paths the
application reads, hard links of small staged arrays). Each prints its time
and the ratio against its own anchor, and the 4.0.0 times against 3.0.0's.
Target: 2 and 3 under 5 s at 1,000,000 cells, in both formats.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numcodecs
import numpy as np
import pandas as pd
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from percell import layout, ngff
from percell.cells import METRICS
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
from percell.register import StepSentinels, register
from percell.sentinel import write_sentinel
from percell.storage import create_array

CHANNELS = ["DAPI", "GFP", "RFP"]
RUNS = [
    ThresholdRun(name="GFP", channel="GFP", method="otsu", min_fraction=0.5),
    ThresholdRun(name="RFP", channel="RFP", method="li", min_fraction=0.5),
]
SEGMENTATION = SegmentationRun(
    channel="DAPI", model_name="watershed", parameters={"d": 16}
)


#: the staged arrays the 4.0.0 views link (the database does not need more)
PIXELS = (64, 64)


def params(fmt: str) -> RegisterParams:
    return RegisterParams(
        format=fmt,
        name="bench",
        description="",
        channels=tuple(Channel(name=c) for c in CHANNELS),
        conditions=("ctrl",),
        timepoints=(TimepointSpec(name="t0", time_seconds=0, order=0),),
        threshold_runs=tuple(r.name for r in RUNS),
        busy_timeout_s=30,
    )


def stage_arrays(exp: Path, key: str) -> None:
    """Small image, labels and mask arrays of a region, NGFF as the workflow
    writes them (what the 4.0.0 views link)."""
    codec = numcodecs.Blosc("zstd", 3)
    attrs = ngff.image_attrs(
        key,
        1,
        0.65,
        None,
        False,
        [Channel(name=c) for c in CHANNELS],
        [(0, 1, 0, 1)] * 3,
    )
    image = zarr.open_group(layout.image_path(exp, key), mode="w", zarr_format=2)
    image.attrs.update(attrs)
    create_array(image, "0", (3, *PIXELS), (1, *PIXELS), "uint16", codec)[...] = 1
    labels = zarr.open_group(layout.label_path(exp, key), mode="w", zarr_format=2)
    labels.attrs.update(ngff.label_attrs(attrs, "../../../images.zarr/" + key))
    create_array(labels, "0", PIXELS, PIXELS, "int32", codec)[...] = 1
    for run in RUNS:
        mask = zarr.open_group(
            layout.mask_path(exp, key, run.name), mode="w", zarr_format=2
        )
        mask.attrs.update(ngff.label_attrs(attrs, "../../../../images.zarr/" + key))
        create_array(mask, "0", PIXELS, PIXELS, "uint8", codec)[...] = 1


def stage_region(
    exp: Path, i: int, n_cells: int, run_values: dict, fmt: str = "3.0.0"
) -> dict:
    """Write one region's staged outputs (one region per group); its sentinels."""
    rng = np.random.default_rng(i)
    region, group = f"r{i:04d}", f"ctrl/t0/r{i:04d}"
    key = group
    if fmt != "3.0.0" and not layout.image_path(exp, key).exists():
        stage_arrays(exp, key)
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
        if fmt != "3.0.0":
            # 4.0.0: every channel's metrics inside and outside the mask
            scoped = masks[-1]
            names = [
                f"{c}|{scope}|{m}"
                for scope in ("mask_inside", "mask_outside")
                for c in CHANNELS
                for m in METRICS
            ]
            values = rng.random((n_cells, len(names))) * 1000 + shift
            masks[-1] = pd.concat([scoped, pd.DataFrame(values, columns=names)], axis=1)
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
        mask_scopes=fmt != "3.0.0",
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


def timed_register(exp: Path, staged: list[dict], fmt: str) -> tuple[float, dict]:
    start = time.perf_counter()
    counts = register(
        params(fmt), sentinels_of(staged), layout.sentinel_path(exp, "register", "all")
    )
    return time.perf_counter() - start, counts


def bench(fmt: str, regions: int, cells: int, tmp: Path) -> dict[str, float]:
    """The four registers on a fresh experiment of format ``fmt``."""
    values = {"GFP": 100.0, "RFP": 200.0}
    exp = tmp / f"bench-{fmt}.percell"
    exp.mkdir()
    t0 = time.perf_counter()
    staged = [stage_region(exp, i, cells, values, fmt) for i in range(regions)]
    total = regions * cells
    print(
        f"schema {fmt}: staged {regions} regions x {cells} cells = {total:,} cells, "
        f"{total * len(CHANNELS) * len(METRICS):,} measurement rows "
        f"({time.perf_counter() - t0:.0f} s)"
    )

    t_full, counts = timed_register(exp, staged, fmt)
    print(f"  anchor, full build:          {t_full:7.2f} s  {counts}")

    staged.append(stage_region(exp, regions, cells, values, fmt))
    t_add, counts = timed_register(exp, staged, fmt)
    print(
        f"  one region added:            {t_add:7.2f} s  "
        f"({t_full / t_add:.0f}x faster than the anchor) {counts}"
    )

    changed = {**values, "GFP": 150.0}
    for i in range(len(staged)):
        staged[i] = stage_region(exp, i, cells, changed, fmt)
    t_run, counts = timed_register(exp, staged, fmt)
    print(
        f"  one threshold run changed:   {t_run:7.2f} s  "
        f"({t_full / t_run:.0f}x faster than the anchor) {counts}"
    )

    t_none, counts = timed_register(exp, staged, fmt)
    print(
        f"  nothing changed:             {t_none:7.2f} s  "
        f"({t_full / t_none:.0f}x faster than the anchor)"
    )
    conn = sqlite3.connect(exp / layout.DATABASE)
    n = conn.execute("SELECT count(*) FROM cells").fetchone()[0]
    ids = conn.execute("SELECT min(id), max(id) FROM cells").fetchone()
    conn.close()
    print(f"  cells in the database: {n:,}, ids {ids[0]}..{ids[1]} (never renumbered)")
    verdict = "met" if max(t_add, t_run) < 5 else "NOT met"
    print(f"  target (added region and changed run < 5 s): {verdict}")
    return {"full": t_full, "add": t_add, "run": t_run, "none": t_none}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--regions", type=int, default=50)
    parser.add_argument("--cells", type=int, default=20_000)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="percell-bench-register-") as tmp:
        for fmt in ("3.0.0", "4.0.0"):
            results[fmt] = bench(fmt, args.regions, args.cells, Path(tmp))
    print("4.0.0 against 3.0.0 (time ratio):")
    for step, t4 in results["4.0.0"].items():
        print(f"  {step:5s} {t4 / results['3.0.0'][step]:5.2f}x")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
