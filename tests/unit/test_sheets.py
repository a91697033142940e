"""Sample sheets and directory scans."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from percell.errors import ConfigError
from percell.sheets import (
    COLUMNS,
    check_sheet,
    expand_files,
    pattern_to_regex,
    read_sample_sheet,
    scan_directory,
)


def test_scan_yields_the_same_rows_as_a_sheet(tmp_path):
    for cond in ("ctrl", "drug"):
        for tp in ("t0", "t1"):
            for ch in ("DAPI", "GFP"):
                p = tmp_path / "raw" / cond / tp / f"r_1_{ch}.tif"
                p.parent.mkdir(parents=True, exist_ok=True)
                tifffile.imwrite(p, np.zeros((4, 4), np.uint8))
    scanned = scan_directory(
        tmp_path / "raw",
        "{condition}/{timepoint}/{region}_{channel}.tif",
        channels=["DAPI", "GFP"],
    )
    sheet = tmp_path / "s.csv"
    scanned.to_csv(
        sheet,
        index=False,
        columns=["condition", "timepoint", "region", "channel", "path"],
    )
    read = read_sample_sheet(sheet)
    assert len(scanned) == 8
    assert set(scanned.region) == {"r_1"}
    assert scanned.fillna("").equals(read.fillna(""))


def test_scan_with_z(tmp_path):
    for z in range(3):
        tifffile.imwrite(tmp_path / f"c_r_DAPI_z{z}.tif", np.zeros((4, 4), np.uint8))
    rows = scan_directory(
        tmp_path, "{condition}_{region}_{channel}_z{z}.tif", channels=["DAPI"]
    )
    assert sorted(rows.z) == [0, 1, 2]


def test_scan_matching_nothing(tmp_path):
    with pytest.raises(ConfigError, match="matches no file"):
        scan_directory(tmp_path, "{condition}/{region}.tif")


def test_pattern_with_unknown_field():
    with pytest.raises(ConfigError, match=r"unknown field \{well\}"):
        pattern_to_regex("{condition}/{well}.tif")


def test_sheet_with_unknown_column(tmp_path):
    sheet = tmp_path / "s.tsv"
    sheet.write_text("condition\tregion\tpath\tcolour\nc\tr\tx.tif\tred\n")
    with pytest.raises(ConfigError, match=r"unknown columns \['colour'\]"):
        read_sample_sheet(sheet)


def test_sheet_row_missing_path(tmp_path):
    sheet = tmp_path / "s.tsv"
    sheet.write_text("condition\tregion\tchannel\tpath\nc\tr\tDAPI\t\n")
    with pytest.raises(
        ConfigError, match=r"s.tsv, row 2.*'path' is a required property"
    ):
        read_sample_sheet(sheet)


def test_sheet_z_must_be_an_integer(tmp_path):
    sheet = tmp_path / "s.tsv"
    sheet.write_text("condition\tregion\tchannel\tpath\tz\nc\tr\tDAPI\ta.tif\tone\n")
    with pytest.raises(
        ConfigError, match=r"row 2: z: 'one' is a string, expected a whole"
    ):
        read_sample_sheet(sheet)


def test_relative_paths_are_relative_to_the_sheet(tmp_path):
    (tmp_path / "sub").mkdir()
    sheet = tmp_path / "sub" / "s.tsv"
    sheet.write_text("condition\tregion\tchannel\tpath\nc\tr\tDAPI\timg.tif\n")
    assert read_sample_sheet(sheet).path[0] == str(tmp_path / "sub" / "img.tif")


def _sheet(rows):
    df = pd.DataFrame(rows).reindex(columns=COLUMNS).fillna("")
    return check_sheet(df.astype(str), "test")


def contents(mapping):
    """A stand-in for reading the files: {path: ((scene, timepoints), ...)}."""
    return lambda paths: {p: mapping[p] for p in paths}


def test_every_scene_of_a_file_without_scene_becomes_a_region():
    sheet = _sheet(
        [
            {"condition": "c", "region": "r", "path": "a.czi"},
            {"condition": "c", "region": "q", "path": "a.czi", "scene": "B2"},
            {"condition": "c", "region": "t", "channel": "DAPI", "path": "t.tif"},
        ]
    )
    asked = []

    def contents_of(paths):
        asked.append(paths)
        return {"a.czi": (("B2", 1), ("C3", 1))}

    out = expand_files(sheet, lambda p: p.endswith(".czi"), contents_of, None)
    assert asked == [["a.czi"]]  # only vendor files are opened
    got = sorted(zip(out["region"], out["scene"].fillna(""), strict=True))
    assert got == [("q", "B2"), ("r_B2", "B2"), ("r_C3", "C3"), ("t", "")]


def test_a_file_expanding_into_rows_with_and_without_timepoints_says_so():
    """One sheet row; the file holds a time series and a single image: the
    error names the row, what the file holds and what it expanded into."""
    sheet = _sheet([{"condition": "sweep", "region": "r", "path": "a.lif"}])
    series = contents({"a.lif": (("Series 1", 3), ("Series 2", 1))})
    with pytest.raises(
        ConfigError,
        match=r"row 2 \(sweep, a\.lif\): the file holds scenes Series 1 \(3 "
        r"timepoints\), Series 2 \(1 timepoint\), so the row became regions "
        r"r_Series_1 at t0, r_Series_1 at t1, r_Series_1 at t2, r_Series_2;",
    ):
        expand_files(sheet, lambda p: True, series, ["t0", "t1", "t2"])


def test_scene_names_become_valid_names_or_indices():
    sheet = _sheet([{"condition": "c", "region": "r", "path": "a.lif"}])
    series = contents({"a.lif": (("Series 1", 1), ("Series/2", 1))})
    out = expand_files(sheet, lambda p: True, series, None)
    assert out["region"].tolist() == ["r_Series_1", "r_Series_2"]
    assert out["scene"].tolist() == ["Series 1", "Series/2"]
    clash = contents({"a.lif": (("a b", 1), ("a:b", 1))})
    out = expand_files(sheet, lambda p: True, clash, None)
    assert out["region"].tolist() == ["r_s0", "r_s1"]


def test_a_file_of_one_scene_and_one_timepoint_keeps_its_row():
    sheet = _sheet([{"condition": "c", "region": "r", "path": "a.nd2"}])
    out = expand_files(sheet, lambda p: True, contents({"a.nd2": (("x", 1),)}), None)
    assert out["region"].tolist() == ["r"] and out["scene"].tolist() == [None]


def test_timepoints_inside_a_file_become_the_named_timepoints():
    sheet = _sheet(
        [
            {"condition": "c", "region": "r", "path": "a.czi", "scene": "1"},
            {"condition": "d", "region": "r", "path": "b.czi"},
        ]
    )
    files = contents({"a.czi": (("p0", 1), ("p1", 3)), "b.czi": (("only", 3),)})
    out = expand_files(sheet, lambda p: True, files, ["t0", "t5", "t9"])
    got = sorted(zip(out["condition"], out["timepoint"], out["t"], strict=True))
    assert got == [(c, f"t{n}", t) for c in "cd" for t, n in enumerate((0, 5, 9))]
    with pytest.raises(ConfigError, match=r"a\.czi: holds 3 timepoints, but file_"):
        expand_files(sheet, lambda p: True, files, ["t0", "t1"])
    # without the setting the rows stay; the import refuses them, with advice
    assert len(expand_files(sheet, lambda p: True, files, None)) == 2


def test_bio_reps_come_from_the_sheet_one_per_region(tmp_path):
    from percell.manifest import build_manifest
    from tests.conftest import base_config

    for name in ("a", "b"):
        tifffile.imwrite(tmp_path / f"{name}.tif", np.zeros((8, 8), np.uint16))
    sheet = tmp_path / "s.tsv"
    sheet.write_text(
        "condition\tregion\tchannel\tpath\tbio_rep\n"
        "c\tr1\tDAPI\ta.tif\tN2\nc\tr1\tGFP\tb.tif\tN2\nc\tr2\tDAPI\ta.tif\t\n"
        "c\tr2\tGFP\tb.tif\t\n"
    )
    manifest = build_manifest(base_config({"sample_sheet": str(sheet)}))
    assert manifest.bio_reps == {"c/r1": "N2"}
    assert manifest.register_params().bio_reps == {"c/r1": "N2"}
    sheet.write_text(
        "condition\tregion\tchannel\tpath\tbio_rep\n"
        "c\tr1\tDAPI\ta.tif\tN2\nc\tr1\tGFP\tb.tif\tN3\n"
    )
    with pytest.raises(
        ConfigError, match=r"region='r1' has rows with different bio_rep"
    ):
        read_sample_sheet(sheet)
    sheet.write_text(
        "condition\tregion\tchannel\tpath\tbio_rep\nc\tr1\tDAPI\ta.tif\tN 2\n"
    )
    with pytest.raises(ConfigError, match=r"invalid bio_rep name 'N 2'.*row 2"):
        read_sample_sheet(sheet)


def test_a_sheet_without_bio_reps_leaves_register_params_as_they_were(tmp_path):
    from percell.manifest import build_manifest
    from tests.conftest import base_config

    tifffile.imwrite(tmp_path / "a.tif", np.zeros((8, 8), np.uint16))
    sheet = tmp_path / "s.tsv"
    sheet.write_text(
        "condition\tregion\tchannel\tpath\nc\tr1\tDAPI\ta.tif\nc\tr1\tGFP\ta.tif\n"
    )
    params = build_manifest(base_config({"sample_sheet": str(sheet)})).register_params()
    assert "bio_reps" not in params.to_params()


def test_plate_map_bio_reps(tmp_path):
    from percell.plate_layout import read_plate_bio_reps

    pm = tmp_path / "map.csv"
    pm.write_text("well,condition,bio_rep\nB3,ctrl,N2\nC04,drug,\n")
    assert read_plate_bio_reps(pm) == {"B03": "N2"}
    pm.write_text("well,condition\nB3,ctrl\n")
    assert read_plate_bio_reps(pm) == {}
