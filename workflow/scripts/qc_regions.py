"""QC figures of a region group's regions (rule qc_regions)."""

from percell import steps

steps.qc_regions(
    experiment=snakemake.params.experiment,
    regions=snakemake.params.regions,
    runs=snakemake.params.runs,
    figures=snakemake.output.figures,
    colours=snakemake.params.colours,
    log_file=snakemake.log[0],
)
