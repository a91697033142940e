"""A real workflow run on a small raw experiment: layout, pixels, NGFF, database."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import zarr
from ome_zarr_models.v04 import Image

from percell.storage import open_group


def region_groups(experiment):
    for zattrs in sorted((experiment / "images.zarr").rglob(".zattrs")):
        if "multiscales" in json.loads(zattrs.read_text()):
            yield zattrs.parent


def test_every_region_is_valid_ngff(small_experiment):
    groups = list(region_groups(small_experiment["experiment"]))
    assert len(groups) == len(small_experiment["regions"])
    for path in groups:
        image = Image.from_zarr(zarr.open_group(str(path), mode="r"))
        ms = image.attributes.multiscales[0]
        assert ms.datasets[0].path == "0"
        assert [a.name for a in ms.axes] == ["c", "y", "x"]


def test_level0_equals_source_pixels(small_experiment):
    exp = small_experiment["experiment"]
    for (cond, tp, region, ch), pixels in small_experiment["pixels"].items():
        arr = open_group(exp / "images.zarr" / cond / tp / region)["0"]
        c = ["DAPI", "GFP"].index(ch)
        np.testing.assert_array_equal(arr[c], pixels)


def test_level0_encoding_matches_percell3(small_experiment):
    exp = small_experiment["experiment"]
    meta = json.loads((exp / "images.zarr/ctrl/t0/r1/0/.zarray").read_text())
    assert meta["chunks"] == [1, 300, 512]  # (1,512,512) clipped to the 300-row image
    assert meta["dimension_separator"] == "/"
    assert meta["zarr_format"] == 2
    assert meta["dtype"] == "<u2"
    assert meta["compressor"] == {
        "id": "blosc",
        "cname": "lz4",
        "clevel": 5,
        "shuffle": 2,
        "blocksize": 0,
    }
    for store in ("images.zarr", "labels.zarr", "masks.zarr"):
        assert json.loads((exp / store / ".zattrs").read_text()) == {
            "percell_version": "3.0.0"
        }
        assert json.loads((exp / store / ".zgroup").read_text()) == {"zarr_format": 2}
    assert (exp / "images.zarr/ctrl/t0/.zgroup").is_file()


def test_omero_channels_and_window(small_experiment):
    exp = small_experiment["experiment"]
    attrs = json.loads((exp / "images.zarr/ctrl/t0/r1/.zattrs").read_text())
    channels = attrs["omero"]["channels"]
    assert [c["label"] for c in channels] == ["DAPI", "GFP"]
    assert [c["color"] for c in channels] == ["0000FF", "00FF00"]
    dapi = small_experiment["pixels"][("ctrl", "t0", "r1", "DAPI")]
    assert channels[0]["window"] == {
        "min": 0.0,
        "max": 65535.0,
        "start": float(dapi.min()),
        "end": float(dapi.max()),
    }


def test_pyramid_levels_are_2x2_means_of_previous_level(small_experiment):
    exp = small_experiment["experiment"]
    group = open_group(exp / "images.zarr/ctrl/t0/r1")
    # 300×700 → auto: 150×350 fits in one 512 chunk, so exactly 2 levels.
    assert sorted(group.array_keys()) == ["0", "1"]
    level0 = group["0"][:].astype(np.float64)
    padded = np.pad(level0, [(0, 0), (0, 0), (0, 0)])  # 300, 700: both even
    expected = np.floor(
        (
            padded[:, 0::2, 0::2]
            + padded[:, 1::2, 0::2]
            + padded[:, 0::2, 1::2]
            + padded[:, 1::2, 1::2]
        )
        / 4
        + 0.5
    )
    np.testing.assert_array_equal(group["1"][:], expected.astype(np.uint16))
    scales = [
        d["coordinateTransformations"][0]["scale"]
        for d in group.attrs["multiscales"][0]["datasets"]
    ]
    assert scales == [[1.0, 0.5, 0.5], [1.0, 1.0, 1.0]]


def test_database_rows(small_experiment):
    exp = small_experiment["experiment"]
    conn = sqlite3.connect(exp / "experiment.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert conn.execute("SELECT name, percell_version FROM experiments").fetchall() == [
        ("test", "3.0.0")
    ]
    assert conn.execute(
        "SELECT name, color, display_order FROM channels ORDER BY display_order"
    ).fetchall() == [("DAPI", "0000FF", 0), ("GFP", "00FF00", 1)]
    rows = conn.execute(
        """SELECT c.name, t.name, r.name, r.width, r.height, r.pixel_size_um,
                  r.zarr_path, r.source_file
           FROM regions r JOIN conditions c ON c.id = r.condition_id
           LEFT JOIN timepoints t ON t.id = r.timepoint_id ORDER BY 1, 2, 3"""
    ).fetchall()
    assert [r[:3] for r in rows] == sorted(small_experiment["regions"])
    for cond, tp, region, width, height, px, zarr_path, source in rows:
        assert (width, height, px) == (700, 300, 0.5)
        assert zarr_path == f"images.zarr/{cond}/{tp}/{region}"
        assert (exp / zarr_path / "0" / ".zarray").is_file()
        assert source.endswith(f"{region}_DAPI.tif")


@pytest.mark.parametrize("step", ["import", "pyramid"])
def test_sentinels_record_provenance(small_experiment, step):
    sentinel = json.loads(
        (small_experiment["experiment"] / f".workflow/{step}/ctrl/t0.json").read_text()
    )
    assert sentinel["step"] == step
    assert sentinel["group"] == "ctrl/t0"
    assert {"percell", "zarr", "numpy"} <= set(sentinel["versions"])
    assert sentinel["inputs"] and all("size" in i for i in sentinel["inputs"])
    assert sentinel["params"]
