"""Raw file layouts: 2-D per channel, CYX, CZYX, ZCYX, Z per channel, z per file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from percell.contracts import Channel, SourceFile
from percell.errors import SourceImageError
from percell.importer import write_image
from percell.plan import plan_region
from percell.sources import probe_source
from percell.storage import open_group

NAMES = ["DAPI", "GFP", "RFP"]


def rand(shape, dtype="uint16", seed=0):
    return np.random.default_rng(seed).integers(0, 60000, shape).astype(dtype)


def import_files(tmp_path: Path, files: list[SourceFile]) -> np.ndarray:
    infos = [probe_source(f.path, f.channel is None) for f in files]
    plan = plan_region("c/r", files, infos, NAMES)
    write_image(tmp_path / "img", plan, infos)
    return open_group(tmp_path / "img")["0"][:]


def test_one_2d_file_per_channel(tmp_path):
    data = rand((3, 530, 1030))
    files = []
    for c, name in enumerate(NAMES):
        tifffile.imwrite(tmp_path / f"{name}.tif", data[c])
        files.append(
            SourceFile(path=str(tmp_path / f"{name}.tif"), channel=name, z=None)
        )
    np.testing.assert_array_equal(import_files(tmp_path, files), data)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_multichannel_cyx_file(tmp_path, compression):
    data = rand((3, 600, 520))
    tifffile.imwrite(tmp_path / "cyx.tif", data, compression=compression)
    out = import_files(
        tmp_path, [SourceFile(path=str(tmp_path / "cyx.tif"), channel=None, z=None)]
    )
    np.testing.assert_array_equal(out, data)


def test_czyx_ome_tiff_with_pixel_size(tmp_path):
    data = rand((3, 12, 100, 90))
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(
        path,
        data,
        ome=True,
        metadata={
            "axes": "CZYX",
            "PhysicalSizeX": 0.325,
            "PhysicalSizeY": 0.325,
            "PhysicalSizeZ": 1.5,
        },
    )
    info = probe_source(path, multichannel=True)
    assert (info.axes, info.pixel_size_um, info.z_step_um) == ("CZYX", 0.325, 1.5)
    out = import_files(tmp_path, [SourceFile(path=str(path), channel=None, z=None)])
    assert out.shape == (3, 12, 100, 90)
    np.testing.assert_array_equal(out, data)
    meta = open_group(tmp_path / "img")["0"]
    assert meta.chunks == (1, 10, 100, 90)


def test_imagej_zcyx_hyperstack(tmp_path):
    data = rand((3, 4, 64, 80))  # C, Z, Y, X
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(
        path,
        data.transpose(1, 0, 2, 3),
        imagej=True,
        metadata={"axes": "ZCYX", "unit": "um"},
        resolution=(2.0, 2.0),
    )
    info = probe_source(path, multichannel=True)
    assert info.axes == "CZYX" and info.shape == (3, 4, 64, 80)
    assert info.pixel_size_um == pytest.approx(0.5)
    out = import_files(tmp_path, [SourceFile(path=str(path), channel=None, z=None)])
    np.testing.assert_array_equal(out, data)


def test_zyx_stack_per_channel(tmp_path):
    data = rand((3, 5, 70, 60), dtype="float32")
    files = []
    for c, name in enumerate(NAMES):
        tifffile.imwrite(tmp_path / f"{name}.tif", data[c])
        files.append(
            SourceFile(path=str(tmp_path / f"{name}.tif"), channel=name, z=None)
        )
    np.testing.assert_array_equal(import_files(tmp_path, files), data)


def test_one_file_per_channel_and_z(tmp_path):
    data = rand((3, 4, 50, 40), dtype="uint8")
    files = []
    for c, name in enumerate(NAMES):
        for z in range(4):
            p = tmp_path / f"{name}_z{z}.tif"
            tifffile.imwrite(p, data[c, z])
            files.append(SourceFile(path=str(p), channel=name, z=z))
    np.testing.assert_array_equal(import_files(tmp_path, files[::-1]), data)


def test_missing_channel_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", rand((10, 10)))
    files = [SourceFile(path=str(tmp_path / "a.tif"), channel="DAPI", z=None)]
    infos = [probe_source(tmp_path / "a.tif")]
    with pytest.raises(SourceImageError, match=r"no file for channel.*GFP, RFP"):
        plan_region("c/r", files, infos, NAMES)


def test_multichannel_file_with_wrong_channel_count(tmp_path):
    tifffile.imwrite(tmp_path / "two.tif", rand((2, 10, 10)))
    files = [SourceFile(path=str(tmp_path / "two.tif"), channel=None, z=None)]
    infos = [probe_source(tmp_path / "two.tif", multichannel=True)]
    with pytest.raises(SourceImageError, match=r"two\.tif.*expected 3 channels"):
        plan_region("c/r", files, infos, NAMES)


def test_z_gap_is_refused(tmp_path):
    files, infos = [], []
    for name in NAMES:
        for z in (0, 2):
            p = tmp_path / f"{name}{z}.tif"
            tifffile.imwrite(p, rand((8, 8)))
            files.append(SourceFile(path=str(p), channel=name, z=z))
            infos.append(probe_source(p))
    with pytest.raises(SourceImageError, match=r"has z \[0, 2\], expected 0..1"):
        plan_region("c/r", files, infos, NAMES)


def test_zstack_pyramid_keeps_z_and_is_valid_ngff(tmp_path):
    import zarr
    from ome_zarr_models.v04 import Image

    from percell import ngff
    from percell.pyramid import build_levels, mean_2x2
    from percell.storage import IMAGE_COMPRESSOR

    data = rand((3, 12, 700, 600))
    tifffile.imwrite(tmp_path / "s.tif", data)
    out = import_files(
        tmp_path, [SourceFile(path=str(tmp_path / "s.tif"), channel=None, z=None)]
    )
    np.testing.assert_array_equal(out, data)
    group = open_group(tmp_path / "img", mode="r+")
    group.attrs.put(
        ngff.image_attrs(
            "r",
            1,
            0.5,
            2.0,
            True,
            [Channel(name=n) for n in NAMES],
            [(0, 65535, 0, 1)] * 3,
        )
    )
    build_levels(tmp_path / "img", 2, mean_2x2, IMAGE_COMPRESSOR)
    group = open_group(tmp_path / "img")
    assert group["1"].shape == (3, 12, 350, 300)
    assert group["1"].chunks == (1, 10, 350, 300)
    Image.from_zarr(zarr.open_group(str(tmp_path / "img"), mode="r"))
    scales = [
        d["coordinateTransformations"][0]["scale"]
        for d in group.attrs["multiscales"][0]["datasets"]
    ]
    assert scales == [[1.0, 2.0, 0.5, 0.5], [1.0, 2.0, 1.0, 1.0]]


def test_probe_many_remembers_unchanged_files(tmp_path, monkeypatch):
    from percell import sources

    monkeypatch.setenv("PERCELL_PROBE_CACHE", str(tmp_path / "cache/probes.json"))
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    tifffile.imwrite(a, np.zeros((8, 9), np.uint16))
    tifffile.imwrite(b, np.zeros((3, 8, 9), np.uint8))
    opened = []
    real = sources.probe_source
    monkeypatch.setattr(
        sources,
        "probe_source",
        lambda p, m=False, s=None: opened.append(p) or real(p, m, s),
    )
    first = sources.probe_many([(str(a), None), (str(b), None)], {str(b)})
    assert opened == [str(a), str(b)]
    again = sources.probe_many([(str(a), None), (str(b), None)], {str(b)})
    assert again == first and opened == [str(a), str(b)]
    tifffile.imwrite(a, np.zeros((8, 10), np.uint16))  # changed: probed again
    assert sources.probe_many([(str(a), None)], set())[str(a)].shape == (8, 10)
    assert opened[-1] == str(a)
    b.write_bytes(b"not a tiff")
    with pytest.raises(SourceImageError, match=r"b\.tif: not a readable TIFF"):
        sources.probe_many([(str(b), None)], {str(b)})


def test_a_probe_made_by_other_reader_versions_is_not_trusted(tmp_path, monkeypatch):
    """A probe remembered under another tifffile (or bioio plugin) version
    is made again: after a reader upgrade or downgrade a file may decode
    differently, and the failure must come at parse time, not in a job."""
    import json
    from importlib import metadata

    from percell import sources

    cache = tmp_path / "probes.json"
    monkeypatch.setenv("PERCELL_PROBE_CACHE", str(cache))
    a = tmp_path / "a.tif"
    tifffile.imwrite(a, np.zeros((8, 9), np.uint16))
    assert sources.probe_many([(str(a), None)], set())[str(a)].shape == (8, 9)
    entry = json.loads(cache.read_text())[str(a)]
    assert f"tifffile={metadata.version('tifffile')}" in entry[0][-1]
    # the same file as remembered by another tifffile: a wrong shape, trusted
    # only if the versions were ignored
    entry[0][-1] = entry[0][-1].replace("tifffile=", "tifffile=0.0-")
    entry[1]["shape"] = [1, 1]
    cache.write_text(json.dumps({str(a): entry}))
    assert sources.probe_many([(str(a), None)], set())[str(a)].shape == (8, 9)
    # and the same versions are trusted (the remembered probe is used as is)
    entry = json.loads(cache.read_text())[str(a)]
    entry[1]["shape"] = [1, 1]
    cache.write_text(json.dumps({str(a): entry}))
    assert sources.probe_many([(str(a), None)], set())[str(a)].shape == (1, 1)


def test_ome_tiff_channel_names_are_matched_by_name(tmp_path):
    data = rand((2, 40, 50))
    path = tmp_path / "named.ome.tif"
    tifffile.imwrite(
        path,
        data,
        ome=True,
        metadata={"axes": "CYX", "Channel": {"Name": ["GFP", "DAPI"]}},
    )
    info = probe_source(path, multichannel=True)
    assert info.channel_names == ("GFP", "DAPI")
    files = [SourceFile(path=str(path), channel=None)]
    plan = plan_region("c/r", files, [info], ["DAPI", "GFP"])
    assert [(p.c, p.source_c) for p in plan.planes] == [(0, 1), (1, 0)]
    with pytest.raises(SourceImageError, match="has channels GFP, DAPI, not RFP"):
        plan_region("c/r", files, [info], ["DAPI", "RFP"])
    renamed = plan_region("c/r", files, [info], ["DAPI", "RFP"], {"GFP": "RFP"})
    assert [p.source_c for p in renamed.planes] == [1, 0]


def test_ome_tiff_without_channel_names_is_read_in_the_configured_order(tmp_path):
    path = tmp_path / "plain.ome.tif"
    tifffile.imwrite(path, rand((2, 40, 50)), ome=True, metadata={"axes": "CYX"})
    info = probe_source(path, multichannel=True)
    assert info.channel_names == ()
    plan = plan_region(
        "c/r", [SourceFile(path=str(path), channel=None)], [info], ["A", "B"]
    )
    assert [p.source_c for p in plan.planes] == [0, 1]


def test_a_colour_czi_is_refused_by_name(tmp_path):
    pyczi = pytest.importorskip("pylibCZIrw.czi")
    path = tmp_path / "brightfield.czi"
    with pyczi.create_czi(str(path)) as czi:  # one Bgr24 plane
        czi.write(data=np.zeros((20, 30, 3), np.uint8), plane={"C": 0, "Z": 0, "T": 0})
        czi.write_metadata()
    with pytest.raises(SourceImageError, match=r"brightfield\.czi: scene .* colour"):
        probe_source(path, multichannel=True)


def test_an_axis_percell_does_not_model_is_refused_naming_it():
    """A spectral sweep (bioio names the axis as the plugin reports it) is
    refused, not read as channels or planes; T, C, Z, Y, X pass."""
    from bioio_base.dimensions import Dimensions

    from percell.formats import _refuse_what_percell_does_not_model

    square = type("Sizes", (), {"X": 0.2, "Y": 0.2, "Z": None})()
    _refuse_what_percell_does_not_model(
        "f.lif: scene 0", Dimensions("TCZYX", (2, 3, 4, 10, 10)), square
    )
    with pytest.raises(
        SourceImageError,
        match=r"f\.lif: scene 0 holds a spectral \(lambda\) sweep 'L' of 5 .*"
        r"percell reads XY images",
    ):
        _refuse_what_percell_does_not_model(
            "f.lif: scene 0", Dimensions("LTCZYX", (5, 1, 1, 1, 10, 10)), square
        )
