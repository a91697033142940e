"""Experiments written as schema 4.0.0, opened and used by the real PerCell 3
application (commit 45b84b7), which runs in its own environment
(``.venv-percell3``: zarr 2, numpy 1; the README and ``.ci/run`` build it).

The application reads every image, label image and mask through its own
``fov_config`` and paths; they must equal what the workflow wrote in its
NGFF layout. Its batch re-measure must change no value and add no row, its
pivot and CSV export and a plugin must work, and the tags it adds must stay
on the same cells when the workflow runs again.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from percell.storage import array_of, open_group, read_json
from tests.conftest import REPO, run_workflow, tree_digest, write_config

APP_PYTHON = REPO / ".venv-percell3/bin/python"
#: the application of schema 3.0.0 (commit c4330ca)
APP3_PYTHON = REPO / ".venv-percell3-v3/bin/python"
APP_SCRIPT = REPO / "tests/support/percell3_app.py"

if not (APP_PYTHON.exists() and APP3_PYTHON.exists()):
    if os.environ.get("CI"):  # CI builds it: a missing application is a failure
        raise RuntimeError(f"{APP_PYTHON} or {APP3_PYTHON} is missing (.ci/run)")
    pytestmark = pytest.mark.skip(
        reason="the PerCell 3 application lives in its own environment: build "
        ".venv-percell3 (README)"
    )


def app(*args: str | Path, python: Path = APP_PYTHON) -> None:
    proc = subprocess.run(
        [str(python), str(APP_SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def inspect(experiment: Path, tmp: Path) -> tuple[dict, dict]:
    """What the application reads and does, on a copy (it writes into it)."""
    copy, out = tmp / "app-copy.percell", tmp / "app-out"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(experiment, copy)
    app("inspect", copy, out)
    report = json.loads((out / "report.json").read_text())
    arrays = dict(np.load(out / "arrays.npz"))
    return report, arrays


def demo_config(**experiment) -> dict:
    """The README's demo, smaller, written as 4.0.0."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["experiment"].update(
        {"path": "out/demo.percell", "format": "4.0.0", **experiment}
    )
    config["input"]["demo"].update(size=256, large_size=384)
    return config


def ours(experiment: Path) -> dict:
    """The workflow's rows: FOV name -> key, region, condition, timepoint;
    threshold id -> (key, run)."""
    conn = sqlite3.connect(experiment / "experiment.db")
    try:
        fovs = {
            name: {"key": key, "condition": cond, "timepoint": tp}
            for name, key, cond, tp in conn.execute(
                "SELECT f.display_name, p.key, c.name, t.name FROM fovs f "
                "JOIN percell_fovs p ON p.fov_id = f.id JOIN conditions c "
                "ON c.id = f.condition_id LEFT JOIN timepoints t "
                "ON t.id = f.timepoint_id"
            )
        }
        thresholds = {
            str(t): (key, run)
            for t, key, run in conn.execute(
                "SELECT p.threshold_run_id, f.key, p.run_name FROM "
                "percell_region_thresholds p JOIN percell_fovs f "
                "ON f.fov_id = p.region_id"
            )
        }
    finally:
        conn.close()
    return {"fovs": fovs, "thresholds": thresholds}


def areas(experiment: Path, fov: str) -> dict[int, float]:
    """Label value -> area_pixels of a FOV's cells."""
    conn = sqlite3.connect(experiment / "experiment.db")
    try:
        return dict(
            conn.execute(
                "SELECT c.label_value, c.area_pixels FROM cells c JOIN fovs f "
                "ON f.id = c.fov_id WHERE f.display_name = ?",
                (fov,),
            )
        )
    finally:
        conn.close()


def tagged_cells(experiment: Path, tag: str = "mitotic") -> list[tuple]:
    """(id, FOV, label value) of the cells carrying ``tag``, by id."""
    conn = sqlite3.connect(experiment / "experiment.db")
    try:
        return conn.execute(
            "SELECT c.id, c.fov_id, c.label_value FROM cell_tags ct JOIN cells c "
            "ON c.id = ct.cell_id JOIN tags t ON t.id = ct.tag_id "
            "WHERE t.name = ? ORDER BY c.id",
            (tag,),
        ).fetchall()
    finally:
        conn.close()


def level0(experiment: Path, store: str, path: str) -> np.ndarray:
    return np.asarray(array_of(open_group(experiment / store / path))[...])


def schema_of(path: Path) -> dict:
    """Every table's columns (name, type, not null, default, primary key),
    foreign keys and indexes (with their SQL), the workflow's own aside."""
    conn = sqlite3.connect(path)
    try:
        out = {}
        for (table,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT "
            "LIKE 'percell_%' AND name NOT LIKE 'sqlite_%'"
        ):
            out[table] = {
                "columns": conn.execute(f"PRAGMA table_info({table})").fetchall(),
                "foreign_keys": conn.execute(
                    f"PRAGMA foreign_key_list({table})"
                ).fetchall(),
            }
        out["indexes"] = {
            name: "".join(sql.split())  # the SQL, whitespace aside
            for name, sql in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND "
                "sql IS NOT NULL AND tbl_name NOT LIKE 'percell_%'"
            )
        }
        return out
    finally:
        conn.close()


def test_4_0_0_schema_is_the_applications(tmp_path):
    """Table by table and index by index, what register creates equals what
    the application itself creates (only the workflow's percell_* tables are
    extra, which the application ignores)."""
    from percell import db
    from percell.experiment_format import get

    app("create", tmp_path / "app.percell")
    conn = db.connect(tmp_path / "ours.db", create=False)
    with db.transaction(conn):
        db.create_schema(conn, get("4.0.0").schema_sql)
    conn.close()
    theirs, mine = (
        schema_of(tmp_path / "app.percell/experiment.db"),
        schema_of(tmp_path / "ours.db"),
    )
    assert len(theirs) == 19 and len(theirs["indexes"]) == 27  # 18 tables
    assert mine == theirs


@pytest.fixture(scope="module")
def demo4(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo4")
    write_config(work, demo_config())
    run_workflow(work)
    return {"work": work, "experiment": work / "out/demo.percell"}


def test_the_application_opens_and_uses_a_4_0_0_demo(demo4, tmp_path):
    exp = demo4["experiment"]
    report, arrays = inspect(exp, tmp_path)
    mine = ours(exp)
    channels = ["DAPI", "GFP", "RFP"]
    # every FOV, with its condition, bio rep and timepoint
    seen = {
        f["name"]: (f["condition"], f["bio_rep"], f["timepoint"])
        for f in report["fovs"]
    }
    expected = {
        f"{c}_N1_{t}_{r}": (c, "N1", t)
        for c in ("ctrl", "drug")
        for t in ("t0", "t1")
        for r in ("r1", "r2")
    }
    assert seen == expected
    assert {
        n: (v["condition"], "N1", v["timepoint"]) for n, v in mine["fovs"].items()
    } == expected
    n_cells = 0
    for name, fov in mine["fovs"].items():
        image = level0(exp, "images.zarr", fov["key"])
        for c, ch in enumerate(channels):
            np.testing.assert_array_equal(arrays[f"image/{name}/{ch}"], image[c])
        labels = level0(exp, "labels.zarr", fov["key"])
        np.testing.assert_array_equal(arrays[f"labels/{name}"], labels)
        cells = np.unique(labels[labels > 0]).size
        assert cells > 20
        assert report["cells"][name] == cells
        n_cells += cells
        # the segmentation first, then one entry per threshold run
        config = report["config"][name]
        assert config[0][1] is None and config[0][2] == ["whole_cell"]
        assert [e[2] for e in config[1:]] == [
            ["whole_cell", "mask_inside", "mask_outside"]
        ] * 2
        assert len({e[0] for e in config}) == 1
        for _, threshold, _ in config[1:]:
            key, run = mine["thresholds"][str(threshold)]
            assert key == fov["key"]
            mask = level0(exp, "masks.zarr", f"{key}/threshold_{run}")
            np.testing.assert_array_equal(arrays[f"mask/{name}/{threshold}"], mask)
    # one pivot row (and one export row) per cell and threshold
    assert report["pivot"][0] == n_cells * 2
    assert report["export_rows"] == n_cells * 2
    # the application's own measurer agrees with every stored value
    remeasure = report["remeasure"]
    assert remeasure["warnings"] == []
    assert remeasure["added"] == 0, remeasure
    assert remeasure["changed"] == 0, remeasure
    # whole cell: 3 channels x 7 metrics; per run, inside and outside again
    assert remeasure["before"] == n_cells * 21 * (1 + 2 * 2)
    assert report["plugin"]["nan_zero"] == ["completed"]


def test_tags_the_application_adds_survive_reruns(demo4, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(demo4["work"], work, symlinks=True)
    exp = work / "out/demo.percell"
    conn = sqlite3.connect(exp / "experiment.db")
    cells = conn.execute(
        "SELECT c.id, c.fov_id, c.label_value FROM cells c ORDER BY c.id"
    ).fetchall()
    conn.close()
    tagged = cells[::37]
    app("tag", exp, "mitotic", *[c[0] for c in tagged])
    # a threshold changes and a region is added
    config = demo_config()
    config["thresholds"][0]["method"] = "li"
    config["input"]["demo"]["regions"] = ["r1", "r2", "r3"]
    write_config(work, config)
    run_workflow(work)
    conn = sqlite3.connect(exp / "experiment.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        after = conn.execute("SELECT count(*) FROM fovs").fetchone()[0]
        methods = {m for (m,) in conn.execute("SELECT DISTINCT method FROM thresholds")}
    finally:
        conn.close()
    assert tagged_cells(exp) == tagged
    assert after == 12
    assert "li" in methods and "otsu" not in methods
    # and the application still reads all of it, measuring the same values
    report, _ = inspect(exp, tmp_path)
    assert len(report["fovs"]) == 12
    assert report["remeasure"]["changed"] == 0
    assert report["remeasure"]["added"] == 0


def test_labels_edited_in_the_application_are_never_overwritten_silently(
    demo4, tmp_path
):
    """The application edits its own path (``labels.zarr/seg_<id>``, a view
    of the workflow's labels): a segmentation or threshold change stops
    before replacing or measuring past the edits; the experiment stays as it
    was; ``overwrite_edited_labels: true`` replaces them."""
    from percell.experiment_format import views

    work = tmp_path / "work"
    shutil.copytree(demo4["work"], work, symlinks=True)
    exp = work / "out/demo.percell"
    conn = sqlite3.connect(exp / "experiment.db")
    key, seg_id = conn.execute(
        "SELECT p.key, s.id FROM percell_fovs p JOIN segmentations s ON "
        "s.source_fov_id = p.fov_id ORDER BY p.fov_id LIMIT 1"
    ).fetchone()
    conn.close()
    app("edit_labels", exp, seg_id)
    view = exp / f"labels.zarr/seg_{seg_id}"
    assert (level0(exp, "labels.zarr", f"seg_{seg_id}")[10:30, 10:30] > 0).all()
    before = {p: tree_digest(p) for p in (view, exp / "labels.zarr" / key)}
    db_before = (exp / "experiment.db").read_bytes()

    def refused(change) -> None:
        config = demo_config()
        change(config)
        write_config(work, config)
        proc = run_workflow(work, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert f"region {key}" in out and "overwrite_edited_labels" in out, out
        assert f"seg_{seg_id}/0 was changed" in out
        assert {p: tree_digest(p) for p in before} == before
        assert (exp / "experiment.db").read_bytes() == db_before

    # a segmentation change: segment would replace the edits
    refused(lambda c: c["segmentation"].update(min_size=35))
    # a threshold change: measure would measure cells the edits changed
    refused(lambda c: c["thresholds"][0].update(method="li"))

    config = demo_config()
    config["segmentation"].update(min_size=35, overwrite_edited_labels=True)
    write_config(work, config)
    run_workflow(work)
    source = exp / "labels.zarr" / key
    assert views.is_view_of(view / "0", source / "0")
    assert not (level0(exp, "labels.zarr", f"seg_{seg_id}")[10:30, 10:30] > 0).all()


def test_a_run_of_another_format_stops_before_any_job(demo4, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(demo4["work"], work, symlinks=True)
    db = work / "out/demo.percell/experiment.db"
    before = db.read_bytes()
    config = demo_config(format="3.0.0")
    write_config(work, config)
    proc = run_workflow(work, check=False)
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    assert "experiment.format is '3.0.0'" in message
    assert "schema 4.0.0" in message
    assert db.read_bytes() == before


def test_upgrade_carries_a_tagged_3_0_0_experiment_to_the_4_0_0_application(
    tmp_path,
):
    """The 3.0.0 application tags cells; ``percell upgrade``; the 4.0.0
    application sees the same tags on the same cells, and the workflow goes
    on in 4.0.0 without importing or segmenting again."""
    work = tmp_path / "work"
    work.mkdir()
    config = demo_config(format="3.0.0")
    write_config(work, config)
    run_workflow(work)
    exp = work / "out/demo.percell"
    conn = sqlite3.connect(exp / "experiment.db")
    cells = conn.execute(
        "SELECT id, region_id, label_value FROM cells ORDER BY id"
    ).fetchall()
    conn.close()
    tagged = cells[::23]
    app("tag", exp, "mitotic", *[c[0] for c in tagged], python=APP3_PYTHON)
    images = {
        p.relative_to(exp): p.stat().st_ino for p in (exp / "images.zarr").rglob("*")
    }
    percell = str(Path(sys.executable).with_name("percell"))
    done = subprocess.run(
        [percell, "upgrade", str(exp)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "schema 4.0.0" in done.stdout
    conn = sqlite3.connect(exp / "experiment.db")
    try:
        assert conn.execute("SELECT percell_version FROM experiments").fetchone() == (
            "4.0.0",
        )
    finally:
        conn.close()
    assert tagged_cells(exp) == tagged
    # the NGFF arrays themselves are untouched (the views are new paths)
    for rel, inode in images.items():
        assert (exp / rel).stat().st_ino == inode
    # running it again changes nothing
    again = subprocess.run(
        [percell, "upgrade", str(exp)], capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    # the workflow goes on in 4.0.0: measure (for the mask scopes) and register
    config["experiment"]["format"] = "4.0.0"
    write_config(work, config)
    dry = run_workflow(work, "-n")
    assert "rule import_images:" not in dry.stdout
    assert "rule segment:" not in dry.stdout
    assert "rule measure:" in dry.stdout
    run_workflow(work)
    report, _ = inspect(exp, tmp_path)
    assert len(report["fovs"]) == 8
    assert report["remeasure"]["changed"] == 0
    assert report["remeasure"]["added"] == 0
    assert tagged_cells(tmp_path / "app-copy.percell") == tagged


def shrunk(name: str, fmt: str = "3.0.0") -> dict:
    """A demo configuration of config/, written as ``fmt`` into out/, smaller."""
    config = yaml.safe_load((REPO / "config" / name).read_text())
    config["experiment"].update(path="out/exp.percell", format=fmt)
    source = config["input"]
    if "demo" in source:
        demo = source["demo"]
        # a demo whose fields are all one size (one flat-field) stays so
        one_size = demo.get("large_size") == demo.get("size")
        demo.update(size=192, large_size=192 if one_size else 256, timepoints=["t0"])
    plates = source.get("plate") or []
    for plate in plates if isinstance(plates, list) else [plates]:
        plate["demo"]["wells"] = plate["demo"]["wells"][:3]
        plate["demo"]["field_size"] = [96, 112]
    return config


@pytest.mark.parametrize(
    "name", ["config.yaml", "hcs-demo.yaml", "multiplate-demo.yaml"]
)
def test_the_3_0_0_application_reads_every_image_label_and_mask(name, tmp_path):
    """The application at c4330ca computes each region's paths from its
    condition, timepoint and name; plates get views there, and it reads the
    same pixels as the NGFF layout (plates stay where Fractal reads them)."""
    work = tmp_path / "work"
    work.mkdir()
    write_config(work, shrunk(name))
    run_workflow(work)
    exp = work / "out/exp.percell"
    conn = sqlite3.connect(exp / "experiment.db")
    try:
        regions = conn.execute(
            "SELECT c.name, t.name, r.name, r.zarr_path FROM regions r "
            "JOIN conditions c ON c.id = r.condition_id "
            "LEFT JOIN timepoints t ON t.id = r.timepoint_id"
        ).fetchall()
        cells = dict(
            conn.execute("SELECT region_id, count(*) FROM cells GROUP BY region_id")
        )
        channels = [
            c
            for (c,) in conn.execute("SELECT name FROM channels ORDER BY display_order")
        ]
        runs = sorted(
            r
            for (r,) in conn.execute(
                "SELECT DISTINCT run_name FROM percell_region_thresholds"
            )
        )
    finally:
        conn.close()
    out = tmp_path / "read"
    app("read3", exp, out, *runs, python=APP3_PYTHON)
    report = json.loads((out / "report.json").read_text())
    arrays = dict(np.load(out / "arrays.npz"))
    assert sum(report["regions"].values()) == sum(cells.values()) > 0
    assert len(report["regions"]) == len(regions)
    for cond, tp, region, zarr_path in regions:
        where = "/".join([cond, *([tp] if tp else []), region])
        key = zarr_path.removeprefix("images.zarr/")
        image = level0(exp, "images.zarr", key)
        for i, ch in enumerate(channels):
            np.testing.assert_array_equal(arrays[f"image/{where}/{ch}"], image[i])
        np.testing.assert_array_equal(
            arrays[f"labels/{where}"], level0(exp, "labels.zarr", key)
        )
        for run in runs:
            np.testing.assert_array_equal(
                arrays[f"mask/{where}/{run}"],
                level0(exp, "masks.zarr", f"{key}/threshold_{run}"),
            )
    if name != "config.yaml":  # the plate views share the NGFF plate's chunk files
        cond, tp, region, zarr_path = regions[0]
        view = exp / "labels.zarr" / cond / region / "0"
        source = exp / "labels.zarr" / zarr_path.removeprefix("images.zarr/") / "0"
        pairs = [
            (f.stat().st_ino, (source / f.relative_to(view)).stat().st_ino)
            for f in view.rglob("*")
            if f.is_file()
        ]
        assert pairs and all(a == b for a, b in pairs)


@pytest.mark.parametrize(
    ("name", "projection"),
    [
        ("multiplate-demo.yaml", None),
        ("compartments-demo.yaml", None),
        ("hcs-demo.yaml", "max"),
        ("hcs-demo.yaml", "mean"),
    ],
)
def test_the_application_opens_and_uses_other_demos_as_4_0_0(
    name, projection, tmp_path
):
    """Two plates in one experiment (each well a FOV), compartments, and a
    plate of Z-stacks given to the application as their projection: every
    FOV's pixels through ``fov_config``, every cell, and the application's
    re-measure changes nothing."""
    work = tmp_path / "work"
    work.mkdir()
    config = shrunk(name, "4.0.0")
    if projection:
        config["experiment"]["z_projection"] = projection
    write_config(work, config)
    run_workflow(work)
    exp = work / "out/exp.percell"
    report, arrays = inspect(exp, tmp_path)
    mine = ours(exp)
    conn = sqlite3.connect(exp / "experiment.db")
    channels = [
        c for (c,) in conn.execute("SELECT name FROM channels ORDER BY display_order")
    ]
    conn.close()
    assert {f["name"] for f in report["fovs"]} == set(mine["fovs"]) != set()

    def plane(array: np.ndarray, z_axis: int, how: str = "max") -> np.ndarray:
        """What the application should read of a level 0 (numpy's own
        projection of a stack)."""
        if array.ndim == 2 + z_axis:
            return array
        assert projection, "a stack needs a projection"
        if how == "mean":
            return array.mean(axis=z_axis, dtype=np.float64)
        return array.max(axis=z_axis)

    for name_, fov in mine["fovs"].items():
        image = plane(level0(exp, "images.zarr", fov["key"]), 1, projection or "max")
        for c, ch in enumerate(channels):
            np.testing.assert_array_equal(arrays[f"image/{name_}/{ch}"], image[c])
        labels = plane(level0(exp, "labels.zarr", fov["key"]), 0)
        np.testing.assert_array_equal(arrays[f"labels/{name_}"], labels)
        assert report["cells"][name_] == np.unique(labels[labels > 0]).size > 0
        if projection:  # a cell's area is its pixels in what the app shows
            ids, counts = np.unique(labels[labels > 0], return_counts=True)
            assert areas(exp, name_) == dict(
                zip(ids.tolist(), counts.astype(float).tolist(), strict=True)
            )
        for _, threshold, _ in report["config"][name_][1:]:
            key, run = mine["thresholds"][str(threshold)]
            mask = plane(level0(exp, "masks.zarr", f"{key}/threshold_{run}"), 0)
            np.testing.assert_array_equal(arrays[f"mask/{name_}/{threshold}"], mask)
    remeasure = report["remeasure"]
    assert remeasure["warnings"] == []
    assert remeasure["added"] == 0 and remeasure["changed"] == 0, remeasure
    assert remeasure["before"] > 0
    assert report["plugin"]["nan_zero"] == ["completed"]
    if projection == "max":  # a colour change reaches the projected views
        config["channels"][0]["color"] = "12AB34"
        write_config(work, config)
        run_workflow(work)
        shown = [
            read_json(f)["omero"]["channels"][0]["color"]
            for f in (exp / "images.zarr").glob("fov_*/.zattrs")
        ]
        assert shown and set(shown) == {"12AB34"}, shown
    if projection:  # the full stacks stay, NGFF-valid, for other readers
        import zarr
        from ome_zarr_models.v04.hcs import HCS
        from ome_zarr_models.v04.image import Image

        plate = zarr.open_group(str(exp / "images.zarr/plate1"), mode="r")
        wells = [w.path for w in HCS.from_zarr(plate).attributes.plate.wells]
        assert len(wells) == 3
        for well in wells:
            image = zarr.open_group(
                str(exp / f"images.zarr/plate1/{well}/0"), mode="r", zarr_format=2
            )
            Image.from_zarr(image)
            assert image["0"].ndim == 4


def bio_rep_sheet(root: Path) -> Path:
    """Two regions of cells; the sheet names bio rep N2 for ctrl/r2 only."""
    import tifffile

    from percell.demo import synthetic_cells

    rows = []
    for i, (region, rep) in enumerate((("r1", ""), ("r2", "N2"))):
        dapi, gfp, _, _ = synthetic_cells((200, 240), np.random.default_rng(5 + i))
        for ch, img in (("DAPI", dapi), ("GFP", gfp)):
            path = root / f"ctrl_{region}_{ch}.tif"
            tifffile.imwrite(path, img)
            rows.append(f"ctrl\t{region}\t{ch}\t{path}\t{rep}")
    sheet = root / "samples.tsv"
    sheet.write_text("condition\tregion\tchannel\tpath\tbio_rep\n" + "\n".join(rows))
    return sheet


def test_bio_reps_of_the_sheet_are_kept_in_3_0_0_and_reach_the_application(
    tmp_path,
):
    """3.0.0 keeps the sheet's bio reps in percell_bio_reps; the upgrade
    makes them the FOVs' bio reps, and the 4.0.0 application lists them."""
    from tests.conftest import base_config

    work = tmp_path / "work"
    work.mkdir()
    config = base_config(
        {"sample_sheet": str(bio_rep_sheet(tmp_path))},
        segmentation={"channel": "DAPI", "diameter": 16, "min_size": 30},
        thresholds=[{"channel": "GFP", "method": "otsu"}],
    )
    config["experiment"]["format"] = "3.0.0"
    write_config(work, config)
    run_workflow(work)
    exp = work / "out/exp.percell"
    conn = sqlite3.connect(exp / "experiment.db")
    try:
        kept = conn.execute(
            "SELECT r.name, b.bio_rep FROM percell_bio_reps b "
            "JOIN regions r ON r.id = b.region_id"
        ).fetchall()
    finally:
        conn.close()
    assert kept == [("r2", "N2")]
    percell = str(Path(sys.executable).with_name("percell"))
    done = subprocess.run(
        [percell, "upgrade", str(exp)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    report, _ = inspect(exp, tmp_path)
    assert sorted((f["name"], f["bio_rep"]) for f in report["fovs"]) == [
        ("ctrl_N1_r1", "N1"),
        ("ctrl_N2_r2", "N2"),
    ]
    # written as 4.0.0 from the start: the same FOVs
    config["experiment"].update(format="4.0.0", path="out/four.percell")
    write_config(work, config)
    run_workflow(work)
    report, _ = inspect(work / "out/four.percell", tmp_path)
    assert sorted((f["name"], f["bio_rep"]) for f in report["fovs"]) == [
        ("ctrl_N1_r1", "N1"),
        ("ctrl_N2_r2", "N2"),
    ]
    assert report["remeasure"]["changed"] == 0 and report["remeasure"]["added"] == 0
