"""Write the shared zarr hierarchy metadata (rule hierarchy)."""

from percell.hierarchy import write_hierarchy
from percell.logs import setup_logging

setup_logging(snakemake.log[0])
write_hierarchy(
    snakemake.params.experiment,
    snakemake.params.groups,
    snakemake.output.sentinel,
    snakemake.params.attrs,
)
