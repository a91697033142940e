"""The demo's drawing: cells painted all at once equal cells painted one by one."""

from __future__ import annotations

import numpy as np
import pytest

from percell.demo import _paint_cells


def paint_one_by_one(shape, cy, cx, radii):
    """The plain reading of the drawing: cell after cell, a nucleus taking
    only pixels no earlier nucleus took, the cell (twice the radius) added
    to the union."""
    labels = np.zeros(shape, np.int32)
    cells = np.zeros(shape, bool)
    yy, xx = np.indices(shape)
    for i, (y, x, r) in enumerate(zip(cy, cx, radii, strict=True)):
        d2 = (yy - y) ** 2 + (xx - x) ** 2
        labels[(d2 <= r**2) & (labels == 0)] = i + 1
        cells |= d2 <= (2 * r) ** 2
    return labels, cells


@pytest.mark.parametrize(
    ("shape", "spacing", "radius"),
    [
        ((120, 150), 40, 8.0),  # apart, cut by the borders
        ((97, 131), 12, 5.0),  # nuclei overlap: the lower id keeps the pixel
        ((64, 64), 30, 6.0),
    ],
)
def test_cells_painted_at_once_equal_cells_painted_one_by_one(shape, spacing, radius):
    rng = np.random.default_rng(spacing)
    ys = np.arange(spacing // 2, shape[0] - spacing // 2 + 1, spacing)
    xs = np.arange(spacing // 2, shape[1] - spacing // 2 + 1, spacing)
    cy, cx = (a.ravel() for a in np.meshgrid(ys, xs, indexing="ij"))
    jitter = spacing * 0.2
    cy = (cy + rng.uniform(-jitter, jitter, cy.size)).astype(int)
    cx = (cx + rng.uniform(-jitter, jitter, cx.size)).astype(int)
    radii = rng.uniform(0.75, 1.25, cy.size) * radius

    labels, cells = _paint_cells(shape, cy, cx, radii)
    want_labels, want_cells = paint_one_by_one(shape, cy, cx, radii)

    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_array_equal(cells, want_cells)
    assert len(np.unique(labels)) > 1
