"""One run's pooled threshold values (rule threshold_value)."""

import logging

from percell.logs import setup_logging
from percell.sentinel import read_sentinel
from percell.storage import write_json
from percell.thresholds import pooled_values

setup_logging(snakemake.log[0])
records = [r for s in snakemake.input.imported for r in read_sentinel(s)["outputs"]]
values = pooled_values(snakemake.params.run, list(snakemake.input.histograms), records)
logging.getLogger("percell").info("%s: %s", snakemake.params.run["name"], values)
write_json(snakemake.output.values, {"run": snakemake.params.run, "values": values})
