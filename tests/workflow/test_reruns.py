"""Incremental reruns: only what a change touches runs again."""

from __future__ import annotations

import os
import re
import sqlite3
import time

import tifffile
import yaml

from tests.conftest import (
    CHANNELS,
    REPO,
    random_image,
    run_workflow,
    tree_mtimes,
    write_config,
)


def planned_reasons(work) -> dict[str, str]:
    """Output file → reason, for every job a dry run would execute."""
    out = run_workflow(work, "-n").stdout
    reasons = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        outputs = re.search(r"^\s+output: (.+)$", block, flags=re.M)
        reason = re.search(r"^\s+reason: (.+)$", block, flags=re.M)
        if outputs and reason:
            for f in outputs.group(1).split(", "):
                reasons[f] = reason.group(1)
    return reasons


def planned_jobs(work) -> dict[str, int]:
    """Rule → job count from a dry run's job table."""
    out = run_workflow(work, "-n").stdout
    if "Nothing to be done" in out:
        return {}
    table = out[out.index("Job stats:") :].split("\n\n")[0]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M))
    jobs.pop("total", None)
    return {k: int(v) for k, v in jobs.items()}


def test_rerun_with_nothing_changed_does_nothing(experiment_copy):
    work = experiment_copy["work"]
    before = tree_mtimes(experiment_copy["experiment"])
    assert planned_jobs(work) == {}
    proc = run_workflow(work)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert tree_mtimes(experiment_copy["experiment"]) == before


def test_a_newer_checkout_of_percell_reruns_nothing(experiment_copy):
    """A git pull or a fresh checkout makes every script newer than the
    experiment; that alone must not import and measure it all again."""
    scripts = sorted((REPO / "workflow/scripts").glob("*.py"))
    times = [(p, p.stat()) for p in scripts]
    later = time.time() + 3600
    try:
        for path in scripts:
            os.utime(path, (later, later))
        assert planned_jobs(experiment_copy["work"]) == {}
    finally:
        for path, stat in times:
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_adding_a_region_reruns_only_its_group(experiment_copy):
    work, exp = experiment_copy["work"], experiment_copy["experiment"]
    sheet = experiment_copy["sheet"]
    new_rows = []
    for j, ch in enumerate(CHANNELS):
        path = work / "raw9" / f"r9_{ch['name']}.tif"
        path.parent.mkdir(exist_ok=True)
        tifffile.imwrite(path, random_image((300, 700), seed=900 + j))
        new_rows.append(f"drug\tt1\tr9\t{ch['name']}\t{path}")
    extended = work / "samples.tsv"
    extended.write_text(sheet.read_text() + "\n".join(new_rows) + "\n")
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["input"] = {"sample_sheet": str(extended)}
    write_config(work, config)

    assert planned_jobs(work) == {
        "import_images": 1,
        "pyramid": 1,
        "register": 1,
        "qc_regions": 1,  # the group's pictures, then the experiment's
        "qc_experiment": 1,
        "all": 1,
    }
    reasons = planned_reasons(work)
    assert "r9_DAPI.tif" in reasons["out/exp.percell/.workflow/import/drug/t1.json"]
    assert not any("import/ctrl" in f or "import/drug/t0" in f for f in reasons)

    untouched = {
        k: v for k, v in tree_mtimes(exp).items() if k.startswith("images.zarr/ctrl/")
    }
    run_workflow(work)
    after = tree_mtimes(exp)
    assert {k: after[k] for k in untouched} == untouched
    assert (exp / "images.zarr/drug/t1/r9/0/.zarray").is_file()
    conn = sqlite3.connect(exp / "experiment.db")
    assert conn.execute("SELECT count(*) FROM regions").fetchone()[0] == 6


def test_changing_pyramid_levels_reruns_pyramid_and_register_only(experiment_copy):
    work, exp = experiment_copy["work"], experiment_copy["experiment"]
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["pyramid"]["levels"] = 3
    write_config(work, config)
    assert planned_jobs(work) == {
        "pyramid": 4,
        "register": 1,
        "qc_regions": 4,
        "qc_experiment": 1,
        "all": 1,
    }
    reasons = planned_reasons(work)
    pyramids = [f for f in reasons if "/pyramid/" in f]
    assert len(pyramids) == 4
    assert all("Params have changed" in reasons[f] for f in pyramids)
    # and in words: what changed, for which groups (Snakemake prints only the
    # whole params before and after)
    said = [
        line
        for line in run_workflow(work, "-n").stderr.splitlines()
        if line.startswith("percell: ")
    ]
    assert len(said) == 1, said
    assert said[0].startswith("percell: pyramid of ctrl/t0, "), said
    assert said[0].endswith(' and 1 more runs again: levels: "auto" → 3'), said

    level0 = {
        k: v
        for k, v in tree_mtimes(exp).items()
        if re.match(r"images\.zarr/[^/]+/[^/]+/[^/]+/0/", k)
    }
    assert level0
    run_workflow(work)
    after = tree_mtimes(exp)
    assert {k: after[k] for k in level0} == level0
    assert (exp / "images.zarr/ctrl/t0/r1/2/.zarray").is_file()


def test_changing_a_channel_color_reruns_only_what_shows_it(experiment_copy):
    """A colour is display metadata: register writes it, the QC pictures
    show it; nothing that makes pixels runs."""
    work = experiment_copy["work"]
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["channels"][1]["color"] = "FFFF00"
    write_config(work, config)
    assert planned_jobs(work) == {
        "register": 1,
        "qc_regions": 4,
        "qc_experiment": 1,
        "all": 1,
    }
    run_workflow(work)
    conn = sqlite3.connect(experiment_copy["experiment"] / "experiment.db")
    assert conn.execute("SELECT color FROM channels WHERE name = 'GFP'").fetchone() == (
        "FFFF00",
    )
