"""Build the image pyramids of one region group (rule pyramid)."""

from percell import steps

steps.pyramid(
    imported=snakemake.input.imported,
    params=snakemake.params.spec,
    sentinel=snakemake.output.sentinel,
    log_file=snakemake.log[0],
    threads=snakemake.threads,
)
