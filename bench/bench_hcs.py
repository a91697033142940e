"""Benchmark: stitch and pyramid one plate well, field by field.

Run from the repository root:

    python bench/bench_hcs.py                  # 4x4 fields of 2160x2560, 3 channels
    python bench/bench_hcs.py --field 540 640  # quick look

In one run, from the same 4×4 fields × 3 channels of uint16 TIFFs
(MetaXpress names, a 3 × 1 × 8640 × 10240 well), it writes the stitched well
with its pyramid down to one field-sized chunk two ways, each in its own
process so that peak memory is measured separately:

- percell: ``import_group`` then ``pyramid_group`` on the well region that
  ``percell.wells.plate_regions`` finds (what the workflow runs);
- ome-zarr-py (the anchor): the fields read with tifffile and placed into
  one (C, Z, Y, X) array, then ``ome_zarr.writer.write_image`` with NGFF
  0.4, chunks of one field and the same number of levels, on ``--threads``
  dask threads; once with its default codec and once (``*``) with
  percell's.

It prints MB/s (level-0 megabytes per second of wall time, reading
included), peak RSS, percell's speed as a ratio to ome-zarr-py, and
percell's peak RSS against 4 fields × channels. Targets: ratio >= 2, peak
RSS below 4 fields × channels.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_import import (
    import_then_pyramid,
    ome_zarr_write,
    peak_rss_mb,
    print_ratios,
    print_table,
    run_child,
)

CHANNELS = ("DAPI", "GFP", "RFP")


def make_fields(directory: Path, grid: int, field: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for f in range(1, grid * grid + 1):
        for c in range(1, len(CHANNELS) + 1):
            plane = rng.normal(1000, 200, field).clip(0, 65535).astype(np.uint16)
            tifffile.imwrite(directory / f"B03_s{f}_w{c}.tif", plane)


def plate(directory: Path, grid: int) -> dict:
    return {
        "name": "bench",
        "directory": str(directory),
        "pattern": "metaxpress",
        "channel_map": {},
        "grid": {"rows": grid, "columns": grid, "order": "row-major", "overlap": 0},
        "positions": None,
        "plate_map": None,
        "missing_fields": "refuse",
        "demo": None,
    }


def run_percell(src: Path, out: Path, grid: int, threads: int) -> None:
    from percell.contracts import Channel, ImportParams, PlateInput
    from percell.wells import plate_regions

    plate_input = PlateInput.model_validate(plate(src, grid))
    params = ImportParams(
        group="bench/B03",
        regions=tuple(plate_regions(plate_input, list(CHANNELS))),
        channels=tuple(Channel(name=n) for n in CHANNELS),
        pixel_size_um=0.65,
        z_step_um=None,
    )
    import_then_pyramid(params, out, threads)


def n_levels(height: int, width: int, field: tuple[int, int]) -> int:
    from percell.pyramid import levels_to_one_chunk

    return levels_to_one_chunk(height, width, field)


def run_ome_zarr(
    src: Path, out: Path, grid: int, threads: int, same_codec: bool = False
) -> None:
    fy, fx = tifffile.imread(src / "B03_s1_w1.tif").shape
    well = np.zeros((len(CHANNELS), 1, grid * fy, grid * fx), np.uint16)
    for f in range(grid * grid):
        r, c = divmod(f, grid)
        for ch in range(len(CHANNELS)):
            well[ch, 0, r * fy : (r + 1) * fy, c * fx : (c + 1) * fx] = tifffile.imread(
                src / f"B03_s{f + 1}_w{ch + 1}.tif"
            )
    n = n_levels(*well.shape[-2:], (fy, fx))
    ome_zarr_write(
        well, out / "well.zarr", "czyx", n, (1, 1, fy, fx), threads, same_codec
    )


def run_ome_zarr_same_codec(src: Path, out: Path, grid: int, threads: int) -> None:
    run_ome_zarr(src, out, grid, threads, same_codec=True)


RUNNERS = {
    "percell": run_percell,
    "ome-zarr-py": run_ome_zarr,
    "ome-zarr-py*": run_ome_zarr_same_codec,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--field", type=int, nargs=2, default=(2160, 2560))
    parser.add_argument("--grid", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", choices=sorted(RUNNERS))
    parser.add_argument("--src", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        start = time.perf_counter()
        RUNNERS[args.child](args.src, args.out, args.grid, args.threads)
        elapsed = time.perf_counter() - start
        print(json.dumps({"seconds": elapsed, "peak_rss_mb": peak_rss_mb()}))
        return

    fy, fx = args.field
    work = Path(tempfile.mkdtemp(prefix="percell-bench-hcs-", dir=args.workdir))
    try:
        src = work / "fields"
        make_fields(src, args.grid, (fy, fx))
        shape = (len(CHANNELS), 1, args.grid * fy, args.grid * fx)
        level0_mb = np.prod(shape) * 2 / 1e6
        four_fields_mb = 4 * len(CHANNELS) * fy * fx * 2 / 1e6
        results = {}
        for which in ("ome-zarr-py", "ome-zarr-py*", "percell"):
            out = work / which
            results[which] = run_child(
                __file__,
                which,
                *("--src", str(src), "--out", str(out), "--grid", str(args.grid)),
                *("--threads", str(args.threads)),
            )
            shutil.rmtree(out, ignore_errors=True)
        print(
            f"well {'x'.join(map(str, shape))} uint16 ({level0_mb:.0f} MB) from "
            f"{args.grid}x{args.grid} fields of {fy}x{fx}, "
            f"{n_levels(shape[-2], shape[-1], (fy, fx))} levels, "
            f"{args.threads} threads"
        )
        print_table(results, level0_mb)
        print_ratios(results, args.threads)
        print(
            f"percell peak RSS: {results['percell']['peak_rss_mb']:.0f} MB against "
            f"4 fields x {len(CHANNELS)} channels = {four_fields_mb:.0f} MB "
            "(target: below)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
