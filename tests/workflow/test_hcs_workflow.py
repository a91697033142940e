"""HCS plates through the real workflow: a stitched NGFF plate that every
reader accepts, the whole chain on wells, the fields table, and bad input."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import yaml
import zarr
from ome_zarr_models.v04.hcs import HCS
from ome_zarr_models.v04.image import Image
from ome_zarr_models.v04.image_label import ImageLabel

from percell.segmentation import watershed_background
from percell.storage import open_group
from percell.watershed import watershed_segment
from tests.conftest import (
    REPO,
    base_config,
    run_workflow,
    tree_digest,
    tree_mtimes,
    write_config,
)
from tests.hcs_support import write_plate
from tests.segmentation_support import matched_f1
from tests.workflow.test_reruns import planned_jobs

FIELD = (270, 320)
WELLS = ["B/02", "B/03", "B/04", "C/02", "C/03", "C/04"]


def v2(path):
    return zarr.open_group(str(path), mode="r", zarr_format=2)


@pytest.fixture(scope="module")
def demo_plate(tmp_path_factory):
    """The README's HCS demo config as shipped (6 wells x 3x3 fields x 3
    channels x 3 z), only written elsewhere: the whole chain."""
    work = tmp_path_factory.mktemp("hcs-demo")
    cfg = yaml.safe_load((REPO / "config/hcs-demo.yaml").read_text())
    cfg["experiment"]["path"] = "out/plate.percell"
    write_config(work, cfg)
    run_workflow(work)
    return {"work": work, "experiment": work / "out/plate.percell", "config": cfg}


def test_demo_plate_report_has_the_plate_and_its_wells(demo_plate):
    qc = demo_plate["work"] / "out/plate_qc"
    assert (qc / "plates/plate1.png").stat().st_size > 10_000
    wells = sorted(p.name for p in (qc / "regions").rglob("*.png"))
    assert len(wells) == len(WELLS)


def test_demo_plate_is_valid_for_every_reader(demo_plate):
    exp = demo_plate["experiment"]
    hcs = HCS.from_zarr(v2(exp / "images.zarr/plate1"))
    assert [w.path for w in hcs.attributes.plate.wells] == WELLS
    # ngio in its own process, as a user opens it: importing ngio before
    # ome-zarr-models makes the latter's HCS.from_zarr fail in one process
    script = (
        "import sys, ngio; p = ngio.open_ome_zarr_plate(sys.argv[1]); "
        "imgs = p.get_images(max_workers=1); "
        "print(sorted(imgs), imgs['B/02/0'].get_image().shape)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(exp / "images.zarr/plate1")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"{[w + '/0' for w in WELLS]} (3, 3, 810, 960)" in proc.stdout
    for well in WELLS:
        image = v2(exp / f"images.zarr/plate1/{well}/0")
        Image.from_zarr(image)
        assert image["0"].shape == (3, 3, 3 * FIELD[0], 3 * FIELD[1])
        assert image["0"].chunks == (1, 1, *FIELD)  # one chunk is one field
        levels = image.attrs["multiscales"][0]["datasets"]
        # 810 x 960 -> 405 x 480 -> 203 x 240, which fits one 270 x 320 chunk
        assert [image[d["path"]].shape[-2:] for d in levels] == [
            (810, 960),
            (405, 480),
            (203, 240),
        ]
        labels = v2(exp / f"labels.zarr/plate1/{well}/0")
        ImageLabel.from_zarr(labels)
        assert labels["0"].dtype == np.int32
        assert labels["0"].chunks == (1, *FIELD)  # label tiles are the fields
        assert len(labels.attrs["multiscales"][0]["datasets"]) == len(levels)
        mask = v2(exp / f"masks.zarr/plate1/{well}/0/threshold_GFP")
        assert len(mask.attrs["multiscales"][0]["datasets"]) == len(levels)
        assert mask["0"].shape == image["0"].shape[1:]


def test_demo_plate_database_has_wells_cells_and_fields(demo_plate):
    conn = sqlite3.connect(demo_plate["experiment"] / "experiment.db")
    rows = conn.execute(
        "SELECT r.name, c.name, r.zarr_path, r.width, r.height, "
        "(SELECT count(*) FROM cells WHERE region_id = r.id), "
        "(SELECT count(*) FROM percell_fields WHERE region_id = r.id) "
        "FROM regions r JOIN conditions c ON c.id = r.condition_id ORDER BY r.name"
    ).fetchall()
    # conditions alternate by plate column: even ctrl, odd drug
    assert [r[:5] for r in rows] == [
        (w.replace("/", ""), cond, f"images.zarr/plate1/{w}/0", 960, 810)
        for w, cond in zip(WELLS, ["ctrl", "drug", "ctrl"] * 2, strict=True)
    ]
    assert all(r[5] > 300 and r[6] == 9 for r in rows)
    fields = conn.execute(
        "SELECT f.field, f.x, f.y, f.width, f.height, f.grid_row, f.grid_column, "
        "f.source_files "
        "FROM percell_fields f JOIN regions r ON r.id = f.region_id "
        "WHERE r.name = 'B02' ORDER BY field"
    ).fetchall()
    # snake order: 1 2 3 on the first row, 4 5 6 right to left under them
    assert [f[:7] for f in fields[:6]] == [
        (1, 0, 0, 320, 270, 0, 0),
        (2, 320, 0, 320, 270, 0, 1),
        (3, 640, 0, 320, 270, 0, 2),
        (4, 640, 270, 320, 270, 1, 2),
        (5, 320, 270, 320, 270, 1, 1),
        (6, 0, 270, 320, 270, 1, 0),
    ]
    assert "ZStep_2/B02_s4_w3.tif" in fields[3][7]
    n = conn.execute(
        "SELECT count(*) FROM measurements m JOIN channels ch ON ch.id = m.channel_id "
        "WHERE ch.name = 'RFP' AND m.metric = 'mean_intensity'"
    ).fetchone()[0]
    assert n == sum(r[5] for r in rows)


def test_cells_on_field_borders_are_segmented_whole(demo_plate):
    """Tiles are the fields; the labels equal one untiled segmentation of the
    whole well, and cells do straddle the field borders."""
    exp, seg = demo_plate["experiment"], demo_plate["config"]["segmentation"]
    image = open_group(exp / "images.zarr/plate1/B/02/0")
    dapi = image["0"][0]  # (Z, Y, X)
    # the region's background and noise, as the segment step computes them
    background = watershed_background(image, 0, seg["diameter"], 1.0)
    behind = background.window((0, dapi.shape[-2]), (0, dapi.shape[-1]))
    whole = watershed_segment(
        dapi,
        np.broadcast_to(behind, dapi.shape),
        diameter_px=seg["diameter"],
        noise=background.noise,
        sigma=1.0,
        min_size=seg["min_size"],
    )
    labels = open_group(exp / "labels.zarr/plate1/B/02/0")["0"][:]
    assert matched_f1(whole, labels) > 0.99
    fy, fx = FIELD
    across = set(np.unique(labels[:, fy - 1])) & set(np.unique(labels[:, fy]))
    across |= set(np.unique(labels[..., fx - 1])) & set(np.unique(labels[..., fx]))
    assert len(across - {0}) >= 5


@pytest.fixture(scope="module")
def file_plate(tmp_path_factory):
    """A plate from CellVoyager files: 2 wells, 2 timepoints, 2 z, plate map."""
    root = tmp_path_factory.mktemp("hcs-files")
    truth = write_plate(
        root / "raw",
        ["B03", "C04"],
        grid=(2, 3),
        field=(40, 50),
        n_z=2,
        timepoints=[1, 2],
        style="cellvoyager",
    )
    (root / "map.csv").write_text("well,condition\nB03,ctrl\nC04,drug\n")
    work = root / "work"
    work.mkdir()
    cfg = base_config(
        {
            "plate": {
                "name": "P1",
                "directory": str(root / "raw"),
                "pattern": "cellvoyager",
                "grid": {"rows": 2, "columns": 3},
                "plate_map": str(root / "map.csv"),
            }
        },
        timepoints={"t1": 0, "t2": 600},
    )
    write_config(work, cfg)
    run_workflow(work)
    return {
        "root": root,
        "work": work,
        "experiment": work / "out/exp.percell",
        "truth": truth,
    }


def test_file_plate_stitched_with_timepoints_as_acquisitions(file_plate):
    exp, truth = file_plate["experiment"], file_plate["truth"]
    hcs = HCS.from_zarr(v2(exp / "images.zarr/P1"))
    plate = hcs.attributes.plate
    assert [(a.id, a.name) for a in plate.acquisitions] == [(0, "t1"), (1, "t2")]
    well = v2(exp / "images.zarr/P1/C/04").attrs["well"]
    assert [i["path"] for i in well["images"]] == ["0", "1"]
    for (w, t), expected in truth.items():
        path = exp / f"images.zarr/P1/{w[0]}/{w[1:]}/{t - 1}"
        Image.from_zarr(v2(path))
        arr = v2(path)["0"]
        assert arr.chunks == (1, 1, 40, 50)
        np.testing.assert_array_equal(arr[:], expected)
    conn = sqlite3.connect(exp / "experiment.db")
    assert conn.execute(
        "SELECT r.name, c.name, t.name, count(f.field) FROM regions r "
        "JOIN conditions c ON c.id = r.condition_id "
        "JOIN timepoints t ON t.id = r.timepoint_id "
        "JOIN percell_fields f ON f.region_id = r.id "
        "GROUP BY r.id ORDER BY r.name, t.name"
    ).fetchall() == [
        ("B03", "ctrl", "t1", 6),
        ("B03", "ctrl", "t2", 6),
        ("C04", "drug", "t1", 6),
        ("C04", "drug", "t2", 6),
    ]


def test_file_plate_rerun_does_nothing(file_plate):
    before = tree_mtimes(file_plate["experiment"])
    assert planned_jobs(file_plate["work"]) == {}
    assert tree_mtimes(file_plate["experiment"]) == before


def test_changed_field_file_reruns_only_its_well(file_plate):
    """Plate files are not Snakemake inputs (a plate has too many); their
    size and mtime are in the import params, so a change still reruns."""
    work, exp = file_plate["work"], file_plate["experiment"]
    name = "AssayPlate_Greiner_#655090_C04_T0002F003L01A01Z01C02.tif"
    new = np.full((40, 50), 7, np.uint16)
    tifffile.imwrite(file_plate["root"] / "raw" / name, new)
    jobs = planned_jobs(work)
    assert jobs["import_images"] == 1 and jobs["pyramid"] == 1
    untouched = tree_digest(exp / "images.zarr/P1/B/03")
    run_workflow(work)
    # field 3 is grid row 0, column 2; channel 2 is index 1, z 1 index 0
    level0 = v2(exp / "images.zarr/P1/C/04/1")["0"]
    np.testing.assert_array_equal(level0[1, 0, 0:40, 100:150], new)
    assert tree_digest(exp / "images.zarr/P1/B/03") == untouched


def _bad_rerun(file_plate, tmp_path, change_raw=None, edit=None):
    """Copy the plate's raw files, break them, rerun: fails, nothing changed."""
    raw = tmp_path / "raw"
    shutil.copytree(file_plate["root"] / "raw", raw)
    work = file_plate["work"]
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["input"]["plate"]["directory"] = str(raw)
    if change_raw:
        change_raw(raw)
    if edit:
        edit(cfg)
    write_config(work, cfg, name="bad.yaml")
    before = tree_digest(file_plate["experiment"])
    proc = run_workflow(work, check=False, configfile="bad.yaml")
    assert proc.returncode != 0
    assert tree_digest(file_plate["experiment"]) == before
    return proc.stdout + proc.stderr


def test_bad_missing_field_is_refused_by_name(file_plate, tmp_path):
    def drop(raw):
        (raw / "AssayPlate_Greiner_#655090_C04_T0002F005L01A01Z02C01.tif").unlink()

    out = _bad_rerun(file_plate, tmp_path, drop)
    assert "well C04 timepoint 0002: missing field file(s)" in out
    assert "C04_T0002F005L01A01Z02C01.tif" in out


def test_bad_fields_of_different_shapes(file_plate, tmp_path):
    def reshape(raw):
        for f in raw.glob("*_B03_T0001F002*"):
            tifffile.imwrite(f, np.zeros((40, 48), np.uint16))

    out = _bad_rerun(file_plate, tmp_path, reshape)
    assert "well B03: fields differ in shape or type" in out
    assert "most are (2, 2, 40, 50) uint16, but field 2 (" in out
    assert "(2, 2, 40, 48) uint16" in out


def test_bad_well_not_in_plate_map(file_plate, tmp_path):
    def edit(cfg):
        pm = tmp_path / "map.csv"
        pm.write_text("well,condition\nB03,ctrl\n")
        cfg["input"]["plate"]["plate_map"] = str(pm)

    out = _bad_rerun(file_plate, tmp_path, edit=edit)
    assert "well(s) C04 have images but are not in the plate map" in out


def test_bad_duplicate_field(file_plate, tmp_path):
    name = "AssayPlate_Greiner_#655090_B03_T0001F001L01A01Z01C01.tif"

    def dup(raw):
        shutil.copy(raw / name, raw / name.replace("AssayPlate", "Copy"))

    out = _bad_rerun(file_plate, tmp_path, dup)
    assert "duplicate fields" in out and "Copy_Greiner" in out


def test_bad_pattern_matches_nothing(file_plate, tmp_path):
    def edit(cfg):
        cfg["input"]["plate"]["pattern"] = "metaxpress"

    out = _bad_rerun(file_plate, tmp_path, edit=edit)
    assert "input.plate.pattern 'metaxpress' matches no file under" in out


def test_readme_hcs_demo_command_plans_the_chain(tmp_path):
    """`snakemake --configfile config/hcs-demo.yaml` beside the default config
    uses the plate config alone (Snakemake would otherwise merge the two)."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    proc = run_workflow(tmp_path, "-n", configfile="config/hcs-demo.yaml")
    assert "demo_well" in proc.stdout and "demo_region" not in proc.stdout
