"""Build the image pyramids of one region group (rule pyramid)."""

from percell.logs import setup_logging
from percell.pyramid import pyramid_group
from percell.sentinel import read_sentinel

setup_logging(snakemake.log[0])
imported = read_sentinel(snakemake.input.imported)
pyramid_group(
    imported["outputs"],
    snakemake.params.experiment,
    snakemake.params.levels,
    snakemake.output.sentinel,
    imported["group"],
    snakemake.input.imported,
    threads=snakemake.threads,
)
