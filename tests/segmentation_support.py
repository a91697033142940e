"""Helpers for segmentation tests: matched-object F1 and segmenting in memory."""

from __future__ import annotations

import numpy as np

from percell.storage import LABEL_COMPRESSOR, create_array, open_group
from percell.tiling import segment_tiled


def matched_f1(truth: np.ndarray, predicted: np.ndarray, iou: float = 0.5) -> float:
    """F1 of objects matched one-to-one at IoU > ``iou`` (≥ 0.5: matches are unique).

    Overlaps are counted sparsely from the (truth, predicted) pixel pairs, so it
    works for images with many thousands of objects.
    """
    t = truth.ravel().astype(np.int64)
    p = predicted.ravel().astype(np.int64)
    size_t = np.bincount(t)
    size_p = np.bincount(p)
    both = (t > 0) & (p > 0)
    pairs, overlap = np.unique(t[both] * (p.max() + 1) + p[both], return_counts=True)
    pt, pp = np.divmod(pairs, p.max() + 1)
    ious = overlap / (size_t[pt] + size_p[pp] - overlap)
    tp = int((ious > iou).sum())
    n_truth = int((size_t[1:] > 0).sum())
    n_pred = int((size_p[1:] > 0).sum())
    return 1.0 if n_truth + n_pred == 0 else 2 * tp / (n_truth + n_pred)


def segment_in_memory(
    image: np.ndarray,
    method,
    tmp_path,
    tile_size: int,
    overlap: int,
    name: str = "labels",
):
    """Run the tiled segmentation of ``image`` (Y, X) into a zarr array."""
    group = open_group(tmp_path / name, mode="w")
    labels = create_array(
        group, "0", image.shape, (512, 512), np.int32, LABEL_COMPRESSOR
    )

    def read_tile(tile):
        return image[slice(*tile.pad_y), slice(*tile.pad_x)]

    cells = segment_tiled(read_tile, method, labels, tile_size, overlap, 0.5)
    return labels[:], cells
