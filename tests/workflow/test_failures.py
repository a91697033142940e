"""A job that fails half-way changes nothing, and says why in the terminal."""

from __future__ import annotations

import sqlite3

import numpy as np
import tifffile

from percell.demo import synthetic_cells
from tests.conftest import base_config, run_workflow, tree_digest, write_config


def write_region(root, region, seed):
    dapi, gfp, _, _ = synthetic_cells((600, 700), np.random.default_rng(seed))
    paths = {}
    for ch, img in (("DAPI", dapi), ("GFP", gfp)):
        path = root / f"{region}_{ch}.tif"
        # compressed strips: the pixel data can be damaged behind a valid header
        tifffile.imwrite(path, img, compression="zlib", rowsperstrip=64)
        paths[ch] = path
    return paths


def corrupt_pixel_data(path) -> None:
    """Overwrite the middle of the last compressed strip; the header stays valid."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[-1], page.databytecounts[-1]
        page.asarray  # noqa: B018 (the header reads)
    data = bytearray(path.read_bytes())
    data[offset + 2 : offset + count - 2] = b"\xff" * (count - 4)
    path.write_bytes(bytes(data))


def sheet_text(rows):
    lines = ["condition\ttimepoint\tregion\tchannel\tpath"]
    lines += [f"ctrl\t\t{r}\t{ch}\t{p}" for r, files in rows for ch, p in files.items()]
    return "\n".join(lines) + "\n"


def snapshot(exp) -> dict:
    """Every array and attribute file, and every database row."""
    files = {}
    for store in ("images.zarr", "labels.zarr", "masks.zarr"):
        files.update({f"{store}/{k}": v for k, v in tree_digest(exp / store).items()})
    conn = sqlite3.connect(exp / "experiment.db")
    tables = [
        t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
    ]
    rows = {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}
    conn.close()
    return {"files": files, "rows": rows}


def test_corrupt_pixel_data_fails_the_job_and_changes_nothing(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = [
        (r, write_region(raw, r, seed)) for seed, r in enumerate(("r1", "r2", "r3"))
    ]
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(sheet_text(rows))
    work = tmp_path / "work"
    work.mkdir()
    config = base_config(
        {"sample_sheet": str(sheet)},
        segmentation={"channel": "DAPI", "diameter": 16, "min_size": 30},
        thresholds=[{"channel": "GFP", "method": "otsu"}],
    )
    write_config(work, config)
    run_workflow(work)
    exp = work / "out/exp.percell"
    before = snapshot(exp)

    # r4 joins the group: its header is fine (the parse-time check passes),
    # its compressed pixel data is not (only the import job finds out)
    r4 = write_region(raw, "r4", 9)
    corrupt_pixel_data(r4["GFP"])
    sheet.write_text(sheet_text([*rows, ("r4", r4)]))
    proc = run_workflow(work, check=False)
    out = proc.stdout + proc.stderr

    assert proc.returncode != 0
    # the reason is in the terminal, not only in logs/
    assert "region ctrl/r4" in out and "r4_GFP.tif" in out
    assert "DeflateError" in out
    assert snapshot(exp) == before
    debris = [
        p for p in exp.rglob("*") if ".partial" in p.name or p.name.endswith(".old")
    ]
    assert debris == []

    # with the file repaired, the same command finishes the group
    write_region(raw, "r4", 9)
    run_workflow(work)
    conn = sqlite3.connect(exp / "experiment.db")
    assert conn.execute("SELECT count(*) FROM regions").fetchone()[0] == 4
