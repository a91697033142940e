"""Measure the cells of a region group (rule measure)."""

from percell.logs import setup_logging
from percell.measure import measure_group
from percell.sentinel import read_sentinel

setup_logging(snakemake.log[0])
imported = read_sentinel(snakemake.input.imported)
spec = snakemake.params.spec
measure_group(
    imported["outputs"],
    snakemake.params.experiment,
    spec["runs"],
    spec["channels"],
    snakemake.output.sentinel,
    imported["group"],
    [snakemake.input.segmented, *snakemake.input.thresholds],
    threads=snakemake.threads,
)
