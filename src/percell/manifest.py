"""The manifest: every region of the run, grouped into the jobs that write them.

Built once at parse time from the validated config and sample sheet. The
Snakemake rules take their inputs and ``params`` from here, so a region
group's params hold exactly what its jobs depend on and nothing of other
groups: adding a region reruns only its own group.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from percell import demo, hcs, layout
from percell.config import validate_config
from percell.errors import ConfigError, SourceImageError
from percell.plan import plan_region
from percell.segmentation import check_segmentation_config
from percell.sheets import read_sample_sheet, scan_directory
from percell.sources import file_stamps, probe_many


@dataclass
class Manifest:
    """All regions of a run, by region group.

    Attributes:
        config: The validated config (defaults filled in).
        experiment: Path of the ``.percell`` directory.
        groups: Group id → list of region dicts (condition, timepoint, region,
            key, files), in a stable order.
        generated: Whether the source files are made by the workflow (demo)
            and so need not exist at parse time.
        stamps: For a plate read from disk: (size, mtime) of every field
            file. Its import jobs then carry these in their params instead
            of listing tens of thousands of files as Snakemake inputs, which
            would dominate every dry run; a changed file still reruns its
            well (the params trigger).
    """

    config: dict
    experiment: str
    groups: dict[str, list[dict]] = field(default_factory=dict)
    generated: bool = False
    stamps: dict[str, tuple[int, int]] | None = None

    @property
    def channel_names(self) -> list[str]:
        return [c["name"] for c in self.config["channels"]]

    def regions(self) -> list[dict]:
        """Every region of every group."""
        return [r for regions in self.groups.values() for r in regions]

    def source_files(self, group: str) -> list[str]:
        """The raw files a group's import reads (as Snakemake inputs)."""
        return [] if self.stamps is not None else self.source_files_of(group)

    def import_params(self, group: str) -> dict:
        """Everything a group's import depends on (its Snakemake params)."""
        cfg = self.config
        return {
            "group": group,
            "regions": self.groups[group],
            "channels": cfg["channels"],
            "pixel_size_um": cfg["pixel_size_um"],
            "z_step_um": cfg["z_step_um"],
            **({"sources": self._sources_digest(group)} if self.stamps else {}),
        }

    def _sources_digest(self, group: str) -> str:
        """One digest of the (path, size, mtime) of every file of a group."""
        h = hashlib.sha256()
        for path in sorted(self.source_files_of(group)):
            size, mtime = self.stamps[path]
            h.update(f"{path}\0{size}\0{mtime}\n".encode())
        return h.hexdigest()

    def source_files_of(self, group: str) -> list[str]:
        """Every raw file of a group's regions."""
        return [f["path"] for r in self.groups[group] for f in r["files"]]

    @property
    def segmentation(self) -> dict | None:
        """The ``segmentation`` config, or None when segmentation is off."""
        return self.config.get("segmentation")

    def segment_params(self) -> dict:
        """Everything a segment job depends on (resources excluded)."""
        seg = dict(self.segmentation)
        seg.pop("resources", None)
        return seg

    @property
    def thresholds(self) -> dict[str, dict]:
        """Threshold runs by name."""
        return {r["name"]: r for r in self.config["thresholds"]}

    def pooled_runs(self) -> list[str]:
        """Runs whose value comes from a pooled histogram of several regions."""
        return [
            name
            for name, r in self.thresholds.items()
            if r["scope"] != "region" and r["method"] != "manual"
        ]

    def measure_params(self) -> dict:
        """What a measure job depends on: channels and the runs' mask settings."""
        return {
            "channels": self.channel_names,
            "runs": [
                {
                    "name": r["name"],
                    "channel": r["channel"],
                    "min_fraction": r["min_fraction"],
                }
                for r in self.thresholds.values()
            ],
        }

    def pyramid_params(self) -> dict:
        """Everything a pyramid job depends on besides its import."""
        return {"levels": self.config["pyramid"]["levels"]}

    def hierarchy(self) -> dict[str, list[str]]:
        """Plain groups to write per store: conditions and condition/timepoint
        groups everywhere; in masks.zarr also each region (its masks' parent)."""
        paths = set()
        for r in self.regions():
            # every group above the region: cond[/tp], or plate/row/column
            parts = r["key"].split("/")[:-1]
            paths.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        masks = (
            sorted(paths | {r["key"] for r in self.regions()})
            if self.thresholds
            else sorted(paths)
        )
        return {
            layout.IMAGES: sorted(paths),
            layout.LABELS: sorted(paths),
            layout.MASKS: masks,
        }

    def hierarchy_attrs(self) -> dict[str, dict[str, dict]]:
        """Store → group path → ``.zattrs`` of the shared groups that carry
        metadata: the NGFF plate and its wells (nothing for free-form)."""
        plates: dict[str, list[dict]] = {}
        for r in self.regions():
            if "well" in r:
                plates.setdefault(r["well"]["plate"], []).append(r)
        attrs: dict[str, dict] = {}
        for name, regions in plates.items():
            attrs[name] = hcs.plate_attrs(name, regions)
            wells: dict[str, list[dict]] = {}
            for r in regions:
                w = r["well"]
                wells.setdefault(f"{name}/{w['row']}/{w['column']}", []).append(r)
            for path, rs in wells.items():
                attrs[path] = hcs.well_attrs(rs)
        return {layout.IMAGES: attrs} if attrs else {}

    def register_params(self) -> dict:
        """Experiment-wide facts the register step writes."""
        cfg = self.config
        timepoints = []
        for r in self.regions():
            if r["timepoint"] and r["timepoint"] not in timepoints:
                timepoints.append(r["timepoint"])
        return {
            "name": cfg["experiment"]["name"],
            "description": cfg["experiment"]["description"],
            "channels": cfg["channels"],
            "conditions": sorted({r["condition"] for r in self.regions()}),
            "timepoints": [
                {"name": t, "time_seconds": cfg["timepoints"].get(t), "order": i}
                for i, t in enumerate(timepoints)
            ],
            # the workflow's threshold runs: rows of runs no longer configured
            # are removed from the regions of this run
            "threshold_runs": sorted(self.thresholds),
            "busy_timeout_s": cfg["register"]["busy_timeout_s"],
        }


def sheet_for(config: dict) -> tuple[pd.DataFrame, bool]:
    """The sample sheet of a validated config, and whether it is generated."""
    inp = config["input"]
    if "demo" in inp:
        return demo.demo_sheet(
            inp["demo"], [c["name"] for c in config["channels"]]
        ), True
    if "sample_sheet" in inp:
        return read_sample_sheet(inp["sample_sheet"]), False
    scan = inp["scan"]
    channels = [c["name"] for c in config["channels"]]
    return scan_directory(scan["directory"], scan["pattern"], channels), False


def build_manifest(config: dict, check_files: bool = True) -> Manifest:
    """Validate the config, read the sheet and group its regions.

    Args:
        config: The raw config dict (defaults are filled in place).
        check_files: Probe every existing raw file's header now, so that a
            wrong file stops the run before any job starts.

    Raises:
        ConfigError: bad config key or value, bad sheet row.
        SourceImageError: a raw file that is missing, unreadable, or does not
            fit the other files of its region.
    """
    validate_config(config)
    if "plate" in config["input"]:
        return build_plate_manifest(config)
    sheet, generated = sheet_for(config)
    channel_names = [c["name"] for c in config["channels"]]
    unknown = sorted(set(sheet["channel"].dropna()) - set(channel_names))
    if unknown:
        raise ConfigError(
            f"sample sheet names channel(s) {unknown} that are not in the config "
            f"(channels: {', '.join(channel_names)})"
        )
    manifest = Manifest(config, config["experiment"]["path"], generated=generated)
    sheet = sheet.astype(object).where(sheet.notna(), None)
    for (cond, tp, region), rows in sheet.groupby(
        ["condition", "timepoint", "region"], dropna=False, sort=True
    ):
        tp = None if tp is None or pd.isna(tp) else tp
        files = [
            {
                "path": r.path,
                "channel": r.channel,
                "z": None if r.z is None or pd.isna(r.z) else int(r.z),
            }
            for r in rows.itertuples()
        ]
        files.sort(
            key=lambda f: (
                channel_names.index(f["channel"]) if f["channel"] else -1,
                f["z"] or 0,
            )
        )
        gid = layout.group_id(cond, tp)
        manifest.groups.setdefault(gid, []).append(
            {
                "condition": cond,
                "timepoint": tp,
                "region": region,
                "key": layout.region_key(cond, tp, region),
                "files": files,
            }
        )
    _check_timepoint_consistency(manifest)
    per_job = config["grouping"]["regions_per_job"]
    if per_job:
        manifest.groups = split_groups(manifest.groups, per_job)
    if manifest.segmentation:
        check_segmentation_config(manifest.segmentation, channel_names)
    if check_files and not generated:
        check_sources(manifest)
    return manifest


def build_plate_manifest(config: dict) -> Manifest:
    """The manifest of an HCS plate: a region per well and acquisition, a
    group per well (or ``regions_per_job`` wells per group)."""
    plate = config["input"]["plate"]
    channel_names = [c["name"] for c in config["channels"]]
    if plate["demo"]:
        names = demo.plate_demo_files(plate, len(channel_names))
        files = hcs.parse_names(
            plate["directory"], [n for w in names.values() for n in w], "metaxpress"
        )
        conditions = {
            "".join(hcs.split_well(w)): demo.plate_demo_condition(plate["demo"], w)
            for w in plate["demo"]["wells"]
        }
        regions = hcs.wells_from_files(plate, files, channel_names, conditions)
    else:
        regions = hcs.plate_regions(plate, channel_names)
    manifest = Manifest(
        config, config["experiment"]["path"], generated=bool(plate["demo"])
    )
    for r in regions:
        gid = f"{plate['name']}/{r['region']}"
        manifest.groups.setdefault(gid, []).append(r)
    per_job = config["grouping"]["regions_per_job"]
    if per_job:
        wells = list(manifest.groups.values())
        manifest.groups = {
            f"{plate['name']}@{i // per_job + 1}": [
                r for well in wells[i : i + per_job] for r in well
            ]
            for i in range(0, len(wells), per_job)
        }
    if manifest.segmentation:
        check_segmentation_config(manifest.segmentation, channel_names)
    if not manifest.generated:
        # every field file's header, so that a bad one stops the run before
        # any job starts (remembered between parses: a plate has many)
        paths = [f["path"] for r in manifest.regions() for f in r["files"]]
        manifest.stamps = file_stamps(paths)
        infos = probe_many(paths, _multichannel(manifest.regions()), manifest.stamps)
        for r in manifest.regions():
            hcs.plan_well(r, channel_names, config["pixel_size_um"], infos)
    return manifest


def split_groups(groups: dict[str, list[dict]], per_job: int) -> dict[str, list[dict]]:
    """Split each condition × timepoint into jobs of at most ``per_job`` regions.

    Part ids use "@", which no name may contain: ``ctrl/t0@1``, ``ctrl/t0@2``.
    """
    out = {}
    for gid, regions in groups.items():
        if len(regions) <= per_job:
            out[gid] = regions
            continue
        for i in range(0, len(regions), per_job):
            out[f"{gid}@{i // per_job + 1}"] = regions[i : i + per_job]
    return out


def _multichannel(regions: list[dict]) -> set[str]:
    """Files whose rows name no channel: each holds every channel."""
    return {f["path"] for r in regions for f in r["files"] if f["channel"] is None}


def _check_timepoint_consistency(manifest: Manifest) -> None:
    with_tp = {r["condition"] for r in manifest.regions() if r["timepoint"]}
    without = {r["condition"] for r in manifest.regions() if not r["timepoint"]}
    both = sorted(with_tp & without)
    if both:
        raise ConfigError(
            f"condition(s) {both} have rows with and rows without a timepoint; "
            "give every row of a condition a timepoint, or none"
        )


def check_sources(manifest: Manifest) -> None:
    """Probe every raw file and plan every region; raise on the first problem."""
    regions = manifest.regions()
    paths = sorted({f["path"] for r in regions for f in r["files"]})
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise SourceImageError(
            f"raw image file(s) not found: {', '.join(missing[:5])}{more}"
        )
    infos = probe_many(paths, _multichannel(regions))
    for r in regions:
        plan = plan_region(
            r["key"],
            r["files"],
            [infos[f["path"]] for f in r["files"]],
            manifest.channel_names,
        )
        if manifest.config["pixel_size_um"] is None and plan.pixel_size_um is None:
            raise ConfigError(
                f"region {r['key']}: no pixel size in {r['files'][0]['path']} and "
                "pixel_size_um is not set in the config"
            )
