"""QC figures of a region group's regions (rule qc_regions)."""

from percell.logs import setup_logging
from percell.report import region_figures

setup_logging(snakemake.log[0])
region_figures(
    snakemake.params.experiment,
    snakemake.params.regions,
    snakemake.params.runs,
    snakemake.output.figures,
)
