"""Pyramid reductions and level counts."""

from __future__ import annotations

import numpy as np
import pytest

from percell.pyramid import (
    build_levels,
    count_levels,
    max_2x2,
    mean_2x2,
    nearest_2x2,
)
from percell.storage import IMAGE_COMPRESSOR, create_array, open_group


def reference_mean(a: np.ndarray) -> np.ndarray:
    """Edge-padded 2×2 mean in float64, rounded half up: the definition, spelled out."""
    h, w = a.shape[-2:]
    pad = [(0, 0)] * (a.ndim - 2) + [(0, h % 2), (0, w % 2)]
    p = np.pad(a.astype(np.float64), pad, mode="edge")
    blocks = p.reshape(*p.shape[:-2], p.shape[-2] // 2, 2, p.shape[-1] // 2, 2)
    return np.floor(blocks.mean(axis=(-3, -1)) + 0.5).astype(a.dtype)


@pytest.mark.parametrize("shape", [(6, 8), (7, 9), (2, 5, 3)])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "uint32"])
def test_mean_2x2_matches_reference(shape, dtype):
    a = np.random.default_rng(1).integers(0, 200, shape).astype(dtype)
    np.testing.assert_array_equal(mean_2x2(a), reference_mean(a))


def test_mean_2x2_does_not_overflow_uint16():
    a = np.full((4, 4), 65535, np.uint16)
    assert (mean_2x2(a) == 65535).all()


def test_nearest_keeps_only_existing_label_ids():
    labels = np.random.default_rng(2).integers(0, 50, (33, 47)).astype(np.int32)
    down = nearest_2x2(labels)
    assert down.shape == (17, 24)
    assert set(np.unique(down)) <= set(np.unique(labels))


def test_max_keeps_thin_foreground():
    mask = np.zeros((8, 8), np.uint8)
    mask[3, :] = 255
    assert (max_2x2(mask)[1] == 255).all()


@pytest.mark.parametrize(
    ("shape", "levels", "expected"),
    [
        ((512, 512), "auto", 1),
        ((513, 100), "auto", 2),
        ((4096, 4096), "auto", 4),
        ((19440, 20480), "auto", 7),
        ((5000, 100), 1, 2),  # > 4096 px always gets a level
        ((100, 100), 3, 3),
        ((4, 4), 10, 3),  # never below one pixel
    ],
)
def test_count_levels(shape, levels, expected):
    assert count_levels(*shape, levels) == expected


def test_build_levels_chains_from_previous_level(tmp_path):
    data = np.random.default_rng(3).integers(0, 4000, (2, 1100, 1300)).astype(np.uint16)
    group = open_group(tmp_path / "img", mode="w")
    create_array(group, "0", data.shape, (1, 512, 512), data.dtype, IMAGE_COMPRESSOR)[
        :
    ] = data
    group.attrs.put(
        {
            "multiscales": [
                {
                    "version": "0.4",
                    "axes": [
                        {"name": "c", "type": "channel"},
                        {"name": "y", "type": "space"},
                        {"name": "x", "type": "space"},
                    ],
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [
                                {"type": "scale", "scale": [1.0, 0.5, 0.5]}
                            ],
                        }
                    ],
                }
            ]
        }
    )
    build_levels(tmp_path / "img", 3, mean_2x2, IMAGE_COMPRESSOR, threads=2)
    group = open_group(tmp_path / "img")
    level1 = reference_mean(data)
    np.testing.assert_array_equal(group["1"][:], level1)
    np.testing.assert_array_equal(group["2"][:], reference_mean(level1))
    assert group["2"].shape == (2, 275, 325)
    scales = [
        d["coordinateTransformations"][0]["scale"]
        for d in group.attrs["multiscales"][0]["datasets"]
    ]
    assert scales == [[1.0, 0.5, 0.5], [1.0, 1.0, 1.0], [1.0, 2.0, 2.0]]
    # rebuilding with fewer levels removes the extra ones
    build_levels(tmp_path / "img", 2, mean_2x2, IMAGE_COMPRESSOR)
    assert sorted(open_group(tmp_path / "img").array_keys()) == ["0", "1"]
