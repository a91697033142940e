"""Segmentation quality of the watershed (no model) against scikit-image's
textbook watershed, and against percell's previous watershed.

Images: synthetic nuclei with ground truth that make a classical method
struggle (``percell.demo.synthetic_nuclei``: touching, 8x uneven brightness,
textured, blurred, noisy, on a rising background), at three diameters and
three seeds; and, where stardist is installed, the real annotated nuclei
image its wheel ships (2018 Data Science Bowl, Caicedo et al. 2019; BSD-3),
read from its data files without importing stardist. Score: matched F1 at
IoU 0.5 (one-to-one matches). Each method gets the true nucleus diameter.

    python bench/bench_watershed.py
"""

from __future__ import annotations

import argparse
import importlib.metadata

import numpy as np
import tifffile
from scipy import ndimage
from skimage import filters, segmentation
from skimage.feature import peak_local_max

from percell.demo import synthetic_nuclei
from percell.matching import matched_f1
from percell.watershed import segment_image


def textbook(image: np.ndarray, diameter: float) -> np.ndarray:
    """scikit-image's gallery watershed: Otsu, distance transform, its peaks."""
    binary = image > filters.threshold_otsu(image)
    distance = ndimage.distance_transform_edt(binary)
    coords = peak_local_max(distance, footprint=np.ones((3, 3)), labels=binary)
    mask = np.zeros(distance.shape, bool)
    mask[tuple(coords.T)] = True
    markers, _ = ndimage.label(mask)
    return segmentation.watershed(-distance, markers, mask=binary)


def previous(image: np.ndarray, diameter: float) -> np.ndarray:
    """percell's watershed before this benchmark: one Otsu threshold of the
    smoothed image, distance-transform seeds a third of a diameter apart."""
    smoothed = ndimage.gaussian_filter(image.astype(np.float32), 1.0)
    components, _ = ndimage.label(smoothed > filters.threshold_otsu(smoothed))
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    components[sizes[components] < 15] = 0
    mask = components > 0
    distance = ndimage.distance_transform_edt(mask)
    peaks = peak_local_max(
        distance,
        min_distance=max(1, round(diameter / 3)),
        threshold_abs=0.5,
        exclude_border=False,
    )
    markers = np.zeros(image.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    seeded = np.unique(components[tuple(peaks.T)])
    missing = np.setdiff1d(np.arange(1, components.max() + 1), seeded)
    if missing.size:
        spots = ndimage.maximum_position(distance, components, missing)
        for i, spot in enumerate(spots, start=len(peaks) + 1):
            markers[spot] = i
    labels = segmentation.watershed(-distance, markers, mask=mask)
    sizes = np.bincount(labels.ravel())
    labels[sizes[labels] < 15] = 0
    return labels


def percell(image: np.ndarray, diameter: float) -> np.ndarray:
    return segment_image(image, diameter)


def dsb_image() -> tuple[np.ndarray, np.ndarray] | None:
    """The annotated nuclei image in stardist's wheel, if installed."""
    try:
        dist = importlib.metadata.distribution("stardist")
    except importlib.metadata.PackageNotFoundError:
        return None
    folder = "stardist/data/images"
    image = tifffile.imread(dist.locate_file(f"{folder}/img2d.tif"))
    mask = tifffile.imread(dist.locate_file(f"{folder}/mask2d.tif"))
    return image, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    cases = []
    for seed in range(args.seeds):
        for diameter in (12, 20, 32):
            image, truth = synthetic_nuclei(
                (args.size, args.size), diameter, np.random.default_rng(100 + seed)
            )
            cases.append(
                (f"synthetic d={diameter} seed {seed}", image, truth, diameter)
            )
    real = dsb_image()
    if real is not None:
        cases.append(("DSB 2018 (stardist's test image)", *real, 24.0))
    else:
        print("(stardist not installed: the real annotated image is left out)")
    methods = {"textbook": textbook, "previous": previous, "percell": percell}
    print(f"{'image':36s} {'nuclei':>6s} " + " ".join(f"{m:>9s}" for m in methods))
    scores: dict[str, list[float]] = {m: [] for m in methods}
    for name, image, truth, diameter in cases:
        row = []
        for method, segment in methods.items():
            f1 = matched_f1(truth, segment(image, diameter))
            scores[method].append(f1)
            row.append(f"{f1:9.3f}")
        n = len(np.unique(truth)) - 1
        print(f"{name:36s} {n:6d} " + " ".join(row))
    means = {m: float(np.mean(v)) for m, v in scores.items()}
    print(
        f"{'mean matched F1 (IoU 0.5)':36s} {'':6s} "
        + " ".join(f"{means[m]:9.3f}" for m in methods)
    )
    print(
        f"percell / textbook: {means['percell'] / means['textbook']:.2f}x; "
        f"percell / previous: {means['percell'] / means['previous']:.2f}x"
    )


if __name__ == "__main__":
    main()
