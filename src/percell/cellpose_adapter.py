"""Cellpose 3 and 4 behind one interface: resolve a model, then segment tiles.

Cellpose 3 (CPnet models: cyto3, nuclei, ... or a trained file) takes a
cytoplasm channel plus an optional nucleus channel. Cellpose 4 (cpsam) takes
up to three channels as they are and cannot load Cellpose 3 files, nor the
reverse; each version's files are recognised by their weights, so the error
says which version a model needs.
"""

from __future__ import annotations

import hashlib
import logging
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from percell.contracts import ResolvedModel, SegmentationSettings
from percell.errors import ModelError

log = logging.getLogger(__name__)

#: built-in names of each generation, to say which version a name needs
CP4_BUILTIN = ("cpsam", "cpsam_v2", "cpdino", "cpdino-vitb")
CP3_BUILTIN = (
    "cyto3",
    "nuclei",
    "cyto2",
    "cyto",
    "tissuenet_cp3",
    "livecell_cp3",
    "cyto2_cp3",
    "yeast_PhC_cp3",
    "yeast_BF_cp3",
    "bact_phase_cp3",
    "bact_fluor_cp3",
    "deepbacs_cp3",
    "transformer_cp3",
)
STANDARD_NBASE = [2, 32, 64, 128, 256]


def cellpose_version() -> str | None:
    """The installed cellpose version, or None."""
    try:
        return metadata.version("cellpose")
    except metadata.PackageNotFoundError:
        return None


def cellpose_major() -> int:
    """Major version of the installed cellpose; raises if it is missing."""
    version = cellpose_version()
    if version is None:
        raise ModelError(
            "segmentation.method is cellpose but cellpose is not installed: "
            "pip install 'cellpose>=3.1,<3.2' (cellpose 3) or 'cellpose>=4' (cpsam)"
        )
    return int(version.split(".")[0])


def _state_dict(path: Path) -> dict:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(
            f"cellpose model {path}: cannot be read as model weights "
            f"({type(exc).__name__}: {exc})"
        ) from None


def model_generation(state: dict) -> int:
    """4 for a Cellpose 4 (cpsam, transformer) file, 3 for a CPnet file."""
    if "W2" in state or any(k.startswith("encoder.") for k in state):
        return 4
    if any(k.startswith("downsample.") for k in state):
        return 3
    raise ModelError("not a cellpose model: neither CPnet nor cpsam weights")


def cpnet_nbase(state: dict) -> list[int]:
    """The ``nbase`` a CPnet file was built with (channels per level)."""
    nbase, level = [], 0
    while f"downsample.down.res_down_{level}.proj.1.weight" in state:
        out_ch, in_ch = state[f"downsample.down.res_down_{level}.proj.1.weight"].shape[
            :2
        ]
        if level == 0:
            nbase.append(int(in_ch))
        nbase.append(int(out_ch))
        level += 1
    return nbase


def _check_generation(path: Path, major: int) -> None:
    generation = model_generation(_state_dict(path))
    if generation != major:
        need = "cellpose>=4 (cpsam)" if generation == 4 else "cellpose 3 (>=3.1,<4)"
        raise ModelError(
            f"cellpose model {path} is a Cellpose {generation} model, but cellpose "
            f"{cellpose_version()} is installed; it needs {need}. Cellpose 4 cannot "
            "load Cellpose 3 models, nor the reverse."
        )


def resolve_model(model: str) -> ResolvedModel:
    """Find (or fetch into the cache) the weights of ``model``.

    Args:
        model: A built-in name (cyto3, nuclei, ... for cellpose 3; cpsam for
            cellpose 4) or a path to a model file.

    Returns:
        What segment jobs load: the name, the file, its digest and the
        cellpose version.

    Raises:
        ModelError: unknown name, missing file, wrong cellpose version, or
            weights that are not cached and cannot be downloaded.
    """
    major = cellpose_major()
    path = Path(model).expanduser()
    if path.is_file():
        _check_generation(path, major)
        return _record(model, path)
    if "/" in model or model.endswith((".pth", ".pt")) or path.suffix:
        raise ModelError(f"cellpose model file {model} does not exist")
    from cellpose import models

    cache = Path(models.MODEL_DIR)
    if major >= 4 and model not in CP4_BUILTIN:
        raise ModelError(
            f"cellpose model {model!r} is a Cellpose 3 built-in; cellpose "
            f"{cellpose_version()} (Cellpose 4) only has {', '.join(CP4_BUILTIN)} and "
            "cannot load Cellpose 3 models: install 'cellpose>=3.1,<4' to use it"
        )
    if major < 4 and model in CP4_BUILTIN:
        raise ModelError(
            f"cellpose model {model!r} needs Cellpose 4 (pip install 'cellpose>=4'); "
            f"cellpose {cellpose_version()} is installed"
        )
    if major < 4 and model not in models.MODEL_NAMES:
        raise ModelError(
            f"unknown cellpose model {model!r}: give a file path or one of "
            f"{', '.join(sorted(set(models.MODEL_NAMES)))}"
        )
    try:
        fetched = Path(models.model_path(model))
    except Exception as exc:
        raise ModelError(
            f"cellpose model {model!r} is not in the model cache {cache} and could "
            f"not be downloaded ({type(exc).__name__}: {exc}). On a machine with "
            'internet access run: python -c "from cellpose import models; '
            f"models.CellposeModel(model_type='{model}')\" and copy the file(s) from "
            f"~/.cellpose/models to {cache} (or point CELLPOSE_LOCAL_MODELS_PATH at "
            "them), or set segmentation.model to the path of a model file"
        ) from None
    _check_generation(fetched, major)
    return _record(model, fetched)


def _record(model: str, path: Path) -> ResolvedModel:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return ResolvedModel(
        model=model,
        path=str(path.resolve()),
        cellpose=cellpose_version(),
        sha256=digest,
    )


def use_gpu(gpu: bool | str) -> bool:
    """``gpu: auto`` means: if torch sees a CUDA device."""
    if gpu == "auto":
        import torch

        return bool(torch.cuda.is_available())
    return bool(gpu)


class CellposeSegmenter:
    """A loaded cellpose model that labels tiles with fixed settings."""

    def __init__(
        self,
        resolved: ResolvedModel,
        settings: SegmentationSettings,
        diameter_px: float,
        has_nucleus: bool,
    ) -> None:
        from cellpose import models

        self.major = cellpose_major()
        self.settings = settings
        self.diameter_px = float(diameter_px)
        self.has_nucleus = has_nucleus
        path = Path(resolved.path)
        gpu = use_gpu(settings.gpu)
        if self.major >= 4:
            self.model = models.CellposeModel(gpu=gpu, pretrained_model=str(path))
        else:
            nbase = cpnet_nbase(_state_dict(path))
            if nbase == STANDARD_NBASE:
                self.model = models.CellposeModel(gpu=gpu, pretrained_model=str(path))
            else:
                # a CPnet of non-default width (e.g. a small trained model):
                # build the network it was saved from, then load it the same way
                from cellpose.resnet_torch import CPnet

                self.model = models.CellposeModel(gpu=gpu, pretrained_model=False)
                net = CPnet(nbase, 3, sz=3, mkldnn=self.model.mkldnn, max_pool=True)
                net.to(self.model.device)
                net.load_model(str(path), device=self.model.device)
                self.model.net = net
                self.model.pretrained_model = str(path)
                self.model.diam_mean = float(net.diam_mean.data.cpu().numpy()[0])
                self.model.diam_labels = float(net.diam_labels.data.cpu().numpy()[0])
        log.info("cellpose %s model %s loaded (gpu=%s)", cellpose_version(), path, gpu)

    def __call__(self, tile: np.ndarray) -> np.ndarray:
        """Label a tile: (C, Y, X) or (C, Z, Y, X), C = channels to use."""
        s = self.settings
        is_3d = tile.ndim == 4
        image = np.moveaxis(tile, 0, -1)  # channels last
        three_d = s.z_mode if is_3d else None
        kwargs: dict[str, Any] = {
            "diameter": self.diameter_px,
            "flow_threshold": s.flow_threshold,
            "cellprob_threshold": s.cellprob_threshold,
            "min_size": s.min_size,
            "batch_size": s.batch_size,
            "channel_axis": image.ndim - 1,
            "z_axis": 0 if is_3d else None,
            "do_3D": three_d == "do_3D",
            "stitch_threshold": s.stitch_threshold if three_d == "stitch" else 0.0,
        }
        if self.major < 4:
            kwargs["channels"] = [1, 2] if self.has_nucleus else [1, 0]
        masks = self.model.eval(image, **kwargs)[0]
        return np.asarray(masks, dtype=np.int32)
