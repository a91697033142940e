"""Cells built from nuclei: the nucleus, cytoplasm and whole-cell compartments.

With ``segmentation.compartments`` set, the segmentation method finds the
*nuclei* (in ``segmentation.channel``) and each cell grows from its nucleus:

- ``expand``: the nucleus grown by ``distance`` without overlapping its
  neighbours (``skimage.segmentation.expand_labels``, CellProfiler's
  "distance-N");
- ``watershed``: a second segmentation of a cytoplasm channel: a watershed on
  its inverted smoothed intensity seeded by the nuclei, within ``distance`` of
  a nucleus, compact (``compactness``) so that touching cells part between
  their nuclei (like CellProfiler's "propagation"), kept where the channel is
  above its threshold, with holes filled. Every cell is matched to its
  nucleus by construction: it carries the nucleus's label.
- ``cellpose``: a second segmentation, cellpose with a cell model given the
  cytoplasm channel and the nucleus channel; each nucleus is then matched to
  the cell holding most of it (``nuclei_of_cells``). Cellpose's cells keep
  their own labels; a cell may hold two nuclei, or none.

A cell, its nucleus and its cytoplasm (cell minus nucleus) share one label
value. The whole cells are the PerCell 3 label image (``labels.zarr/<region>/0``
and the ``cells`` table); the nuclei and the cytoplasm are further NGFF label
images of the region, ``labels.zarr/<region>/labels/{nucleus,cytoplasm}``,
which the application ignores and napari shows. Their measurements are named
``<compartment>_<metric>`` (``nucleus_mean_intensity``): the whole cell keeps
PerCell 3's own metric names, so the application's pivot reads as before.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage import segmentation

from percell import layout
from percell.contracts import CompartmentSettings
from percell.matching import label_overlaps

#: the sub-group of a region's label group holding the nucleus and cytoplasm
#: label images (``contracts.COMPARTMENTS``), as NGFF ``labels``
SUBGROUP = "labels"


def compartment_path(experiment: Path, key: str, name: str) -> Path:
    """The label group of compartment ``name`` of region ``key``."""
    return layout.label_path(experiment, key) / SUBGROUP / name


def distance_pixels(settings: CompartmentSettings, pixel_size_um: float) -> float:
    """How far a cell may reach beyond its nucleus, in pixels of level 0."""
    d = float(settings.distance)
    return d / pixel_size_um if settings.distance_unit == "um" else d


def cells_from_nuclei(
    nuclei: np.ndarray,
    distance_px: float,
    cytoplasm: np.ndarray | None = None,
    threshold: float = 1.0,
    compactness: float = 0.05,
) -> np.ndarray:
    """Whole cells grown from ``nuclei`` (labels keep their values).

    Args:
        nuclei: int labels, (Y, X) or (Z, Y, X).
        distance_px: Largest distance a cell reaches beyond its nucleus.
        cytoplasm: The smoothed cytoplasm channel, for a seeded watershed;
            None grows each nucleus by ``distance_px`` (``expand_labels``).
        threshold: The cytoplasm channel's foreground threshold (> 0).
        compactness: skimage's compact watershed weight of distance against
            intensity (intensity / threshold per pixel).
    """
    if cytoplasm is None:
        return segmentation.expand_labels(nuclei, distance=distance_px)
    reach = ndimage.distance_transform_edt(nuclei == 0) <= distance_px
    # every pixel within reach goes to the basin of one nucleus, so a dim gap
    # between a nucleus and its cytoplasm (a stain kept out of the nucleus)
    # cannot cut the cytoplasm off its cell...
    # (a compact watershed: on a bright plateau two touching cells part
    # halfway, instead of the first to reach it taking all; intensity in
    # units of the threshold, so one threshold weighs 1/compactness pixels)
    basins = segmentation.watershed(
        -cytoplasm / threshold, markers=nuclei, mask=reach, compactness=compactness
    )
    # ...then the cells are the foreground, holes (such gaps) filled
    foreground = ((cytoplasm > threshold) | (nuclei > 0)) & (basins > 0)
    cells = np.where(ndimage.binary_fill_holes(foreground), basins, 0)
    return np.asarray(cells, nuclei.dtype)


def nuclei_of_cells(cells: np.ndarray, nuclei: np.ndarray) -> np.ndarray:
    """``nuclei`` relabelled with the cells they belong to.

    A nucleus belongs to the cell holding the largest part of it (the lower
    label on a tie) if that is at least half of it; a nucleus mostly outside
    every cell belongs to none and is dropped. Two nuclei in one cell are
    both its nucleus (a dividing or binucleate cell). The part of a nucleus
    outside its cell is cut off by ``stack_compartments``.
    """
    nucleus, cell, part = label_overlaps(nuclei, cells)
    # per nucleus, its largest overlap first (then the lower cell label)
    order = np.lexsort((cell, -part, nucleus))
    _, first = np.unique(nucleus[order], return_index=True)
    nucleus, cell, part = nucleus[order][first], cell[order][first], part[order][first]
    size = np.bincount(nuclei.ravel().astype(np.int64))
    owner = np.zeros(size.size, np.int64)
    kept = 2 * part >= size[nucleus]
    owner[nucleus[kept]] = cell[kept]
    return np.asarray(owner[nuclei], cells.dtype)


def stack_compartments(cells: np.ndarray, nuclei: np.ndarray) -> np.ndarray:
    """(cells, nucleus, cytoplasm) as one stack: each compartment holds its
    cell's label; a nucleus pixel outside its cell belongs to no nucleus."""
    nucleus = np.where(nuclei == cells, cells, 0)
    cytoplasm = np.where(nucleus > 0, 0, cells)
    return np.stack([cells, nucleus, cytoplasm])


def context_pixels(distance_px: float) -> int:
    """Extra tile context a cell grown by ``distance_px`` needs."""
    return math.ceil(2 * distance_px)
