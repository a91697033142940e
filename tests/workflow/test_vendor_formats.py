"""Vendor files and OME-Zarr through the workflow: CZI written by Zeiss's own
libCZI (pylibczirw) with several scenes, channels and Z, and an OME-Zarr image
written by ome-zarr-py, read back through bioio; level 0 must equal the
written pixels, and the pixel size must come from the file. Bad input stops
the run before any job, naming the file, and leaves the experiment as it was.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import zarr

from tests.conftest import (
    base_config,
    copy_run,
    run_workflow,
    tree_digest,
    write_config,
)
from tests.support.ome_zarr_plate import write_ome_zarr_plate

pyczi = pytest.importorskip("pylibCZIrw.czi")

SCENES = ("wellA", "wellB")
SHAPE = (3, 120, 150)  # z, y, x


def write_czi(
    path: Path, channels: tuple[str, ...], seed: int = 0, zen_scenes: bool = True
) -> dict:
    """A CZI of two scenes × channels × 3 z, with Zen's scene names in its
    metadata (``zen_scenes``; libCZI's writer alone leaves them out);
    returns {(scene, channel): (z, y, x) pixels}."""
    rng = np.random.default_rng(seed)
    pixels = {}
    with pyczi.create_czi(str(path), exist_ok=True) as czi:
        for s, scene in enumerate(SCENES):
            for c, channel in enumerate(channels):
                stack = rng.integers(0, 4000, SHAPE).astype(np.uint16)
                pixels[(scene, channel)] = stack
                for z in range(SHAPE[0]):
                    czi.write(
                        data=stack[z],
                        plane={"C": c, "Z": z, "T": 0},
                        scene=s,
                        location=(s * 1000, 0),
                    )
        czi.write_metadata(
            document_name="test",
            channel_names=dict(enumerate(channels)),
            scale_x=0.325e-6,
            scale_y=0.325e-6,
            scale_z=1.5e-6,
        )
    if not zen_scenes:
        return pixels
    # the scene list Zen writes beside the image (libCZI's writer leaves it out)
    with pyczi.edit_czi(str(path)) as editor, editor.edit_session() as builder:
        root = ET.fromstring(builder.get_xml())
        dims = root.find("./Metadata/Information/Image/Dimensions")
        scenes = ET.SubElement(ET.SubElement(dims, "S"), "Scenes")
        for i, name in enumerate(SCENES):
            ET.SubElement(scenes, "Scene", Index=str(i), Name=name)
        builder.set_xml(ET.tostring(root, encoding="unicode"))
    return pixels


def plain_czi(path: str, z_y: tuple[int, int], case: str) -> None:
    """A one-scene CZI of ``z_y`` planes x rows x 150 px: a line scan (one
    row per plane), non-square pixels, or a subblock that cannot be decoded
    (its header broken, the directory and metadata intact)."""
    with pyczi.create_czi(path, exist_ok=True) as czi:
        for z in range(z_y[0]):
            plane = np.full((z_y[1], 150), z, np.uint16)
            czi.write(data=plane, plane={"C": 0, "Z": z, "T": 0})
        tall = 0.5e-6 if case == "anisotropic" else 0.325e-6
        czi.write_metadata(scale_x=0.325e-6, scale_y=tall, scale_z=1e-6)
    if case == "undecodable":
        data = bytearray(Path(path).read_bytes())
        at = data.index(b"ZISRAWSUBBLOCK")
        data[at : at + 14] = b"X" * 14
        Path(path).write_bytes(bytes(data))


def test_czi_scenes_libczi_sees_without_zens_scene_list(tmp_path):
    """A CZI whose scenes are only in its subblocks (no scene list in the
    metadata): percell sees both, by index, with each scene's own pixels."""
    from percell import formats
    from percell.sources import open_source

    path = tmp_path / "bare.czi"
    pixels = write_czi(path, ("GFP", "DAPI"), zen_scenes=False)
    assert formats.file_contents(str(path)) == (("Image:0", 1), ("Image:1", 1))
    for index, scene in enumerate(SCENES):
        info = formats.probe_vendor(str(path), True, str(index))
        assert info.scene == f"Image:{index}" and info.shape == (2, *SHAPE)
        with open_source(info) as reader:
            for c, channel in enumerate(("GFP", "DAPI")):
                got = [reader.read(c, z, 0, SHAPE[1]) for z in range(SHAPE[0])]
                np.testing.assert_array_equal(np.stack(got), pixels[(scene, channel)])


def level0(experiment: Path, region: str) -> np.ndarray:
    groups = list((experiment / "images.zarr").glob(f"*/{region}"))
    assert len(groups) == 1, groups
    return np.asarray(zarr.open_group(groups[0], mode="r")["0"][:])


def vendor_config(sheet: Path, **extra: object) -> dict:
    """A config reading ``sheet``, the pixel size left to the files."""
    return {**base_config({"sample_sheet": str(sheet)}), "pixel_size_um": None, **extra}


def sheet_of(path: Path, rows: list[str]) -> Path:
    path.write_text("condition\tregion\tpath\tscene\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def czi_experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("czi")
    # the file's channel order differs from the config's: matched by name
    pixels = write_czi(root / "plate.czi", ("GFP", "DAPI"))
    czi = root / "plate.czi"
    sheet = sheet_of(
        root / "samples.tsv",
        [
            f"ctrl\tr1\t{czi}\twellB",  # a scene by name
            f"ctrl\tr2\t{czi}\t0",  # by index
            f"ctrl\tr3\t{czi}\t",  # every scene: r3_wellA, r3_wellB
        ],
    )
    work = root / "work"
    work.mkdir()
    write_config(work, vendor_config(sheet))
    run_workflow(work)
    return {"work": work, "experiment": work / "out/exp.percell", "pixels": pixels}


def test_czi_scenes_become_regions_with_their_pixels(czi_experiment):
    pixels, experiment = czi_experiment["pixels"], czi_experiment["experiment"]
    for region, scene in (
        ("r1", "wellB"),
        ("r2", "wellA"),
        ("r3_wellA", "wellA"),
        ("r3_wellB", "wellB"),
    ):
        image = level0(experiment, region)
        assert image.shape == (2, *SHAPE)  # C (config order: DAPI, GFP), Z, Y, X
        np.testing.assert_array_equal(image[0], pixels[(scene, "DAPI")])
        np.testing.assert_array_equal(image[1], pixels[(scene, "GFP")])


def test_czi_pixel_size_and_z_step_come_from_the_file(czi_experiment):
    import sqlite3

    experiment = czi_experiment["experiment"]
    group = zarr.open_group(next((experiment / "images.zarr").glob("*/r1")), mode="r")
    scale = group.attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    assert scale[0]["scale"][-3:] == pytest.approx([1.5, 0.325, 0.325])
    with sqlite3.connect(experiment / "experiment.db") as conn:
        sizes = conn.execute("SELECT pixel_size_um FROM regions").fetchall()
    assert sizes and all(s == (pytest.approx(0.325),) for s in sizes)


def test_ome_zarr_input_written_by_ome_zarr_py(tmp_path):
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    rng = np.random.default_rng(3)
    image = rng.integers(0, 60000, (2, 90, 110)).astype(np.uint16)
    root = zarr.open_group(str(tmp_path / "cells.ome.zarr"), mode="w", zarr_format=2)
    write_image(
        image,
        root,
        axes=[
            {"name": "c", "type": "channel"},
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"},
        ],
        coordinate_transformations=[[{"type": "scale", "scale": [1, 0.4, 0.4]}]],
        scale_factors=(),
        fmt=FormatV04(),
        storage_options={"chunks": (1, 32, 64)},  # read by chunks of rows
    )
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(
        f"condition\tregion\tpath\nctrl\tr1\t{tmp_path / 'cells.ome.zarr'}\n"
    )
    work = tmp_path / "work"
    work.mkdir()
    write_config(work, vendor_config(sheet))
    run_workflow(work, "--until", "pyramid")
    got = level0(work / "out/exp.percell", "r1")
    np.testing.assert_array_equal(got, image)  # unnamed channels: by position


def test_ome_zarr_plate_fields_become_regions(tmp_path):
    pixels = write_ome_zarr_plate(tmp_path / "plate.zarr")
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(
        "condition\tregion\tpath\tscene\n"
        f"ctrl\tp\t{tmp_path / 'plate.zarr'}\t\n"  # every field of the plate
        f"drug\tone\t{tmp_path / 'plate.zarr'}\tC/5/1\n"  # one field
    )
    work = tmp_path / "work"
    work.mkdir()
    write_config(work, vendor_config(sheet))
    run_workflow(work, "--until", "pyramid")
    experiment = work / "out/exp.percell"
    for scene, image in pixels.items():
        region = "p_" + scene.replace("/", "_")
        np.testing.assert_array_equal(level0(experiment, region), image)
    np.testing.assert_array_equal(level0(experiment, "one"), pixels["C/5/1"])


def write_timelapse_czi(path: Path, channels: tuple[str, ...], n_t: int) -> dict:
    """One scene, 2-D, ``n_t`` timepoints; returns {(t, channel): pixels}."""
    rng = np.random.default_rng(5)
    pixels = {}
    with pyczi.create_czi(str(path), exist_ok=True) as czi:
        for t in range(n_t):
            for c, channel in enumerate(channels):
                plane = rng.integers(0, 4000, SHAPE[1:]).astype(np.uint16)
                pixels[(t, channel)] = plane
                czi.write(data=plane, plane={"C": c, "Z": 0, "T": t})
        czi.write_metadata(channel_names=dict(enumerate(channels)), scale_x=0.5e-6)
    return pixels


def test_timepoints_inside_a_czi_and_a_channel_map(tmp_path):
    czi = tmp_path / "timelapse.czi"
    pixels = write_timelapse_czi(czi, ("EGFP", "Hoechst"), 3)
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(f"condition\tregion\tpath\nctrl\tr1\t{czi}\n")
    work = tmp_path / "work"
    work.mkdir()
    config = vendor_config(
        sheet,
        file_timepoints=["t00", "t10", "t20"],
        channel_map={"Hoechst": "DAPI", "EGFP": "GFP"},
    )
    write_config(work, config)
    run_workflow(work, "--until", "pyramid")
    images = work / "out/exp.percell/images.zarr"
    for t, name in enumerate(("t00", "t10", "t20")):
        got = np.asarray(zarr.open_group(images / "ctrl" / name / "r1", mode="r")["0"])
        np.testing.assert_array_equal(got[0], pixels[(t, "Hoechst")])  # DAPI
        np.testing.assert_array_equal(got[1], pixels[(t, "EGFP")])  # GFP

    # without file_timepoints the file is refused, with the way out
    del config["file_timepoints"]
    write_config(work, config)
    before = tree_digest(work / "out")
    proc = run_workflow(work, check=False)
    assert proc.returncode != 0
    assert re.search(
        r"timelapse\.czi \(scene Image:0\) holds 3 timepoints; name them with "
        r"file_timepoints",
        proc.stderr + proc.stdout,
    ), proc.stderr[-3000:]
    assert tree_digest(work / "out") == before


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no-such-scene", r"plate\.czi: no scene 'wellC'; the file holds wellA, wellB"),
        ("channels", r"plate\.czi has channels GFP, RFP, not DAPI: name the"),
        ("corrupt", r"broken\.czi: not a readable \.czi file"),
        ("nd2", r"x\.nd2: not a readable \.nd2 file"),
        ("lif", r"x\.lif: not a readable \.lif file"),
        ("line-scan", r"line\.czi: scene Image:0: each plane is 1 row of 150 px"),
        ("anisotropic", r"aniso\.czi: scene Image:0: its pixels are 0\.325 um wide "),
        ("undecodable", r"bad\.czi: scene Image:0: the installed reader \(bioio-czi"),
    ],
)
def test_bad_vendor_input_stops_before_any_job(
    czi_experiment, tmp_path, case, expected
):
    work = copy_run(czi_experiment, tmp_path)["work"]
    before = tree_digest(work / "out")
    czi = tmp_path / "plate.czi"
    write_czi(czi, ("GFP", "RFP") if case == "channels" else ("GFP", "DAPI"))
    path, scene = str(czi), {"no-such-scene": "wellC"}.get(case, "0")
    if case == "corrupt":
        path = str(tmp_path / "broken.czi")
        Path(path).write_bytes(czi.read_bytes()[:2000])
    if case in ("line-scan", "anisotropic", "undecodable"):
        # what the header says is read, and one piece decoded, at parse time
        name = {"line-scan": "line", "anisotropic": "aniso"}.get(case, "bad")
        path = str(tmp_path / f"{name}.czi")
        plain_czi(path, (5, 1) if case == "line-scan" else (1, 40), case)
        scene = ""
    if case in ("nd2", "lif"):
        # the plugins' plumbing on files they must refuse (no real ND2 or LIF
        # sample can be had here)
        path = str(tmp_path / f"x.{case}")
        Path(path).write_bytes(b"\0" * 4096)
        scene = ""
    sheet = sheet_of(tmp_path / "samples.tsv", [f"ctrl\tr1\t{path}\t{scene}"])
    write_config(work, vendor_config(sheet))
    proc = run_workflow(work, check=False)
    assert proc.returncode != 0
    assert re.search(expected, proc.stderr + proc.stdout), proc.stderr[-3000:]
    assert "rule " not in proc.stdout  # no job ran
    assert tree_digest(work / "out") == before


def test_a_scan_imports_every_scene_of_each_file(tmp_path, monkeypatch):
    """``scan`` builds the same sheet: each CZI it finds becomes a region per
    scene (planned as the workflow plans it, at parse time)."""
    from percell.manifest import build_manifest

    monkeypatch.setenv("PERCELL_PROBE_CACHE", str(tmp_path / "probes.json"))
    for condition in ("ctrl", "drug"):
        (tmp_path / "raw" / condition).mkdir(parents=True)
        write_czi(tmp_path / "raw" / condition / "dish1.czi", ("DAPI", "GFP"))
    scan = {"directory": str(tmp_path / "raw"), "pattern": "{condition}/{region}.czi"}
    config = {**base_config({"scan": scan}), "pixel_size_um": None}
    manifest = build_manifest(config)
    keys = sorted(r.key for r in manifest.regions())
    assert keys == [
        f"{c}/dish1_{s}" for c in ("ctrl", "drug") for s in ("wellA", "wellB")
    ]
    scenes = {r.key: r.files[0].scene for r in manifest.regions()}
    assert scenes["drug/dish1_wellB"] == "wellB"
