"""Shared fixtures: tiny raw experiments and a way to run the real workflow."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

REPO = Path(__file__).resolve().parents[1]
# parse-time probes are remembered in the working directory; in-process
# tests (cwd = the repository) keep theirs in a temporary file instead
os.environ.setdefault(
    "PERCELL_PROBE_CACHE",
    str(Path(tempfile.mkdtemp(prefix="percell-probes-")) / "probes.json"),
)
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CHANNELS = [
    {"name": "DAPI", "color": "0000FF", "role": "nucleus"},
    {"name": "GFP", "color": "00FF00", "role": "cytoplasm"},
]


#: Files of minutes, slowest first (each file's setup, call and teardown
#: times summed from a full run's --durations=0, two workers, 2026-12-07).
#: The two workers take a file at a time (``--dist loadfile``) in collection
#: order (``--no-loadscope-reorder``: xdist's default puts files with the
#: most tests first, which left the crash and SLURM files, two tests each
#: and minutes long, to one worker at the end).
SLOWEST_FILES = (
    "tests/workflow/test_percell3_apps.py",  # 1291 s
    "tests/workflow/test_crash.py",  # 450 s
    "tests/workflow/test_compartments.py",  # 393 s
    "tests/cluster/test_slurm.py",  # 352 s
    "tests/workflow/test_living.py",  # 292 s
    "tests/workflow/test_segment_workflow.py",  # 265 s
    "tests/workflow/test_hcs_workflow.py",  # 248 s
    "tests/test_install.py",  # 242 s
    "tests/workflow/test_object_storage.py",  # 200 s
    "tests/workflow/test_multiplate.py",  # 177 s
    "tests/workflow/test_vendor_formats.py",  # 165 s
    "tests/workflow/test_demo.py",  # 143 s
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest files first, the other workflow files next, unit files
    (seconds each) last: the workers then finish close together."""
    if missing := [name for name in SLOWEST_FILES if not (REPO / name).is_file()]:
        raise pytest.UsageError(f"tests/conftest.py SLOWEST_FILES: no {missing}")
    rank = {REPO / name: i for i, name in enumerate(SLOWEST_FILES)}
    unit = REPO / "tests" / "unit"

    def order(item: pytest.Item) -> tuple[int, bool]:
        return rank.get(item.path, len(rank)), item.path.is_relative_to(unit)

    items.sort(key=order)


def run_workflow(
    workdir: Path, *args: str, check: bool = True, configfile: str = "config.yaml"
) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in ``workdir`` (real Snakemake)."""
    cmd = [*snakemake_command(workdir, configfile), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
            f"{proc.stderr[-6000:]}"
        )
    return proc


def snakemake_command(workdir: Path, configfile: str = "config.yaml") -> list[str]:
    """Snakemake on the repository's Snakefile, in ``workdir``, with its config."""
    return [
        SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / configfile),
    ]


def write_config(workdir: Path, config: dict, name: str = "config.yaml") -> Path:
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def base_config(input_: dict, path: str = "out/exp.percell", **extra) -> dict:
    cfg = {
        "experiment": {"name": "test", "path": path},
        "input": input_,
        "channels": [dict(c) for c in CHANNELS],
        "pixel_size_um": 0.5,
    }
    cfg.update(extra)
    return cfg


def random_image(shape, dtype="uint16", seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    return rng.integers(0, 4000, shape).astype(dtype)


def make_raw_experiment(
    root: Path, regions: list[tuple[str, str | None, str]], shape=(300, 700), seed=0
) -> tuple[Path, dict]:
    """One 2-D TIFF per channel per region, and a sample sheet listing them.

    Returns the sheet path and {(cond, tp, region, channel): pixels}.
    """
    rows, pixels = [], {}
    for i, (cond, tp, region) in enumerate(regions):
        for j, ch in enumerate(CHANNELS):
            img = random_image(shape, seed=seed + 10 * i + j)
            sub = root / cond / (tp or "") / f"{region}_{ch['name']}.tif"
            sub.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(sub, img)
            pixels[(cond, tp, region, ch["name"])] = img
            rows.append(f"{cond}\t{tp or ''}\t{region}\t{ch['name']}\t{sub}")
    sheet = root / "samples.tsv"
    sheet.write_text(
        "condition\ttimepoint\tregion\tchannel\tpath\n" + "\n".join(rows) + "\n"
    )
    return sheet, pixels


def tree_digest(path: Path) -> dict[str, str]:
    """sha256 of every file below ``path``, by relative path."""
    out = {}
    for f in sorted(path.rglob("*")):
        if f.is_file():
            out[str(f.relative_to(path))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def tree_mtimes(path: Path) -> dict[str, int]:
    return {
        str(f.relative_to(path)): f.stat().st_mtime_ns
        for f in sorted(path.rglob("*"))
        if f.is_file()
    }


@pytest.fixture(scope="session")
def small_experiment(tmp_path_factory) -> dict:
    """A finished run: 2 conditions × 2 timepoints × (1-2) regions, 2 channels."""
    root = tmp_path_factory.mktemp("small")
    regions = [
        ("ctrl", "t0", "r1"),
        ("ctrl", "t0", "r2"),
        ("ctrl", "t1", "r1"),
        ("drug", "t0", "r1"),
        ("drug", "t1", "r1"),
    ]
    sheet, pixels = make_raw_experiment(root / "raw", regions)
    work = root / "work"
    work.mkdir()
    write_config(
        work, base_config({"sample_sheet": str(sheet)}, pyramid={"levels": "auto"})
    )
    run_workflow(work)
    return {
        "work": work,
        "experiment": work / "out/exp.percell",
        "pixels": pixels,
        "sheet": sheet,
        "regions": regions,
    }


@pytest.fixture
def experiment_copy(small_experiment, tmp_path) -> dict:
    """A private copy of the finished small experiment, safe to change."""
    return copy_run(small_experiment, tmp_path)


def copy_run(run: dict, tmp_path: Path) -> dict:
    """A private copy of a finished run's working directory (``out/exp.percell``
    inside it), with the run's other entries kept."""
    work = tmp_path / "work"
    shutil.copytree(run["work"], work, symlinks=True)
    return {**run, "work": work, "experiment": work / "out/exp.percell"}


os.environ.setdefault("PYTHONHASHSEED", "0")


@pytest.fixture(scope="session")
def tiny_model():
    """A Cellpose 3 model trained on synthetic nuclei (cached between runs)."""
    pytest.importorskip("cellpose")
    from tests.support.tiny_cellpose import tiny_model_path

    return tiny_model_path()


@pytest.fixture(scope="session")
def tiny_cell_model():
    """A Cellpose 3 cell model (cytoplasm + nucleus channels), cached too."""
    pytest.importorskip("cellpose")
    from tests.support.tiny_cellpose import tiny_cell_model_path

    return tiny_cell_model_path()
