"""Stage one run's histograms of a region group (rule histogram)."""

from percell import steps

steps.histogram(
    imported=snakemake.input.imported,
    run=snakemake.params.run,
    channels=snakemake.params.channels,
    histograms=snakemake.output.histograms,
    log_file=snakemake.log[0],
)
