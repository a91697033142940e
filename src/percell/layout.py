"""Where things live inside a ``<name>.percell`` experiment directory."""

from __future__ import annotations

import re
from pathlib import Path

IMAGES = "images.zarr"
LABELS = "labels.zarr"
MASKS = "masks.zarr"
STORES = (IMAGES, LABELS, MASKS)
DATABASE = "experiment.db"
WORKFLOW_DIR = ".workflow"


def region_key(condition: str, timepoint: str | None, region: str) -> str:
    """Group path of a region inside each store: ``cond/[tp/]region``."""
    parts = [condition] + ([timepoint] if timepoint else []) + [region]
    return "/".join(parts)


def group_id(condition: str, timepoint: str | None) -> str:
    """Id of the default region group: one condition × timepoint."""
    return f"{condition}/{timepoint}" if timepoint else condition


def image_path(experiment: Path, key: str) -> Path:
    """The image group of region ``key``."""
    return Path(experiment) / IMAGES / key


def label_path(experiment: Path, key: str) -> Path:
    """The label group of region ``key``."""
    return Path(experiment) / LABELS / key


def sentinel_path(experiment: str | Path, step: str, group: str) -> str:
    """The sentinel a step writes last for a region group."""
    return f"{experiment}/{WORKFLOW_DIR}/{step}/{group}.json"


def experiment_of_sentinel(sentinel: str | Path) -> str:
    """The experiment directory that holds ``sentinel``."""
    text = str(sentinel)
    marker = f"/{WORKFLOW_DIR}/"
    if marker not in text:
        raise ValueError(f"{text} is not a sentinel path (no {marker})")
    return text[: text.rindex(marker)]


def relative_image_path(store: str, key: str, sub: str = "") -> str:
    """Path from ``<store>/<key>[/<sub>]`` (a label or mask group) to its image."""
    depth = (
        len(key.split("/")) + len(store.split("/")) + len(sub.split("/")) * bool(sub)
    )
    return "../" * depth + f"{IMAGES}/{key}"


def mask_path(experiment: Path, key: str, run: str) -> Path:
    """The mask group of threshold run ``run`` for region ``key``."""
    return Path(experiment) / MASKS / key / f"threshold_{run}"


def run_name(experiment: str | Path) -> str:
    """The name an experiment's logs and benchmarks are kept under:
    ``results/demo.percell`` → ``demo``."""
    return Path(experiment).name.removesuffix(".percell")


def qc_output_name(kind: str, name: str) -> str:
    """A QC figure's output name in its rule: ``<kind>_<name>``, an identifier."""
    return re.sub(r"\W", "_", f"{kind}_{name}")
