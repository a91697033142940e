"""Find or fetch the cellpose model once, before segment jobs (rule resolve_model)."""

import logging

from percell.cellpose_adapter import resolve_model
from percell.logs import setup_logging
from percell.sentinel import write_sentinel

setup_logging(snakemake.log[0])
resolved = resolve_model(snakemake.params.model)
logging.getLogger("percell").info("model %s → %s", resolved["model"], resolved["path"])
write_sentinel(
    snakemake.output.sentinel,
    "model",
    "segmentation",
    {"model": snakemake.params.model},
    [],
    resolved,
)
