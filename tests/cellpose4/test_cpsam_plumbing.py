"""Cellpose 4 (cpsam) through the same adapter — plumbing only.

Runs in its own environment with cellpose>=4 (CI: ``.ci/run`` builds it);
skipped where cellpose 3 is installed. Cellpose 4 cannot train from scratch
and its weights come from a hub, so the model here is a randomly initialised
CPSAM checkpoint: the test proves it loads from a path, evaluates a small
image and that int32 labels are written, not that it segments well.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

cellpose = pytest.importorskip("cellpose")

from percell.cellpose_adapter import (  # noqa: E402
    cellpose_major,
    model_generation,
    resolve_model,
)
from percell.errors import ModelError  # noqa: E402

pytestmark = pytest.mark.skipif(cellpose_major() < 4, reason="needs cellpose 4")


@pytest.fixture(scope="module")
def random_cpsam(tmp_path_factory):
    import torch

    try:  # cellpose >= 4.1
        from cellpose.vit import CPSAM as Network
    except ImportError:  # cellpose 4.0
        from cellpose.vit_sam import Transformer as Network

    torch.manual_seed(0)
    net = Network()
    path = tmp_path_factory.mktemp("cpsam") / "random_cpsam.pth"
    # bfloat16 halves the file; load_state_dict casts back to the net's dtype
    torch.save(
        {
            k: v.to(torch.bfloat16) if v.is_floating_point() else v
            for k, v in net.state_dict().items()
        },
        path,
    )
    return path


def test_random_checkpoint_is_recognised_as_cellpose4(random_cpsam):
    import torch

    state = torch.load(random_cpsam, map_location="cpu", weights_only=True)
    assert model_generation(state) == 4
    assert resolve_model(str(random_cpsam)).path == str(random_cpsam.resolve())


def test_cellpose3_file_is_refused_by_cellpose4(tmp_path):
    import torch

    path = tmp_path / "cp3.pth"
    torch.save(
        {"downsample.down.res_down_0.proj.1.weight": torch.zeros(8, 2, 1, 1)}, path
    )
    with pytest.raises(ModelError, match=r"Cellpose 3 model.*needs cellpose 3"):
        resolve_model(str(path))


def test_cellpose3_builtin_name_is_refused():
    with pytest.raises(ModelError, match="'cyto3' is a Cellpose 3 built-in"):
        resolve_model("cyto3")


@pytest.mark.parametrize("cells", [None, "cellpose"])
def test_segment_group_writes_int32_labels(random_cpsam, tmp_path, cells):
    """cells: cellpose gives cpsam the (GFP, DAPI) tile for the cells as well."""
    import tifffile

    from percell.contracts import PyramidParams
    from percell.importer import import_group
    from percell.layout import sentinel_path
    from percell.manifest import build_manifest
    from percell.pyramid import pyramid_group
    from percell.segmentation import segment_group
    from percell.storage import open_group

    rng = np.random.default_rng(0)
    rows = []
    for channel in ("DAPI", "GFP"):
        img = rng.integers(0, 4000, (160, 200)).astype(np.uint16)
        tifffile.imwrite(tmp_path / f"{channel}.tif", img)
        rows.append(f"c\tr\t{channel}\t{tmp_path / channel}.tif")
    (tmp_path / "sheet.tsv").write_text(
        "condition\tregion\tchannel\tpath\n" + "\n".join(rows) + "\n"
    )
    exp = tmp_path / "e.percell"
    segmentation = {
        "method": "cellpose",
        "model": str(random_cpsam),
        "channel": "DAPI",
        "diameter": 30,
        "gpu": False,
    }
    if cells:
        segmentation["compartments"] = {
            "cells": cells,
            "channel": "GFP",
            "model": str(random_cpsam),
        }
    # the workflow's own path: config → manifest → the step's typed params
    manifest = build_manifest(
        {
            "experiment": {"name": "x", "path": str(exp)},
            "input": {"sample_sheet": str(tmp_path / "sheet.tsv")},
            "channels": [{"name": "DAPI"}, {"name": "GFP"}],
            "pixel_size_um": 0.5,
            "segmentation": segmentation,
        }
    )
    assert manifest.segmentation is not None
    records = import_group(
        manifest.import_params("c"), sentinel_path(exp, "import", "c")
    )
    pyramid_group(
        records,
        params=PyramidParams(),
        sentinel=sentinel_path(exp, "pyramid", "c"),
        group="c",
    )
    out = segment_group(
        records,
        settings=manifest.segmentation,
        channels=manifest.channel_names,
        sentinel=sentinel_path(exp, "segment", "c"),
        group="c",
        model=resolve_model(str(random_cpsam)),
        threads=2,
        cells_model=resolve_model(str(random_cpsam)) if cells else None,
    )
    labels = open_group(exp / "labels.zarr/c/r")["0"]
    assert labels.dtype == np.int32 and labels.shape == (160, 200)
    assert out.regions[0].cells == len(np.unique(labels[:])) - 1
    sentinel = json.loads((exp / ".workflow/segment/c.json").read_text())
    assert sentinel["versions"]["cellpose"].startswith("4")
    assert os.path.isfile(exp / ".workflow/segment/c.cells.parquet")
    if cells:
        assert sentinel["params"]["cells_model"]["path"] == str(random_cpsam.resolve())
        for name in ("nucleus", "cytoplasm"):
            layer = open_group(exp / "labels.zarr/c/r/labels" / name)["0"]
            assert layer.dtype == np.int32 and layer.shape == (160, 200)
