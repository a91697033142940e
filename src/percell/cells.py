"""Per-cell geometry and shape from a label image.

``COLUMNS`` are the PerCell 3 ``cells`` columns: centroid and bounding box in
level-0 pixels, x = column, y = row; circularity = 4πA/P² with scikit-image's
perimeter. ``SHAPE_COLUMNS`` are the further shape features of the
``percell_cell_shape`` table, scikit-image's ``regionprops`` values under its
names: eccentricity, solidity, the major and minor axis lengths (pixels),
orientation (radians, between the row axis and the major axis) and extent
(area / bounding-box area). For 3-D labels the area is the voxel count,
centroid and box are those of the object's y/x extent, and perimeter,
circularity and the shape features are left empty.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.measure import regionprops_table

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


def cell_table(
    labels: np.ndarray, pixel_size_um: float, offset: tuple[int, int] = (0, 0)
) -> pd.DataFrame:
    """One row per label id > 0 in ``labels`` (``COLUMNS`` then
    ``SHAPE_COLUMNS``); ``offset`` = (y, x) of its origin."""
    oy, ox = offset
    if labels.ndim == 2:
        props = regionprops_table(
            labels,
            properties=(
                "label",
                "area",
                "centroid",
                "bbox",
                "perimeter",
                *SHAPE_COLUMNS,
            ),
        )
        area = props["area"].astype(float)
        perimeter = props["perimeter"].astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            circ = np.where(perimeter > 0, 4 * np.pi * area / perimeter**2, np.nan)
        df = pd.DataFrame(
            {
                "label_value": props["label"].astype(np.int64),
                "centroid_x": props["centroid-1"] + ox,
                "centroid_y": props["centroid-0"] + oy,
                "bbox_x": props["bbox-1"].astype(np.int64) + ox,
                "bbox_y": props["bbox-0"].astype(np.int64) + oy,
                "bbox_w": (props["bbox-3"] - props["bbox-1"]).astype(np.int64),
                "bbox_h": (props["bbox-2"] - props["bbox-0"]).astype(np.int64),
                "area_pixels": area,
                "perimeter": perimeter,
                "circularity": circ,
                **{c: props[c].astype(float) for c in SHAPE_COLUMNS},
            }
        )
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
