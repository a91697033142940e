"""Several plates in one experiment (``input.plate`` as a list): each its own
NGFF plate group with its own files, layout and plate map."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import yaml
import zarr
from ome_zarr_models.v04.hcs import HCS
from ome_zarr_models.v04.image import Image

from percell.errors import ConfigError
from percell.manifest import build_manifest
from tests.conftest import REPO, base_config, run_workflow, write_config
from tests.hcs_support import write_plate


def v2(path):
    return zarr.open_group(str(path), mode="r", zarr_format=2)


@pytest.fixture(scope="module")
def two_plates(tmp_path_factory):
    """Plate A: MetaXpress names, 2x3 row-major grid, 40x50 fields, a plate
    map. Plate B: CellVoyager names, 2x2 snake grid with overlap, 36x44
    fields, 2 z-planes, its own plate map. Both have a well B03."""
    root = tmp_path_factory.mktemp("multiplate")
    truth_a = write_plate(root / "a", ["B03", "C04"], grid=(2, 3), field=(40, 50))
    truth_b = write_plate(
        root / "b",
        ["B03", "D05", "D06"],
        grid=(2, 2),
        field=(36, 44),
        overlap=(4, 6),
        order="snake",
        n_z=2,
        style="cellvoyager",
        seed=7,
    )
    (root / "map_a.csv").write_text("well,condition\nB03,ctrl\nC04,drug\n")
    (root / "map_b.csv").write_text("well,condition\nB03,ctrl\nD05,ctrl\nD06,drug\n")
    plates = [
        {
            "name": "A",
            "directory": str(root / "a"),
            "grid": {"rows": 2, "columns": 3},
            "plate_map": str(root / "map_a.csv"),
        },
        {
            "name": "B",
            "directory": str(root / "b"),
            "pattern": "cellvoyager",
            "grid": {"rows": 2, "columns": 2, "order": "snake", "overlap": [4, 6]},
            "plate_map": str(root / "map_b.csv"),
        },
    ]
    work = root / "work"
    work.mkdir()
    write_config(work, base_config({"plate": plates}))
    run_workflow(work)
    truth = {("A", w): img for (w, _), img in truth_a.items()}
    truth.update({("B", w): img for (w, _), img in truth_b.items()})
    return {"experiment": work / "out/exp.percell", "truth": truth, "plates": plates}


def test_each_plate_is_a_valid_ngff_plate_with_its_own_wells(two_plates):
    exp = two_plates["experiment"]
    wells = {
        name: [
            w.path
            for w in HCS.from_zarr(
                v2(exp / f"images.zarr/{name}")
            ).attributes.plate.wells
        ]
        for name in ("A", "B")
    }
    assert wells == {"A": ["B/03", "C/04"], "B": ["B/03", "D/05", "D/06"]}


def test_each_well_is_stitched_on_its_own_plates_grid(two_plates):
    exp = two_plates["experiment"]
    for (plate, well), expected in two_plates["truth"].items():
        path = exp / f"images.zarr/{plate}/{well[0]}/{well[1:]}/0"
        Image.from_zarr(v2(path))
        arr = v2(path)["0"]
        # chunk = one field less the overlap: 40x50 on A, 32x38 on B
        assert arr.chunks[-2:] == ((40, 50) if plate == "A" else (32, 38))
        np.testing.assert_array_equal(arr[:], expected)


def test_regions_fields_and_conditions_are_registered_per_plate(two_plates):
    conn = sqlite3.connect(two_plates["experiment"] / "experiment.db")
    rows = conn.execute(
        "SELECT r.name, c.name, r.zarr_path, count(f.field) FROM regions r "
        "JOIN conditions c ON c.id = r.condition_id "
        "LEFT JOIN percell_fields f ON f.region_id = r.id "
        "GROUP BY r.id ORDER BY r.name"
    ).fetchall()
    assert rows == [
        ("A_B03", "ctrl", "images.zarr/A/B/03/0", 6),
        ("A_C04", "drug", "images.zarr/A/C/04/0", 6),
        ("B_B03", "ctrl", "images.zarr/B/B/03/0", 4),
        ("B_D05", "ctrl", "images.zarr/B/D/05/0", 4),
        ("B_D06", "drug", "images.zarr/B/D/06/0", 4),
    ]
    # a field's files come from its own plate's directory
    (files,) = conn.execute(
        "SELECT f.source_files FROM percell_fields f JOIN regions r "
        "ON r.id = f.region_id WHERE r.name = 'B_D05' AND f.field = 1"
    ).fetchone()
    assert str(two_plates["plates"][1]["directory"]) in files
    assert "D05_T0001F001" in files


def test_plate_names_must_differ_and_demo_plates_do_not_mix(tmp_path):
    plate = {"name": "P", "directory": str(tmp_path), "grid": {"rows": 1, "columns": 1}}
    with pytest.raises(ConfigError, match=r"duplicate plate names \['P'\]"):
        build_manifest(base_config({"plate": [plate, dict(plate)]}))
    demo = {**plate, "name": "D", "demo": {}}
    with pytest.raises(ConfigError, match="demo plates and plates read from disk"):
        build_manifest(base_config({"plate": [plate, demo]}))
    with pytest.raises(ConfigError, match=r"input\.plate\.1 needs exactly one of grid"):
        build_manifest(
            base_config({"plate": [plate, {"name": "Q", "directory": str(tmp_path)}]})
        )


def test_the_multiplate_demo_runs(tmp_path):
    """The README's config/multiplate-demo.yaml, as shipped (written elsewhere)."""
    cfg = yaml.safe_load((REPO / "config/multiplate-demo.yaml").read_text())
    cfg["experiment"]["path"] = "out/multi.percell"
    write_config(tmp_path, cfg)
    run_workflow(tmp_path)
    exp = tmp_path / "out/multi.percell"
    for plate in ("screen1", "screen2"):
        HCS.from_zarr(v2(exp / f"images.zarr/{plate}"))
    conn = sqlite3.connect(exp / "experiment.db")
    per_plate = conn.execute(
        "SELECT substr(r.name, 1, 7), count(DISTINCT r.id), count(ce.id) > 0 "
        "FROM regions r LEFT JOIN cells ce ON ce.region_id = r.id GROUP BY 1"
    ).fetchall()
    assert per_plate == [("screen1", 4, 1), ("screen2", 2, 1)]
    assert (tmp_path / "out/multi_qc/plates/screen2.png").is_file()
