"""Write the wide per-cell table, CSV and Parquet (rule export)."""

from percell.export import export_cells
from percell.logs import setup_logging

setup_logging(snakemake.log[0])
export_cells(
    snakemake.params.experiment, snakemake.output.csv, snakemake.output.parquet
)
