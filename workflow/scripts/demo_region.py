"""Write one synthetic demo region (rule demo_region)."""

import logging

from percell.demo import write_demo_region
from percell.logs import setup_logging

setup_logging(snakemake.log[0])
spec = snakemake.params.spec
paths = dict(zip(spec["channels"], snakemake.output.tiffs, strict=True))
write_demo_region(paths, spec["size"], spec["seed"], spec["signal_scale"])
logging.getLogger("percell.demo").info("wrote %s", ", ".join(snakemake.output.tiffs))
