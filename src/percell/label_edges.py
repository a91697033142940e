"""Where labels meet: the pixels of a label that touch another label (or the
background) along an axis, and the distance of each pixel of a mask to its
nearest pixel outside it.

``inner_boundaries`` is scikit-image's ``find_boundaries(mode="inner")``
(connectivity 1) without its grey dilation and erosion; ``distance_inside``
is scipy's ``distance_transform_edt`` of a mask, through the ``edt`` package
where the result is bit-equal (a 2-D mask whose squared distances are exact
in float32), scipy's otherwise. The tests hold both equal to their
references.
"""

from __future__ import annotations

import numpy as np

#: squared distances up to this are integers exact in float32
EXACT_IN_FLOAT32 = 2**24


def inner_boundaries(labels: np.ndarray) -> np.ndarray:
    """Pixels of a label (> 0) with a face neighbour (4- in 2-D, 6- in 3-D)
    of another value."""
    edge = np.zeros(labels.shape, bool)
    for axis in range(labels.ndim):
        a = np.moveaxis(labels, axis, 0)
        e = np.moveaxis(edge, axis, 0)
        differs = a[:-1] != a[1:]
        e[:-1] |= differs
        e[1:] |= differs
    return edge & (labels > 0)


def distance_inside(
    mask: np.ndarray, sampling: tuple[float, ...] | None = None
) -> np.ndarray:
    """``ndimage.distance_transform_edt(mask, sampling=sampling)`` (float64).

    The ``edt`` package computes a 2-D mask's squared distances, integers
    that float32 holds exactly while they stay under 2**24 (the square of
    the image's diagonal bounds them), 2-3x faster than scipy; the square
    root is then taken in float64 as scipy takes it. Anisotropic sampling, a
    mask without background (scipy's result there is its own) and larger
    images go to scipy."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    exact = (
        mask.ndim == 2
        and sampling is None
        and sum(n * n for n in mask.shape) < EXACT_IN_FLOAT32
        and not mask.all()
    )
    if not exact:
        return ndimage.distance_transform_edt(mask, sampling=sampling)
    import edt

    squared = edt.edtsq(np.ascontiguousarray(mask), parallel=1)
    return np.sqrt(squared.astype(np.float64))
