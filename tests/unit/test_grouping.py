"""Region groups: one job per condition × timepoint, or parts of N regions."""

from __future__ import annotations

import numpy as np
import tifffile
import yaml

from percell.manifest import build_manifest, split_groups
from tests.conftest import base_config


def regions(n):
    return [{"region": f"r{i}", "key": f"c/t0/r{i}"} for i in range(n)]


def test_split_groups_keeps_small_groups_and_splits_big_ones():
    groups = split_groups({"c/t0": regions(40), "d/t0": regions(3)}, 16)
    assert {k: len(v) for k, v in groups.items()} == {
        "c/t0@1": 16,
        "c/t0@2": 16,
        "c/t0@3": 8,
        "d/t0": 3,
    }
    assert [r for k in ("c/t0@1", "c/t0@2", "c/t0@3") for r in groups[k]] == regions(40)


def test_384_wells_become_24_import_jobs(tmp_path):
    rows = []
    tile = np.zeros((8, 8), np.uint16)
    for i in range(384):
        path = tmp_path / f"w{i}.tif"
        tifffile.imwrite(path, tile)
        rows.append(f"plate1\tw{i:03d}\tDAPI\t{path}")
    sheet = tmp_path / "s.tsv"
    sheet.write_text("condition\tregion\tchannel\tpath\n" + "\n".join(rows) + "\n")
    config = base_config({"sample_sheet": str(sheet)}, grouping={"regions_per_job": 16})
    config["channels"] = [{"name": "DAPI"}]
    manifest = build_manifest(yaml.safe_load(yaml.safe_dump(config)))
    assert len(manifest.groups) == 24
    assert sum(len(r) for r in manifest.groups.values()) == 384


def test_import_params_of_tiff_files_name_no_scene_or_timepoint_index(tmp_path):
    """Scenes and file timepoints (vendor files) are left out of a TIFF's
    params, so an experiment made before they existed does not re-import."""
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint16))
    sheet = tmp_path / "s.tsv"
    sheet.write_text(f"condition\tregion\tchannel\tpath\nc\tr\tDAPI\t{path}\n")
    config = base_config({"sample_sheet": str(sheet)})
    config["channels"] = [{"name": "DAPI"}]
    manifest = build_manifest(yaml.safe_load(yaml.safe_dump(config)))
    params = manifest.import_params(next(iter(manifest.groups))).to_params()
    assert params["regions"][0]["files"] == [
        {"path": str(path), "channel": "DAPI", "z": None}
    ]
    assert "channel_map" not in params
