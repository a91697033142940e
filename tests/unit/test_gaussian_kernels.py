"""gaussian_kernels.gaussian_filter against scipy's, bit for bit."""

import numpy as np
import pytest
from scipy import ndimage

from percell.gaussian_kernels import gaussian_filter


def assert_same(expected: np.ndarray, got: np.ndarray) -> None:
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equal_to_scipy_on_random_images(ndim, dtype):
    """Sizes from one pixel (the kernel reflected many times over) up,
    sigmas per axis (zero included: that axis is left alone), the smoothing
    and second-derivative orders, and the truncations percell uses."""
    rng = np.random.default_rng(ndim * 10 + (dtype == np.float32))
    for trial in range(60):
        shape = tuple(int(n) for n in rng.integers(1, 40, ndim))
        image = (rng.random(shape) * 2000 - 500).astype(dtype)
        sigma = [float(rng.uniform(0, 7)) for _ in range(ndim)]
        if trial % 4 == 0:
            sigma[0] = 0.0
        order = [int(rng.choice([0, 2])) for _ in range(ndim)]
        truncate = float(rng.choice([4.0, 3.0, 2.0]))
        assert_same(
            ndimage.gaussian_filter(image, sigma, order, truncate=truncate),
            gaussian_filter(image, sigma, order, truncate=truncate),
        )


def test_equal_to_scipy_on_a_watershed_sized_image():
    """The Laplacian of Gaussian and the smoothing of the watershed on a
    2048-wide float32 image, and a float64 distance map."""
    rng = np.random.default_rng(5)
    image = (rng.random((300, 2048)) * 60000).astype(np.float32)
    for sigma, order in ((1.67, 0), (6.0, (2, 0)), (6.0, (0, 2))):
        assert_same(
            ndimage.gaussian_filter(image, sigma, order),
            gaussian_filter(image, sigma, order),
        )
    distance = ndimage.distance_transform_edt(image > 30000)
    assert_same(ndimage.gaussian_filter(distance, 1.0), gaussian_filter(distance, 1.0))


def test_what_it_does_not_compute_goes_to_scipy():
    """Integer images and odd (antisymmetric) orders: scipy's own result."""
    rng = np.random.default_rng(6)
    ints = rng.integers(0, 1000, (30, 20)).astype(np.uint16)
    assert_same(ndimage.gaussian_filter(ints, 2.0), gaussian_filter(ints, 2.0))
    floats = rng.random((30, 20)).astype(np.float32)
    assert_same(
        ndimage.gaussian_filter(floats, 2.0, order=(1, 0)),
        gaussian_filter(floats, 2.0, order=(1, 0)),
    )


def test_the_input_is_left_as_it_was_and_never_returned():
    image = np.random.default_rng(7).random((20, 30))
    before = image.copy()
    out = gaussian_filter(image, (0.0, 0.0))  # no axis filtered: a copy
    assert out is not image
    gaussian_filter(image, 3.0)
    assert_same(before, image)


def test_a_constant_image_stays_constant_and_a_step_is_symmetric():
    """By hand: the taps sum to one, and the reflecting edge keeps a
    constant image constant; a centred impulse gives the symmetric taps."""
    flat = np.full((9, 9), 7.0)
    np.testing.assert_allclose(gaussian_filter(flat, 2.0), 7.0, rtol=1e-15)
    impulse = np.zeros(41)
    impulse[20] = 1.0
    taps = gaussian_filter(impulse, 3.0)
    np.testing.assert_array_equal(taps, taps[::-1])
    assert taps.argmax() == 20
    np.testing.assert_allclose(taps.sum(), 1.0, rtol=1e-12)
