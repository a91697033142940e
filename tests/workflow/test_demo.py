"""The default config (the README's first command) runs the demo end to end."""

from __future__ import annotations

import shutil
import sqlite3

import zarr
from ome_zarr_models.v04 import Image

from tests.conftest import REPO, run_workflow


def test_default_config_demo(tmp_path):
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config/config.yaml", tmp_path / "config/config.yaml")
    run_workflow(tmp_path, configfile="config/config.yaml")
    exp = tmp_path / "results/demo.percell"
    conn = sqlite3.connect(exp / "experiment.db")
    regions = conn.execute(
        "SELECT name, width, height, zarr_path FROM regions"
    ).fetchall()
    assert len(regions) == 8  # 2 conditions × 2 timepoints × 2 regions
    assert max(r[1] for r in regions) == 4096
    for _, width, _, zarr_path in regions:
        image = Image.from_zarr(zarr.open_group(str(exp / zarr_path), mode="r"))
        levels = len(image.attributes.multiscales[0].datasets)
        assert levels == (4 if width == 4096 else 2)  # down to one 512×512 chunk
    channels = conn.execute("SELECT name FROM channels ORDER BY display_order")
    assert [c[0] for c in channels] == ["DAPI", "GFP", "RFP"]
