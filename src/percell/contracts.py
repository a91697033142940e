"""The typed contracts between the config, the planner and the steps.

Everything that crosses a step boundary has a model here: the config
sections, a region's record, each step's parameters (what a rule passes in
``params:``) and each step's outputs (what its sentinel records for the next
step). Models are frozen pydantic models that refuse unknown keys, so a typo
or a stale sentinel fails where it is read, naming the field.

Snakemake compares ``params`` between runs by their text (and ignores
objects it cannot print), so rules pass ``model.to_params()`` (plain
JSON-like data, keys in field order) and the step turns it back into its
model with ``Model.read``.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from percell.errors import ConfigError, ExperimentError

#: A number as the config gives it: an int stays an int, so that params and
#: stored run parameters read the same as the YAML (16, not 16.0).
Number = int | float


class Contract(BaseModel):
    """Base of every contract: frozen, no unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    def to_params(self) -> dict[str, Any]:
        """Plain data for a rule's ``params:`` or a JSON file.

        Fields left at their default without being given are left out, so
        that the data (and so Snakemake's params trigger) does not change
        when a field is added to a contract.
        """
        return self.model_dump(mode="json", exclude_unset=True)

    @classmethod
    def read(cls, data: Any, source: str) -> Self:
        """``data`` (parsed JSON) as this model; ExperimentError naming
        ``source`` and the field if it does not fit."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ExperimentError(
                f"{source}: {first_error(exc)} (not a {cls.__name__} record "
                "this version of percell can read)"
            ) from None


# --- config sections -------------------------------------------------------


class Channel(Contract):
    """One configured channel (display order = C index)."""

    name: str
    color: str = "FFFFFF"
    role: Literal["nucleus", "cytoplasm", "membrane", "signal", "other"] = "signal"
    excitation_nm: Number | None = None
    emission_nm: Number | None = None


#: the label images beside the whole cells when cells are grown from nuclei,
#: in the order a segment tile stacks them after the cells
COMPARTMENTS: tuple[Literal["nucleus", "cytoplasm"], ...] = ("nucleus", "cytoplasm")


class CompartmentSettings(Contract):
    """``segmentation.compartments``: cells grown from the segmented nuclei
    (``percell.compartments``)."""

    cells: Literal["expand", "watershed", "cellpose"] = "expand"
    distance: Number = 10
    distance_unit: Literal["pixels", "um"] = "pixels"
    #: the cytoplasm channel a watershed or cellpose finds the cells in
    channel: str | None = None
    threshold_method: Literal["otsu", "li", "triangle"] = "otsu"
    compactness: Number = 0.05
    #: cellpose: the cell model, given the cytoplasm and the nucleus channel
    model: str = "cyto3"
    #: cellpose: the cell diameter (``segmentation.diameter_unit``); None:
    #: the nucleus diameter plus twice ``distance``
    diameter: Number | None = None

    def run_parameters(self) -> dict[str, Any]:
        """The settings that define the cells (cellpose's only for cellpose)."""
        params = self.model_dump(mode="json")
        if self.cells != "cellpose":
            for key in ("model", "diameter"):
                params.pop(key)
        return params


class SegmentationSettings(Contract):
    """The ``segmentation`` section without its resources: what a segment
    job's output depends on."""

    method: Literal["watershed", "cellpose"] = "watershed"
    channel: str
    nucleus_channel: str | None = None
    diameter: Number = 30
    diameter_unit: Literal["pixels", "um"] = "pixels"
    model: str = "cyto3"
    flow_threshold: Number = 0.4
    cellprob_threshold: Number = 0.0
    min_size: int = 15
    gpu: bool | Literal["auto"] = "auto"
    batch_size: int = 8
    tile_size: int = 2048
    tile_overlap: int | Literal["auto"] = "auto"
    z_mode: Literal["do_3D", "stitch"] = "stitch"
    #: Z-stacks with the watershed: each nucleus one column through all
    #: planes (monolayers), or nuclei segmented in 3-D (tissue)
    stacks: Literal["columns", "volume"] = "columns"
    stitch_threshold: Number = 0.5
    smoothing_sigma: Number = 1.0
    threshold_method: Literal["otsu", "li", "triangle"] = "otsu"
    overwrite_edited_labels: bool = False
    compartments: CompartmentSettings | None = None

    def run_parameters(self) -> dict[str, Any]:
        """The settings that define a segmentation run (stored in the
        database): not those that steer resources or reruns, and for the
        watershed none of cellpose's."""
        params = self.model_dump(mode="json", exclude={"overwrite_edited_labels"})
        if self.compartments is None:  # as before compartments existed
            params.pop("compartments")
        else:
            params["compartments"] = self.compartments.run_parameters()
        if self.stacks == "columns":  # as before volumes existed
            params.pop("stacks")
        if self.method != "cellpose":
            for key in (
                "model",
                "flow_threshold",
                "cellprob_threshold",
                "gpu",
                "batch_size",
            ):
                params.pop(key)
        return params

    @property
    def model_name(self) -> str:
        """``segmentation_runs.model_name``: the method, and the model for
        cellpose."""
        return f"cellpose:{self.model}" if self.method == "cellpose" else self.method


ThresholdMethod = Literal[
    "otsu", "li", "triangle", "yen", "isodata", "mean", "percentile", "manual"
]
ThresholdScope = Literal["region", "condition_timepoint", "experiment"]


class ThresholdRun(Contract):
    """One named threshold run (a ``thresholds`` entry, its name filled in)."""

    name: str
    channel: str
    method: ThresholdMethod
    percentile: Number | None = None
    value: Number | None = None
    sigma: Number = 0
    correction: Number = 1.0
    scope: ThresholdScope = "region"
    min_fraction: Number = 0.5

    @property
    def pooled(self) -> bool:
        """Whether the value comes from a pooled histogram of several regions."""
        return self.scope != "region" and self.method != "manual"


class Resources(Contract):
    """What one job of a step asks for."""

    threads: int = 2
    mem_mb: int = 4000
    runtime: int = 60
    gpu: int = 0


class BackgroundSettings(Contract):
    """One channel's ``background`` (``percell.background``)."""

    method: Literal["constant", "percentile", "rolling_ball"]
    value: Number | None = None
    percentile: Number | None = None
    radius: Number | None = None


class IlluminationSettings(Contract):
    """``illumination``: BaSiC flat-fields fitted per scope, applied at import."""

    #: channels corrected (None: every channel)
    channels: tuple[str, ...] | None = None
    #: auto: each plate, or each condition of free-form input
    scope: Literal["auto", "plate", "condition", "experiment"] = "auto"
    sample_fields: int = 50
    working_size: int = 128
    smoothness: Number = 1.0
    seed: int = 0


class StepSettings(Contract):
    resources: Resources = Resources()


class PyramidSettings(StepSettings):
    levels: int | Literal["auto"] = "auto"


class SegmentationConfig(SegmentationSettings):
    """The ``segmentation`` section as written: the settings and resources."""

    resources: Resources = Resources()

    def settings(self) -> SegmentationSettings:
        data = self.model_dump(exclude={"resources"})
        if data["compartments"] is None:  # unset: params read as before it existed
            del data["compartments"]
        return SegmentationSettings.model_validate(data)


#: The PerCell 3 experiment formats (``percell.experiment_format``).
FormatVersion = Literal["3.0.0", "4.0.0"]


class ExperimentSettings(Contract):
    name: str
    description: str = ""
    path: str
    format: FormatVersion = "3.0.0"
    #: how a Z-stack is projected for a reader of 2-D planes (schema 4.0.0)
    z_projection: Literal["max", "mean"] | None = None


class DemoInput(Contract):
    directory: str = "resources/demo"
    conditions: tuple[str, ...] = ("ctrl", "drug")
    timepoints: tuple[str, ...] = ("t0", "t1")
    regions: tuple[str, ...] = ("r1", "r2")
    size: int = 1024
    large_size: int = 4096
    seed: int = 0
    #: the illumination's fall-off at the corners (0: even illumination)
    vignette: Number = 0


class ScanInput(Contract):
    directory: str
    pattern: str


class PlateGrid(Contract):
    rows: int
    columns: int
    order: Literal["row-major", "snake"] = "row-major"
    overlap: int | tuple[int, int] = 0

    def overlap_yx(self) -> tuple[int, int]:
        """The overlap in y and x."""
        if isinstance(self.overlap, int):
            return (self.overlap, self.overlap)
        return self.overlap


class PlateDemo(Contract):
    wells: tuple[str, ...] = ("B02", "B03", "B04", "C02", "C03", "C04")
    conditions: tuple[str, ...] = ("ctrl", "drug")
    field_size: tuple[int, int] = (270, 320)
    z: int = 3
    seed: int = 0


class PlateInput(Contract):
    name: str
    directory: str = "raw"
    pattern: str = "metaxpress"
    channel_map: dict[str, str] = {}
    grid: PlateGrid | None = None
    positions: str | None = None
    plate_map: str | None = None
    missing_fields: Literal["refuse", "zeros"] = "refuse"
    demo: PlateDemo | None = None


class InputSection(Contract):
    """Exactly one of the four (the schema checks it)."""

    demo: DemoInput | None = None
    sample_sheet: str | None = None
    scan: ScanInput | None = None
    plate: PlateInput | tuple[PlateInput, ...] | None = None

    @property
    def plates(self) -> tuple[PlateInput, ...]:
        """The plates of a plate input (one or a list), else none."""
        if self.plate is None:
            return ()
        return self.plate if isinstance(self.plate, tuple) else (self.plate,)


class GroupingSettings(Contract):
    regions_per_job: int | None = None


class ReportSettings(Contract):
    plate_channel: str | None = None
    plate_metric: str = "mean_intensity"


class RegisterSettings(StepSettings):
    busy_timeout_s: Number = 30


class StorageSettings(Contract):
    """Where inputs given as URLs are read from."""

    #: URL prefix (``s3://bucket[/prefix]``) -> S3 endpoint URL
    endpoints: dict[str, str] = {}


class Config(Contract):
    """The whole workflow config, validated (see ``percell.config``)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, defer_build=True
    )

    experiment: ExperimentSettings
    input: InputSection
    channels: tuple[Channel, ...]
    pixel_size_um: Number | None = None
    z_step_um: Number | None = None
    file_timepoints: tuple[str, ...] | None = None
    channel_map: dict[str, str] = {}
    background: dict[str, BackgroundSettings] = {}
    illumination: IlluminationSettings | None = None
    timepoints: dict[str, Number] = {}
    grouping: GroupingSettings = GroupingSettings()
    import_: StepSettings = Field(default=StepSettings(), alias="import")
    pyramid: PyramidSettings = PyramidSettings()
    segmentation: SegmentationConfig | None = None
    thresholds: tuple[ThresholdRun, ...] = ()
    threshold: StepSettings = StepSettings()
    measure: StepSettings = StepSettings()
    report: ReportSettings = ReportSettings()
    register_: RegisterSettings = Field(default=RegisterSettings(), alias="register")
    storage: StorageSettings = StorageSettings()

    @property
    def channel_names(self) -> list[str]:
        return [c.name for c in self.channels]


# --- a region's record --------------------------------------------------------


class SourceFile(Contract):
    """One raw file of a region: a sheet row (channel None: all channels)."""

    path: str
    channel: str | None
    z: int | None = None
    scene: str | None = None
    t: int | None = None


class FieldSpec(Contract):
    """One field of a plate well: its grid cell, stage position and files."""

    field: int
    grid_row: int
    grid_column: int
    stage_um: tuple[Number, Number] | None = None
    files: tuple[SourceFile, ...]


class WellPosition(Contract):
    """Where a well sits: plate, row, column, acquisition (timepoint index)."""

    plate: str
    row: str
    column: str
    acquisition: int


class WellLayout(WellPosition):
    """A well's position and field grid (what its import records)."""

    grid: tuple[int, int]
    overlap: tuple[int, int]
    stride_um: tuple[Number | None, Number | None] | None = None
    missing_fields: Literal["refuse", "zeros"] = "refuse"


class WellSpec(WellLayout):
    """A well to stitch: its position, field grid and fields."""

    fields: tuple[FieldSpec, ...]

    def layout(self) -> WellLayout:
        return WellLayout.model_validate(self.model_dump(exclude={"fields"}))


class Region(Contract):
    """A region to import: where it belongs, its key in every store, its files
    (for a well: every field's files, and the well's layout)."""

    condition: str
    timepoint: str | None
    region: str
    key: str
    files: tuple[SourceFile, ...]
    well: WellSpec | None = None


# --- step parameters -----------------------------------------------------------


class ImportParams(Contract):
    """Everything a group's import depends on."""

    group: str
    regions: tuple[Region, ...]
    channels: tuple[Channel, ...]
    pixel_size_um: Number | None
    z_step_um: Number | None
    #: for a plate read from disk or inputs behind URLs: a digest of every
    #: file's size and mtime (or ETag), standing in for the files as inputs
    sources: str | None = None
    #: a vendor file's channel name -> the configured channel it is
    channel_map: dict[str, str] = {}
    #: channel name -> the background subtracted from it at import
    background: dict[str, BackgroundSettings] = {}
    #: region key -> the illumination scope whose flat-fields correct it
    illumination: dict[str, str] = {}
    #: URL prefix -> S3 endpoint, where inputs are read from such endpoints
    endpoints: dict[str, str] = {}

    @property
    def channel_names(self) -> list[str]:
        return [c.name for c in self.channels]


class IlluminationSample(Contract):
    """One field an illumination job reads: a free-form region, or a well's
    field."""

    label: str
    files: tuple[SourceFile, ...]


class IlluminationParams(Contract):
    """What an illumination job depends on: its scope, the settings and the
    sampled fields."""

    scope: str
    settings: IlluminationSettings
    channels: tuple[Channel, ...]
    channel_map: dict[str, str] = {}
    samples: tuple[IlluminationSample, ...]
    #: for a plate read from disk: a digest of the sampled files' stamps
    sources: str | None = None
    #: URL prefix -> S3 endpoint, as in ImportParams
    endpoints: dict[str, str] = {}

    @property
    def corrected(self) -> list[str]:
        """The channels corrected, in display order."""
        chosen = self.settings.channels
        return [c.name for c in self.channels if chosen is None or c.name in chosen]


class DemoRegionParams(Contract):
    """One synthetic demo region: its size, seed and signal strength."""

    size: int
    seed: int
    signal_scale: Number
    channels: tuple[str, ...]
    vignette: Number = 0


class PyramidParams(Contract):
    """What a pyramid job depends on besides its import."""

    levels: int | Literal["auto"] = "auto"


class MaskRun(Contract):
    """What measure needs of a threshold run."""

    name: str
    channel: str
    min_fraction: Number


class MeasureParams(Contract):
    """What a measure job depends on: channels and the runs' mask settings."""

    channels: tuple[str, ...]
    runs: tuple[MaskRun, ...]
    #: label images measured beside the whole cells (``compartments.COMPARTMENTS``)
    compartments: tuple[Literal["nucleus", "cytoplasm"], ...] = ()
    #: also every channel's metrics inside and outside each run's mask (the
    #: 4.0.0 scopes ``mask_inside`` / ``mask_outside``)
    mask_scopes: bool = False
    #: a Z-stack is measured on this projection (4.0.0: what the application
    #: reads), else in 3-D
    z_projection: Literal["max", "mean"] | None = None

    def metrics(self, cell_metrics: tuple[str, ...]) -> list[str]:
        """Every metric name measured per channel: the whole cell's, then
        ``<compartment>_<metric>`` for each compartment."""
        return list(cell_metrics) + [
            compartment_metric(c, m) for c in self.compartments for m in cell_metrics
        ]


def compartment_metric(compartment: str, metric: str) -> str:
    """The ``measurements.metric`` of a compartment's metric: the whole cell
    keeps PerCell 3's names, a compartment's are prefixed (nucleus_area)."""
    return f"{compartment}_{metric}"


class TimepointSpec(Contract):
    name: str
    time_seconds: Number | None
    order: int


class RegisterParams(Contract):
    """Experiment-wide facts the register step writes."""

    name: str
    description: str
    channels: tuple[Channel, ...]
    conditions: tuple[str, ...]
    timepoints: tuple[TimepointSpec, ...]
    #: the workflow's threshold runs: rows of runs no longer configured are
    #: removed from the regions of this run
    threshold_runs: tuple[str, ...]
    busy_timeout_s: Number = 30
    format: FormatVersion = "3.0.0"
    #: region key → biological replicate, where one is named (else ``N1``)
    bio_reps: dict[str, str] = {}
    #: 4.0.0: how a Z-stack's FOV is projected for the application
    z_projection: Literal["max", "mean"] | None = None


class HierarchyParams(Contract):
    """The shared zarr groups one job writes: per store, the plain groups, and
    the groups that carry metadata (NGFF plates and wells)."""

    groups: dict[str, tuple[str, ...]]
    attrs: dict[str, dict[str, dict[str, Any]]]


class QcExperimentParams(Contract):
    """What the experiment-wide QC figures show."""

    runs: tuple[ThresholdRun, ...]
    channels: tuple[str, ...]
    histograms: dict[str, tuple[str, ...]]
    plates: tuple[str, ...]
    plate_channel: str
    plate_metric: str
    benchmarks: str


# --- step outputs ---------------------------------------------------------------


class FieldRecord(Contract):
    """Where a field sits in its stitched well (``percell_fields``)."""

    field: int
    x: int
    y: int
    width: int
    height: int
    grid_row: int
    grid_column: int
    stage_x_um: Number | None
    stage_y_um: Number | None
    source_files: tuple[str, ...]


class BackgroundRecord(Contract):
    """What was subtracted from a channel of a region at import."""

    channel: str
    method: str
    parameters: dict[str, Any]
    #: the value subtracted (constant, percentile); None for an image
    value: Number | None
    subtracted_min: Number
    subtracted_max: Number
    subtracted_mean: Number


class ImportedRegion(Contract):
    """A region as import wrote it: what every later step starts from."""

    condition: str
    timepoint: str | None
    region: str
    key: str
    zarr_path: str
    shape: tuple[int, ...]
    dtype: str
    pixel_size_um: Number
    z_step_um: Number | None
    source_file: str
    source_files: tuple[str, ...]
    chunk_yx: tuple[int, int] | None = None
    well: WellLayout | None = None
    fields: tuple[FieldRecord, ...] | None = None
    background: tuple[BackgroundRecord, ...] | None = None


class Illumination(Contract):
    """An illumination job's output: where its flat-fields are."""

    scope: str
    channels: tuple[str, ...]
    shape: tuple[int, int]
    path: str
    fields: int


class PyramidRegion(Contract):
    """A region's pyramid: how many levels it has, level 0 included."""

    key: str
    levels: int


class ResolvedModel(Contract):
    """The cellpose weights segment jobs load."""

    model: str
    path: str
    cellpose: str | None
    sha256: str


class SegmentedRegion(Contract):
    key: str
    cells: int
    labels: str
    labels_digest: str
    previous_digest: str | None


class SegmentationRun(Contract):
    """The ``segmentation_runs`` row of a segmentation."""

    channel: str
    model_name: str
    parameters: dict[str, Any]

    def parameters_json(self) -> str:
        """Canonical JSON of the run's parameters: identifies the workflow's
        run in the database (the application's runs have other sources)."""
        return json.dumps(
            {"source": "percell-workflow", **self.parameters}, sort_keys=True
        )


class Segmented(Contract):
    """A segment job's outputs: its regions and staged tables."""

    regions: tuple[SegmentedRegion, ...]
    cells_table: str
    matches_table: str
    run: SegmentationRun


class ThresholdedRegion(Contract):
    key: str
    scope_key: str
    value: Number
    raw_value: Number
    pixels_on: int


class Thresholded(Contract):
    """A threshold job's outputs: the run and each region's value."""

    run: ThresholdRun
    regions: tuple[ThresholdedRegion, ...]


class PooledValues(Contract):
    """One run's threshold value per scope unit (pooled runs)."""

    run: ThresholdRun
    values: dict[str, Number]


class MeasuredRegion(Contract):
    key: str
    cells: int
    #: measured on its projection along z (schema 4.0.0): the cells' areas
    #: in experiment.db are then those of the projected labels
    projected: bool = False


class Measured(Contract):
    """A measure job's outputs: its regions and staged tables."""

    regions: tuple[MeasuredRegion, ...]
    measurements: str
    masks: str


def config_error(exc: ValidationError, source: str) -> ConfigError:
    """A pydantic error on config data as the ConfigError users see."""
    return ConfigError(f"{source}: {first_error(exc)}")


def first_error(exc: ValidationError) -> str:
    """A validation error's first problem: ``where: what``."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return f"{where}: {first['msg']}"
