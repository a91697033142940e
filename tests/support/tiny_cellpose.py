"""A tiny Cellpose 3 model trained on synthetic nuclei, cached between runs.

Cellpose's built-in weights come from a hub that CI cannot reach, so the tests
(and the segmentation benchmark) train their own model with cellpose's own
training API on the same synthetic nuclei the demo draws. A reduced network
(nbase [2, 8, 16, 32, 256]) trains in a few minutes on 2 CPU cores; the file is
cached under ~/.cache/percell, keyed by the training settings.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from percell.demo import synthetic_cells

NBASE = [2, 8, 16, 32, 256]
SETTINGS = {
    "nbase": NBASE,
    "n_images": 24,
    "size": 256,
    "epochs": 60,
    "lr": 0.1,
    "batch": 8,
    "bsize": 128,
    "seed": 1,
    "version": 4,
}
#: the nucleus model's diameter (kept out of SETTINGS: its cache key stays)
SETTINGS_DIAMETER = 17.0
#: the cell model: cells of the demo are about twice the nucleus diameter
CELL_SETTINGS = {**SETTINGS, "diam_mean": 30.0, "kind": "cells"}
#: GFP above this (background 150, cytoplasm 1,650) is a cell
CELL_GFP_LEVEL = 600


def training_images(n: int, size: int, seed: int):
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n):
        dapi, _, _, lab = synthetic_cells((size, size), rng)
        images.append(dapi.astype(np.float32))
        labels.append(lab)
    return images, labels


def cell_training_images(n: int, size: int, seed: int):
    """(GFP, DAPI) pairs and whole-cell labels: each nucleus grown into the
    cytoplasm it sits in (the demo's cells reach about twice its radius)."""
    from skimage.segmentation import expand_labels

    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n):
        dapi, gfp, _, nuclei = synthetic_cells((size, size), rng)
        inside = (gfp > CELL_GFP_LEVEL) | (nuclei > 0)
        images.append(np.stack([gfp, dapi]).astype(np.float32))
        labels.append(np.where(inside, expand_labels(nuclei, 12), 0))
    return images, labels


def cache_dir() -> Path:
    root = Path(
        os.environ.get("PERCELL_TEST_CACHE", Path.home() / ".cache" / "percell")
    )
    root.mkdir(parents=True, exist_ok=True)
    return root


def tiny_model_path() -> Path:
    """Path of the trained nucleus model, training it first if it is not cached."""
    return _trained("tiny-cellpose3", SETTINGS, training_images, [0, 0], None)


def tiny_cell_model_path() -> Path:
    """Path of the trained cell model (cytoplasm + nucleus channels)."""
    return _trained("tiny-cells3", CELL_SETTINGS, cell_training_images, [1, 2], 0)


def _trained(name, settings, make_images, channels, channel_axis) -> Path:
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    target = cache_dir() / f"{name}-{key}"
    if target.is_file():
        return target
    # the test workers (pytest-xdist) may all ask at once: one trains, the
    # others wait for its file
    with open(cache_dir() / f"{name}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_file():
            _train(target, key, settings, make_images, channels, channel_axis)
    return target


def _train(target, key, settings, make_images, channels, channel_axis) -> None:
    import torch
    from cellpose import models, resnet_torch, train

    torch.manual_seed(settings["seed"])
    images, labels = make_images(
        settings["n_images"], settings["size"], settings["seed"]
    )
    diameter = settings.get("diam_mean", SETTINGS_DIAMETER)
    model = models.CellposeModel(
        gpu=False, pretrained_model=False, nchan=2, diam_mean=diameter
    )
    model.net = resnet_torch.CPnet(
        settings["nbase"],
        3,
        sz=3,
        mkldnn=model.mkldnn,
        max_pool=True,
        diam_mean=diameter,
    ).to(model.device)
    work = cache_dir() / f"train-{key}"
    (work / "models").mkdir(parents=True, exist_ok=True)
    path = train.train_seg(
        model.net,
        train_data=images,
        train_labels=labels,
        channels=channels,
        channel_axis=channel_axis,
        normalize=True,
        n_epochs=settings["epochs"],
        learning_rate=settings["lr"],
        batch_size=settings["batch"],
        save_path=str(work),
        model_name="tiny",
        min_train_masks=1,
        bsize=settings["bsize"],
    )
    path = Path(path[0] if isinstance(path, tuple) else path)
    tmp = target.with_suffix(".partial")
    tmp.write_bytes(path.read_bytes())
    tmp.replace(target)


def load_tiny(path: Path):
    """A trained tiny model as a plain ``cellpose.models.CellposeModel``, to
    run cellpose's own ``eval`` beside the workflow."""
    from cellpose import models, resnet_torch

    model = models.CellposeModel(gpu=False, pretrained_model=False)
    net = resnet_torch.CPnet(NBASE, 3, sz=3, mkldnn=model.mkldnn, max_pool=True)
    net.load_model(str(path), device=model.device)
    model.net = net.to(model.device)
    model.diam_mean = float(net.diam_mean.item())
    model.diam_labels = float(net.diam_labels.item())
    return model


if __name__ == "__main__":
    print(tiny_model_path())
    print(tiny_cell_model_path())
