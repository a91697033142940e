"""Benchmark: per-cell shape features against scikit-image's regionprops.

Run from the repository root:

    python bench/bench_shape.py            # a 4096×4096 label image
    python bench/bench_shape.py --size 2048

The segment step measures every cell's geometry and shape (area, centroid,
box, perimeter, circularity, eccentricity, solidity, axis lengths,
orientation, extent) with ``percell.cells.cell_table``. The anchor is
``skimage.measure.regionprops_table`` computing the same properties on the
same label image, in the same process, one thread each: touching cells grown
from the synthetic nuclei of ``percell.demo.synthetic_cells``. Both results
are checked equal before the times are printed (bit for bit, the inertia
features to 1e-12: percell's come from exact moments). Best of three runs each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skimage.measure import regionprops_table

from percell.cells import SHAPE_COLUMNS, cell_table
from percell.demo import synthetic_cells
from tests.segmentation_support import (
    REGIONPROPS_PROPERTIES,
    assert_cell_table_equals_regionprops,
)

PROPERTIES = (*REGIONPROPS_PROPERTIES, *SHAPE_COLUMNS)


def best_of(runs: int, run):
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    size = parser.parse_args().size
    _, _, _, nuclei = synthetic_cells((size, size), np.random.default_rng(0))
    # cells: every pixel within 12 px of a nucleus joins its nearest one
    distance, (iy, ix) = ndimage.distance_transform_edt(
        nuclei == 0, return_indices=True
    )
    cells = np.where(distance <= 12, nuclei[iy, ix], 0).astype(np.int32)
    cell_table(cells[:64, :64], 1.0)  # load the compiled kernels once
    ours, table = best_of(3, lambda: cell_table(cells, 1.0))
    anchor, ref = best_of(3, lambda: regionprops_table(cells, properties=PROPERTIES))
    assert_cell_table_equals_regionprops(table, ref, SHAPE_COLUMNS)
    print(f"{len(table):,} cells on a {size}×{size} label image, 1 thread, best of 3")
    print(f"  percell cell_table          {ours:7.3f} s")
    print(f"  skimage regionprops_table   {anchor:7.3f} s")
    print(f"  ratio (regionprops / percell): {anchor / ours:.1f}x, values equal")


if __name__ == "__main__":
    main()
