"""Import one region group's raw files (rule import_images)."""

from percell import steps

steps.import_images(
    params=snakemake.params.spec,
    sentinel=snakemake.output.sentinel,
    log_file=snakemake.log[0],
    threads=snakemake.threads,
)
