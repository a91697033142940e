"""Segment one region group (rule segment)."""

from percell.logs import setup_logging
from percell.segmentation import segment_group
from percell.sentinel import read_sentinel

setup_logging(snakemake.log[0])
imported = read_sentinel(snakemake.input.imported)
model = (
    read_sentinel(snakemake.input.model[0])["outputs"]
    if snakemake.input.model
    else None
)
segment_group(
    imported["outputs"],
    snakemake.params.experiment,
    snakemake.params.settings,
    snakemake.params.channels,
    snakemake.output.sentinel,
    imported["group"],
    [snakemake.input.imported, snakemake.input.pyramid],
    model=model,
    threads=snakemake.threads,
)
