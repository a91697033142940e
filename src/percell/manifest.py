"""The manifest: every region of the run, grouped into the jobs that write them.

Built once at parse time from the typed config and the sample sheet (or the
plate's files). The Snakemake rules take their inputs and ``params`` from
here, so a region group's params hold exactly what its jobs depend on and
nothing of other groups: adding a region reruns only its own group.

The planner knows regions, groups and files; it knows no step: each step's
parameters are contracts (``percell.contracts``), and the checks a config
implies live in ``percell.config``.
"""

from __future__ import annotations

import gc
import hashlib
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from percell import experiment_format, layout, remote
from percell.config import check_timepoints, load_config, pixel_size_or_error
from percell.contracts import (
    COMPARTMENTS,
    Channel,
    Config,
    HierarchyParams,
    IlluminationParams,
    IlluminationSample,
    ImportParams,
    MaskRun,
    MeasureParams,
    PlateInput,
    Region,
    RegisterParams,
    SegmentationSettings,
    SourceFile,
    ThresholdRun,
    TimepointSpec,
)
from percell.demo_names import demo_sheet, plate_demo_condition, plate_demo_files
from percell.errors import ConfigError
from percell.formats import is_vendor_file
from percell.plan import plan_region
from percell.plate_files import parse_names, split_well
from percell.plate_layout import plate_attrs, read_plate_bio_reps, well_attrs
from percell.sheets import expand_files, read_sample_sheet, scan_directory
from percell.source_info import SourceInfo
from percell.sources import contents_of, file_stamps, probe_many, source_id
from percell.wells import plan_well, plate_regions, wells_from_files


@dataclass
class Manifest:
    """All regions of a run, by region group.

    Attributes:
        config: The typed config.
        groups: Group id → its regions, in a stable order.
        generated: Whether the source files are made by the workflow (demo)
            and so need not exist at parse time.
        stamps: For a plate read from disk, or inputs behind URLs: (size,
            mtime) of every field file, (size, ETag) of every object. Its
            import jobs then carry these in their params instead of listing
            tens of thousands of files as Snakemake inputs (which would
            dominate every dry run, and cannot name an object); a changed
            file still reruns its group (the params trigger).
    """

    config: Config
    groups: dict[str, list[Region]] = field(default_factory=dict)
    generated: bool = False
    stamps: dict[str, tuple[int, int | str]] | None = None
    #: region key → biological replicate, where the sheet or plate map
    #: names one (the others are the default, ``N1``)
    bio_reps: dict[str, str] = field(default_factory=dict)

    @property
    def experiment(self) -> str:
        """Path of the ``.percell`` directory."""
        return self.config.experiment.path

    @property
    def channel_names(self) -> list[str]:
        return self.config.channel_names

    @property
    def z_projection(self) -> str | None:
        """How Z-stacks are projected for the application: only schema 4.0.0
        reads 2-D planes only (3.0.0 reads the stack as it is)."""
        exp = self.config.experiment
        return exp.z_projection if exp.format == "4.0.0" else None

    def regions(self) -> list[Region]:
        """Every region of every group."""
        return [r for regions in self.groups.values() for r in regions]

    def source_files(self, group: str) -> list[str]:
        """The raw files a group's import reads (as Snakemake inputs)."""
        if self.stamps is not None:
            return []
        # an object behind a URL is never a Snakemake input: its ETag is
        # in the params instead (stamps)
        return [p for p in self.source_files_of(group) if not remote.is_url(p)]

    def source_files_of(self, group: str) -> list[str]:
        """Every raw file of a group's regions."""
        return [f.path for r in self.groups[group] for f in r.files]

    @property
    def pixel_channels(self) -> tuple[Channel, ...]:
        """The channels as the steps that make pixels see them: their names,
        in order. Colours, roles and wavelengths are display metadata, which
        register writes (a colour change re-imports nothing)."""
        return tuple(Channel(name=c.name) for c in self.config.channels)

    def import_params(self, group: str) -> ImportParams:
        """Everything a group's import depends on (its Snakemake params)."""
        cfg = self.config
        # ``sources`` only where files are not inputs: left out, it stays out
        # of the params (see Contract.to_params)
        extra: dict[str, Any] = {}
        if self.stamps is not None:
            extra["sources"] = self._sources_digest(group)
        if cfg.channel_map:  # left out when unused, as ``sources``
            extra["channel_map"] = cfg.channel_map
        if cfg.background:
            extra["background"] = cfg.background
        if cfg.illumination is not None:
            extra["illumination"] = {
                r.key: self.illumination_scope(r) for r in self.groups[group]
            }
        if cfg.storage.endpoints:
            extra["endpoints"] = cfg.storage.endpoints
        return ImportParams(
            group=group,
            regions=tuple(self.groups[group]),
            channels=self.pixel_channels,
            pixel_size_um=cfg.pixel_size_um,
            z_step_um=cfg.z_step_um,
            **extra,
        )

    def _sources_digest(self, group: str) -> str:
        """One digest of the (path, size, mtime) of every file of a group."""
        return self._stamps_digest(self.source_files_of(group))

    def _stamps_digest(self, paths: Iterable[str]) -> str:
        """One digest of the (path, size, mtime) of files."""
        assert self.stamps is not None
        h = hashlib.sha256()
        for path in sorted(paths):
            size, mtime = self.stamps[path]
            h.update(f"{path}\0{size}\0{mtime}\n".encode())
        return h.hexdigest()

    def illumination_scope(self, region: Region) -> str:
        """The scope whose flat-fields correct ``region``: its plate, its
        condition, or ``all``."""
        settings = self.config.illumination
        scope = settings.scope if settings else "auto"
        if scope == "experiment":
            return "all"
        if region.well is not None and scope in ("auto", "plate"):
            return region.well.plate
        return region.condition

    def illumination_scopes(self) -> dict[str, list[Region]]:
        """Scope → its regions (empty when illumination is off)."""
        if self.config.illumination is None:
            return {}
        scopes: dict[str, list[Region]] = {}
        for r in self.regions():
            scopes.setdefault(self.illumination_scope(r), []).append(r)
        return scopes

    def illumination_params(self, scope: str) -> IlluminationParams:
        """A scope's fitting job: a seeded sample of its fields (a free-form
        region is a field; a well has its own), at most ``sample_fields``."""
        settings = self.config.illumination
        assert settings is not None
        samples = []
        for r in self.illumination_scopes()[scope]:
            if r.well is None:
                samples.append(IlluminationSample(label=r.key, files=r.files))
            else:
                samples += [
                    IlluminationSample(label=f"{r.key}/field{f.field}", files=f.files)
                    for f in r.well.fields
                ]
        if len(samples) > settings.sample_fields:
            rng = random.Random(f"{settings.seed}:{scope}")
            picked = sorted(rng.sample(range(len(samples)), settings.sample_fields))
            samples = [samples[i] for i in picked]
        extra: dict[str, Any] = {}
        if self.config.channel_map:
            extra["channel_map"] = self.config.channel_map
        if self.stamps is not None:  # files are not inputs: their stamps are
            paths = {f.path for sample in samples for f in sample.files}
            extra["sources"] = self._stamps_digest(paths)
        if self.config.storage.endpoints:
            extra["endpoints"] = self.config.storage.endpoints
        return IlluminationParams(
            scope=scope,
            settings=settings,
            channels=self.pixel_channels,
            samples=tuple(samples),
            **extra,
        )

    def illumination_files(self, scope: str) -> list[str]:
        """The files an illumination job reads (none listed for plates read
        with stamps, as for import)."""
        if self.stamps is not None:
            return []
        params = self.illumination_params(scope)
        return sorted({f.path for s in params.samples for f in s.files})

    def group_scopes(self, group: str) -> list[str]:
        """The illumination scopes of a group's regions."""
        if self.config.illumination is None:
            return []
        return sorted({self.illumination_scope(r) for r in self.groups[group]})

    @property
    def segmentation(self) -> SegmentationSettings | None:
        """What segment jobs depend on, or None when segmentation is off."""
        seg = self.config.segmentation
        return None if seg is None else seg.settings()

    @property
    def thresholds(self) -> dict[str, ThresholdRun]:
        """Threshold runs by name."""
        return {r.name: r for r in self.config.thresholds}

    def pooled_runs(self) -> list[str]:
        """Runs whose value comes from a pooled histogram of several regions."""
        return [name for name, r in self.thresholds.items() if r.pooled]

    def measure_params(self) -> MeasureParams:
        """What a measure job depends on: channels and the runs' mask settings."""
        seg = self.segmentation
        # compartments is given only where configured: params read as before
        extra: dict[str, Any] = (
            {"compartments": COMPARTMENTS} if seg and seg.compartments else {}
        )
        if experiment_format.get(self.config.experiment.format).mask_scopes:
            extra["mask_scopes"] = True  # given only then: 3.0.0 params as before
        projection = self.z_projection
        if projection:
            extra["z_projection"] = projection
        return MeasureParams(
            channels=tuple(self.channel_names),
            runs=tuple(
                MaskRun(name=r.name, channel=r.channel, min_fraction=r.min_fraction)
                for r in self.thresholds.values()
            ),
            **extra,
        )

    def hierarchy_params(self) -> HierarchyParams:
        """The shared groups of the three stores: plain groups (conditions,
        condition/timepoint, plate/row/column; in masks.zarr also each region,
        its masks' parent) and the NGFF plates and wells with their attributes."""
        paths: set[str] = set()
        for r in self.regions():
            parts = r.key.split("/")[:-1]
            paths.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        keys = {r.key for r in self.regions()}
        masks = sorted(paths | keys) if self.thresholds else sorted(paths)
        groups = {
            layout.IMAGES: tuple(sorted(paths)),
            layout.LABELS: tuple(sorted(paths)),
            layout.MASKS: tuple(masks),
        }
        plates: dict[str, list[Region]] = {}
        wells: dict[str, list[Region]] = {}
        for r in self.regions():
            if r.well is not None:
                w = r.well
                plates.setdefault(w.plate, []).append(r)
                wells.setdefault(f"{w.plate}/{w.row}/{w.column}", []).append(r)
        attrs: dict[str, dict[str, Any]] = {
            name: plate_attrs(name, regions) for name, regions in plates.items()
        }
        attrs.update({path: well_attrs(rs) for path, rs in wells.items()})
        return HierarchyParams(
            groups=groups, attrs={layout.IMAGES: attrs} if attrs else {}
        )

    def register_params(self) -> RegisterParams:
        """Experiment-wide facts the register step writes."""
        cfg = self.config
        fmt = cfg.experiment.format
        timepoints: list[str] = []
        for r in self.regions():
            if r.timepoint and r.timepoint not in timepoints:
                timepoints.append(r.timepoint)
        return RegisterParams(
            name=cfg.experiment.name,
            description=cfg.experiment.description,
            channels=cfg.channels,
            conditions=tuple(sorted({r.condition for r in self.regions()})),
            timepoints=tuple(
                TimepointSpec(name=t, time_seconds=cfg.timepoints.get(t), order=i)
                for i, t in enumerate(timepoints)
            ),
            threshold_runs=tuple(sorted(self.thresholds)),
            busy_timeout_s=cfg.register_.busy_timeout_s,
            # given only where a sheet or plate map names one: the params of
            # experiments without them stay as they were
            **({"bio_reps": self.bio_reps} if self.bio_reps else {}),
            **({"z_projection": self.z_projection} if self.z_projection else {}),
            **({"format": fmt} if fmt != experiment_format.DEFAULT else {}),
        )


def build_manifest(config: dict[str, Any], check_files: bool = True) -> Manifest:
    """Validate the config, find the regions and group them into jobs.

    Args:
        config: The raw config dict (defaults are filled in place, for the
            rules).
        check_files: Probe every existing raw file's header now, so that a
            wrong file stops the run before any job starts.

    Raises:
        ConfigError: bad config key or value, bad sheet row.
        SourceImageError: a raw file that is missing, unreadable, or does not
            fit the other files of its region.
    """
    # planning a plate makes a few hundred thousand small objects and no
    # reference cycles; the cyclic collector would scan them again and again
    # (a third of the time at 1,536 wells), so it waits until the end
    with _collector_paused():
        return _build_manifest(config, check_files)


@contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _build_manifest(config: dict[str, Any], check_files: bool) -> Manifest:
    cfg = load_config(config)
    remote.configure(cfg.storage.endpoints)
    experiment_format.check_configured(
        cfg.experiment.path, cfg.experiment.format, "config"
    )
    per_job = cfg.grouping.regions_per_job
    bio_reps: dict[str, str] = {}
    if cfg.input.plates:
        groups, generated = {}, False
        for plate in cfg.input.plates:
            plate_groups, generated = _plate_groups(cfg, plate, per_job)
            groups.update(plate_groups)
            if plate.plate_map and plate.demo is None:
                reps = read_plate_bio_reps(plate.plate_map)
                for regions in plate_groups.values():
                    for r in regions:
                        assert r.well is not None
                        rep = reps.get(f"{r.well.row}{r.well.column}")
                        if rep is not None:
                            bio_reps[r.key] = rep
    else:
        regions, generated, bio_reps = _free_form_regions(cfg)
        check_timepoints([(r.condition, r.timepoint) for r in regions])
        groups = _group_by(regions, lambda r: layout.group_id(r.condition, r.timepoint))
        if per_job:
            groups = split_groups(groups, per_job)
    manifest = Manifest(cfg, groups, generated=generated, bio_reps=bio_reps)
    if check_files and not generated:
        check_sources(manifest)
    return manifest


def _group_by(
    regions: Sequence[Region], group_of: Callable[[Region], str]
) -> dict[str, list[Region]]:
    groups: dict[str, list[Region]] = {}
    for r in regions:
        groups.setdefault(group_of(r), []).append(r)
    return groups


def sheet_for(cfg: Config) -> tuple[pd.DataFrame, bool]:
    """The sample sheet of a free-form config, and whether it is generated."""
    inp = cfg.input
    if inp.demo is not None:
        return demo_sheet(inp.demo, cfg.channel_names), True
    if inp.sample_sheet is not None:
        return read_sample_sheet(inp.sample_sheet), False
    assert inp.scan is not None  # the schema requires one input
    return scan_directory(
        inp.scan.directory, inp.scan.pattern, cfg.channel_names
    ), False


def _source_file(row: Any) -> SourceFile:
    """A sheet row's file. ``scene`` and ``t`` are given only where the row
    has them, so they stay out of the params of every other file (and an
    existing experiment's import params do not change)."""
    vendor: dict[str, Any] = {}
    if row.scene is not None:
        vendor["scene"] = str(row.scene)
    if row.t is not None and not pd.isna(row.t):
        vendor["t"] = int(row.t)
    return SourceFile(
        path=str(row.path),
        channel=None if row.channel is None else str(row.channel),
        z=None if row.z is None or pd.isna(row.z) else int(row.z),
        **vendor,
    )


def _free_form_regions(
    cfg: Config,
) -> tuple[list[Region], bool, dict[str, str]]:
    """A region per condition × timepoint × region of the sheet; whether it
    is generated; the bio reps the sheet names, by region key."""
    sheet, generated = sheet_for(cfg)
    sheet = expand_files(sheet, is_vendor_file, contents_of, cfg.file_timepoints)
    channel_names = cfg.channel_names
    unknown = sorted(set(sheet["channel"].dropna()) - set(channel_names))
    if unknown:
        raise ConfigError(
            f"sample sheet names channel(s) {unknown} that are not in the config "
            f"(channels: {', '.join(channel_names)})"
        )
    sheet = sheet.astype(object).where(sheet.notna(), None)
    regions = []
    bio_reps: dict[str, str] = {}
    for (cond, tp, region), rows in sheet.groupby(
        ["condition", "timepoint", "region"], dropna=False, sort=True
    ):
        timepoint = None if tp is None or pd.isna(tp) else str(tp)
        files = sorted(
            (_source_file(r) for r in rows.itertuples()),
            key=lambda f: (
                channel_names.index(f.channel) if f.channel else -1,
                f.z or 0,
            ),
        )
        key = layout.region_key(str(cond), timepoint, str(region))
        regions.append(
            Region(
                condition=str(cond),
                timepoint=timepoint,
                region=str(region),
                key=key,
                files=tuple(files),
            )
        )
        rep = rows["bio_rep"].iloc[0]
        if rep is not None:
            bio_reps[key] = str(rep)
    return regions, generated, bio_reps


def _plate_groups(
    cfg: Config, plate: PlateInput, per_job: int | None
) -> tuple[dict[str, list[Region]], bool]:
    """A plate's region groups: one well (all its acquisitions) per group, or
    ``regions_per_job`` wells. With several plates, a region is named
    ``<plate>_<well>``: regions of one condition and timepoint need distinct
    names in experiment.db."""
    regions, generated = _plate_regions(cfg, plate)
    if len(cfg.input.plates) > 1:
        regions = [
            r.model_copy(update={"region": f"{plate.name}_{r.region}"}) for r in regions
        ]
    groups: dict[str, list[Region]] = {}
    for r in regions:
        assert r.well is not None
        groups.setdefault(f"{plate.name}/{r.well.row}{r.well.column}", []).append(r)
    if per_job:
        wells = list(groups.values())
        groups = {
            f"{plate.name}@{i // per_job + 1}": [
                r for well in wells[i : i + per_job] for r in well
            ]
            for i in range(0, len(wells), per_job)
        }
    return groups, generated


def _plate_regions(cfg: Config, plate: PlateInput) -> tuple[list[Region], bool]:
    """A region per well and acquisition of a plate; whether it is a demo."""
    names = cfg.channel_names
    if plate.demo is None:
        return plate_regions(plate, names), False
    demo = plate.demo
    files = plate_demo_files(plate, len(names))
    matched = parse_names(
        plate.directory, [n for w in files.values() for n in w], "metaxpress"
    )
    conditions = {
        "".join(split_well(w)): plate_demo_condition(demo, w) for w in demo.wells
    }
    return wells_from_files(plate, matched, names, conditions), True


def split_groups(
    groups: dict[str, list[Region]], per_job: int
) -> dict[str, list[Region]]:
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


def check_sources(manifest: Manifest) -> None:
    """Probe every raw file and plan every region; raise on the first problem.

    Plates remember their probes between parses (``file_stamps``): a plate
    has tens of thousands of files.
    """
    regions = manifest.regions()
    paths = sorted({f.path for r in regions for f in r.files})
    sources = sorted({(f.path, f.scene) for r in regions for f in r.files}, key=str)
    stamps = file_stamps(paths)  # names every missing file
    if manifest.config.input.plates or any(remote.is_url(p) for p in paths):
        manifest.stamps = stamps
    multichannel = {f.path for r in regions for f in r.files if f.channel is None}
    infos: dict[str, SourceInfo] = probe_many(sources, multichannel, stamps)
    configured = manifest.config.pixel_size_um
    # one flat-field per illumination scope: its fields must share a size
    field_sizes: dict[str, tuple[tuple[int, ...], str]] = {}
    for r in regions:
        if r.well is not None:
            well = plan_well(r, manifest.channel_names, configured, infos)
            size, label = well.fields[0].plan.shape[-2:], f"{r.key} (its fields)"
        else:
            plan = plan_region(
                r.key,
                r.files,
                [infos[source_id(f.path, f.scene)] for f in r.files],
                manifest.channel_names,
                manifest.config.channel_map,
            )
            pixel_size_or_error(
                configured, plan.pixel_size_um, f"region {r.key}", r.files[0].path
            )
            size, label = plan.shape[-2:], r.key
        if manifest.config.illumination is not None:
            scope = manifest.illumination_scope(r)
            first = field_sizes.setdefault(scope, (size, label))
            if first[0] != size:
                raise ConfigError(
                    f"illumination scope {scope}: field {label} is "
                    f"{size[0]}x{size[1]} px but {first[1]} is {first[0][0]}x"
                    f"{first[0][1]} px; one flat-field needs fields of one size "
                    "(set illumination.scope so that each scope holds one size)"
                )
