"""Per-cell geometry and shape from a label image.

``COLUMNS`` are the PerCell 3 ``cells`` columns: centroid and bounding box in
level-0 pixels, x = column, y = row; circularity = 4πA/P² with scikit-image's
perimeter. ``SHAPE_COLUMNS`` are the further shape features of the
``percell_cell_shape`` table, scikit-image's ``regionprops`` values under its
names: eccentricity, solidity, the major and minor axis lengths (pixels),
orientation (radians, between the row axis and the major axis) and extent
(area / bounding-box area).

The 2-D values are computed for all objects at once
(``percell.shape_kernels``) and equal regionprops' own; the inertia features
come from exact moments where regionprops rounds them, so those agree to
about 1e-12, and an orientation of exactly ±π/2 is always +π/2 (regionprops'
sign there is rounding noise). For 3-D labels the area is the voxel count,
centroid and box are those of the object's y/x extent, and perimeter,
circularity and the shape features are left empty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# pandas, scipy and the compiled kernels are imported where the table is
# made: the column names below are read by jobs that never make one (the
# register, the report), which then start half a second sooner

COLUMNS = [
    "label_value",
    "centroid_x",
    "centroid_y",
    "bbox_x",
    "bbox_y",
    "bbox_w",
    "bbox_h",
    "area_pixels",
    "area_um2",
    "perimeter",
    "circularity",
]

#: regionprops properties beyond the ``cells`` columns (2-D only)
SHAPE_COLUMNS = [
    "eccentricity",
    "solidity",
    "major_axis_length",
    "minor_axis_length",
    "orientation",
    "extent",
]

#: what is measured per cell, channel and scope (the measure step computes
#: them, the register stores them)
METRICS = (
    "mean_intensity",
    "max_intensity",
    "min_intensity",
    "integrated_intensity",
    "std_intensity",
    "median_intensity",
    "area",
)


def cell_table(
    labels: np.ndarray, pixel_size_um: float, offset: tuple[int, int] = (0, 0)
) -> pd.DataFrame:
    """One row per label id > 0 in ``labels`` (``COLUMNS`` then
    ``SHAPE_COLUMNS``); ``offset`` = (y, x) of its origin."""
    import pandas as pd
    from scipy import ndimage

    oy, ox = offset
    if labels.ndim == 2:
        df = _shape_table_2d(labels)
        df["centroid_x"] += ox
        df["centroid_y"] += oy
        df["bbox_x"] += ox
        df["bbox_y"] += oy
    else:
        ids = np.unique(labels)
        ids = ids[ids > 0]
        slices = ndimage.find_objects(labels)
        boxes = [slices[i - 1] for i in ids]
        centroids = np.asarray(
            ndimage.center_of_mass(np.ones_like(labels, np.uint8), labels, ids)
        ).reshape(-1, 3)
        area = ndimage.sum_labels(np.ones_like(labels, np.uint8), labels, ids)
        df = pd.DataFrame(
            {
                "label_value": ids.astype(np.int64),
                "centroid_x": centroids[:, 2] + ox,
                "centroid_y": centroids[:, 1] + oy,
                "bbox_x": np.array([b[2].start for b in boxes], np.int64) + ox,
                "bbox_y": np.array([b[1].start for b in boxes], np.int64) + oy,
                "bbox_w": np.array([b[2].stop - b[2].start for b in boxes], np.int64),
                "bbox_h": np.array([b[1].stop - b[1].start for b in boxes], np.int64),
                "area_pixels": np.asarray(area, float),
                "perimeter": np.nan,
                "circularity": np.nan,
                **dict.fromkeys(SHAPE_COLUMNS, np.nan),
            }
        )
    df["area_um2"] = df["area_pixels"] * pixel_size_um**2
    return df[COLUMNS + SHAPE_COLUMNS]


#: regionprops' perimeter weights, by border-pixel pattern
_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + np.sqrt(2)) / 2


def _shape_table_2d(labels: np.ndarray) -> pd.DataFrame:
    """regionprops' values for every object of a 2-D label image, from
    compiled passes over the image (``percell.shape_kernels``)."""
    import pandas as pd

    from percell import shape_kernels

    ids = None
    top = int(labels.max(initial=0))
    if top > labels.size:  # sparse ids: number the objects 1..n
        ids, inverse = np.unique(labels, return_inverse=True)
        labels = inverse.reshape(labels.shape).astype(np.int32)
        if ids[0] != 0:
            labels += 1
            ids = np.concatenate([[0], ids])
        top = len(ids) - 1
    # one compiled signature: ids ≤ the pixel count fit int32
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    sums, boxes = shape_kernels.moments_and_boxes(labels, top)
    present = np.flatnonzero(sums[:, 0] > 0)  # row 0 (background) stays empty
    convex = shape_kernels.convex_areas(labels, boxes)[present]
    codes = shape_kernels.perimeter_codes(labels, top)[present]
    sums, boxes = sums[present], boxes[present]
    count = sums[:, 0]
    area = count.astype(float)
    height = boxes[:, 2] - boxes[:, 0] + 1
    width = boxes[:, 3] - boxes[:, 1] + 1
    # the pixels' mean position, as regionprops: whole-image sums over n
    centroid_y = (sums[:, 1] + count * boxes[:, 0]) / count
    centroid_x = (sums[:, 2] + count * boxes[:, 1]) / count
    # regionprops' perimeter is its pattern histogram dotted with the weights
    perimeter = np.array([row @ _PERIMETER_WEIGHTS for row in codes.astype(float)])
    with np.errstate(divide="ignore", invalid="ignore"):
        circularity = np.where(perimeter > 0, 4 * np.pi * area / perimeter**2, np.nan)
    shape = _inertia_features(sums)
    return pd.DataFrame(
        {
            "label_value": (present if ids is None else ids[present]).astype(np.int64),
            "centroid_x": centroid_x,
            "centroid_y": centroid_y,
            "bbox_x": boxes[:, 1].astype(np.int64),
            "bbox_y": boxes[:, 0].astype(np.int64),
            "bbox_w": width.astype(np.int64),
            "bbox_h": height.astype(np.int64),
            "area_pixels": area,
            "perimeter": perimeter,
            "circularity": circularity,
            "solidity": area / convex.astype(float),
            "extent": area / (height * width).astype(float),
            **shape,
        }
    )


def _inertia_features(sums: np.ndarray) -> dict[str, np.ndarray]:
    """Eccentricity, axis lengths and orientation from each object's exact
    central moments (regionprops' definitions; its inertia tensor is
    [[μ02, -μ11], [-μ11, μ20]] / μ00)."""
    n, sy, sx, syy, sxx, syx = (sums[:, i].astype(object) for i in range(6))
    # n² times the normalised central moments: exact integers (Python ints)
    yy, xx, yx = n * syy - sy * sy, n * sxx - sx * sx, n * syx - sy * sx
    n2 = n * n
    a = (xx / n2).astype(float)
    c = (yy / n2).astype(float)
    b = (-yx / n2).astype(float)
    tensor = np.stack([np.stack([a, b], -1), np.stack([b, c], -1)], -2)
    eig = np.clip(np.linalg.eigvalsh(tensor), 0, None)
    l1, l2 = eig[:, 1], eig[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        eccentricity = np.where(l1 == 0, 0.0, np.sqrt(1 - l2 / l1))
    # regionprops: 0.5·atan2(-2b, c - a), and ±π/4 when a == c; exact zeros
    # here give one answer where its rounding noise picks a sign
    orientation = np.where(
        (yy - xx == 0).astype(bool),
        np.where((yx > 0).astype(bool), np.pi / 4, -np.pi / 4),
        0.5 * np.arctan2((2 * yx / n2).astype(float), ((yy - xx) / n2).astype(float)),
    )
    return {
        "eccentricity": eccentricity,
        "major_axis_length": 4 * np.sqrt(l1),
        "minor_axis_length": 4 * np.sqrt(l2),
        "orientation": orientation,
    }
