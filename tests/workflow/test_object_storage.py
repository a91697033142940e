"""Raw files read straight from object storage: a real S3 server on loopback
(moto_server, with access keys checked), a sample sheet of ``s3://`` URLs and
a scan of a bucket prefix, through real Snakemake.

What a facility expects: the pixels are those of the files, read by ranges;
an unchanged bucket plans nothing and a changed object reruns exactly its
group; a wrong key, a missing object or bucket and an endpoint that does not
answer stop the run before any job, naming the URL, with the experiment
left byte-for-byte as it was; no secret lands in the experiment or its logs.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
import zarr

from percell import remote
from percell.publish import publish
from percell.sources import open_source, probe_source
from tests.conftest import (
    base_config,
    make_raw_experiment,
    run_workflow,
    tree_digest,
    write_config,
)
from tests.hcs_support import write_plate
from tests.support.flaky_proxy import fail_each_request_once, flaky_proxy
from tests.support.ome_zarr_plate import write_ome_zarr_plate
from tests.support.s3_server import free_port, s3_client, s3_server
from tests.workflow.test_vendor_formats import write_czi

pytestmark = pytest.mark.slow

REGIONS = [("ctrl", "t0", "r1"), ("drug", "t0", "r1")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with s3_server(log) as env, pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)  # snakemake and its jobs inherit them
        yield env


def tiff_bytes(img: np.ndarray, compressed: bool) -> bytes:
    buf = io.BytesIO()
    if compressed:  # tiles, each read by its own byte range
        tifffile.imwrite(buf, img, tile=(64, 64), compression="zlib")
    else:
        tifffile.imwrite(buf, img)
    return buf.getvalue()


@pytest.fixture(scope="module")
def bucket_run(server, tmp_path_factory):
    """Raw TIFFs put in a bucket (one region's tiled and compressed), a sheet
    of their URLs, and the workflow run on it."""
    root = tmp_path_factory.mktemp("s3run")
    _, pixels = make_raw_experiment(root / "local", REGIONS, shape=(260, 330))
    s3 = s3_client(server)
    s3.create_bucket(Bucket="raw")
    rows = []
    for (cond, tp, region, ch), img in pixels.items():
        key = f"demo/{cond}/{tp}/{region}_{ch}.tif"
        s3.put_object(Bucket="raw", Key=key, Body=tiff_bytes(img, cond == "drug"))
        rows.append(f"{cond}\t{tp}\t{region}\t{ch}\ts3://raw/{key}")
    sheet = root / "samples.tsv"
    sheet.write_text("condition\ttimepoint\tregion\tchannel\tpath\n" + "\n".join(rows))
    work = root / "work"
    work.mkdir()
    write_config(work, base_config({"sample_sheet": str(sheet)}))
    run_workflow(work)
    return {
        "work": work,
        "experiment": work / "out/exp.percell",
        "pixels": pixels,
        "s3": s3,
        "sheet": sheet,
    }


def level0(experiment, cond, tp, region):
    group = zarr.open_group(experiment / "images.zarr" / cond / tp / region, mode="r")
    return np.asarray(group["0"])


def test_a_sheet_of_s3_urls_gives_the_pixels_of_the_files(bucket_run, server):
    exp, pixels = bucket_run["experiment"], bucket_run["pixels"]
    for cond, tp, region in REGIONS:
        stack = level0(exp, cond, tp, region)
        for c, ch in enumerate(("DAPI", "GFP")):
            np.testing.assert_array_equal(
                stack[c].reshape(stack.shape[-2:]), pixels[(cond, tp, region, ch)]
            )
    # the experiment records where its pixels came from, and no secret
    secret = server["AWS_SECRET_ACCESS_KEY"].encode()
    key_id = server["AWS_ACCESS_KEY_ID"].encode()
    written = [
        f
        for f in bucket_run["work"].rglob("*")
        if f.is_file() and ".venv" not in str(f)
    ]
    assert written
    for f in written:
        data = f.read_bytes()
        assert secret not in data and key_id not in data, f
    sentinel = (exp / ".workflow/import/ctrl/t0.json").read_text()
    assert "s3://raw/demo/ctrl/t0/r1_DAPI.tif" in sentinel and "etag" in sentinel


def test_an_unchanged_bucket_plans_nothing_and_a_changed_object_its_group(
    bucket_run,
):
    work, s3 = bucket_run["work"], bucket_run["s3"]
    dry = run_workflow(work, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    # the same bytes again: a new upload with the same ETag changes nothing
    same = bucket_run["pixels"][("ctrl", "t0", "r1", "GFP")]
    s3.put_object(
        Bucket="raw", Key="demo/ctrl/t0/r1_GFP.tif", Body=tiff_bytes(same, False)
    )
    dry = run_workflow(work, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    changed = (same // 2).astype(same.dtype)
    s3.put_object(
        Bucket="raw", Key="demo/ctrl/t0/r1_GFP.tif", Body=tiff_bytes(changed, False)
    )
    planned = run_workflow(work, "-n").stdout
    # exactly the group of that object is imported again
    imports = [b for b in planned.split("rule ") if b.startswith("import_images")]
    assert len(imports) == 1 and "group=ctrl/t0" in imports[0], planned
    run_workflow(work)
    stack = level0(bucket_run["experiment"], "ctrl", "t0", "r1")
    np.testing.assert_array_equal(stack[1].reshape(stack.shape[-2:]), changed)


def test_a_scan_of_a_bucket_prefix_finds_the_files(bucket_run, tmp_path):
    work = tmp_path / "scan"
    work.mkdir()
    write_config(
        work,
        base_config(
            {
                "scan": {
                    "directory": "s3://raw/demo",
                    "pattern": "{condition}/{timepoint}/{region}_{channel}.tif",
                }
            }
        ),
    )
    run_workflow(work, "--until", "import_images")
    stack = level0(work / "out/exp.percell", "drug", "t0", "r1")
    want = bucket_run["pixels"][("drug", "t0", "r1", "DAPI")]
    np.testing.assert_array_equal(stack[0].reshape(stack.shape[-2:]), want)


def through_proxy(bucket_run, proxy, tmp_path, monkeypatch) -> Path:
    """A work directory whose config reads the bucket through ``proxy``
    (which counts the requests), with no probe remembered yet."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("PERCELL_PROBE_CACHE", str(tmp_path / "probes.json"))
    config = base_config({"sample_sheet": str(bucket_run["sheet"])})
    config["storage"] = {"endpoints": {"s3://raw": proxy.url}}
    write_config(work, config)
    return work


def test_planning_is_one_listing_and_one_get_per_new_file(
    bucket_run, server, tmp_path, monkeypatch
):
    """Counted at the wire, through a proxy: a first dry run lists the folder
    once and reads each file's header with one GET (no HEAD per object); a
    second dry run only lists (headers remembered by URL and ETag)."""
    with flaky_proxy(server["AWS_ENDPOINT_URL"]) as proxy:
        work = through_proxy(bucket_run, proxy, tmp_path, monkeypatch)

        def requests() -> tuple[list[str], list[str]]:
            seen = [(m, p.partition("?")[0], p) for m, p, _ in proxy.passed]
            proxy.passed.clear()
            objects = [f"{m} {path}" for m, path, _ in seen if path.endswith(".tif")]
            listings = [p for m, _, p in seen if "list-type" in p]
            return objects, listings

        run_workflow(work, "-n")
        objects, listings = requests()
        assert sorted(objects) == sorted(
            f"GET /raw/demo/{c}/{t}/{r}_{ch}.tif"
            for c, t, r in REGIONS
            for ch in ("DAPI", "GFP")
        )
        assert len(listings) == 1, listings
        run_workflow(work, "-n")
        objects, listings = requests()
        assert objects == [] and len(listings) == 1, (objects, listings)


def test_an_import_job_asks_for_each_object_once(
    bucket_run, server, tmp_path, monkeypatch
):
    """Counted at the wire: the import job probes each file and then reads
    it, and asks for its size (a HEAD) and its header or whole small body (a
    GET) once, not once per open (these small files were asked two or three
    HEADs and two or three GETs). The parse's probe adds its own GET, sizes
    coming from the listing."""
    with flaky_proxy(server["AWS_ENDPOINT_URL"]) as proxy:
        work = through_proxy(bucket_run, proxy, tmp_path, monkeypatch)
        run_workflow(work, "--until", "import_images")
        asked: dict[str, list[str]] = {}
        for method, path, _ in proxy.passed:
            key = path.partition("?")[0]
            if key.endswith(".tif"):
                asked.setdefault(key, []).append(method)
    assert len(asked) == 2 * len(REGIONS)
    for key, methods in asked.items():
        assert sorted(methods) == ["GET", "GET", "HEAD"], (key, methods)
    for cond, tp, region in REGIONS:  # and the pixels are the objects'
        got = level0(work / "out/exp.percell", cond, tp, region)
        for c, ch in enumerate(("DAPI", "GFP")):
            key = f"demo/{cond}/{tp}/{region}_{ch}.tif"
            body = bucket_run["s3"].get_object(Bucket="raw", Key=key)["Body"]
            np.testing.assert_array_equal(
                got[c], tifffile.imread(io.BytesIO(body.read()))
            )


def test_an_import_job_remembers_a_large_files_header_not_its_pixels(server):
    """Within an import job, probing a large object fetches its first MiB;
    only the header the probe read stays remembered (a megabyte per file
    kept had made a job reading twelve 32 MB planes from S3 use 12 MB more
    than from disk), and the reader that opens it again still finds its
    header in memory: one HEAD, one GET of the header, one GET of the band."""
    img = np.random.default_rng(3).integers(0, 60000, (1024, 1024), dtype=np.uint16)
    body = tiff_bytes(img, compressed=False)  # 2 MiB: over WHOLE_OBJECT
    s3 = s3_client(server)
    s3.create_bucket(Bucket="large")
    s3.put_object(Bucket="large", Key="plane.tif", Body=body)
    url = "s3://large/plane.tif"
    with flaky_proxy(server["AWS_ENDPOINT_URL"]) as proxy:
        remote.configure({"s3://large": proxy.url})
        try:
            with remote.remembering_heads():
                info = probe_source(url)
                kept = remote._heads[url]
                with open_source(info) as reader:
                    rows = reader.read(0, 0, 0, 1024)
        finally:
            remote.configure({})
    assert 0 < len(kept) <= 2**16 and body.startswith(kept)
    np.testing.assert_array_equal(rows, img)
    asked = [method for method, path, _ in proxy.passed if "plane.tif" in path]
    assert asked == ["HEAD", "GET", "GET"], proxy.passed


def refused(bucket_run, tmp_path, edit) -> str:
    """Rerun the bucket's experiment with a bad input; it must stop before
    any job with the experiment unchanged. Returns the output."""
    exp = bucket_run["experiment"]
    before = tree_digest(exp)
    work = bucket_run["work"]
    config = yaml.safe_load((work / "config.yaml").read_text())
    sheet = bucket_run["sheet"].read_text()
    bad_sheet = tmp_path / "bad.tsv"
    bad_sheet.write_text(sheet)
    config["input"] = {"sample_sheet": str(bad_sheet)}
    env = edit(config, bad_sheet) or {}
    write_config(work, config, "bad.yaml")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        proc = run_workflow(work, check=False, configfile="bad.yaml")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert tree_digest(exp) == before
    assert "Traceback" not in out, out
    return out


def test_a_missing_object_is_named_before_any_job(bucket_run, tmp_path):
    def edit(config, sheet):
        text = sheet.read_text().replace("r1_GFP.tif", "r1_GPF.tif", 1)
        sheet.write_text(text)

    out = refused(bucket_run, tmp_path, edit)
    assert "s3://raw/demo/ctrl/t0/r1_GPF.tif" in out and "not found" in out


def test_a_missing_bucket_is_named(bucket_run, tmp_path):
    def edit(config, sheet):
        sheet.write_text(sheet.read_text().replace("s3://raw/", "s3://rawdata/"))

    out = refused(bucket_run, tmp_path, edit)
    assert "s3://rawdata/demo" in out and "no such bucket" in out


def test_a_wrong_key_is_refused_and_no_secret_is_printed(bucket_run, tmp_path):
    def edit(config, sheet):
        return {"AWS_SECRET_ACCESS_KEY": "not-the-secret-at-all"}

    out = refused(bucket_run, tmp_path, edit)
    assert "s3://raw/demo" in out and "access refused" in out
    assert "not-the-secret-at-all" not in out


def test_an_endpoint_that_does_not_answer_is_named(bucket_run, tmp_path):
    def edit(config, sheet):
        config["storage"] = {"endpoints": {"s3://raw": "http://127.0.0.1:9"}}

    out = refused(bucket_run, tmp_path, edit)
    assert "http://127.0.0.1:9 does not answer" in out and "s3://raw" in out


def test_credentials_come_from_an_aws_profile(
    bucket_run, server, tmp_path, monkeypatch
):
    """As the AWS tools take them: with no key in the environment,
    AWS_PROFILE names a profile of the shared credentials file. Its key
    reaches the bucket; a profile with a wrong secret is refused, and a
    profile that does not exist is named, before any job."""
    key_id, secret = server["AWS_ACCESS_KEY_ID"], server["AWS_SECRET_ACCESS_KEY"]
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[imaging]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
        f"[stale]\naws_access_key_id = {key_id}\naws_secret_access_key = old-secret\n"
    )
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_PROFILE", "imaging")
    dry = run_workflow(bucket_run["work"], "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr

    out = refused(bucket_run, tmp_path, lambda config, sheet: {"AWS_PROFILE": "stale"})
    assert "s3://raw/demo" in out and "access refused" in out
    assert "old-secret" not in out
    out = refused(bucket_run, tmp_path, lambda config, sheet: {"AWS_PROFILE": "lab"})
    assert "s3://raw/demo" in out and "AWS profile 'lab'" in out, out


def test_an_experiment_path_given_as_a_url_is_refused(bucket_run, tmp_path):
    def edit(config, sheet):
        config["experiment"]["path"] = "s3://results/exp.percell"

    out = refused(bucket_run, tmp_path, edit)
    assert "experiment.path 's3://results/exp.percell' is a URL" in out
    assert "local or shared filesystem" in out


def test_a_plate_of_field_files_in_a_bucket_is_stitched_as_on_disk(server, tmp_path):
    truth = write_plate(tmp_path / "raw", ["B03", "C04"], grid=(2, 3), field=(40, 50))
    s3 = s3_client(server)
    s3.create_bucket(Bucket="plates")
    for f in sorted((tmp_path / "raw").rglob("*.tif")):
        key = f"screen-7/{f.relative_to(tmp_path / 'raw').as_posix()}"
        s3.put_object(Bucket="plates", Key=key, Body=f.read_bytes())
    work = tmp_path / "work"
    work.mkdir()
    plate = {
        "name": "P1",
        "directory": "s3://plates/screen-7",
        "pattern": "metaxpress",
        "grid": {"rows": 2, "columns": 3},
    }
    write_config(work, base_config({"plate": plate}))
    run_workflow(work, "--until", "import_images")
    for (well, _), expected in truth.items():
        path = work / f"out/exp.percell/images.zarr/P1/{well[0]}/{well[1:]}/0"
        arr = zarr.open_group(path, mode="r")["0"]
        np.testing.assert_array_equal(np.asarray(arr).reshape(expected.shape), expected)


def test_transient_errors_are_retried_and_a_lasting_one_leaves_the_group(
    server, tmp_path
):
    """Through a proxy that answers 503 SlowDown: each request failing once
    is retried with backoff and the pixels are those of the files; an object
    whose pixel ranges keep failing fails its import job, naming the URL,
    and leaves the experiment's arrays as they were; the next run finishes
    the job."""
    # 1024 x 1024 uint16: 2 MiB, so the pixels are read by ranged GETs
    _, pixels = make_raw_experiment(tmp_path / "local", REGIONS, shape=(1024, 1024))
    s3 = s3_client(server)
    s3.create_bucket(Bucket="flaky")
    rows = []
    for (cond, tp, region, ch), img in pixels.items():
        key = f"{cond}/{region}_{ch}.tif"
        s3.put_object(Bucket="flaky", Key=key, Body=tiff_bytes(img, False))
        rows.append(f"{cond}\t{tp}\t{region}\t{ch}\ts3://flaky/{key}")
    sheet = tmp_path / "samples.tsv"
    sheet.write_text("condition\ttimepoint\tregion\tchannel\tpath\n" + "\n".join(rows))
    work = tmp_path / "work"
    work.mkdir()
    exp = work / "out/exp.percell"
    with flaky_proxy(server["AWS_ENDPOINT_URL"]) as proxy:
        config = base_config({"sample_sheet": str(sheet)})
        config["storage"] = {"endpoints": {"s3://flaky": proxy.url}}
        write_config(work, config)

        proxy.policy = fail_each_request_once()
        run_workflow(work, "--until", "import_images")
        assert any(m == "GET" and r for m, _, r in proxy.refused), proxy.refused
        for cond, tp, region in REGIONS:
            stack = level0(exp, cond, tp, region)
            for c, ch in enumerate(("DAPI", "GFP")):
                np.testing.assert_array_equal(
                    stack[c].reshape(stack.shape[-2:]), pixels[(cond, tp, region, ch)]
                )

        # a new object whose pixel ranges (beyond the first MiB, which holds
        # the header the plan reads) keep failing
        changed = (pixels[("ctrl", "t0", "r1", "GFP")] // 2).astype(np.uint16)
        s3.put_object(
            Bucket="flaky", Key="ctrl/r1_GFP.tif", Body=tiff_bytes(changed, False)
        )
        before = tree_digest(exp)

        def pixel_ranges(method: str, path: str, range_: str) -> bool:
            end = int(range_.rpartition("-")[2] or 0) if range_ else 0
            return path.endswith("/ctrl/r1_GFP.tif") and end >= 2**20

        proxy.policy = pixel_ranges
        proxy.refused.clear()
        failed = run_workflow(work, "--until", "import_images", check=False)
        out = failed.stdout + failed.stderr
        assert failed.returncode != 0, out
        assert proxy.refused, "the job never read the failing ranges"
        assert "s3://flaky/ctrl/r1_GFP.tif" in out, out
        assert "Traceback" not in out, out  # the reason, not our internals
        # the plan read only the header, so the job ran and failed: Snakemake
        # removed its sentinel (the next run does the job again) and nothing
        # else moved
        assert "Error in rule import_images" in out, out
        now = tree_digest(exp)
        moved = {k for k in before.keys() | now.keys() if before.get(k) != now.get(k)}
        assert moved == {".workflow/import/ctrl/t0.json"}, moved

        proxy.policy = None
        run_workflow(work, "--until", "import_images")
        stack = level0(exp, "ctrl", "t0", "r1")
        np.testing.assert_array_equal(stack[1].reshape(stack.shape[-2:]), changed)


@pytest.fixture
def http_server(tmp_path):
    """A plain HTTP server on loopback serving ``tmp_path / "www"``."""
    root = tmp_path / "www"
    root.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "http.server did not start"
                time.sleep(0.1)
        yield root, f"http://127.0.0.1:{port}"
    finally:
        os.kill(proc.pid, 15)
        proc.wait(timeout=30)


def test_ome_zarr_over_http_and_in_s3_and_a_czi_staged_from_s3(
    server, http_server, tmp_path, monkeypatch
):
    www, base = http_server
    pixels = write_ome_zarr_plate(www / "plate.zarr")
    s3 = s3_client(server)
    s3.create_bucket(Bucket="zarr")
    for f in sorted((www / "plate.zarr").rglob("*")):
        if f.is_file():
            key = f"screens/plate.zarr/{f.relative_to(www / 'plate.zarr').as_posix()}"
            s3.put_object(Bucket="zarr", Key=key, Body=f.read_bytes())
    czi = write_czi(tmp_path / "scenes.czi", ("GFP", "DAPI"))
    s3.put_object(
        Bucket="zarr", Key="raw/scenes.czi", Body=(tmp_path / "scenes.czi").read_bytes()
    )
    monkeypatch.setenv("PERCELL_REMOTE_CACHE", str(tmp_path / "staged"))
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(
        "condition\tregion\tpath\tscene\n"
        f"ctrl\tp\t{base}/plate.zarr\t\n"  # every field, over HTTP
        "drug\tone\ts3://zarr/screens/plate.zarr\tC/5/1\n"  # one field, from S3
        "drug\tczi\ts3://zarr/raw/scenes.czi\twellB\n"  # staged for its reader
    )
    work = tmp_path / "work"
    work.mkdir()
    config = base_config({"sample_sheet": str(sheet)}, pixel_size_um=None)
    config["channels"] = [{"name": "GFP"}, {"name": "DAPI"}]
    write_config(work, config)
    run_workflow(work, "--until", "pyramid")
    experiment = work / "out/exp.percell"

    def level0(region):
        (group,) = (experiment / "images.zarr").glob(f"*/{region}")
        return np.asarray(zarr.open_group(group, mode="r")["0"][:])

    for scene, image in pixels.items():
        region = "p_" + scene.replace("/", "_")
        np.testing.assert_array_equal(level0(region), image)
    np.testing.assert_array_equal(level0("one"), pixels["C/5/1"])
    got = level0("czi")
    for c, channel in enumerate(("GFP", "DAPI")):
        np.testing.assert_array_equal(got[c], czi[("wellB", channel)])
    # the CZI was staged once, into the cache named, and nothing else was
    staged = list((tmp_path / "staged").iterdir())
    assert [f.suffix for f in staged] == [".czi"], staged


def test_publish_sends_the_ngff_stores_and_then_only_what_changed(
    bucket_run, server, tmp_path
):
    exp = tmp_path / "exp.percell"
    shutil.copytree(bucket_run["experiment"], exp)
    s3_client(server).create_bucket(Bucket="web")
    percell = str(Path(sys.executable).with_name("percell"))
    done = subprocess.run(
        [percell, "publish", str(exp), "s3://web/screens/exp"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    files = sorted(
        f.relative_to(exp).as_posix()
        for store in ("images.zarr", "labels.zarr", "masks.zarr")
        if (exp / store).is_dir()
        for f in (exp / store).rglob("*")
        if f.is_file()
    )
    assert "0 removed, 0 unchanged" in done.stdout and str(len(files)) in done.stdout
    pages = s3_client(server).get_paginator("list_objects_v2")
    published = sorted(
        o["Key"][len("screens/exp/") :]
        for page in pages.paginate(Bucket="web", Prefix="screens/exp/")
        for o in page.get("Contents", [])
    )
    assert published == files  # the stores only: no experiment.db, no .workflow
    # a reader of the bucket sees the experiment's pixels
    store = zarr.storage.FsspecStore.from_url(
        "s3://web/screens/exp/images.zarr/ctrl/t0/r1", read_only=True
    )
    np.testing.assert_array_equal(
        np.asarray(zarr.open_group(store, mode="r")["0"]),
        level0(exp, "ctrl", "t0", "r1"),
    )
    assert publish(exp, "s3://web/screens/exp") == {
        "uploaded": 0,
        "removed": 0,
        "unchanged": len(files),
    }
    # a file gone and a file changed: one removal, one upload
    (exp / files[-1]).unlink()
    changed = exp / "images.zarr/ctrl/t0/r1/.zattrs"
    changed.write_text(changed.read_text() + "\n")
    assert publish(exp, "s3://web/screens/exp") == {
        "uploaded": 1,
        "removed": 1,
        "unchanged": len(files) - 2,
    }
