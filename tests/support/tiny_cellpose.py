"""A tiny Cellpose 3 model trained on synthetic nuclei, cached between runs.

Cellpose's built-in weights come from a hub that CI cannot reach, so the tests
(and the segmentation benchmark) train their own model with cellpose's own
training API on the same synthetic nuclei the demo draws. A reduced network
(nbase [2, 8, 16, 32, 256]) trains in a few minutes on 2 CPU cores; the file is
cached under ~/.cache/percell, keyed by the training settings.
"""

from __future__ import annotations

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


def training_images(n: int, size: int, seed: int):
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n):
        dapi, _, _, lab = synthetic_cells((size, size), rng)
        images.append(dapi.astype(np.float32))
        labels.append(lab)
    return images, labels


def cache_dir() -> Path:
    root = Path(
        os.environ.get("PERCELL_TEST_CACHE", Path.home() / ".cache" / "percell")
    )
    root.mkdir(parents=True, exist_ok=True)
    return root


def tiny_model_path() -> Path:
    """Path of the trained model, training it first if it is not cached."""
    key = hashlib.sha256(json.dumps(SETTINGS, sort_keys=True).encode()).hexdigest()[:12]
    target = cache_dir() / f"tiny-cellpose3-{key}"
    if target.is_file():
        return target
    import torch
    from cellpose import models, resnet_torch, train

    torch.manual_seed(SETTINGS["seed"])
    images, labels = training_images(
        SETTINGS["n_images"], SETTINGS["size"], SETTINGS["seed"]
    )
    model = models.CellposeModel(
        gpu=False, pretrained_model=False, nchan=2, diam_mean=17.0
    )
    model.net = resnet_torch.CPnet(
        NBASE, 3, sz=3, mkldnn=model.mkldnn, max_pool=True, diam_mean=17.0
    ).to(model.device)
    work = cache_dir() / f"train-{key}"
    (work / "models").mkdir(parents=True, exist_ok=True)
    path = train.train_seg(
        model.net,
        train_data=images,
        train_labels=labels,
        channels=[0, 0],
        normalize=True,
        n_epochs=SETTINGS["epochs"],
        learning_rate=SETTINGS["lr"],
        batch_size=SETTINGS["batch"],
        save_path=str(work),
        model_name="tiny",
        min_train_masks=1,
        bsize=SETTINGS["bsize"],
    )
    path = Path(path[0] if isinstance(path, tuple) else path)
    tmp = target.with_suffix(".partial")
    tmp.write_bytes(path.read_bytes())
    tmp.replace(target)
    return target


if __name__ == "__main__":
    print(tiny_model_path())
