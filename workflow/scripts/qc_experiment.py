"""The experiment-wide QC figures (rule qc_experiment)."""

from percell.logs import setup_logging
from percell.report import experiment_figures

setup_logging(snakemake.log[0])
experiment_figures(
    snakemake.params.experiment,
    snakemake.params.runs,
    snakemake.params.histograms,
    snakemake.params.plates,
    snakemake.params.plate_channel,
    snakemake.params.plate_metric,
    snakemake.params.benchmarks,
    dict(snakemake.output.items()),
)
