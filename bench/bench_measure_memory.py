"""Benchmark: measure's peak memory, streamed by bands against the whole image.

Run from the repository root:

    python bench/bench_measure_memory.py              # 3 x 8192 x 8192, ~74k cells
    python bench/bench_measure_memory.py --size 4096  # quicker

Writes (streamed, on disk) a label image of random blobs, 3 uint16 channels
and a mask, then runs ``percell.measure.measure_region`` (what the measure
step runs per region) twice, each in its own process: with its bands (the
default ``BAND_PIXELS``) and with one band holding the whole image (the
anchor: what measure did before it streamed). Prints the time and peak RSS of
each and the ratio of their peak RSS; the two tables are checked equal.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def make(root: Path, size: int) -> int:
    from scipy import ndimage

    from percell.storage import (
        IMAGE_COMPRESSOR,
        LABEL_COMPRESSOR,
        create_array,
        open_group,
    )

    rng = np.random.default_rng(0)
    arrays = {}
    for name, shape, dtype, codec in (
        ("labels", (size, size), np.int32, LABEL_COMPRESSOR),
        ("image", (3, size, size), np.uint16, IMAGE_COMPRESSOR),
        ("mask", (size, size), np.uint8, IMAGE_COMPRESSOR),
    ):
        group = open_group(root / name, mode="w")
        chunks = (1, 512, 512) if len(shape) == 3 else (512, 512)
        arrays[name] = create_array(group, "0", shape, chunks, dtype, codec)
    cells = 0
    for y0 in range(0, size, 1024):
        rows = min(1024, size - y0)
        noise = ndimage.gaussian_filter(rng.random((rows, size), np.float32), 3)
        labels, n = ndimage.label(noise > np.quantile(noise, 0.6))
        labels[labels > 0] += cells
        cells += n
        arrays["labels"][y0 : y0 + rows] = labels.astype(np.int32)
        for c in range(3):
            plane = rng.integers(0, 4000, (rows, size)).astype(np.uint16)
            arrays["image"][c, y0 : y0 + rows] = plane
        on = (rng.random((rows, size)) > 0.5).astype(np.uint8) * 255
        arrays["mask"][y0 : y0 + rows] = on
    return cells


def child(root: Path, whole: bool) -> None:
    from percell.contracts import MaskRun
    from percell.measure import BAND_PIXELS, measure_region
    from percell.storage import array_of, open_group

    labels, image, mask = (
        array_of(open_group(root / name)) for name in ("labels", "image", "mask")
    )
    run = MaskRun(name="r", channel="B", min_fraction=0.5)
    start = time.perf_counter()
    wide, stats = measure_region(
        labels,
        image,
        ["A", "B", "C"],
        [(run, mask)],
        band_pixels=1 << 40 if whole else BAND_PIXELS,
    )
    seconds = time.perf_counter() - start
    wide.to_parquet(root / f"wide-{whole}.parquet")
    stats.to_parquet(root / f"stats-{whole}.parquet")
    rss = next(
        int(line.split()[1]) / 1024
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    )
    print(json.dumps({"seconds": seconds, "peak_rss_mb": rss, "cells": len(wide)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--child", type=Path)
    parser.add_argument("--whole", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.whole)
        return
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="percell-bench-measure-mem-") as tmp:
        root = Path(tmp)
        cells = make(root, args.size)
        results = {}
        for name, whole in (("streamed", False), ("whole image", True)):
            cmd = [sys.executable, __file__, "--child", str(root)]
            out = subprocess.run(
                cmd + (["--whole"] if whole else []),
                capture_output=True,
                text=True,
                check=True,
            )
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        for kind in ("wide", "stats"):
            pd.testing.assert_frame_equal(
                pd.read_parquet(root / f"{kind}-False.parquet"),
                pd.read_parquet(root / f"{kind}-True.parquet"),
            )
    print(f"measure: 3 x {args.size} x {args.size} uint16, {cells} cells, 1 mask")
    for name, r in results.items():
        print(
            f"  {name:<12} {r['seconds']:6.1f} s  peak RSS {r['peak_rss_mb']:6.0f} MB"
        )
    ratio = results["whole image"]["peak_rss_mb"] / results["streamed"]["peak_rss_mb"]
    print(
        f"  streamed peak RSS: {ratio:.1f}x lower than the whole image's (tables equal)"
    )


if __name__ == "__main__":
    main()
