"""Benchmark: raw files read from S3 against the same files read locally.

Run from the repository root:

    python bench/bench_s3.py                       # import, then planning
    python bench/bench_s3.py --part import --regions 4 --size 4096
    python bench/bench_s3.py --part plan --wells 1536

A real S3 server runs on loopback (moto_server, started here and stopped by
its PID). Each case is run twice with the same treatment, once on a local
directory (the anchor) and once on the same bytes in a bucket, and printed
as a ratio against the anchor.

- import: ``--regions`` regions of 3 channels of ``--size``² uint16 TIFFs
  (uncompressed, strips), imported by ``snakemake --until import_images
  --cores 1``: wall seconds, the peak resident memory of the import jobs
  (sampled by Snakemake's ``benchmark:``) and that of the largest process
  (Snakemake itself, whose parse probes the files). The staging cache must
  stay empty: a TIFF is read by byte ranges, never copied whole. Goal:
  within 1.5× of local, peak memory no higher.
- plan: an HCS plate of ``--wells`` wells (2×2 fields × 3 channels, tiny
  TIFFs, MetaXpress names) as ``input.plate.directory``, a dry run of the
  whole workflow: the first (every header probed) and a second (headers
  remembered, one listing). Goal: within 2× of the local dry run.

moto keeps objects in memory in its own process; it is not a fast S3 (one
Python process answering HTTP, copying the whole object for each ranged
GET), so the ratios are an upper bound of what a real object store on a fast
network gives. ``--server s3rver`` runs the same cases against s3rver (npm),
which keeps objects on disk and streams each range from its file, as object
stores do; install it once and name it:

    npm install --prefix ~/.cache/percell/s3rver s3rver@3.7.1
    S3RVER=~/.cache/percell/s3rver/node_modules/.bin/s3rver \
        python bench/bench_s3.py --part import --server s3rver

Each import case also checks that the experiment built from the bucket holds
the same pixels as the one built from local files.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tifffile
import yaml
import zarr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

from tests.support.s3_server import (  # noqa: E402
    free_port,
    s3_client,
    s3_server,
    wait_until_it_answers,
)

CHANNELS = ("DAPI", "GFP", "RFP")


@contextlib.contextmanager
def s3rver(root: Path) -> Iterator[dict[str, str]]:
    """s3rver (``$S3RVER``, an npm install) on loopback, its objects under
    ``root``; yields the environment that reaches it (its fixed key)."""
    binary = os.environ.get("S3RVER") or shutil.which("s3rver")
    if not binary:
        raise SystemExit("--server s3rver: set S3RVER to the s3rver command")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [binary, "-d", str(root / "s3rver"), "-a", "127.0.0.1", "-p", str(port), "-s"],
        env={**os.environ, "NODE_OPTIONS": "--openssl-legacy-provider"},
    )
    try:
        wait_until_it_answers(endpoint, proc, 30)
        yield {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "S3RVER",
            "AWS_SECRET_ACCESS_KEY": "S3RVER",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def same_pixels(a: Path, b: Path) -> bool:
    """Whether two experiments hold the same arrays (NGFF 0.4: zarr v2)
    with the same values, path by path."""
    arrays = sorted(p.parent.relative_to(a) for p in a.rglob(".zarray"))
    for rel in arrays:
        mine = zarr.open_array(a / rel, mode="r")
        if not np.array_equal(mine[...], zarr.open_array(b / rel, mode="r")[...]):
            print(f"  {rel} differs")
            return False
    return bool(arrays)


def upload(env: dict[str, str], bucket: str, root: Path, prefix: str) -> None:
    s3 = s3_client(env)
    s3.create_bucket(Bucket=bucket)
    files = [f for f in sorted(root.rglob("*")) if f.is_file()]

    def put(f: Path) -> None:
        key = f"{prefix}/{f.relative_to(root).as_posix()}"
        s3.upload_file(str(f), bucket, key)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, files))


def run(work: Path, config: dict, *args: str) -> tuple[float, int, float]:
    """Seconds and the peak RSS (MB) of the largest process of a snakemake
    run, measured in a child so that only this run counts."""
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [
        SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(work / "config.yaml"),
        *args,
    ]
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "e = time.perf_counter() - t; "
        "sys.stderr.write((p.stdout + p.stderr)[-6000:] if p.returncode else ''); "
        "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
        "print(e, u.ru_maxrss, u.ru_utime + u.ru_stime); "
        "sys.exit(p.returncode)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *cmd], capture_output=True, text=True
    )
    if proc.returncode:
        raise SystemExit(f"snakemake failed:\n{proc.stderr}")
    seconds, kb, cpu = proc.stdout.split()
    return float(seconds), int(kb) // 1024, float(cpu)


def server_cpu(env: dict[str, str]) -> float:
    """CPU seconds the S3 server's process has used so far (it shares the
    machine's cores with the workflow)."""
    import psutil

    port = env["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "-p" in cmdline and port in cmdline:
            times = proc.cpu_times()
            return float(times.user + times.system)
    raise SystemExit(f"no S3 server process on port {port}")


def job_peak_mb(work: Path) -> int:
    """The largest peak RSS of the import jobs, from Snakemake's benchmark
    files (the job's process tree, not Snakemake's own)."""
    peaks = []
    for tsv in (work / "benchmarks").rglob("import/*.tsv"):
        header, values = (line.split("\t") for line in tsv.read_text().splitlines()[:2])
        peaks.append(float(values[header.index("max_rss")]))
    return int(max(peaks))


def bench_import(
    env: dict[str, str], root: Path, regions: int, size: int, server: str
) -> None:
    rng = np.random.default_rng(0)
    raw = root / "raw"
    rows_local, rows_s3 = [], []
    for r in range(regions):
        for ch in CHANNELS:
            path = raw / f"r{r}_{ch}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, rng.integers(0, 4000, (size, size), dtype=np.uint16))
            rows_local.append(f"ctrl\tr{r}\t{ch}\t{path}")
            rows_s3.append(f"ctrl\tr{r}\t{ch}\ts3://raw/bench/r{r}_{ch}.tif")
    upload(env, "raw", raw, "bench")
    staging = root / "staging"
    os.environ["PERCELL_REMOTE_CACHE"] = str(staging)
    header = "condition\tregion\tchannel\tpath\n"
    results = {}
    for name, rows in (("local", rows_local), ("s3", rows_s3)):
        work = root / f"import-{name}"
        work.mkdir()
        sheet = work / "samples.tsv"
        sheet.write_text(header + "\n".join(rows) + "\n")
        config = {
            "experiment": {"name": "bench", "path": "out/bench.percell"},
            "input": {"sample_sheet": str(sheet)},
            "channels": [{"name": c} for c in CHANNELS],
            "pixel_size_um": 0.5,
            "import": {"resources": {"threads": 1}},
        }
        seconds, largest, _ = run(
            work, config, "--until", "import_images", "--cores", "1"
        )
        results[name] = (seconds, job_peak_mb(work), largest)
    mb = regions * len(CHANNELS) * size * size * 2 / 1e6
    (t_local, job_local, all_local) = results["local"]
    (t_s3, job_s3, all_s3) = results["s3"]
    staged = list(staging.rglob("*")) if staging.exists() else []
    print(
        f"import, {regions} regions x 3 channels of {size}x{size} uint16 "
        f"({mb:.0f} MB of TIFF), 1 core; peak RSS of the import jobs (Snakemake's "
        "benchmark files) and of the largest process (Snakemake, whose parse "
        "probes the files)"
    )
    print(
        f"  local (anchor)  {t_local:7.1f} s   import job {job_local:5d} MB   "
        f"largest {all_local:5d} MB"
    )
    print(
        f"  {'s3 (' + server + ')':15s} {t_s3:7.1f} s   import job {job_s3:5d} MB   "
        f"largest {all_s3:5d} MB   ratio {t_s3 / t_local:.2f}x time, "
        f"{job_s3 / job_local:.2f}x job memory, {all_s3 / all_local:.2f}x largest"
    )
    print(f"  files staged locally for S3 TIFFs: {len(staged)} (goal: 0)")
    experiments = [root / f"import-{n}" / "out" / "bench.percell" for n in results]
    if not same_pixels(*experiments):
        raise SystemExit("the experiment from the bucket differs from the local one")
    print("  the same pixels in both experiments (every array of each image)")


def make_plate(directory: Path, n_wells: int) -> None:
    tile = np.zeros((16, 16), np.uint16)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    columns = 48 if n_wells > 384 else 24
    for i in range(n_wells):
        r, c = divmod(i, columns)
        row = letters[r] if r < 26 else "A" + letters[r - 26]
        for f in range(1, 5):
            for ch in range(1, 4):
                path = directory / f"{row}{c + 1:02d}_s{f}_w{ch}.tif"
                path.parent.mkdir(parents=True, exist_ok=True)
                tifffile.imwrite(path, tile)


def bench_plan(env: dict[str, str], root: Path, wells: int, server: str) -> None:
    plate = root / "plate"
    make_plate(plate, wells)
    upload(env, "plates", plate, "screen")
    n_files = sum(1 for _ in plate.iterdir())
    results = {}
    for name, directory in (("local", str(plate)), ("s3", "s3://plates/screen")):
        work = root / f"plan-{name}"
        work.mkdir()
        config = {
            "experiment": {"name": "bench", "path": "out/bench.percell"},
            "input": {
                "plate": {
                    "name": "P1",
                    "directory": directory,
                    "grid": {"rows": 2, "columns": 2},
                }
            },
            "channels": [{"name": c} for c in CHANNELS],
            "pixel_size_um": 0.5,
            "segmentation": {"channel": "DAPI", "diameter": 8},
        }
        runs = []
        for _ in ("first", "again"):
            served = server_cpu(env)
            seconds, _, cpu = run(work, config, "-n", "--cores", "2")
            runs.append((seconds, cpu, server_cpu(env) - served))
        results[name] = runs
    (f_local, a_local), (f_s3, a_s3) = results["local"], results["s3"]
    print(f"dry run, an HCS plate of {wells} wells ({n_files} field files)")
    print(f"  local (anchor)  first {f_local[0]:6.1f} s   again {a_local[0]:6.1f} s")
    print(
        f"  {'s3 (' + server + ')':15s} first {f_s3[0]:6.1f} s   "
        f"again {a_s3[0]:6.1f} s   "
        f"ratio {f_s3[0] / f_local[0]:.2f}x first, {a_s3[0] / a_local[0]:.2f}x again"
    )
    print("  CPU seconds (snakemake and percell; the S3 server, on the same cores):")
    for label, (local, s3) in (("first", (f_local, f_s3)), ("again", (a_local, a_s3))):
        print(
            f"    {label}: local {local[1]:6.1f}   s3 {s3[1]:6.1f} "
            f"+ server {s3[2]:6.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["import", "plan", "all"], default="all")
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--wells", type=int, default=1536)
    parser.add_argument("--server", choices=["moto", "s3rver"], default="moto")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="percell-bench-s3-"))
    server = s3_server(root / "moto.log") if args.server == "moto" else s3rver(root)
    try:
        with server as env:
            os.environ.update(env)
            os.environ["PERCELL_PROBE_CACHE"] = str(root / "probes.json")
            if args.part in ("import", "all"):
                bench_import(env, root, args.regions, args.size, args.server)
            if args.part in ("plan", "all"):
                bench_plan(env, root, args.wells, args.server)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
