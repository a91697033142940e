"""Measure the cells of a region group (rule measure)."""

from percell import steps

steps.measure(
    imported=snakemake.input.imported,
    segmented=snakemake.input.segmented,
    thresholds=list(snakemake.input.thresholds),
    params=snakemake.params.spec,
    sentinel=snakemake.output.sentinel,
    log_file=snakemake.log[0],
    threads=snakemake.threads,
)
