"""Write the shared zarr hierarchy metadata (rule hierarchy)."""

from percell import steps

steps.hierarchy(
    params=snakemake.params.spec,
    sentinel=snakemake.output.sentinel,
    log_file=snakemake.log[0],
)
