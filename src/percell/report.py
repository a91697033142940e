"""QC figures for ``snakemake --report``: what people look at to trust a run.

Every figure is drawn from the experiment itself — its pyramids, label
images, masks and ``experiment.db`` — so it shows what was registered.
Pictures of images come from the pyramid level nearest 1024 px (never level
0 of a large image), so memory and time stay small whatever the image size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from PIL import Image, ImageDraw, ImageFont

from percell import layout
from percell.contracts import QcExperimentParams, ThresholdRun
from percell.experiment_format import connect_for_reading
from percell.label_edges import inner_boundaries
from percell.layout import qc_output_name as output_name
from percell.storage import array_of, attrs_of, level_paths, open_group, staged_file

if TYPE_CHECKING:  # pandas is imported where a figure reads the database
    import pandas as pd

log = logging.getLogger(__name__)

#: the edge, in pixels, thumbnails aim for
THUMBNAIL_PX = 1024
#: the edge of one panel of a region's figure
PANEL_PX = 512
DPI = 100
#: more regions than this get a histogram instead of a bar each
MAX_BARS = 48


def _pyplot() -> Any:
    """matplotlib, imported only by the figures that plot (a region's
    thumbnails are composed with numpy and Pillow: a second per job less)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    return plt


def nearest_level(group: zarr.Group, target: int = THUMBNAIL_PX) -> str:
    """The multiscales level whose larger edge is nearest ``target`` px."""
    paths = level_paths(group)
    sizes = [max(array_of(group, p).shape[-2:]) for p in paths]
    return paths[int(np.argmin([abs(s - target) for s in sizes]))]


def _plane(arr: zarr.Array[Any], channel: int | None) -> np.ndarray:
    """One 2-D plane of a level: the maximum over z, read plane by plane."""
    lead = () if channel is None else (channel,)
    z_axis = arr.ndim - len(lead) - 2
    if z_axis == 0:
        return np.asarray(arr[lead])
    out = np.asarray(arr[(*lead, 0)])
    for z in range(1, arr.shape[len(lead)]):
        out = np.maximum(out, np.asarray(arr[(*lead, z)]))
    return out


def composite(
    image_group: zarr.Group, colours: Sequence[str] | None = None
) -> tuple[np.ndarray, str]:
    """RGB thumbnail (uint8) of every channel, in its omero colour (or the
    configured ``colours``, which register writes there later) and window."""
    level = nearest_level(image_group)
    arr = array_of(image_group, level)
    rgb = np.zeros((*arr.shape[-2:], 3), np.float32)
    for c, ch in enumerate(attrs_of(image_group)["omero"]["channels"]):
        if colours is not None:
            ch = {**ch, "color": colours[c].lstrip("#").upper()}
        window = ch["window"]
        plane = _plane(arr, c).astype(np.float32)
        span = max(float(window["end"]) - float(window["start"]), 1e-12)
        plane -= float(window["start"])
        plane *= 255 / span
        np.clip(plane, 0, 255, out=plane)
        for i, hex_pair in enumerate((0, 2, 4)):
            weight = int(ch["color"][hex_pair : hex_pair + 2], 16) / 255
            if weight:
                rgb[..., i] += plane * weight
    np.clip(rgb, 0, 255, out=rgb)
    return rgb.astype(np.uint8), level


def region_figure(
    experiment: str | Path,
    key: str,
    runs: Sequence[str],
    out: Path,
    colours: Sequence[str] | None = None,
) -> None:
    """Composite, the same with label outlines, and each run's mask overlaid."""
    experiment = Path(experiment)
    image = open_group(layout.image_path(experiment, key))
    full, level = composite(image, colours)
    # panels at PANEL_PX: the composite averaged down, labels and masks
    # sampled (never averaged: ids and 0/255 stay what they are)
    step = max(1, -(-max(full.shape[:2]) // PANEL_PX))
    small = Image.fromarray(full).reduce(step) if step > 1 else Image.fromarray(full)
    rgb = np.asarray(small)
    h, w = rgb.shape[:2]
    panels = [("channels", rgb)]
    labels_path = layout.label_path(experiment, key)
    if (labels_path / level).is_dir():
        labels_level = array_of(open_group(labels_path), level)
        labels = _plane(labels_level, None)[::step, ::step][:h, :w]
        outlined = rgb.copy()
        outlined[inner_boundaries(labels)] = (255, 255, 0)
        nuclei_path = labels_path / "labels" / "nucleus"
        if (nuclei_path / level).is_dir():  # compartments: nuclei in cyan
            nuclei = _plane(array_of(open_group(nuclei_path), level), None)
            outlined[inner_boundaries(nuclei[::step, ::step][:h, :w])] = (0, 255, 255)
            panels.append(("cells (yellow), nuclei (cyan)", outlined))
        else:
            panels.append(("cell outlines", outlined))
    for run in runs:
        mask_path = layout.mask_path(experiment, key, run)
        if not (mask_path / level).is_dir():
            continue
        mask_level = array_of(open_group(mask_path), level)
        mask = _plane(mask_level, None)[::step, ::step][:h, :w] > 0
        shaded = (rgb * 0.6).astype(np.uint8)
        shaded[mask] = (0.4 * rgb[mask] + np.array([153, 0, 153])).astype(np.uint8)
        panels.append((f"threshold {run}", shaded))
    corrections = attrs_of(image).get("percell", {})
    for record in corrections.get("background", []):
        if record["value"] is None and "background" in image:  # an image
            # kept at level 0 only: read every f-th pixel of its middle plane
            kept = array_of(
                open_group(layout.image_path(experiment, key) / "background"),
                record["channel"],
            )
            f = max(1, -(-kept.shape[-1] // w))
            middle = (kept.shape[0] // 2,) if kept.ndim == 3 else ()
            behind = np.asarray(
                kept[(*middle, slice(None, None, f), slice(None, None, f))]
            )
            behind = behind[:h, :w].astype(np.float64)
            span = max(float(np.ptp(behind)), 1e-12)
            grey = ((behind - behind.min()) / span * 255).astype(np.uint8)
            panels.append((f"{record['channel']} background", np.dstack([grey] * 3)))
    shape = array_of(image).shape
    title = f"{key}   level {level} of {shape[-1]} x {shape[-2]} px"
    done = _corrections_text(corrections)
    _save_panels(panels, f"{title}   {done}" if done else title, out)


def _corrections_text(corrections: dict[str, Any]) -> str:
    """What import did to the raw data, in a line: flat-field, backgrounds."""
    parts = []
    if "illumination" in corrections:
        parts.append(f"flat-field {corrections['illumination']}")
    for r in corrections.get("background", []):
        value = (
            f"{r['value']:g}"
            if r["value"] is not None
            else f"mean {r['subtracted_mean']:.4g}"
        )
        parts.append(f"{r['channel']} - {r['method']} ({value})")
    return "; ".join(parts)


def _save_panels(panels: list[tuple[str, np.ndarray]], title: str, out: Path) -> None:
    """Panels side by side under their titles, as one PNG."""
    font = ImageFont.load_default(size=14)
    tiles = [(name, Image.fromarray(rgb)) for name, rgb in panels]
    width = sum(t.width for _, t in tiles) + 8 * (len(tiles) + 1)
    height = max(t.height for _, t in tiles) + 56
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 6), title, fill="black", font=font)
    x = 8
    for name, tile in tiles:
        draw.text((x, 28), name, fill="black", font=font)
        sheet.paste(tile, (x, 48))
        x += tile.width + 8
    out = Path(out)
    with staged_file(out) as tmp:
        sheet.save(tmp, format="PNG", compress_level=1)  # 4x faster, a bit larger


def region_figures(
    experiment: str | Path,
    keys: Sequence[str],
    runs: Sequence[str],
    out_dir: str | Path,
    colours: Sequence[str] | None = None,
) -> None:
    """``region_figure`` of each region, as ``<key with _>.png`` in ``out_dir``
    (``colours``: the configured channel colours)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for key in keys:
        png = out_dir / f"{key.replace('/', '_')}.png"
        region_figure(experiment, key, runs, png, colours)
        log.info("region %s: QC figure", key)


def _save(fig: Any, out: str | Path) -> None:
    out = Path(out)
    with staged_file(out) as tmp:
        fig.savefig(tmp, dpi=DPI, format=out.suffix[1:])  # laid out already
    _pyplot().close(fig)


def _read_sql(
    experiment: Path, query: str, params: Sequence[object] = ()
) -> pd.DataFrame:
    import pandas as pd

    conn = connect_for_reading(experiment / layout.DATABASE)
    try:
        return pd.read_sql_query(query, conn, params=params)
    finally:
        conn.close()


_REGION_NAME = (
    "c.name || coalesce('/' || t.name, '') || '/' || r.name AS region, "
    "c.name || coalesce('/' || t.name, '') AS condition_timepoint"
)
# a region's condition and timepoint (r: regions)
_CONDITION_JOIN = (
    "JOIN conditions c ON c.id = r.condition_id "
    "LEFT JOIN timepoints t ON t.id = r.timepoint_id"
)
_REGION_JOIN = "JOIN regions r ON r.id = {}.region_id " + _CONDITION_JOIN


def threshold_figure(
    experiment: str | Path,
    run: ThresholdRun,
    channel: int,
    histograms: Sequence[str],
    out: str | Path,
) -> None:
    """The run's histogram with the chosen value(s), and positive cells.

    ``channel`` is the run's channel index in the images."""
    plt = _pyplot()
    from percell.thresholds import Histogram, load_histograms, region_histogram

    experiment = Path(experiment)
    values = _read_sql(
        experiment,
        f"SELECT {_REGION_NAME}, r.zarr_path, p.pixels_on, th.threshold_value, "
        "json_extract(th.parameters, '$.scope_key') AS scope_key "
        f"FROM percell_region_thresholds p {_REGION_JOIN.format('p')} "
        "JOIN threshold_runs th ON th.id = p.threshold_run_id WHERE p.run_name = ?",
        (run.name,),
    )
    positive = _read_sql(
        experiment,
        f"SELECT {_REGION_NAME}, avg(m.positive) AS fraction FROM percell_cell_masks "
        f"m JOIN cells ce ON ce.id = m.cell_id {_REGION_JOIN.format('ce')} "
        "JOIN percell_region_thresholds p ON p.threshold_run_id = m.threshold_run_id "
        "AND p.region_id = ce.region_id WHERE p.run_name = ? GROUP BY ce.region_id",
        (run.name,),
    )
    fig, (ax_h, ax_p) = plt.subplots(1, 2, figsize=(11, 3.6))
    if histograms:
        # pooled scopes: the exact histograms the value was computed from
        pooled = Histogram()
        for path in histograms:
            for hist in load_histograms(path).values():
                pooled.merge(hist)
        source = "pooled level-0 histogram of every region in scope"
    else:
        pooled = Histogram()
        for zarr_path in values["zarr_path"]:
            group = open_group(experiment / zarr_path)
            arr = array_of(group, nearest_level(group))
            pooled.merge(region_histogram(arr, channel, 0))
        source = "histogram of the thumbnail level of each region"
    if pooled.total:
        # one step artist, not 256 bars: drawing stays cheap
        counts, edges = np.histogram(
            pooled.values.astype(np.float64), bins=256, weights=pooled.counts
        )
        ax_h.stairs(counts, edges, fill=True, color="0.5")
        ax_h.set_yscale("log")
    for value in sorted(set(values["threshold_value"].round(6))):
        ax_h.axvline(value, color="tab:red", lw=1)
    ax_h.set_title(f"{run.name}: {run.method} on {run.channel}", fontsize=10)
    ax_h.set_xlabel(f"intensity ({source}); red: chosen value(s)", fontsize=8)
    ax_h.set_ylabel("pixels (log)")
    label = f"fraction of positive cells (min_fraction {run.min_fraction})"
    if len(positive) > MAX_BARS:  # a plate of hundreds of wells: their spread
        ax_p.hist(positive["fraction"], bins=20, range=(0, 1), color="tab:purple")
        ax_p.set_ylabel("regions")
    elif len(positive):
        ax_p.barh(positive["region"], positive["fraction"], color="tab:purple")
        ax_p.set_xlim(0, 1)
    ax_p.set_xlabel(label)
    ax_p.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    _save(fig, out)


def cells_figure(experiment: str | Path, out: str | Path) -> None:
    """Per condition × timepoint: cell counts, per-cell mean intensity of each
    channel, and cell area."""

    plt = _pyplot()
    experiment = Path(experiment)
    cells = _read_sql(
        experiment,
        f"SELECT ce.id, {_REGION_NAME}, ce.area_pixels FROM cells ce "
        f"{_REGION_JOIN.format('ce')}",
    )
    means = _read_sql(
        experiment,
        "SELECT m.cell_id AS id, ch.name AS channel, m.value FROM measurements m "
        "JOIN channels ch ON ch.id = m.channel_id WHERE m.metric = 'mean_intensity'",
    )
    channels = list(dict.fromkeys(means["channel"]))
    # every condition × timepoint, those where no cell was found too
    regions = _read_sql(
        experiment, f"SELECT {_REGION_NAME} FROM regions r {_CONDITION_JOIN}"
    )
    groups = sorted(regions["condition_timepoint"].unique())
    fig, axes = plt.subplots(
        1, 2 + len(channels), figsize=(3.2 * (2 + len(channels)), 3.6), squeeze=False
    )
    axes = axes[0]
    counts = cells.groupby("condition_timepoint").size().reindex(groups, fill_value=0)
    axes[0].bar(groups, counts.to_numpy(), color="tab:blue")
    axes[0].set_title("cells", fontsize=10)
    by_group = dict(tuple(cells.groupby("condition_timepoint")))
    no_cells = np.zeros(0, np.int64)
    areas = [
        by_group[g]["area_pixels"].to_numpy() if g in by_group else no_cells
        for g in groups
    ]
    _boxes(axes[1], areas, groups)
    axes[1].set_title("area (pixels)", fontsize=10)
    merged = means.merge(cells[["id", "condition_timepoint"]], on="id")
    for ax, channel in zip(axes[2:], channels, strict=True):
        sub = merged[merged["channel"] == channel]
        data = [
            sub.loc[sub["condition_timepoint"] == g, "value"].to_numpy() for g in groups
        ]
        _boxes(ax, data, groups)
        ax.set_title(f"{channel}: mean intensity per cell", fontsize=10)
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    fig.tight_layout()
    _save(fig, out)


def _boxes(ax: Any, data: list[np.ndarray], names: list[str]) -> None:
    """Box plots (quartiles, whiskers at 1.5 IQR, no outlier points: cheap to
    draw for a million cells)."""
    ax.boxplot(
        [d if d.size else np.array([np.nan]) for d in data],
        positions=range(len(names)),
        showfliers=False,
    )
    ax.set_xticks(range(len(names)), names)


def plate_figure(
    experiment: str | Path, plate: str, channel: str, metric: str, out: str | Path
) -> None:
    """Heat maps over the plate of cells per well and of a metric's mean per
    well, and the field grid of the well with most cells."""

    plt = _pyplot()
    experiment = Path(experiment)
    attrs = attrs_of(open_group(experiment / layout.IMAGES / plate))["plate"]
    rows = [r["name"] for r in attrs["rows"]]
    cols = [c["name"] for c in attrs["columns"]]
    per_well = _read_sql(
        experiment,
        "SELECT r.id AS region_id, r.zarr_path, count(ce.id) AS cells, "
        "avg(m.value) AS metric FROM regions r LEFT JOIN cells ce ON "
        "ce.region_id = r.id LEFT JOIN measurements m ON m.cell_id = ce.id AND "
        "m.metric = ? AND m.channel_id = (SELECT id FROM channels WHERE name = ?) "
        "WHERE r.zarr_path LIKE ? GROUP BY r.id",
        (metric, channel, f"{layout.IMAGES}/{plate}/%"),
    )
    parts = per_well["zarr_path"].str.split("/")
    per_well["row"], per_well["col"] = parts.str[2], parts.str[3]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, column, title in (
        (axes[0], "cells", "cells per well"),
        (axes[1], "metric", f"{channel} {metric}, mean per well"),
    ):
        grid = np.full((len(rows), len(cols)), np.nan)
        for _, w in per_well.iterrows():
            grid[rows.index(w["row"]), cols.index(w["col"])] = w[column]
        shown = ax.imshow(grid, cmap="viridis")
        ax.set_xticks(range(len(cols)), cols, fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_title(title, fontsize=10)
        fig.colorbar(shown, ax=ax, shrink=0.8)
    if len(per_well):
        best = per_well.sort_values("cells").iloc[-1]
        image = open_group(experiment / best["zarr_path"])
        rgb, level = composite(image)
        fields = _read_sql(
            experiment,
            "SELECT field, x, y, width, height FROM percell_fields WHERE region_id = ?",
            (int(best["region_id"]),),
        )
        factor = 2 ** int(level)
        axes[2].imshow(rgb)
        for _, f in fields.iterrows():
            axes[2].add_patch(
                plt.Rectangle(
                    (f["x"] / factor - 0.5, f["y"] / factor - 0.5),
                    f["width"] / factor,
                    f["height"] / factor,
                    fill=False,
                    edgecolor="white",
                    lw=0.8,
                )
            )
            axes[2].text(
                f["x"] / factor + 4, f["y"] / factor + 12, str(f["field"]), color="w"
            )
        axes[2].set_title(f"fields of {best['row']}{best['col']}", fontsize=10)
    axes[2].set_axis_off()
    fig.tight_layout()
    _save(fig, out)


def read_benchmarks(directory: str | Path) -> pd.DataFrame:
    """Snakemake ``benchmark:`` files: step (first folder), seconds, max RSS."""
    import pandas as pd

    rows = []
    for path in sorted(Path(directory).rglob("*.tsv")):
        table = pd.read_csv(path, sep="\t")
        if table.empty:
            continue
        step = Path(path.relative_to(directory).parts[0]).stem
        rss = pd.to_numeric(table["max_rss"], errors="coerce").max()
        rows.append({"step": step, "s": float(table["s"].iloc[-1]), "max_rss": rss})
    return pd.DataFrame(rows, columns=["step", "s", "max_rss"])


def summary_figure(
    experiment: str | Path, benchmarks: str | Path, out: str | Path
) -> None:
    """Regions and cells, and per step its jobs' time and peak memory."""
    import pandas as pd

    plt = _pyplot()
    experiment = Path(experiment)
    counts = _read_sql(
        experiment,
        "SELECT (SELECT count(*) FROM regions) AS regions, "
        "(SELECT count(*) FROM cells) AS cells, "
        "(SELECT count(*) FROM measurements) AS measurements",
    ).iloc[0]
    bench = read_benchmarks(benchmarks)
    steps = (
        bench.groupby("step").agg(
            jobs=("s", "size"), seconds=("s", "sum"), peak_mb=("max_rss", "max")
        )
        if len(bench)
        else pd.DataFrame(columns=["jobs", "seconds", "peak_mb"])
    )
    fig, (ax_t, ax_m) = plt.subplots(
        1, 2, figsize=(11, 0.8 + 0.35 * max(len(steps), 3))
    )
    names = [f"{s} ({int(j)})" for s, j in zip(steps.index, steps["jobs"], strict=True)]
    ax_t.barh(names, steps["seconds"], color="tab:green")
    ax_t.set_xlabel("time, all jobs (s)")
    ax_m.barh(names, steps["peak_mb"], color="tab:orange")
    ax_m.set_xlabel("peak memory of one job (MB, max RSS)")
    ax_m.set_yticklabels([])
    fig.suptitle(
        f"{int(counts['regions'])} regions, {int(counts['cells']):,} cells, "
        f"{int(counts['measurements']):,} measurements",
        fontsize=11,
    )
    fig.tight_layout()
    _save(fig, out)


def experiment_figures(
    experiment: str | Path, params: QcExperimentParams, out: dict[str, str]
) -> None:
    """Every experiment-wide figure, in one job (one matplotlib start-up).

    Args:
        experiment: The ``.percell`` directory.
        params: The threshold runs and channels, the staged pooled histograms
            of each pooled run, the plates and what their heat maps show,
            and Snakemake's benchmark folder.
        out: Output name (``output_name``) → path: ``threshold_<run>``,
            ``cells`` (with segmentation), ``plate_<plate>``, ``summary``.
    """
    out = dict(out)
    for run in params.runs:
        path = out[output_name("threshold", run.name)]
        channel = params.channels.index(run.channel)
        threshold_figure(
            experiment, run, channel, params.histograms.get(run.name, ()), path
        )
        log.info("threshold run %s: QC figure", run.name)
    if "cells" in out:
        cells_figure(experiment, out["cells"])
        log.info("cells: QC figure")
    for plate in params.plates:
        path = out[output_name("plate", plate)]
        plate_figure(experiment, plate, params.plate_channel, params.plate_metric, path)
        log.info("plate %s: QC figure", plate)
    summary_figure(experiment, params.benchmarks, out["summary"])
