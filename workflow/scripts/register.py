"""Register the run in experiment.db, the single writer (rule register)."""

from percell.logs import setup_logging
from percell.register import register

setup_logging(snakemake.log[0])
inputs = snakemake.input
register(
    snakemake.params.experiment,
    snakemake.params.spec,
    {
        "import": list(inputs.imported),
        "segment": list(inputs.segmented),
        "threshold": list(inputs.thresholds),
        "measure": list(inputs.measured),
        "other": [*inputs.pyramids, inputs.hierarchy],
    },
    snakemake.output.sentinel,
)
