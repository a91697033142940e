"""The watershed on hard nuclei: it must clearly beat scikit-image's textbook
watershed, with default settings and only the diameter given."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from skimage import filters, segmentation
from skimage.feature import peak_local_max

from percell.demo import synthetic_nuclei
from percell.matching import matched_f1
from percell.watershed import segment_image


def textbook(image):
    """scikit-image's gallery recipe: Otsu, distance transform, its peaks."""
    binary = image > filters.threshold_otsu(image)
    distance = ndimage.distance_transform_edt(binary)
    coords = peak_local_max(distance, footprint=np.ones((3, 3)), labels=binary)
    mask = np.zeros(distance.shape, bool)
    mask[tuple(coords.T)] = True
    markers, _ = ndimage.label(mask)
    return segmentation.watershed(-distance, markers, mask=binary)


@pytest.mark.parametrize("diameter", [14, 24])
def test_touching_uneven_blurred_nuclei_on_a_gradient(diameter):
    image, truth = synthetic_nuclei((384, 384), diameter, np.random.default_rng(9))
    ours = matched_f1(truth, segment_image(image, diameter))
    theirs = matched_f1(truth, textbook(image))
    assert ours >= 0.55, ours
    assert ours >= theirs + 0.3, (ours, theirs)


def test_real_annotated_nuclei():
    """The 2018 Data Science Bowl image stardist's wheel ships (its mask is
    the annotation); nuclei about 24 px across."""
    dist = importlib.metadata.distribution("stardist")
    image = tifffile.imread(dist.locate_file("stardist/data/images/img2d.tif"))
    truth = tifffile.imread(dist.locate_file("stardist/data/images/mask2d.tif"))
    ours = matched_f1(truth, segment_image(image, 24))
    assert ours >= 0.85, ours
    assert ours >= matched_f1(truth, textbook(image)) + 0.3
