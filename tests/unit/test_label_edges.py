"""label_edges against the references it replaces: scikit-image's inner
boundaries and scipy's Euclidean distance transform, value for value."""

import numpy as np
import pytest
from scipy import ndimage
from skimage.segmentation import find_boundaries

from percell.demo import synthetic_nuclei
from percell.label_edges import distance_inside, inner_boundaries


@pytest.mark.parametrize("shape", [(40, 30), (1, 9), (6, 7, 8)])
def test_inner_boundaries_equal_scikit_image(shape):
    rng = np.random.default_rng(0)
    for _ in range(10):
        labels = rng.integers(0, 5, shape)
        np.testing.assert_array_equal(
            inner_boundaries(labels), find_boundaries(labels, mode="inner")
        )


def test_inner_boundaries_of_a_square_by_hand():
    labels = np.zeros((6, 6), np.int32)
    labels[1:5, 1:5] = 3
    expected = np.zeros((6, 6), bool)
    expected[1:5, 1:5] = True
    expected[2:4, 2:4] = False  # the inside of a 4x4 square
    np.testing.assert_array_equal(inner_boundaries(labels), expected)


def masks():
    rng = np.random.default_rng(1)
    _, truth = synthetic_nuclei((512, 384), 20, rng)
    yield truth > 0  # nuclei touching each other and the edges
    yield rng.random((64, 80)) > 0.2  # speckle
    yield np.eye(9, dtype=bool)
    yield np.zeros((5, 7), bool)
    yield np.ones((5, 7), bool)  # no background: scipy's own answer
    yield rng.random((5, 6, 7)) > 0.3  # 3-D: scipy


@pytest.mark.parametrize(
    "mask", list(masks()), ids=lambda m: "x".join(map(str, m.shape))
)
def test_distance_inside_equals_scipy_bit_for_bit(mask):
    expected = ndimage.distance_transform_edt(mask)
    got = distance_inside(mask)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)


def test_distance_inside_with_sampling_equals_scipy():
    mask = np.random.default_rng(2).random((6, 20, 20)) > 0.2
    np.testing.assert_array_equal(
        distance_inside(mask, (3.0, 1.0, 1.0)),
        ndimage.distance_transform_edt(mask, sampling=(3.0, 1.0, 1.0)),
    )


def test_distance_inside_uses_edt_where_exact(monkeypatch):
    """The fast path is the one taken on a 2-D tile (so the equality above
    is edt's, not scipy's twice)."""
    import edt

    calls = []
    real = edt.edtsq
    monkeypatch.setattr(edt, "edtsq", lambda *a, **k: calls.append(1) or real(*a, **k))
    distance_inside(np.eye(30, dtype=bool) == 0)
    assert calls == [1]
    distance_inside(np.ones((4, 4), bool))  # no background: scipy
    assert calls == [1]
