"""Import one region group's raw files (rule import_images)."""

from percell.importer import import_group
from percell.logs import setup_logging

setup_logging(snakemake.log[0])
import_group(
    snakemake.params.spec,
    snakemake.params.experiment,
    snakemake.output.sentinel,
    threads=snakemake.threads,
)
