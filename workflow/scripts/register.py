"""Register the run in experiment.db, the single writer (rule register)."""

from percell import steps

steps.register(
    imported=list(snakemake.input.imported),
    pyramids=list(snakemake.input.pyramids),
    segmented=list(snakemake.input.segmented),
    thresholds=list(snakemake.input.thresholds),
    measured=list(snakemake.input.measured),
    hierarchy=snakemake.input.hierarchy,
    params=snakemake.params.spec,
    sentinel=snakemake.output.sentinel,
    log_file=snakemake.log[0],
)
