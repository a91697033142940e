"""Logging for workflow steps: progress lines and errors go to the rule's log."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(
    log_file: str | Path | None = None, level: int = logging.INFO
) -> None:
    """Send percell's log records, warnings and tracebacks to ``log_file``.

    With a file, stderr itself is redirected there (as snakemake-workflows'
    scripts do), so an uncaught error's traceback lands in the rule's log,
    next to the progress lines, and not only in the cluster job's output.
    """
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(log_file, "w", buffering=1)
    handler = logging.StreamHandler(sys.stderr)
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=[handler], force=True)
    logging.captureWarnings(True)
