"""Write one run's masks for a region group (rule threshold)."""

from percell import steps

steps.threshold(
    imported=snakemake.input.imported,
    pyramid=snakemake.input.pyramid,
    values=list(snakemake.input.values),
    run=snakemake.params.run,
    channels=snakemake.params.channels,
    sentinel=snakemake.output.sentinel,
    log_file=snakemake.log[0],
)
