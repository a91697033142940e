"""Which new cell each old cell became: overlaps of two label images.

When a region is segmented again, the annotations users put on its old cells
(tags in the PerCell 3 application) follow the new cell that overlaps each old
cell best. Both label images are read band by band, so memory is bounded by a
band and by the number of overlapping pairs, whatever the image size.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import zarr

from percell.chunks import BlockIO

#: the overlap at which a new cell takes over an old cell's annotations
MIN_IOU = 0.5


def best_matches(old: zarr.Array, new: zarr.Array) -> pd.DataFrame:
    """For every old label, the new label it overlaps best and their IoU.

    Args:
        old: The label image being replaced (level 0).
        new: The label image replacing it, same shape.

    Returns:
        DataFrame with columns old_label, new_label (0 where none overlaps)
        and iou, one row per old label, sorted by old_label.
    """
    columns: dict[str, list[float]] = {"old_label": [], "new_label": [], "iou": []}
    if old.shape != new.shape:
        return pd.DataFrame(columns).astype(
            {"old_label": "int64", "new_label": "int64"}
        )
    a, b = BlockIO(old), BlockIO(new)
    lead_chunks = old.chunks[:-2]
    blocks = itertools.product(
        *[range(0, s, c) for s, c in zip(old.shape[:-2], lead_chunks, strict=True)],
        range(0, old.shape[-2], old.chunks[-2]),
    )
    pairs: list[pd.Series] = []
    for *lead, y0 in blocks:
        start = (*lead, y0, 0)
        shape = (*lead_chunks, old.chunks[-2], old.shape[-1])
        o = a.read(start, shape).ravel().astype(np.int64)
        n = b.read(start, shape).ravel().astype(np.int64)
        used = (o > 0) | (n > 0)
        keys, counts = np.unique((o[used] << 32) | n[used], return_counts=True)
        pairs.append(pd.Series(counts, index=keys))
    if not pairs:
        return pd.DataFrame(columns)
    counts = pd.concat(pairs).groupby(level=0).sum()
    keys = counts.index.to_numpy()
    old_l, new_l, n = keys >> 32, keys & 0xFFFFFFFF, counts.to_numpy()
    area_old = pd.Series(n).groupby(old_l).sum()
    area_new = pd.Series(n).groupby(new_l).sum()
    both = (old_l > 0) & (new_l > 0)
    inter = n[both]
    o, m = old_l[both], new_l[both]
    union = area_old.loc[o].to_numpy() + area_new.loc[m].to_numpy() - inter
    table = pd.DataFrame({"old_label": o, "new_label": m, "iou": inter / union})
    table = table.sort_values(["old_label", "iou"], ascending=[True, False])
    best = table.drop_duplicates("old_label")
    # old cells that overlap no new cell at all
    olds = np.unique(old_l[old_l > 0])
    missing = np.setdiff1d(olds, best["old_label"].to_numpy())
    none = pd.DataFrame(
        {"old_label": missing, "new_label": np.zeros_like(missing), "iou": 0.0}
    )
    out = pd.concat([best, none], ignore_index=True).sort_values("old_label")
    return out.reset_index(drop=True)


def label_overlaps(
    a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of labels of ``a`` and ``b`` that share pixels: (label in
    a, label in b, pixels shared), sorted by a's label then b's."""
    x = a.ravel().astype(np.int64)
    y = b.ravel().astype(np.int64)
    both = (x > 0) & (y > 0)
    base = int(y.max(initial=0)) + 1
    pairs, counts = np.unique(x[both] * base + y[both], return_counts=True)
    in_a, in_b = np.divmod(pairs, base)
    return in_a, in_b, counts


def matched_f1(truth: np.ndarray, predicted: np.ndarray, iou: float = 0.5) -> float:
    """Segmentation quality: F1 of objects matched one-to-one at IoU > ``iou``
    (≥ 0.5: matches are unique), the score of the 2018 Data Science Bowl.

    Overlaps are counted sparsely from the (truth, predicted) pixel pairs, so it
    works for images with many thousands of objects.
    """
    size_t = np.bincount(truth.ravel().astype(np.int64))
    size_p = np.bincount(predicted.ravel().astype(np.int64))
    pt, pp, overlap = label_overlaps(truth, predicted)
    ious = overlap / (size_t[pt] + size_p[pp] - overlap)
    tp = int((ious > iou).sum())
    n_truth = int((size_t[1:] > 0).sum())
    n_pred = int((size_p[1:] > 0).sum())
    return 1.0 if n_truth + n_pred == 0 else 2 * tp / (n_truth + n_pred)
