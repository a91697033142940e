"""Segment one region group (rule segment)."""

from percell import steps

steps.segment(
    imported=snakemake.input.imported,
    pyramid=snakemake.input.pyramid,
    model=list(snakemake.input.model),
    cells_model=list(snakemake.input.cells_model),
    settings=snakemake.params.settings,
    channels=snakemake.params.channels,
    sentinel=snakemake.output.sentinel,
    log_file=snakemake.log[0],
    threads=snakemake.threads,
)
