"""The segment step: images.zarr level 0 → int32 labels, their pyramid, and cells.

Per region group: each region is segmented tile by tile (``percell.tiling``)
with the configured method, its label image is written aside in labels.zarr
with the image's pyramid levels (nearest-neighbour, so no id is invented) and
moved into place; the cells of the whole group are staged in one Parquet
table that the register step reads. The sentinel comes last.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import zarr

from percell import layout, ngff
from percell.compartments import (
    SUBGROUP,
    cells_from_nuclei,
    context_pixels,
    distance_pixels,
    nuclei_of_cells,
    stack_compartments,
)
from percell.contracts import (
    COMPARTMENTS,
    CompartmentSettings,
    ImportedRegion,
    ResolvedModel,
    SegmentationRun,
    SegmentationSettings,
    Segmented,
    SegmentedRegion,
)
from percell.errors import ExperimentError
from percell.experiment_format import application_label_view
from percell.experiment_format.views import edited_digest, replace_edits
from percell.label_digest import label_state, labels_digest
from percell.matching import best_matches
from percell.pyramid import build_levels, nearest_2x2
from percell.sentinel import write_sentinel
from percell.storage import (
    LABEL_COMPRESSOR,
    Staging,
    array_of,
    attrs_of,
    create_array,
    level_paths,
    open_group,
)
from percell.tiling import Tile, segment_tiled
from percell.watershed import (
    SAMPLE_PX,
    RegionBackground,
    region_background,
    region_threshold,
    segment_nuclei,
    smooth,
)

if TYPE_CHECKING:  # cellpose is optional: loaded only for method cellpose
    from percell.cellpose_adapter import CellposeSegmenter

log = logging.getLogger(__name__)

#: (nuclei, the planes of its channels) → (cells, the nuclei matched to them)
CellsOf = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

LABEL_CHUNK_YX = 512
LABEL_CHUNK_Z = 10


def _in_pixels(length: float, unit: str, pixel_size_um: float) -> float:
    """A length given in ``unit`` (pixels or um) in pixels of level 0."""
    return float(length) / pixel_size_um if unit == "um" else float(length)


def diameter_pixels(seg: SegmentationSettings, pixel_size_um: float) -> float:
    """The expected cell diameter in pixels of level 0."""
    return _in_pixels(seg.diameter, seg.diameter_unit, pixel_size_um)


def cell_diameter_pixels(
    seg: SegmentationSettings,
    pixel_size_um: float,
    nucleus_px: float,
    distance_px: float,
) -> float:
    """``compartments.diameter`` in pixels of level 0, by default the nucleus
    diameter plus twice the distance a cell reaches beyond it."""
    comp = seg.compartments
    if comp is None or comp.diameter is None:
        return nucleus_px + 2 * distance_px
    return _in_pixels(comp.diameter, seg.diameter_unit, pixel_size_um)


def tile_overlap_pixels(seg: SegmentationSettings, diameter_px: float) -> int:
    """Context margin around each tile: at least two diameters."""
    if seg.tile_overlap == "auto":
        return math.ceil(2 * diameter_px)
    return max(int(seg.tile_overlap), math.ceil(2 * diameter_px))


def _threshold_sample(image_group: zarr.Group, channel: int) -> np.ndarray:
    """A plane of the smallest pyramid level at least ``SAMPLE_PX`` wide, for
    a threshold."""
    return _sample(image_group, channel)[0]


def _sample(image_group: zarr.Group, channel: int) -> tuple[np.ndarray, float]:
    """A channel of the smallest pyramid level at least ``SAMPLE_PX`` wide,
    and the level-0 pixels per pixel of it."""
    levels = level_paths(image_group)
    chosen = levels[0]
    for path in levels:
        if max(array_of(image_group, path).shape[-2:]) >= SAMPLE_PX:
            chosen = path
    level = array_of(image_group, chosen)
    scale = array_of(image_group).shape[-1] / level.shape[-1]
    return np.asarray(level[channel]), scale


def watershed_background(
    image_group: zarr.Group,
    channel: int,
    diameter_px: float,
    sigma: float,
    volume: bool = False,
) -> RegionBackground:
    """A region's background grid and noise (``watershed.region_background``)
    from a pyramid level and a window of level 0 at the region's centre; a
    stack's from all its planes where it is segmented as a ``volume``."""
    sample, scale = _sample(image_group, channel)
    level0 = array_of(image_group)
    h, w = level0.shape[-2:]
    y0, x0 = max(0, h // 2 - 256), max(0, w // 2 - 256)
    window = (slice(y0, y0 + 512), slice(x0, x0 + 512))
    middle = (level0.shape[1] // 2,) if level0.ndim == 4 else ()
    crop = np.asarray(level0[(channel, *middle, *window)])
    return region_background(sample, scale, crop, diameter_px, sigma, volume)


def _grow_cells(
    nuclei: Callable[[np.ndarray], np.ndarray],
    channels: list[int],
    more: list[int],
    cells_of: CellsOf,
) -> tuple[Callable[[np.ndarray], np.ndarray], list[int]]:
    """The tile method and its channels for compartments: ``nuclei`` finds the
    nuclei in ``channels``; ``cells_of(nuclei, planes of more)`` gives the
    cells and the nuclei matched to them; each tile returns the stack (cells,
    nucleus, cytoplasm)."""

    def grow(tile: np.ndarray) -> np.ndarray:
        split = tile.shape[0] - len(more)
        found = nuclei(tile[:split])
        return stack_compartments(*cells_of(found, tile[split:]))

    return grow, [*channels, *more]


def _cells_method(
    comp: CompartmentSettings,
    image: zarr.Group,
    key: str,
    seg: SegmentationSettings,
    channel_names: Sequence[str],
    distance_px: float,
    cells_cellpose: CellposeSegmenter | None,
) -> tuple[list[int], CellsOf]:
    """The channels a compartments method reads beyond the nuclei's, and how
    it makes (cells, their nuclei) from the nuclei and those channels."""
    if comp.cells == "expand":
        return [], lambda found, _: (cells_from_nuclei(found, distance_px), found)
    assert comp.channel is not None  # checked with the config
    index = list(channel_names).index(comp.channel)
    if comp.cells == "cellpose":
        if cells_cellpose is None:
            raise ValueError("cells: cellpose needs a loaded CellposeSegmenter")
        nucleus = list(channel_names).index(seg.channel)
        segment_cells = cells_cellpose

        def by_cellpose(
            found: np.ndarray, planes: np.ndarray
        ) -> tuple[np.ndarray, np.ndarray]:
            cells = segment_cells(planes)
            return cells, nuclei_of_cells(cells, found)

        return [index, nucleus], by_cellpose
    sample = _threshold_sample(image, index)
    value = region_threshold(sample, seg.smoothing_sigma, comp.threshold_method)
    log.info("region %s: cytoplasm threshold %.1f", key, value)
    if value <= 0:
        raise ExperimentError(
            f"region {key}: the {comp.channel} channel's "
            f"{comp.threshold_method} threshold is {value:g}: no cytoplasm "
            "to grow cells in (segmentation.compartments.channel)"
        )
    sigma = float(seg.smoothing_sigma)

    def by_watershed(
        found: np.ndarray, planes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        signal = smooth(planes[0], sigma)
        cells = cells_from_nuclei(found, distance_px, signal, value, comp.compactness)
        return cells, found

    return [index], by_watershed


def anisotropy_of(record: ImportedRegion, key: str) -> float:
    """A stack's z step in xy pixels (``segmentation.stacks: volume``)."""
    if not record.z_step_um or not record.pixel_size_um:
        raise ExperimentError(
            f"region {key}: segmentation.stacks: volume needs the z step and the "
            "pixel size (z_step_um and pixel_size_um in the config, or in the "
            "file's metadata); this stack has no z step"
        )
    return float(record.z_step_um) / float(record.pixel_size_um)


def check_labels_unedited(experiment: Path, key: str, overwrite: bool) -> str | None:
    """Refuse to replace a label image edited since the workflow wrote it.

    Returns:
        The digest of the region's label image on disk (None if it has none),
        so that it is read once.
    """
    final = layout.label_path(experiment, key)
    current, edited = label_state(final)
    if edited and not overwrite:
        raise _edited_error(key, final)
    return current


def check_application_labels_unedited(
    experiment: Path, key: str, overwrite: bool
) -> Path | None:
    """Refuse to segment a region whose labels the application edited in its
    own view of them (a 4.0.0 FOV's ``seg_<id>``, a 3.0.0 plate well's
    path): the edits are there, not in the workflow's label image.

    Returns:
        The view, where its edits are to be replaced (``overwrite``).
    """
    view = application_label_view(experiment, key)
    if view is None:
        return None
    if edited_digest(layout.label_path(experiment, key), view) is None:
        return None
    if not overwrite:
        raise _edited_error(key, view)
    return view


def _edited_error(key: str, labels: Path) -> ExperimentError:
    return ExperimentError(
        f"region {key}: the label image {labels}/0 was changed after the "
        "workflow wrote it (edited in the PerCell 3 application or by hand); "
        "segmenting again would replace the edits. Keep them by leaving "
        "segmentation as it was, or set segmentation.overwrite_edited_labels: "
        "true to replace them."
    )


def segment_region(
    record: ImportedRegion,
    experiment: Path,
    seg: SegmentationSettings,
    channel_names: Sequence[str],
    staged: Staging,
    cellpose: CellposeSegmenter | None = None,
    previous: str | None = None,
    cells_cellpose: CellposeSegmenter | None = None,
    threads: int = 1,
) -> tuple[pd.DataFrame, SegmentedRegion, pd.DataFrame]:
    """Segment one region and build its labels group aside.

    ``previous`` is the digest of the label image being replaced (None if
    there is none), from ``check_labels_unedited``; ``cells_cellpose`` the
    cell model of ``compartments.cells: cellpose``; ``threads``: tiles
    segmented at once where no cellpose model runs (a model uses the
    threads itself).

    Returns:
        The region's cells; its record for the sentinel (with the new and the
        previous label digests); and, where a label image is being replaced,
        the best new match of every old label (``matching.best_matches``).
    """
    key = record.key
    image = open_group(layout.image_path(experiment, key))
    level0 = array_of(image)
    channel = list(channel_names).index(seg.channel)
    nucleus = (
        list(channel_names).index(seg.nucleus_channel) if seg.nucleus_channel else None
    )
    pixel_size = float(record.pixel_size_um)
    diameter_px = diameter_pixels(seg, pixel_size)
    overlap = tile_overlap_pixels(seg, diameter_px)
    comp = seg.compartments
    if comp is not None:  # a cell reaches beyond its nucleus: more context
        distance_px = distance_pixels(comp, pixel_size)
        overlap += context_pixels(distance_px)
        if cells_cellpose is not None:  # and two cell diameters for cellpose
            cells_cellpose.diameter_px = cell_diameter_pixels(
                seg, pixel_size, diameter_px, distance_px
            )
            overlap = max(overlap, math.ceil(2 * cells_cellpose.diameter_px))
    has_z = level0.ndim == 4
    run: Callable[[np.ndarray], np.ndarray]
    background = None
    if seg.method == "watershed":
        volume = has_z and seg.stacks == "volume"  # nuclei in 3-D, z scaled
        background = watershed_background(
            image, channel, diameter_px, seg.smoothing_sigma, volume
        )
        log.info(
            "region %s: watershed background %.1f..%.1f, noise %.2f",
            key,
            background.grid.min(),
            background.grid.max(),
            background.noise,
        )
        anisotropy = None
        if volume:
            anisotropy = anisotropy_of(record, key)
            log.info("region %s: volumes, z step %.2f xy pixels", key, anisotropy)
        method = functools.partial(
            segment_nuclei,
            diameter_px=diameter_px,
            noise=background.noise,
            sigma=seg.smoothing_sigma,
            min_size=seg.min_size,
            anisotropy=anisotropy,
        )
        channels = [channel]

        # a watershed tile is (background, channel[, cytoplasm])
        def run(tile: np.ndarray) -> np.ndarray:
            return method(tile[1], background=tile[0])
    else:
        if cellpose is None:
            raise ValueError("method cellpose needs a loaded CellposeSegmenter")
        channels = [channel] + ([nucleus] if nucleus is not None else [])
        cellpose.diameter_px = diameter_px
        run = cellpose

    if comp is not None:
        more, cells_of = _cells_method(
            comp, image, key, seg, channel_names, distance_px, cells_cellpose
        )
        run, channels = _grow_cells(run, channels, more, cells_of)

    def read_tile(tile: Tile) -> np.ndarray:
        window = (slice(*tile.pad_y), slice(*tile.pad_x))
        planes = [np.asarray(level0[(c, ..., *window)]) for c in channels]
        if background is not None:  # the region's, over this window
            behind = background.window(tile.pad_y, tile.pad_x)
            planes.insert(0, np.broadcast_to(behind, planes[0].shape))
        return np.stack(planes)

    final = layout.label_path(experiment, key)
    built = staged.directory(final)
    group = open_group(built, mode="w")
    shape = level0.shape[1:]
    tiles: int | tuple[int, int]
    if record.chunk_yx is not None:
        # a plate well: tiles and label chunks are the fields, like the image
        tiles = record.chunk_yx
        chunks = ((1,) if has_z else ()) + tiles
    else:
        tiles = seg.tile_size
        chunks = ((LABEL_CHUNK_Z,) if has_z else ()) + (LABEL_CHUNK_YX,) * 2
    labels = create_array(group, "0", shape, chunks, np.int32, LABEL_COMPRESSOR)
    layers = []
    if comp is not None:
        sub = open_group(built / SUBGROUP, mode="w")
        sub.attrs.put({"labels": list(COMPARTMENTS)})
        for name in COMPARTMENTS:
            layer = open_group(built / SUBGROUP / name, mode="w")
            layers.append(
                create_array(layer, "0", shape, chunks, np.int32, LABEL_COMPRESSOR)
            )
    uses_model = cellpose is not None or cells_cellpose is not None
    tile_threads = 1 if uses_model else max(1, threads)
    start = time.monotonic()
    cells = segment_tiled(
        read_tile,
        run,
        labels,
        tiles,
        overlap,
        pixel_size,
        label=key,
        layers=layers,
        threads=tile_threads,
    )
    digest = labels_digest(built)
    matches = pd.DataFrame({"old_label": [], "new_label": [], "iou": []})
    if previous is not None and previous != digest:
        matches = best_matches(array_of(open_group(final)), labels)
    n_levels = len(level_paths(image))
    group.attrs.put(
        {
            **ngff.label_attrs(
                attrs_of(image), layout.relative_image_path(layout.LABELS, key)
            ),
            "percell": {"labels_digest": digest},
        }
    )
    build_levels(built, n_levels, nearest_2x2, LABEL_COMPRESSOR, label=key)
    for name in COMPARTMENTS if comp is not None else ():
        path = built / SUBGROUP / name
        source = layout.relative_image_path(layout.LABELS, key, f"{SUBGROUP}/{name}")
        open_group(path, mode="r+").attrs.put(ngff.label_attrs(attrs_of(image), source))
        build_levels(path, n_levels, nearest_2x2, LABEL_COMPRESSOR, label=key)
    log.info("region %s: %d cells in %.1f s", key, len(cells), time.monotonic() - start)
    cells.insert(0, "key", key)
    matches.insert(0, "key", key)
    output = SegmentedRegion(
        key=key,
        cells=len(cells),
        labels=f"{layout.LABELS}/{key}",
        labels_digest=digest,
        previous_digest=previous,
    )
    return cells, output, matches


def segment_group(
    records: Sequence[ImportedRegion],
    *,
    settings: SegmentationSettings,
    channels: Sequence[str],
    sentinel: str | Path,
    group: str,
    inputs: Sequence[str] = (),
    model: ResolvedModel | None = None,
    threads: int | None = None,
    cells_model: ResolvedModel | None = None,
) -> Segmented:
    """Segment every region of a group; stage its cells; write the sentinel last.

    Args:
        records: Region records from the group's import sentinel.
        settings: The segmentation settings.
        channels: Channel names in display order.
        sentinel: This step's sentinel (inside the experiment, which it names).
        group: The region group id.
        inputs: Files this step read (recorded in the sentinel).
        model: The resolved cellpose model (``resolve_model``), for cellpose.
        threads: CPU threads torch may use (the job's ``threads``).
        cells_model: The resolved cell model, for ``compartments.cells:
            cellpose``.
    """
    experiment = Path(layout.experiment_of_sentinel(sentinel))
    seg = settings
    cellpose = None
    if seg.method == "cellpose":
        cellpose = _load_cellpose(
            model, seg, threads, bool(seg.nucleus_channel), "method cellpose"
        )
    cells_cellpose = None
    if seg.compartments is not None and seg.compartments.cells == "cellpose":
        cells_cellpose = _load_cellpose(
            cells_model, seg, threads, True, "compartments.cells: cellpose"
        )
    # every region is checked before any is segmented
    previous = [
        check_labels_unedited(experiment, record.key, seg.overwrite_edited_labels)
        for record in records
    ]
    replaced = [
        check_application_labels_unedited(
            experiment, record.key, seg.overwrite_edited_labels
        )
        for record in records
    ]
    tables, outputs, matches = [], [], []
    table_path = staged_cells_path(sentinel)
    matches_path = staged_matches_path(sentinel)
    # every region's labels, and the group's tables, are built aside and
    # swapped in together
    with Staging() as staged:
        for record, old in zip(records, previous, strict=True):
            cells, output, matched = segment_region(
                record,
                experiment,
                seg,
                channels,
                staged,
                cellpose,
                old,
                cells_cellpose,
                threads or 1,
            )
            tables.append(cells)
            outputs.append(output)
            matches.append(matched)
        pd.concat(tables, ignore_index=True).to_parquet(
            staged.file(table_path), index=False
        )
        pd.concat(matches, ignore_index=True).to_parquet(
            staged.file(matches_path), index=False
        )
    for record, view in zip(records, replaced, strict=True):
        if view is not None:  # the edits replaced, as the user chose
            replace_edits(layout.label_path(experiment, record.key), view)
    segmented = Segmented(
        regions=tuple(outputs),
        cells_table=table_path.name,
        matches_table=matches_path.name,
        run=SegmentationRun(
            channel=seg.channel,
            model_name=seg.model_name,
            parameters=seg.run_parameters(),
        ),
    )
    write_sentinel(
        sentinel,
        "segment",
        group,
        {
            "segmentation": seg.to_params(),
            "model": model and model.to_params(),
            **({"cells_model": cells_model.to_params()} if cells_model else {}),
        },
        list(inputs),
        segmented,
    )
    return segmented


def _load_cellpose(
    resolved: ResolvedModel | None,
    seg: SegmentationSettings,
    threads: int | None,
    has_nucleus: bool,
    what: str,
) -> CellposeSegmenter:
    """A loaded cellpose model for ``what`` (its diameter is set per region)."""
    import torch

    from percell.cellpose_adapter import CellposeSegmenter

    if resolved is None:
        raise ValueError(f"{what} needs the resolved model")
    if threads:
        torch.set_num_threads(threads)
    return CellposeSegmenter(resolved, seg, 0.0, has_nucleus=has_nucleus)


def staged_cells_path(sentinel: str | Path) -> Path:
    """Where a group's segment step stages its cells table."""
    sentinel = Path(sentinel)
    return sentinel.with_name(sentinel.stem + ".cells.parquet")


def staged_matches_path(sentinel: str | Path) -> Path:
    """Where a group's segment step stages old→new label matches."""
    sentinel = Path(sentinel)
    return sentinel.with_name(sentinel.stem + ".matches.parquet")
