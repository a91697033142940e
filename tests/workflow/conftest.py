"""Fixtures shared by the workflow tests: a finished, measured experiment."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from percell.demo import synthetic_cells
from tests.conftest import base_config, copy_run, run_workflow, write_config

REGIONS = [("ctrl", "t0", "r1"), ("ctrl", "t0", "r2"), ("drug", "t0", "r1")]
THRESHOLDS = [
    {"channel": "GFP", "method": "otsu", "scope": "experiment"},
    {
        "name": "GFPli",
        "channel": "GFP",
        "method": "li",
        "sigma": 1.5,
        "scope": "region",
        "correction": 1.1,
        "min_fraction": 0.2,
    },
]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    root = tmp_path_factory.mktemp("measured")
    rows, pixels = [], {}
    for i, (cond, tp, region) in enumerate(REGIONS):
        dapi, gfp, _, _ = synthetic_cells(
            (600, 700),
            np.random.default_rng(70 + i),
            signal_scale=1.0 + (cond == "drug"),
        )
        for ch, img in (("DAPI", dapi), ("GFP", gfp)):
            path = root / "raw" / f"{cond}_{tp}_{region}_{ch}.tif"
            path.parent.mkdir(exist_ok=True)
            tifffile.imwrite(path, img)
            pixels[(cond, tp, region, ch)] = img
            rows.append(f"{cond}\t{tp}\t{region}\t{ch}\t{path}")
    sheet = root / "samples.tsv"
    sheet.write_text("condition\ttimepoint\tregion\tchannel\tpath\n" + "\n".join(rows))
    work = root / "work"
    work.mkdir()
    write_config(
        work,
        base_config(
            {"sample_sheet": str(sheet)},
            segmentation={"channel": "DAPI", "diameter": 16, "min_size": 30},
            thresholds=[dict(t) for t in THRESHOLDS],
        ),
    )
    run_workflow(work)
    return {"work": work, "experiment": work / "out/exp.percell", "pixels": pixels}


@pytest.fixture
def measured_copy(measured, tmp_path):
    return copy_run(measured, tmp_path)
