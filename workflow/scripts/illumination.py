"""Fit one scope's flat-fields (rule illumination)."""

from percell import steps

steps.illumination(
    params=snakemake.params.spec,
    sentinel=snakemake.output.sentinel,
    log_file=snakemake.log[0],
)
