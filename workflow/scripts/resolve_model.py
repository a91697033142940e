"""Find or fetch the cellpose model once, before segment jobs (rule resolve_model)."""

from percell import steps

steps.resolve_model(
    model=snakemake.params.model,
    sentinel=snakemake.output.sentinel,
    log_file=snakemake.log[0],
)
