# Validation, the manifest of region groups, paths and input functions.
# Everything beyond building paths lives in the percell package.
import percell.demo_names
import percell.layout
import percell.manifest
import percell.rerun_reasons
import percell.run_lock
from percell import layout
from percell.contracts import PyramidParams, QcExperimentParams
from percell.errors import PercellError

# the config files in use, for messages: --configfile's, else the demo's
CONFIG_FILES = [str(f) for f in workflow.overwrite_configfiles] or [
    "config/config.yaml"
]
try:
    MANIFEST = percell.manifest.build_manifest(config)
except PercellError as exc:
    # a user's mistake: one message naming the config, no traceback (our own
    # bugs are not PercellErrors, and keep theirs)
    sys.exit(f"percell: error in {', '.join(CONFIG_FILES)}:\n{exc}")
EXP = MANIFEST.experiment
# what a rerun changes, in words (Snakemake prints only whole params dicts)
for line in percell.rerun_reasons.reasons(MANIFEST):
    print(f"percell: {line}", file=sys.stderr)
# logs and benchmarks per experiment: another experiment run from the same
# directory keeps its own (and the QC summary reads only this one's)
LOGS = f"logs/{percell.layout.run_name(EXP)}"
BENCHMARKS = f"benchmarks/{percell.layout.run_name(EXP)}"
GROUPS = sorted(MANIFEST.groups)
RUNS = sorted(MANIFEST.thresholds)
# the per-cell export lands beside the experiment: results/demo_cells.csv
EXPORT_PREFIX = EXP.removesuffix(".percell")


SCOPES = sorted(MANIFEST.illumination_scopes())


wildcard_constraints:
    group="|".join(re.escape(g) for g in GROUPS),
    scope="|".join(re.escape(s) for s in SCOPES) or "NO_SCOPES",
    region="[A-Za-z0-9][A-Za-z0-9._-]*",
    well="[A-Za-z]{1,2}[0-9]{1,3}",
    run="|".join(re.escape(r) for r in RUNS) or "NO_RUNS",


def log_of(path):
    return f"{LOGS}/{path}"


def benchmark_of(path):
    return f"{BENCHMARKS}/{path}"


def sentinel(step, group="{group}"):
    return layout.sentinel_path(EXP, step, group)


def get_final_output():
    targets = [sentinel("register", "all"), f"{QC}/summary.png"]
    targets += [f"{QC}/regions/{g}" for g in GROUPS]
    if MANIFEST.segmentation:
        targets += [f"{EXPORT_PREFIX}_cells.csv", f"{EXPORT_PREFIX}_cells.parquet"]
    return targets


def get_sources(wildcards):
    return MANIFEST.source_files(wildcards.group)


def get_group_illumination(wildcards):
    return [sentinel("illumination", s) for s in MANIFEST.group_scopes(wildcards.group)]


def get_illumination_files(wildcards):
    return MANIFEST.illumination_files(wildcards.scope)


def get_illumination_params(wildcards):
    return MANIFEST.illumination_params(wildcards.scope).to_params()


def get_import_params(wildcards):
    return MANIFEST.import_params(wildcards.group).to_params()


def get_pyramid_params():
    return PyramidParams(levels=MANIFEST.config.pyramid.levels).to_params()


def get_all(step):
    return [sentinel(step, g) for g in GROUPS]


def get_resources(step, key):
    return config[step]["resources"][key]


def get_demo_outputs():
    demo = MANIFEST.config.input.demo
    return [
        f"{demo.directory}/{{group}}/{{region}}_{name}.tif"
        for name in MANIFEST.channel_names
    ]


def get_plate_demo_outputs(plate):
    names = percell.demo_names.plate_demo_files(plate, len(MANIFEST.channel_names))
    first = plate.demo.wells[0]
    # one well's names with the well as a wildcard: the same for every well
    return [
        f"{plate.directory}/{n.replace(f'{first}_', '{well}_')}" for n in names[first]
    ]


def get_demo_params(wildcards):
    return percell.demo_names.demo_region_params(
        MANIFEST.config.input.demo,
        wildcards.group,
        wildcards.region,
        MANIFEST.channel_names,
    ).to_params()


def get_experiment_of_input(wildcards, input):
    return layout.experiment_of_sentinel(input[0])


def get_segment_settings():
    return MANIFEST.segmentation.to_params()


def get_model_sentinel():
    seg = MANIFEST.segmentation
    if seg and seg.method == "cellpose":
        return [sentinel("model", "segmentation")]
    return []


def get_cells_model_sentinel():
    comp = MANIFEST.segmentation and MANIFEST.segmentation.compartments
    if comp and comp.cells == "cellpose":
        return [sentinel("model", "cells")]
    return []


def get_segment_sentinels():
    return get_all("segment") if MANIFEST.segmentation else []


def get_threshold_run(wildcards):
    return MANIFEST.thresholds[wildcards.run].to_params()


def get_run_histograms(wildcards):
    return [f"{EXP}/.workflow/histogram/{wildcards.run}/{g}.npz" for g in GROUPS]


def get_pooled_values(wildcards):
    if wildcards.run in MANIFEST.pooled_runs():
        return [f"{EXP}/.workflow/threshold_value/{wildcards.run}.json"]
    return []


def get_group_thresholds(wildcards):
    return [sentinel(f"threshold/{run}", wildcards.group) for run in RUNS]


def get_all_thresholds():
    return [sentinel(f"threshold/{run}", g) for run in RUNS for g in GROUPS]


def get_measure_sentinels():
    return get_all("measure") if MANIFEST.segmentation else []


# --- QC figures for the report (workflow/rules/report.smk) ---------------------

# figures land beside the experiment: results/demo_qc/
QC = f"{EXPORT_PREFIX}_qc"


def get_group_segment(wildcards):
    return [sentinel("segment", wildcards.group)] if MANIFEST.segmentation else []


def get_group_keys(wildcards):
    return [r.key for r in MANIFEST.groups[wildcards.group]]


def get_qc_histograms_by_run():
    return {
        run: [f"{EXP}/.workflow/histogram/{run}/{g}.npz" for g in GROUPS]
        for run in MANIFEST.pooled_runs()
    }


def get_qc_histograms():
    return [f for files in get_qc_histograms_by_run().values() for f in files]


def get_plates():
    return [plate.name for plate in MANIFEST.config.input.plates]


def get_qc_plates():
    """Plates that get a figure: the heat maps need cells."""
    return get_plates() if MANIFEST.segmentation else []


def get_plate_channel():
    """The channel the plate heat map shows: the configured one, else the
    first one not segmented."""
    configured = MANIFEST.config.report.plate_channel
    if configured:
        return configured
    segmented = MANIFEST.segmentation.channel if MANIFEST.segmentation else None
    others = [c for c in MANIFEST.channel_names if c != segmented]
    return (others or MANIFEST.channel_names)[0]


def get_qc_params():
    return QcExperimentParams(
        runs=tuple(MANIFEST.thresholds.values()),
        channels=tuple(MANIFEST.channel_names),
        histograms=get_qc_histograms_by_run(),
        plates=tuple(get_qc_plates()),
        plate_channel=get_plate_channel(),
        plate_metric=MANIFEST.config.report.plate_metric,
        benchmarks=BENCHMARKS,
    ).to_params()


def get_qc_outputs():
    """The experiment-wide QC figures, each marked for the report."""
    outputs = {}
    for run in RUNS:
        outputs[layout.qc_output_name("threshold", run)] = report(
            f"{QC}/thresholds/{run}.png",
            caption="../report/threshold.rst",
            category="Thresholds",
            labels={"run": run},
        )
    if MANIFEST.segmentation:
        outputs["cells"] = report(
            f"{QC}/cells.png",
            caption="../report/cells.rst",
            category="Cells",
            labels={"figure": "per condition x timepoint"},
        )
        for plate in get_qc_plates():
            outputs[layout.qc_output_name("plate", plate)] = report(
                f"{QC}/plates/{plate}.png",
                caption="../report/plate.rst",
                category="Plates",
                labels={"plate": plate},
            )
    outputs["summary"] = report(
        f"{QC}/summary.png",
        caption="../report/summary.rst",
        category="Run summary",
        labels={"figure": "regions, cells, time and memory per step"},
    )
    return outputs


# one run at a time per experiment, across working directories and hosts
# (Snakemake's lock covers one working directory): taken before the first
# job, released at the end; a killed run's lock is recognised as stale
onstart:
    try:
        percell.run_lock.acquire(EXP)
    except PercellError as exc:
        sys.exit(f"percell: {exc}")


onsuccess:
    percell.run_lock.release(EXP)


onerror:
    percell.run_lock.release(EXP)
