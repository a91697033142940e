"""Stage one run's histograms of a region group (rule histogram)."""

from percell.logs import setup_logging
from percell.sentinel import read_sentinel
from percell.thresholds import histogram_group

setup_logging(snakemake.log[0])
imported = read_sentinel(snakemake.input.imported)
histogram_group(
    imported["outputs"],
    snakemake.params.experiment,
    snakemake.params.run,
    snakemake.params.channels,
    snakemake.output.histograms,
)
