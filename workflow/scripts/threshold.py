"""Write one run's masks for a region group (rule threshold)."""

from percell.logs import setup_logging
from percell.sentinel import read_sentinel
from percell.storage import read_json
from percell.thresholds import threshold_group

setup_logging(snakemake.log[0])
imported = read_sentinel(snakemake.input.imported)
pooled = (
    read_json(snakemake.input.values[0])["values"] if snakemake.input.values else None
)
threshold_group(
    imported["outputs"],
    snakemake.params.experiment,
    snakemake.params.run,
    snakemake.params.channels,
    snakemake.output.sentinel,
    imported["group"],
    [snakemake.input.imported, *snakemake.input.values],
    pooled=pooled,
)
