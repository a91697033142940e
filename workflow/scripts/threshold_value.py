"""One run's pooled threshold values (rule threshold_value)."""

from percell import steps

steps.threshold_value(
    imported=list(snakemake.input.imported),
    histograms=list(snakemake.input.histograms),
    run=snakemake.params.run,
    values=snakemake.output.values,
    log_file=snakemake.log[0],
)
