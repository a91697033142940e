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
from percell.contracts import PyramidParams
from percell.demo import synthetic_cells
from percell.importer import import_group
from percell.layout import sentinel_path
from percell.manifest import build_manifest
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
        (work / "sheet.tsv").write_text(
            f"condition\tregion\tchannel\tpath\nc\tr\tDAPI\t{src}\n"
        )
        exp = work / "b.percell"
        # the workflow's own path: config → manifest → the steps' typed params
        manifest = build_manifest(
            {
                "experiment": {"name": "bench", "path": str(exp)},
                "input": {"sample_sheet": str(work / "sheet.tsv")},
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
        seg = manifest.segmentation
        assert seg is not None
        records = import_group(
            manifest.import_params("c"), sentinel_path(exp, "import", "c")
        )
        pyramid_group(
            records,
            params=PyramidParams(),
            sentinel=sentinel_path(exp, "pyramid", "c"),
            group="c",
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
                flow_threshold=seg.flow_threshold,
                cellprob_threshold=seg.cellprob_threshold,
                min_size=seg.min_size,
                batch_size=seg.batch_size,
            )[0]
            bare.append(time.perf_counter() - start)

            start = time.perf_counter()
            out = segment_group(
                records,
                settings=seg,
                channels=manifest.channel_names,
                sentinel=sentinel_path(exp, "segment", "c"),
                group="c",
                model=resolved,
            )
            ours.append(time.perf_counter() - start)
        b, o = min(bare), min(ours)
        print(
            f"image {args.size}x{args.size}, {int(masks.max())} cells (bare), "
            f"{out.regions[0].cells} cells (percell); best of {args.repeat}"
        )
        print(f"bare CellposeModel.eval: {b:7.2f} s")
        print(f"percell segment job:     {o:7.2f} s")
        print(f"overhead: {100 * (o - b) / b:+.1f} % (target <= 10 %)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
