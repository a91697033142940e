"""Benchmark: the segment job against a bare ``CellposeModel.eval``.

Run from the repository root:

    python bench/bench_segment.py              # 2048×2048 synthetic nuclei
    python bench/bench_segment.py --size 1024

In one run, on the same image and with the same model (the tiny Cellpose 3
model the tests train, cached under ~/.cache/percell):

- bare: load the model and call ``CellposeModel.eval`` on the image array;
- percell: the segment job's work — load the model, read level 0 from
  images.zarr, segment (one tile, since the tile size covers the image),
  write int32 labels and their pyramid, measure cells, stage them, write the
  sentinel.

Prints both wall times and the overhead (target ≤ 10 %).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from percell.cellpose_adapter import CellposeSegmenter, resolve_model
from percell.config import validate_config
from percell.demo import synthetic_cells
from percell.importer import import_group
from percell.pyramid import pyramid_group
from percell.segmentation import segment_group
from tests.support.tiny_cellpose import tiny_model_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    model = tiny_model_path()
    work = Path(tempfile.mkdtemp(prefix="percell-bench-seg-"))
    try:
        dapi, _, _, _ = synthetic_cells(
            (args.size, args.size), np.random.default_rng(0)
        )
        src = work / "dapi.tif"
        tifffile.imwrite(src, dapi)
        cfg = validate_config(
            {
                "experiment": {"name": "bench", "path": str(work / "b.percell")},
                "input": {"sample_sheet": "unused.tsv"},
                "channels": [{"name": "DAPI"}],
                "pixel_size_um": 0.5,
                "segmentation": {
                    "method": "cellpose",
                    "model": str(model),
                    "channel": "DAPI",
                    "diameter": 16,
                    "tile_size": max(2048, args.size),
                },
            }
        )
        seg = {k: v for k, v in cfg["segmentation"].items() if k != "resources"}
        exp = work / "b.percell"
        params = {
            "group": "c",
            "channels": cfg["channels"],
            "pixel_size_um": 0.5,
            "z_step_um": None,
            "regions": [
                {
                    "condition": "c",
                    "timepoint": None,
                    "region": "r",
                    "key": "c/r",
                    "files": [{"path": str(src), "channel": "DAPI", "z": None}],
                }
            ],
        }
        records = import_group(params, exp, exp / ".workflow/import/c.json")
        pyramid_group(
            records,
            exp,
            "auto",
            exp / ".workflow/pyramid/c.json",
            "c",
            str(exp / ".workflow/import/c.json"),
        )
        resolved = resolve_model(str(model))

        bare, ours = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            cp = CellposeSegmenter(resolved, seg, 16.0, has_nucleus=False).model
            masks = cp.eval(
                dapi,
                channels=[0, 0],
                diameter=16.0,
                flow_threshold=seg["flow_threshold"],
                cellprob_threshold=seg["cellprob_threshold"],
                min_size=seg["min_size"],
                batch_size=seg["batch_size"],
            )[0]
            bare.append(time.perf_counter() - start)

            start = time.perf_counter()
            out = segment_group(
                records,
                exp,
                seg,
                ["DAPI"],
                exp / ".workflow/segment/c.json",
                "c",
                [],
                resolved,
            )
            ours.append(time.perf_counter() - start)
        b, o = min(bare), min(ours)
        print(
            f"image {args.size}x{args.size}, {int(masks.max())} cells (bare), "
            f"{out[0]['cells']} cells (percell); best of {args.repeat}"
        )
        print(f"bare CellposeModel.eval: {b:7.2f} s")
        print(f"percell segment job:     {o:7.2f} s")
        print(f"overhead: {100 * (o - b) / b:+.1f} % (target <= 10 %)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
