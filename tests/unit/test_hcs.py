"""HCS plates: file-name patterns (plate_files), field placement and stitching
(wells), plate and well metadata (plate_layout)."""

from __future__ import annotations

import numpy as np
import pytest
from ome_zarr_models.v04.image import Image

from percell.chunks import BlockIO
from percell.contracts import Channel, PlateInput, Region, WellSpec
from percell.errors import ConfigError, SourceImageError
from percell.importer import write_well
from percell.plate_files import compile_pattern, grid_position, parse_names, split_well
from percell.plate_layout import plate_attrs, row_index, row_name, well_attrs
from percell.pyramid import build_levels, count_levels, mean_2x2
from percell.storage import IMAGE_COMPRESSOR, open_group
from percell.wells import (
    field_records,
    place_by_positions,
    plan_well,
    plate_regions,
)
from tests.hcs_support import write_plate

CHANNELS = ["DAPI", "GFP"]


def plate_config(directory, **extra):
    cfg = {
        "name": "p1",
        "directory": str(directory),
        "pattern": "metaxpress",
        "channel_map": {},
        "grid": {"rows": 2, "columns": 3, "order": "row-major", "overlap": 0},
        "positions": None,
        "plate_map": None,
        "missing_fields": "refuse",
        "demo": None,
    }
    cfg.update(extra)
    return PlateInput.model_validate(cfg)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("metaxpress", "B03_s4_w2.tif", ("B03", 4, "2", None, None)),
        (
            "metaxpress",
            "TimePoint_2/ZStep_3/Plate 1_C7_s12_w1.TIF",
            ("C07", 12, "1", 3, "2"),
        ),
        (
            "cellvoyager",
            "AssayPlate_Greiner_#655090_D04_T0001F001L01A01Z01C02.tif",
            ("D04", 1, "02", 1, "0001"),
        ),
        (
            "{well}/f{field}_{channel}.tiff",
            "AA12/f3_DAPI.tiff",
            ("AA12", 3, "DAPI", None, None),
        ),
        ("*_{well}_{field}_z{z}.tif", "run1_E5_7_z0.tif", ("E05", 7, None, 0, None)),
    ],
)
def test_patterns_parse_well_field_channel_z_timepoint(pattern, name, expected):
    (found,) = parse_names("d", [name], pattern)
    got = (
        found.well,
        found.field,
        found.channel,
        found.z,
        found.timepoint,
    )
    assert got == expected


def test_pattern_ignores_thumbnails_and_other_files():
    names = ["B03_s1_w1.tif", "B03_s1_w1_thumb.tif", "notes.txt", "B03_s1.tif"]
    assert [f.relative for f in parse_names("d", names, "metaxpress")] == [
        "B03_s1_w1.tif"
    ]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("{well}_{site}.tif", r"unknown placeholder \{site\}"),
        ("{field}_{channel}.tif", r"lacks \{well\}"),
        ("{well}_{field}_{field}.tif", r"\{field\} appears twice"),
    ],
)
def test_bad_patterns(pattern, message):
    with pytest.raises(ConfigError, match=message):
        compile_pattern(pattern)


def test_well_names_rows_and_columns():
    assert split_well("b3") == ("B", "03")
    assert [row_index(r) for r in ("A", "P", "Z", "AA", "AF")] == [
        0,
        15,
        25,
        26,
        31,
    ]
    assert all(row_name(row_index(r)) == r for r in ("A", "H", "Z", "AA", "AF"))
    with pytest.raises(ConfigError, match="not a well name"):
        split_well("3B")


def test_grid_orders():
    row_major = [grid_position(f, 2, 3, "row-major") for f in range(1, 7)]
    snake = [grid_position(f, 2, 3, "snake") for f in range(1, 7)]
    assert row_major == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert snake == [(0, 0), (0, 1), (0, 2), (1, 2), (1, 1), (1, 0)]


def test_stage_positions_become_a_grid_with_jitter():
    # 2 x 3 fields 100 um apart, a micrometre of stage jitter
    positions = {
        ("B03", f): (x * 100.0 + j, y * 100.0 - j)
        for f, (y, x, j) in enumerate(
            [
                (0, 0, 0.4),
                (0, 1, -0.7),
                (0, 2, 0.2),
                (1, 0, 0.9),
                (1, 1, 0),
                (1, 2, -0.3),
            ],
            start=1,
        )
    }
    place, shape, stride = place_by_positions(
        "B03", list(range(1, 7)), positions, "pos.csv"
    )
    assert shape == (2, 3)
    assert place == {1: (0, 0), 2: (0, 1), 3: (0, 2), 4: (1, 0), 5: (1, 1), 6: (1, 2)}
    assert stride == pytest.approx((100.0, 100.0), abs=1.5)


def test_plate_and_well_metadata():
    regions = [
        Region(
            condition="c",
            timepoint="t1",
            region=f"{r}{c}",
            key=f"p1/{r}/{c}/{a}",
            files=(),
            well=WellSpec(
                plate="p1",
                row=r,
                column=c,
                acquisition=a,
                grid=(1, 1),
                overlap=(0, 0),
                fields=(),
            ),
        )
        for r, c, a in [("B", "03", 0), ("B", "03", 1), ("D", "11", 0)]
    ]
    plate = plate_attrs("p1", regions)["plate"]
    assert [r["name"] for r in plate["rows"]] == ["A", "B", "C", "D"]
    assert [c["name"] for c in plate["columns"]][-1] == "11"
    assert plate["wells"] == [
        {"path": "B/03", "rowIndex": 1, "columnIndex": 2},
        {"path": "D/11", "rowIndex": 3, "columnIndex": 10},
    ]
    assert [a["id"] for a in plate["acquisitions"]] == [0, 1]
    well = well_attrs(regions[:2])["well"]
    assert well["images"] == [
        {"path": "0", "acquisition": 0},
        {"path": "1", "acquisition": 1},
    ]


@pytest.mark.parametrize(
    ("order", "overlap", "n_z"), [("row-major", (0, 0), 1), ("snake", (6, 8), 2)]
)
def test_stitched_well_equals_fields_on_the_grid(tmp_path, order, overlap, n_z):
    truth = write_plate(
        tmp_path / "raw", ["B03"], overlap=overlap, n_z=n_z, order=order
    )
    cfg = plate_config(
        tmp_path / "raw",
        grid={"rows": 2, "columns": 3, "order": order, "overlap": list(overlap)},
    )
    (region,) = plate_regions(cfg, CHANNELS)
    assert region.key == "p1/B/03/0" and region.region == "B03"
    plan = plan_well(region, CHANNELS, 0.5)
    sy, sx = 40 - overlap[0], 50 - overlap[1]
    assert plan.chunk_yx == (sy, sx)
    write_well(tmp_path / "well", plan)
    arr = open_group(tmp_path / "well")["0"]
    assert arr.chunks[-2:] == (sy, sx)
    np.testing.assert_array_equal(arr[:], truth[("B03", None)])


def test_missing_fields_refused_with_file_names_or_zero_filled(tmp_path, caplog):
    truth = write_plate(tmp_path / "raw", ["B03"], skip={("B03", 5)})
    with pytest.raises(
        ConfigError, match=r"Plate_B03_s5_w1\.tif.*Plate_B03_s5_w2\.tif"
    ):
        plate_regions(plate_config(tmp_path / "raw"), CHANNELS)
    (region,) = plate_regions(
        plate_config(tmp_path / "raw", missing_fields="zeros"), CHANNELS
    )
    assert "field(s) [5] missing, filled with zeros" in caplog.text
    plan = plan_well(region, CHANNELS, 0.5)
    write_well(tmp_path / "well", plan)
    np.testing.assert_array_equal(
        open_group(tmp_path / "well")["0"][:], truth[("B03", None)]
    )


def test_partial_field_is_refused_even_with_zero_filling(tmp_path):
    write_plate(tmp_path / "raw", ["B03"])
    (tmp_path / "raw/Plate_B03_s2_w2.tif").unlink()
    with pytest.raises(ConfigError, match=r"missing field file\(s\) .*Plate_B03_s2_w2"):
        plate_regions(plate_config(tmp_path / "raw", missing_fields="zeros"), CHANNELS)


def test_fields_of_different_shapes_are_refused(tmp_path):
    write_plate(tmp_path / "raw", ["B03"])
    import tifffile

    tifffile.imwrite(tmp_path / "raw/Plate_B03_s4_w1.tif", np.zeros((40, 52), "u2"))
    tifffile.imwrite(tmp_path / "raw/Plate_B03_s4_w2.tif", np.zeros((40, 52), "u2"))
    (region,) = plate_regions(plate_config(tmp_path / "raw"), CHANNELS)
    with pytest.raises(
        SourceImageError, match=r"fields differ in shape.*but field 4 .*\(2, 40, 52\)"
    ):
        plan_well(region, CHANNELS, 0.5)


def test_well_pyramid_goes_to_one_chunk_and_equals_repeated_means(tmp_path):
    # 3 x 3 fields of 40 x 50: 120 x 150 -> 60 x 75 -> 30 x 38 (fits one chunk)
    truth = write_plate(tmp_path / "raw", ["B03"], grid=(3, 3), n_channels=1)
    cfg = plate_config(
        tmp_path / "raw",
        grid={"rows": 3, "columns": 3, "order": "row-major", "overlap": 0},
    )
    (region,) = plate_regions(cfg, ["DAPI"])
    plan = plan_well(region, ["DAPI"], 0.5)
    write_well(tmp_path / "well", plan)
    n = count_levels(120, 150, "auto", chunk=plan.chunk_yx, at_least_one_chunk=True)
    assert n == 3
    assert count_levels(120, 150, 2, chunk=plan.chunk_yx, at_least_one_chunk=True) == 3
    group = open_group(tmp_path / "well", mode="r+")
    from percell import ngff

    group.attrs.put(
        ngff.image_attrs(
            "B03",
            1,
            0.5,
            None,
            False,
            [Channel(name="DAPI")],
            [(0, 65535, 0, 4000)],
        )
    )
    build_levels(tmp_path / "well", n, mean_2x2, IMAGE_COMPRESSOR, threads=2)
    expected = truth[("B03", None)]
    for level in range(n):
        arr = open_group(tmp_path / "well")[str(level)]
        assert arr.chunks == (1, min(40, arr.shape[1]), min(50, arr.shape[2]))
        np.testing.assert_array_equal(arr[:], expected)
        expected = mean_2x2(expected)
    Image.from_zarr(open_group(tmp_path / "well"))
    assert BlockIO(open_group(tmp_path / "well")["2"]).chunks == (1, 30, 38)


def test_plate_map_conditions_and_unknown_wells(tmp_path):
    write_plate(tmp_path / "raw", ["B03", "C04"])
    pm = tmp_path / "map.csv"
    pm.write_text("well,condition\nB3,ctrl\nC04,drug\n")
    regions = plate_regions(plate_config(tmp_path / "raw", plate_map=str(pm)), CHANNELS)
    assert [(r.region, r.condition) for r in regions] == [
        ("B03", "ctrl"),
        ("C04", "drug"),
    ]
    pm.write_text("well,condition\nB03,ctrl\n")
    with pytest.raises(
        ConfigError, match=r"well\(s\) C04 have images but are not in the plate map"
    ):
        plate_regions(plate_config(tmp_path / "raw", plate_map=str(pm)), CHANNELS)


def test_duplicate_fields_and_no_match(tmp_path):
    write_plate(tmp_path / "raw", ["B03"])
    (tmp_path / "raw/Other_B03_s1_w1.tif").write_bytes(
        (tmp_path / "raw/Plate_B03_s1_w1.tif").read_bytes()
    )
    with pytest.raises(ConfigError, match=r"duplicate fields.*Other_B03_s1_w1.tif"):
        plate_regions(plate_config(tmp_path / "raw"), CHANNELS)
    with pytest.raises(ConfigError, match=r"matches no file under"):
        plate_regions(plate_config(tmp_path / "raw", pattern="cellvoyager"), CHANNELS)


def test_timepoints_become_acquisitions(tmp_path):
    write_plate(
        tmp_path / "raw", ["B03"], timepoints=[1, 2], style="cellvoyager", n_z=2
    )
    regions = plate_regions(
        plate_config(tmp_path / "raw", pattern="cellvoyager"), CHANNELS
    )
    assert [(r.key, r.timepoint) for r in regions] == [
        ("p1/B/03/0", "t1"),
        ("p1/B/03/1", "t2"),
    ]
    # CellVoyager numbers z from 1: planes are 0-based in the image
    assert {f.z for f in regions[0].files} == {0, 1}


def test_stage_positions_place_fields_and_give_the_overlap(tmp_path):
    """Fields of 40 x 50 px at 0.5 um/px, 17 um apart in y and 22 um in x
    (34 and 44 px: an overlap of 6 and 6 px), listed in a positions CSV."""
    truth = write_plate(tmp_path / "raw", ["B03"], overlap=(6, 6))
    lines = ["well,field,x_um,y_um"]
    for f in range(1, 7):
        r, c = grid_position(f, 2, 3, "row-major")
        lines.append(f"B03,{f},{1000 + c * 22.0 + 0.1 * f},{500 + r * 17.0}")
    (tmp_path / "pos.csv").write_text("\n".join(lines) + "\n")
    cfg = plate_config(tmp_path / "raw", grid=None, positions=str(tmp_path / "pos.csv"))
    (region,) = plate_regions(cfg, CHANNELS)
    assert region.well is not None and region.well.grid == (2, 3)
    plan = plan_well(region, CHANNELS, 0.5)
    assert plan.chunk_yx == (34, 44)
    write_well(tmp_path / "well", plan)
    np.testing.assert_array_equal(
        open_group(tmp_path / "well")["0"][:], truth[("B03", None)]
    )
    fields = field_records(plan)
    assert fields[4].x == 44 and fields[4].y == 34
    assert fields[4].stage_x_um == pytest.approx(1022.5)


def test_positions_file_must_cover_every_field(tmp_path):
    write_plate(tmp_path / "raw", ["B03"])
    (tmp_path / "pos.csv").write_text("well,field,x_um,y_um\nB03,1,0,0\n")
    cfg = plate_config(tmp_path / "raw", grid=None, positions=str(tmp_path / "pos.csv"))
    with pytest.raises(
        ConfigError, match=r"no position for well B03 field\(s\) \[2, 3"
    ):
        plate_regions(cfg, CHANNELS)
