"""Write the wide per-cell table, CSV and Parquet (rule export)."""

from percell import steps

steps.export(
    registered=snakemake.input.registered,
    csv=snakemake.output.csv,
    parquet=snakemake.output.parquet,
    log_file=snakemake.log[0],
)
