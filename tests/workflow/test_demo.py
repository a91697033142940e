"""The default config (the README's first command) runs the demo end to end,
and its report opens in a real browser."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import time
import zipfile

import pytest
import zarr
from ome_zarr_models.v04 import Image

from tests.conftest import REPO, run_workflow, snakemake_command

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    (work / "config").mkdir()
    shutil.copy(REPO / "config/config.yaml", work / "config/config.yaml")
    # every progress line to the terminal (by default: after 15 s of a loop)
    os.environ["PERCELL_PROGRESS_EVERY_S"] = "0"
    try:
        proc = run_workflow(work, configfile="config/config.yaml")
    finally:
        del os.environ["PERCELL_PROGRESS_EVERY_S"]
    (work / "terminal.txt").write_text(proc.stdout + proc.stderr)
    return work


def test_the_terminal_shows_long_steps_progress_and_time_left(demo):
    terminal = (demo / "terminal.txt").read_text()
    # (measure reads a demo region in one band: no loop to show)
    for step, unit in (("import", "bands"), ("segment", "tiles")):
        pattern = (
            rf"percell: {step} ctrl/t0/r\d: \d+/\d+ {unit}, \d+:\d\d so far, about "
            rf"\d+:\d\d left \[logs/demo/{step}/ctrl/t0\.log\]"
        )
        assert re.search(pattern, terminal), (step, terminal[-3000:])


def test_default_config_demo(demo):
    exp = demo / "results/demo.percell"
    conn = sqlite3.connect(exp / "experiment.db")
    regions = conn.execute(
        "SELECT name, width, height, zarr_path FROM regions"
    ).fetchall()
    assert len(regions) == 8  # 2 conditions × 2 timepoints × 2 regions
    assert max(r[1] for r in regions) == 4096
    for _, width, _, zarr_path in regions:
        image = Image.from_zarr(zarr.open_group(str(exp / zarr_path), mode="r"))
        levels = len(image.attributes.multiscales[0].datasets)
        assert levels == (4 if width == 4096 else 2)  # down to one 512×512 chunk
    channels = conn.execute("SELECT name FROM channels ORDER BY display_order")
    assert [c[0] for c in channels] == ["DAPI", "GFP", "RFP"]


def test_qc_figures_are_made_by_the_chain(demo):
    qc = demo / "results/demo_qc"
    regions = sorted(p.name for p in (qc / "regions").rglob("*.png"))
    assert len(regions) == 8 and "ctrl_t0_r1.png" in regions
    for name in (
        "cells.png",
        "summary.png",
        "thresholds/GFP.png",
        "thresholds/RFP.png",
    ):
        assert (qc / name).stat().st_size > 10_000, name
    steps = {
        p.relative_to(demo / "benchmarks/demo").parts[0].removesuffix(".tsv")
        for p in (demo / "benchmarks/demo").rglob("*.tsv")
    }
    assert {"import", "pyramid", "segment", "measure", "register"} <= steps
    assert {"qc_regions", "qc_experiment"} <= steps


def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not shutil.which(CHROMIUM) or not shutil.which(CHROMEDRIVER):
        # CI installs both (.ci/run): there, a missing browser is a failure
        assert not os.environ.get("CI"), "chromium / chromedriver missing in CI"
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    options = webdriver.ChromeOptions()
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def shown_image(driver, *path: str) -> int:
    """Click through the report's menu to a result and show it; the width of
    the PNG the browser decoded for it."""
    from selenium.webdriver.common.by import By

    for step in path[:-1]:
        driver.find_element(By.XPATH, f"//*[text()='{step}']").click()
        time.sleep(0.3)
    row = driver.find_element(By.XPATH, f"//td[text()='{path[-1]}']/..")
    row.find_element(By.CSS_SELECTOR, "a[iconname=eye]").click()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for img in driver.find_elements(By.TAG_NAME, "img"):
            src = img.get_attribute("src") or ""
            width = img.get_property("naturalWidth") or 0
            if src.startswith("data:image/png") and width > 0:
                return int(width)
        time.sleep(0.2)
    return 0


def test_report_renders_in_chromium_with_its_figures(demo, tmp_path):
    report = tmp_path / "report.html"
    for target in (report, tmp_path / "report.zip"):
        proc = subprocess.run(
            [
                *snakemake_command(demo, "config/config.yaml"),
                "--report",
                str(target),
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    with zipfile.ZipFile(tmp_path / "report.zip") as z:
        assert sum(n.endswith(".png") for n in z.namelist()) >= 12

    driver = browser()
    try:
        driver.get(report.as_uri())
        time.sleep(1)
        body = driver.find_element("tag name", "body").text
        for category in ("Regions", "Thresholds", "Cells", "Run summary"):
            assert category in body
        assert shown_image(driver, "Regions", "ctrl/t0", "ctrl_t0_r1") > 500
        driver.get(report.as_uri())
        time.sleep(1)
        assert shown_image(driver, "Thresholds", "GFP") > 500
        driver.save_screenshot(str(tmp_path / "report.png"))
        errors = [
            entry
            for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and "net::" not in entry["message"]
        ]
    finally:
        driver.quit()
    assert errors == []
    assert (tmp_path / "report.png").stat().st_size > 20_000
