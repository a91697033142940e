"""The segment step: images.zarr level 0 → int32 labels, their pyramid, and cells.

Per region group: each region is segmented tile by tile (``percell.tiling``)
with the configured method, its label image is written aside in labels.zarr
with the image's pyramid levels (nearest-neighbour, so no id is invented) and
moved into place; the cells of the whole group are staged in one Parquet
table that the register step reads. The sentinel comes last.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from percell import layout, ngff
from percell.errors import ConfigError, ExperimentError
from percell.label_digest import label_state, labels_digest
from percell.matching import best_matches
from percell.pyramid import build_levels, nearest_2x2
from percell.sentinel import write_sentinel
from percell.storage import (
    LABEL_COMPRESSOR,
    StagedDirectories,
    create_array,
    open_group,
    staged_file,
)
from percell.tiling import segment_tiled
from percell.watershed import region_threshold, watershed_segment

log = logging.getLogger(__name__)

LABEL_CHUNK_YX = 512
LABEL_CHUNK_Z = 10
#: settings that do not change the labels (they only steer resources)
_NOT_PARAMETERS = ("resources", "overwrite_edited_labels")


def check_segmentation_config(seg: dict, channel_names: list[str]) -> None:
    """Parse-time checks the schema cannot express; raise ConfigError."""
    for key in ("channel", "nucleus_channel"):
        name = seg.get(key)
        if name is not None and name not in channel_names:
            raise ConfigError(
                f"segmentation.{key}: unknown channel {name!r} (channels: "
                f"{', '.join(channel_names)})"
            )
    overlap = seg["tile_overlap"]
    if (
        seg["diameter_unit"] == "pixels"
        and overlap != "auto"
        and overlap < 2 * seg["diameter"]
    ):
        raise ConfigError(
            f"segmentation.tile_overlap {overlap} is less than two diameters "
            f"({2 * seg['diameter']:g} px): cells on tile borders could be cut"
        )
    if seg["method"] == "cellpose":
        from percell.cellpose_adapter import check_model_setting

        check_model_setting(seg["model"])


def run_parameters(seg: dict) -> dict:
    """The settings that define a segmentation run (stored in the database)."""
    params = {k: v for k, v in seg.items() if k not in _NOT_PARAMETERS}
    if params["method"] != "cellpose":
        for key in (
            "model",
            "flow_threshold",
            "cellprob_threshold",
            "gpu",
            "batch_size",
        ):
            params.pop(key, None)
    return params


def model_name(seg: dict) -> str:
    """``segmentation_runs.model_name``: the method, and the model for cellpose."""
    return f"cellpose:{seg['model']}" if seg["method"] == "cellpose" else seg["method"]


def diameter_pixels(seg: dict, pixel_size_um: float) -> float:
    """The expected cell diameter in pixels of level 0."""
    d = float(seg["diameter"])
    return d / pixel_size_um if seg["diameter_unit"] == "um" else d


def tile_overlap_pixels(seg: dict, diameter_px: float) -> int:
    """Context margin around each tile: at least two diameters."""
    if seg["tile_overlap"] == "auto":
        return math.ceil(2 * diameter_px)
    return max(int(seg["tile_overlap"]), math.ceil(2 * diameter_px))


def _threshold_sample(image_group, channel: int) -> np.ndarray:
    """A plane of the smallest pyramid level at least 512 px, for a threshold."""
    levels = [d["path"] for d in image_group.attrs["multiscales"][0]["datasets"]]
    chosen = levels[0]
    for path in levels:
        if max(image_group[path].shape[-2:]) >= 512:
            chosen = path
    return np.asarray(image_group[chosen][channel])


def check_labels_unedited(experiment: Path, key: str, overwrite: bool) -> str | None:
    """Refuse to replace a label image edited since the workflow wrote it.

    Returns:
        The digest of the region's label image on disk (None if it has none),
        so that it is read once.
    """
    final = layout.label_path(experiment, key)
    current, edited = label_state(final)
    if edited and not overwrite:
        raise ExperimentError(
            f"region {key}: the label image {final}/0 was changed after the "
            "workflow wrote it (edited in the PerCell 3 application or by hand); "
            "segmenting again would replace the edits. Keep them by leaving "
            "segmentation as it was, or set segmentation.overwrite_edited_labels: "
            "true to replace them."
        )
    return current


def segment_region(
    record: dict,
    experiment: Path,
    seg: dict,
    channel_names: list[str],
    staged: StagedDirectories,
    cellpose=None,
    previous: str | None = None,
) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Segment one region and build its labels group aside.

    ``previous`` is the digest of the label image being replaced (None if
    there is none), from ``check_labels_unedited``.

    Returns:
        The region's cells; its record for the sentinel (with the new and the
        previous label digests); and, where a label image is being replaced,
        the best new match of every old label (``matching.best_matches``).
    """
    key = record["key"]
    image = open_group(layout.image_path(experiment, key))
    level0 = image["0"]
    channel = channel_names.index(seg["channel"])
    nucleus = (
        channel_names.index(seg["nucleus_channel"])
        if seg.get("nucleus_channel")
        else None
    )
    pixel_size = float(record["pixel_size_um"])
    diameter_px = diameter_pixels(seg, pixel_size)
    overlap = tile_overlap_pixels(seg, diameter_px)
    has_z = level0.ndim == 4
    if seg["method"] == "watershed":
        threshold = region_threshold(
            _threshold_sample(image, channel),
            seg["smoothing_sigma"],
            seg["threshold_method"],
        )
        log.info("region %s: watershed threshold %.1f", key, threshold)
        method = functools.partial(
            watershed_segment,
            diameter_px=diameter_px,
            threshold=threshold,
            sigma=seg["smoothing_sigma"],
            min_size=seg["min_size"],
        )
        channels = [channel]

        def run(tile: np.ndarray) -> np.ndarray:
            return method(tile[0])
    else:
        channels = [channel] + ([nucleus] if nucleus is not None else [])
        cellpose.diameter_px = diameter_px
        run = cellpose

    def read_tile(tile) -> np.ndarray:
        window = (slice(*tile.pad_y), slice(*tile.pad_x))
        return np.stack([np.asarray(level0[(c, ..., *window)]) for c in channels])

    final = layout.label_path(experiment, key)
    built = staged.aside(final)
    group = open_group(built, mode="w")
    shape = level0.shape[1:]
    if "chunk_yx" in record:
        # a plate well: tiles and label chunks are the fields, like the image
        tiles = tuple(record["chunk_yx"])
        chunks = ((1,) if has_z else ()) + tiles
    else:
        tiles = seg["tile_size"]
        chunks = ((LABEL_CHUNK_Z,) if has_z else ()) + (LABEL_CHUNK_YX,) * 2
    labels = create_array(group, "0", shape, chunks, np.int32, LABEL_COMPRESSOR)
    start = time.monotonic()
    cells = segment_tiled(read_tile, run, labels, tiles, overlap, pixel_size, label=key)
    digest = labels_digest(built)
    matches = pd.DataFrame({"old_label": [], "new_label": [], "iou": []})
    if previous is not None and previous != digest:
        matches = best_matches(open_group(final)["0"], labels)
    n_levels = len(image.attrs["multiscales"][0]["datasets"])
    group.attrs.put(
        {
            **ngff.label_attrs(
                dict(image.attrs), layout.relative_image_path(layout.LABELS, key)
            ),
            "percell": {"labels_digest": digest},
        }
    )
    build_levels(built, n_levels, nearest_2x2, LABEL_COMPRESSOR, label=key)
    log.info("region %s: %d cells in %.1f s", key, len(cells), time.monotonic() - start)
    cells.insert(0, "key", key)
    matches.insert(0, "key", key)
    output = {
        "key": key,
        "cells": len(cells),
        "labels": f"{layout.LABELS}/{key}",
        "labels_digest": digest,
        "previous_digest": previous,
    }
    return cells, output, matches


def segment_group(
    records: list[dict],
    experiment: str | Path,
    seg: dict,
    channel_names: list[str],
    sentinel: str | Path,
    group: str,
    inputs: list[str],
    model: dict | None = None,
    threads: int | None = None,
) -> list[dict]:
    """Segment every region of a group; stage its cells; write the sentinel last.

    Args:
        records: Region records from the group's import sentinel.
        experiment: The ``.percell`` directory.
        seg: The validated ``segmentation`` config.
        channel_names: Channels in display order.
        sentinel: This step's sentinel.
        group: The region group id.
        inputs: Files this step read (recorded in the sentinel).
        model: The resolved cellpose model (``resolve_model``), for cellpose.
        threads: CPU threads torch may use (the job's ``threads``).
    """
    experiment = Path(experiment)
    cellpose = None
    if seg["method"] == "cellpose":
        import torch

        from percell.cellpose_adapter import CellposeSegmenter

        if threads:
            torch.set_num_threads(threads)
        cellpose = CellposeSegmenter(
            model, seg, seg["diameter"], has_nucleus=bool(seg.get("nucleus_channel"))
        )
    # every region is checked before any is segmented
    previous = [
        check_labels_unedited(
            experiment, record["key"], seg.get("overwrite_edited_labels", False)
        )
        for record in records
    ]
    tables, outputs, matches = [], [], []
    # every region's labels are built aside and swapped in together
    with StagedDirectories() as staged:
        for record, old in zip(records, previous, strict=True):
            cells, output, matched = segment_region(
                record, experiment, seg, channel_names, staged, cellpose, old
            )
            tables.append(cells)
            outputs.append(output)
            matches.append(matched)
    table_path = staged_cells_path(sentinel)
    with staged_file(table_path) as tmp:
        pd.concat(tables, ignore_index=True).to_parquet(tmp, index=False)
    matches_path = staged_matches_path(sentinel)
    with staged_file(matches_path) as tmp:
        pd.concat(matches, ignore_index=True).to_parquet(tmp, index=False)
    run = {
        "channel": seg["channel"],
        "model_name": model_name(seg),
        "parameters": run_parameters(seg),
    }
    write_sentinel(
        sentinel,
        "segment",
        group,
        {"segmentation": seg, "model": model},
        inputs,
        {
            "regions": outputs,
            "cells_table": table_path.name,
            "matches_table": matches_path.name,
            "run": run,
        },
    )
    return outputs


def staged_cells_path(sentinel: str | Path) -> Path:
    """Where a group's segment step stages its cells table."""
    sentinel = Path(sentinel)
    return sentinel.with_name(sentinel.stem + ".cells.parquet")


def staged_matches_path(sentinel: str | Path) -> Path:
    """Where a group's segment step stages old→new label matches."""
    sentinel = Path(sentinel)
    return sentinel.with_name(sentinel.stem + ".matches.parquet")


def parameters_json(run: dict) -> str:
    """Canonical JSON of a run's parameters (identifies the run in the database)."""
    return json.dumps(
        {"source": "percell-workflow", **run["parameters"]}, sort_keys=True
    )
