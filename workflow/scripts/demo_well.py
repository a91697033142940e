"""Write the field files of one synthetic plate well (rule demo_well)."""

from percell import steps

steps.demo_well(
    plate=snakemake.params.plate,
    well=snakemake.wildcards.well,
    n_channels=snakemake.params.channels,
    tiffs=list(snakemake.output.tiffs),
    log_file=snakemake.log[0],
)
