"""Write one synthetic demo region (rule demo_region)."""

from percell import steps

steps.demo_region(
    params=snakemake.params.spec,
    tiffs=list(snakemake.output.tiffs),
    log_file=snakemake.log[0],
)
