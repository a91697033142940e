"""Benchmark: import + pyramid of a 3×8192×8192 uint16 image.

Run from the repository root:

    python bench/bench_import.py            # full size (needs ~2 GB of disk)
    python bench/bench_import.py --size 2048  # quick look

In one run, from the same uncompressed multi-channel TIFF, it writes the image
with its full pyramid (down to one 512×512 chunk) three ways, each in its own
process so that peak memory is measured separately:

- percell: ``import_group`` then ``pyramid_group`` (what the workflow runs);
- ome-zarr-py (the anchor): ``tifffile.imread`` then ``ome_zarr.writer.write_image``
  with NGFF 0.4, the same chunks, the same number of levels, twice: with its
  own default codec (zarr's, Zstd level 0), and with percell's (Blosc lz4,
  bit-shuffle, level 5);
  both on ``--threads`` dask threads, percell's thread count;
- raw: the same pixels and 2×2-mean pyramid as uncompressed ``.npy`` files
  (a floor for what the disk allows);
- percell-czi: percell again, from the same pixels written as a CZI by
  Zeiss's libCZI, probed through bioio and read by bands with libCZI
  (needs ``percell[czi]``; left out without it).

It prints MB/s (level-0 megabytes per second of wall time, reading included),
peak RSS, and percell's speed as a ratio to ome-zarr-py. Targets: ratio ≥ 2,
percell's peak RSS < 2 × one channel plane.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile


def make_source(path: Path, size: int) -> None:
    rng = np.random.default_rng(0)
    with tifffile.TiffWriter(path) as tw:
        # written plane by plane so the benchmark itself stays small in memory
        planes = (
            (rng.normal(1000, 200, (size, size)).clip(0, 65535)).astype(np.uint16)
            for _ in range(3)
        )
        tw.write(
            planes,
            shape=(3, size, size),
            dtype=np.uint16,
            photometric="minisblack",
            metadata={"axes": "CYX"},
        )


def make_czi(tiff: Path, path: Path) -> None:
    """The TIFF's planes, one at a time, into a CZI (channels named A, B, C)."""
    from pylibCZIrw import czi as pyczi

    with tifffile.TiffFile(tiff) as tf, pyczi.create_czi(str(path)) as czi:
        for c, page in enumerate(tf.pages):
            czi.write(data=page.asarray(), plane={"C": c, "Z": 0, "T": 0})
        czi.write_metadata(channel_names={0: "A", 1: "B", 2: "C"})


def czi_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("pylibCZIrw", "bioio_czi"))


def levels_for(size: int) -> int:
    from percell.pyramid import count_levels

    return count_levels(size, size, "auto")


def import_then_pyramid(params, out: Path, threads: int) -> None:
    """What the workflow's import and pyramid jobs run for one group
    (``params``: the group's ``ImportParams``)."""
    from percell.contracts import PyramidParams
    from percell.importer import import_group
    from percell.layout import sentinel_path
    from percell.pyramid import pyramid_group

    records = import_group(
        params, sentinel_path(out, "import", params.group), threads=threads
    )
    pyramid_group(
        records,
        params=PyramidParams(levels="auto"),
        sentinel=sentinel_path(out, "pyramid", params.group),
        group=params.group,
        threads=threads,
    )


def run_percell_czi(src: Path, out: Path, threads: int) -> None:
    run_percell(src.with_suffix(".czi"), out, threads)


def run_percell(src: Path, out: Path, threads: int) -> None:
    from percell.contracts import Channel, ImportParams, Region, SourceFile

    params = ImportParams(
        group="bench",
        regions=(
            Region(
                condition="bench",
                timepoint=None,
                region="r1",
                key="bench/r1",
                files=(SourceFile(path=str(src), channel=None),),
            ),
        ),
        channels=tuple(Channel(name=n) for n in ("A", "B", "C")),
        pixel_size_um=0.5,
        z_step_um=None,
    )
    import_then_pyramid(params, out, threads)


def ome_zarr_write(
    data: np.ndarray,
    out: Path,
    axes: str,
    n_levels: int,
    chunks: tuple[int, ...],
    threads: int,
    same_codec: bool,
) -> None:
    """``ome_zarr.writer.write_image`` on ``threads`` dask threads, with its
    default codec or percell's (``same_codec``)."""
    import dask
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.scale import Scaler
    from ome_zarr.writer import write_image

    from percell.storage import IMAGE_COMPRESSOR

    options: dict = {"chunks": chunks}
    if same_codec:
        options["compressor"] = IMAGE_COMPRESSOR
    group = zarr.open_group(str(out), mode="w", zarr_format=2)
    with dask.config.set(scheduler="threads", num_workers=threads):
        write_image(
            data,
            group,
            axes=axes,
            fmt=FormatV04(),
            scaler=Scaler(max_layer=n_levels - 1, method="local_mean"),
            storage_options=options,
        )


def run_ome_zarr(src: Path, out: Path, threads: int, same_codec: bool = False) -> None:
    data = tifffile.imread(src)
    n = levels_for(data.shape[-1])
    ome_zarr_write(
        data, out / "image.zarr", "cyx", n, (1, 512, 512), threads, same_codec
    )


def run_ome_zarr_same_codec(src: Path, out: Path, threads: int) -> None:
    run_ome_zarr(src, out, threads, same_codec=True)


def run_raw(src: Path, out: Path, threads: int) -> None:
    from percell.pyramid import mean_2x2

    data = tifffile.imread(src)
    n = levels_for(data.shape[-1])
    out.mkdir(parents=True, exist_ok=True)
    for level in range(n):
        np.save(out / f"{level}.npy", data)
        if level + 1 < n:
            data = mean_2x2(data)


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM).

    Not ru_maxrss: Linux carries that across exec from the parent process.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


RUNNERS = {
    "percell": run_percell,
    "ome-zarr-py": run_ome_zarr,
    "ome-zarr-py*": run_ome_zarr_same_codec,
    "raw": run_raw,
    "percell-czi": run_percell_czi,
}


def run_child(script: str, which: str, *args: str) -> dict:
    """Run one writer in its own process (so its peak RSS is its own)."""
    proc = subprocess.run(
        [sys.executable, script, "--child", which, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(results: dict[str, dict], level0_mb: float) -> None:
    print(f"{'writer':<12} {'seconds':>8} {'MB/s':>8} {'peak RSS MB':>12}")
    for which, r in results.items():
        print(
            f"{which:<12} {r['seconds']:8.2f} {level0_mb / r['seconds']:8.1f} "
            f"{r['peak_rss_mb']:12.0f}"
        )


def print_ratios(results: dict[str, dict], threads: int) -> None:
    """percell's speed against both anchors (``*``: percell's codec)."""
    ours = results["percell"]["seconds"]
    default = results["ome-zarr-py"]["seconds"] / ours
    same = results["ome-zarr-py*"]["seconds"] / ours
    print(
        f"percell vs ome-zarr-py: {default:.2f}x faster with its default codec, "
        f"{same:.2f}x with percell's (Blosc lz4 bit-shuffle 5), both "
        f"{threads} thread(s) (target >= 2)"
    )
    if "percell-czi" in results:
        czi = results["percell-czi"]["seconds"]
        anchor = results["ome-zarr-py*"]["seconds"]
        print(
            f"percell from the CZI: {anchor / czi:.2f}x faster than "
            f"ome-zarr-py* from the TIFF; {czi / ours:.2f}x percell's time "
            "from the TIFF"
        )


def child(which: str, src: Path, out: Path, threads: int) -> None:
    start = time.perf_counter()
    RUNNERS[which](src, out, threads)
    elapsed = time.perf_counter() - start
    peak_mb = peak_rss_mb()
    print(json.dumps({"seconds": elapsed, "peak_rss_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", choices=sorted(RUNNERS))
    parser.add_argument("--src", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.src, args.out, args.threads)
        return

    work = Path(tempfile.mkdtemp(prefix="percell-bench-", dir=args.workdir))
    try:
        src = work / "source.tif"
        make_source(src, args.size)
        writers = ["raw", "ome-zarr-py", "ome-zarr-py*", "percell"]
        if czi_available():
            make_czi(src, src.with_suffix(".czi"))
            writers.append("percell-czi")
        level0_mb = 3 * args.size * args.size * 2 / 1e6
        plane_mb = args.size * args.size * 2 / 1e6
        results = {}
        for which in writers:
            out = work / which
            results[which] = run_child(
                __file__,
                which,
                *("--src", str(src), "--out", str(out), "--threads", str(args.threads)),
            )
            shutil.rmtree(out, ignore_errors=True)
        print(
            f"image 3x{args.size}x{args.size} uint16 ({level0_mb:.0f} MB), "
            f"{levels_for(args.size)} levels, {args.threads} threads"
        )
        print_table(results, level0_mb)
        print_ratios(results, args.threads)
        rss_ratio = results["percell"]["peak_rss_mb"] / plane_mb
        print(
            f"percell peak RSS: {rss_ratio:.2f} x one channel plane "
            f"({plane_mb:.0f} MB; target < 2)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
