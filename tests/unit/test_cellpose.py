"""Cellpose 3 through the adapter: a model trained here, version checks, errors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("cellpose")

from percell.cellpose_adapter import (
    CellposeSegmenter,
    cellpose_major,
    cpnet_nbase,
    resolve_model,
)
from percell.config import load_config
from percell.contracts import SegmentationSettings
from percell.demo import synthetic_cells
from percell.errors import ModelError
from tests.segmentation_support import matched_f1

pytestmark = pytest.mark.skipif(cellpose_major() != 3, reason="cellpose 3 tests")


def settings(model, **extra) -> SegmentationSettings:
    cfg = load_config(
        {
            "experiment": {"name": "x", "path": "x.percell"},
            "input": {"sample_sheet": "s.tsv"},
            "channels": [{"name": "DAPI"}],
            "segmentation": {
                "channel": "DAPI",
                "method": "cellpose",
                "model": str(model),
                "diameter": 16,
                **extra,
            },
        }
    )
    assert cfg.segmentation is not None
    return cfg.segmentation.settings()


def test_trained_model_resolves_and_loads(tiny_model):
    import torch

    resolved = resolve_model(str(tiny_model))
    assert resolved.path == str(tiny_model.resolve())
    assert len(resolved.sha256) == 64
    state = torch.load(tiny_model, map_location="cpu", weights_only=True)
    assert cpnet_nbase(state) == [2, 8, 16, 32, 256]


def test_trained_model_finds_held_out_nuclei(tiny_model):
    seg = CellposeSegmenter(
        resolve_model(str(tiny_model)), settings(tiny_model), 16.0, has_nucleus=False
    )
    for seed in range(2):
        dapi, _, _, truth = synthetic_cells(
            (384, 384), np.random.default_rng(2000 + seed)
        )
        labels = seg(dapi[np.newaxis])
        assert labels.dtype == np.int32
        assert matched_f1(truth, labels) >= 0.9


def test_cellpose4_checkpoint_is_refused_with_the_version_it_needs(tmp_path):
    import torch

    path = tmp_path / "cpsam_like.pth"
    torch.save(
        {"W2": torch.zeros(2), "encoder.patch_embed.proj.weight": torch.zeros(1)}, path
    )
    with pytest.raises(ModelError, match=r"Cellpose 4 model.*needs cellpose>=4"):
        resolve_model(str(path))


def test_cpsam_name_needs_cellpose4():
    with pytest.raises(ModelError, match="'cpsam' needs Cellpose 4"):
        resolve_model("cpsam")


def test_unknown_name():
    with pytest.raises(ModelError, match="unknown cellpose model 'cyto9'"):
        resolve_model("cyto9")


def test_missing_model_file():
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model("/nowhere/model.pth")


def test_unreachable_builtin_model_says_how_to_provide_it(tmp_path):
    """Offline (as here and on most clusters) a built-in model cannot be fetched."""
    code = "from percell.cellpose_adapter import resolve_model; resolve_model('nuclei')"
    env = {**os.environ, "CELLPOSE_LOCAL_MODELS_PATH": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if proc.returncode == 0:
        pytest.skip("this machine can download cellpose models")
    err = proc.stderr
    assert "cellpose model 'nuclei'" in err
    assert str(tmp_path / "cache") in err
    assert "CELLPOSE_LOCAL_MODELS_PATH" in err and "segmentation.model" in err
    assert not list((tmp_path / "cache").glob("nuclei*"))
