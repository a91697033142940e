"""Logging for workflow steps: progress lines and errors go to the rule's
log; long loops also show their progress, and the time left, in the
terminal (``Progress``)."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TextIO

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: seconds between a long loop's progress lines in the terminal (the first
#: after as long: short jobs stay quiet there); PERCELL_PROGRESS_EVERY_S
#: overrides it
TERMINAL_EVERY_S = 15.0

#: where a job's terminal lines go (stderr before it is redirected to the
#: rule's log), and the job they belong to
_terminal: TextIO = sys.stderr
_job = ""

log = logging.getLogger(__name__)


def setup_logging(
    log_file: str | Path | None = None, level: int = logging.INFO
) -> None:
    """Send percell's log records, warnings and tracebacks to ``log_file``.

    With a file, stderr itself is redirected there (as snakemake-workflows'
    scripts do), so an uncaught error's traceback lands in the rule's log,
    next to the progress lines, and not only in the cluster job's output.
    The terminal keeps the lines of ``Progress``, named by the log file.
    """
    global _terminal, _job
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        _terminal, _job = sys.stderr, str(log_file)
        sys.stderr = open(log_file, "w", buffering=1)
    handler = logging.StreamHandler(sys.stderr)
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=[handler], force=True)
    logging.captureWarnings(True)
    sys.excepthook = _report


def _report(kind: type[BaseException], exc: BaseException, tb: object) -> None:
    """A user's error (a file, a URL, a value) ends the job as one line in
    its log, which the terminal shows; a traceback only for our own bugs."""
    from percell.errors import PercellError

    if isinstance(exc, PercellError):
        log.error("%s", exc)
    else:
        sys.__excepthook__(kind, exc, tb)  # type: ignore[arg-type]


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """A long loop's progress: every step in the rule's log, and, when the
    loop has run for ``TERMINAL_EVERY_S``, a line in the terminal at that
    interval with the time left (the job named by its log file, where the
    detail is)."""

    def __init__(self, what: str, total: int, unit: str) -> None:
        self.what, self.total, self.unit = what, max(1, total), unit
        self.start = time.monotonic()
        self.shown = self.start
        self.every = float(os.environ.get("PERCELL_PROGRESS_EVERY_S", TERMINAL_EVERY_S))

    def step(self, done: int, detail: str = "") -> None:
        """``done`` of ``total`` finished (``detail``: what the log adds)."""
        now = time.monotonic()
        elapsed = now - self.start
        left = elapsed / max(done, 1) * (self.total - done)
        line = (
            f"{self.what}: {done}/{self.total} {self.unit}, {_clock(elapsed)} so "
            f"far, about {_clock(left)} left"
        )
        log.info("  %s%s", line, f" ({detail})" if detail else "")
        if now - self.shown >= self.every or (done == self.total and self.spoke):
            self.shown = now
            where = f" [{_job}]" if _job else ""
            print(f"percell: {line}{where}", file=_terminal, flush=True)

    @property
    def spoke(self) -> bool:
        """Whether a line went to the terminal (then the last one does too)."""
        return self.shown != self.start
