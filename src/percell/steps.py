"""Where the workflow's rules enter the package: one function per rule.

Each function is the whole of its ``workflow/scripts/*.py``: it sends the
log to the rule's log file, reads its input sentinels into their contracts,
turns its ``params`` back into theirs, and calls the step, which writes its
own outputs and its sentinel last. Everything is passed by name, as the
rule names it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from percell import layout
from percell.contracts import (
    DemoRegionParams,
    HierarchyParams,
    IlluminationParams,
    ImportedRegion,
    ImportParams,
    MeasureParams,
    PlateInput,
    PooledValues,
    PyramidParams,
    QcExperimentParams,
    RegisterParams,
    ResolvedModel,
    SegmentationSettings,
    ThresholdRun,
)
from percell.logs import setup_logging
from percell.sentinel import contract_of, read_outputs, read_sentinel, write_sentinel
from percell.storage import read_json, write_json

log = logging.getLogger("percell")


def read_imported(sentinel: str) -> tuple[str, list[ImportedRegion]]:
    """The group and the regions an import sentinel records (one read)."""
    data = read_sentinel(sentinel)
    return data["group"], contract_of(data, "outputs", list[ImportedRegion], sentinel)


def import_images(
    *, params: Mapping[str, Any], sentinel: str, log_file: str, threads: int
) -> None:
    from percell.importer import import_group

    setup_logging(log_file)
    import_group(ImportParams.read(params, "import params"), sentinel, threads=threads)


def illumination(*, params: Mapping[str, Any], sentinel: str, log_file: str) -> None:
    from percell.illumination import fit_scope

    setup_logging(log_file)
    fit_scope(IlluminationParams.read(params, "illumination params"), sentinel)


def pyramid(
    *,
    imported: str,
    params: Mapping[str, Any],
    sentinel: str,
    log_file: str,
    threads: int,
) -> None:
    from percell.pyramid import pyramid_group

    setup_logging(log_file)
    group, records = read_imported(imported)
    pyramid_group(
        records,
        params=PyramidParams.read(params, "pyramid params"),
        sentinel=sentinel,
        group=group,
        inputs=[imported],
        threads=threads,
    )


def resolve_model(*, model: str, sentinel: str, log_file: str) -> None:
    from percell.cellpose_adapter import resolve_model as resolve

    setup_logging(log_file)
    resolved = resolve(model)
    log.info("model %s → %s", resolved.model, resolved.path)
    # the sentinel's name is the model's role: segmentation, or cells
    role = Path(sentinel).stem
    write_sentinel(sentinel, "model", role, {"model": model}, [], resolved)


def segment(
    *,
    imported: str,
    pyramid: str,
    model: Sequence[str],
    settings: Mapping[str, Any],
    channels: Sequence[str],
    sentinel: str,
    log_file: str,
    threads: int,
    cells_model: Sequence[str] = (),
) -> None:
    from percell.segmentation import segment_group

    setup_logging(log_file)
    group, records = read_imported(imported)
    segment_group(
        records,
        settings=SegmentationSettings.read(settings, "segmentation settings"),
        channels=channels,
        sentinel=sentinel,
        group=group,
        inputs=[imported, pyramid],
        model=read_outputs(model[0], ResolvedModel) if model else None,
        threads=threads,
        cells_model=(
            read_outputs(cells_model[0], ResolvedModel) if cells_model else None
        ),
    )


def histogram(
    *,
    imported: str,
    run: Mapping[str, Any],
    channels: Sequence[str],
    histograms: str,
    log_file: str,
) -> None:
    from percell.thresholds import histogram_group

    setup_logging(log_file)
    histogram_group(
        read_imported(imported)[1],
        experiment=layout.experiment_of_sentinel(imported),
        run=ThresholdRun.read(run, "threshold run"),
        channels=channels,
        out=histograms,
    )


def threshold_value(
    *,
    imported: Sequence[str],
    histograms: Sequence[str],
    run: Mapping[str, Any],
    values: str,
    log_file: str,
) -> None:
    from percell.thresholds import pooled_values

    setup_logging(log_file)
    records = [r for s in imported for r in read_imported(s)[1]]
    pooled = pooled_values(ThresholdRun.read(run, "threshold run"), histograms, records)
    log.info("%s: %s", pooled.run.name, pooled.values)
    write_json(values, pooled.to_params())


def threshold(
    *,
    imported: str,
    pyramid: str,
    values: Sequence[str],
    run: Mapping[str, Any],
    channels: Sequence[str],
    sentinel: str,
    log_file: str,
) -> None:
    from percell.thresholds import threshold_group

    setup_logging(log_file)
    group, records = read_imported(imported)
    threshold_group(
        records,
        run=ThresholdRun.read(run, "threshold run"),
        channels=channels,
        sentinel=sentinel,
        group=group,
        inputs=[imported, pyramid, *values],
        pooled=PooledValues.read(read_json(values[0]), values[0]) if values else None,
    )


def measure(
    *,
    imported: str,
    segmented: str,
    thresholds: Sequence[str],
    params: Mapping[str, Any],
    sentinel: str,
    log_file: str,
    threads: int,
) -> None:
    from percell.measure import measure_group

    setup_logging(log_file)
    group, records = read_imported(imported)
    measure_group(
        records,
        params=MeasureParams.read(params, "measure params"),
        sentinel=sentinel,
        group=group,
        inputs=[segmented, *thresholds],
        threads=threads,
    )


def hierarchy(*, params: Mapping[str, Any], sentinel: str, log_file: str) -> None:
    from percell.hierarchy import write_hierarchy

    setup_logging(log_file)
    write_hierarchy(HierarchyParams.read(params, "hierarchy params"), sentinel)


def register(
    *,
    imported: Sequence[str],
    pyramids: Sequence[str],
    segmented: Sequence[str],
    thresholds: Sequence[str],
    measured: Sequence[str],
    hierarchy: str,
    params: Mapping[str, Any],
    sentinel: str,
    log_file: str,
) -> None:
    from percell.register import StepSentinels
    from percell.register import register as register_run

    setup_logging(log_file)
    register_run(
        RegisterParams.read(params, "register params"),
        StepSentinels(
            imported=list(imported),
            segmented=list(segmented),
            thresholded=list(thresholds),
            measured=list(measured),
            other=[*pyramids, hierarchy],
        ),
        sentinel,
    )


def export(*, registered: str, csv: str, parquet: str, log_file: str) -> None:
    from percell.export import export_cells

    setup_logging(log_file)
    export_cells(layout.experiment_of_sentinel(registered), csv, parquet)


def demo_region(
    *, params: Mapping[str, Any], tiffs: Sequence[str], log_file: str
) -> None:
    from percell.demo import write_demo_region

    setup_logging(log_file)
    spec = DemoRegionParams.read(params, "demo region params")
    paths = dict(zip(spec.channels, tiffs, strict=True))
    write_demo_region(paths, spec.size, spec.seed, spec.signal_scale, spec.vignette)
    log.info("wrote %s", ", ".join(tiffs))


def demo_well(
    *,
    plate: Mapping[str, Any],
    well: str,
    n_channels: int,
    tiffs: Sequence[str],
    log_file: str,
) -> None:
    from percell.demo import write_demo_well

    setup_logging(log_file)
    write_demo_well(PlateInput.read(plate, "input.plate"), well, tiffs, n_channels)
    log.info("well %s: wrote %d field files", well, len(tiffs))


def qc_regions(
    *,
    experiment: str,
    regions: Sequence[str],
    runs: Sequence[str],
    figures: str,
    log_file: str,
    colours: Sequence[str] | None = None,
) -> None:
    from percell.report import region_figures

    setup_logging(log_file)
    region_figures(experiment, list(regions), list(runs), figures, colours)


def qc_experiment(
    *,
    experiment: str,
    params: Mapping[str, Any],
    outputs: Mapping[str, str],
    log_file: str,
) -> None:
    from percell.report import experiment_figures

    setup_logging(log_file)
    experiment_figures(
        experiment, QcExperimentParams.read(params, "QC params"), dict(outputs)
    )
