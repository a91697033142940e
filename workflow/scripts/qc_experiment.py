"""The experiment-wide QC figures (rule qc_experiment)."""

from percell import steps

steps.qc_experiment(
    experiment=snakemake.params.experiment,
    params=snakemake.params.spec,
    outputs=dict(snakemake.output.items()),
    log_file=snakemake.log[0],
)
