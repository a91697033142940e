"""Write the field files of one synthetic plate well (rule demo_well)."""

import logging

from percell.demo import write_demo_well
from percell.logs import setup_logging

setup_logging(snakemake.log[0])
write_demo_well(
    snakemake.params.plate,
    snakemake.wildcards.well,
    list(snakemake.output.tiffs),
    snakemake.params.channels,
)
logging.getLogger("percell.demo").info(
    "well %s: wrote %d field files", snakemake.wildcards.well, len(snakemake.output)
)
