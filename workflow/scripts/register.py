"""Register the run in experiment.db, the single writer (rule register)."""

from percell.logs import setup_logging
from percell.register import register

setup_logging(snakemake.log[0])
register(
    snakemake.params.experiment,
    snakemake.params.spec,
    list(snakemake.input.imported),
    [*snakemake.input.pyramids, snakemake.input.hierarchy],
    snakemake.output.sentinel,
    segment_sentinels=list(snakemake.input.segmented),
)
