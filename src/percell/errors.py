"""Errors raised by percell.

Each class also inherits the builtin it stands in for, so callers that catch
``ValueError`` or ``OSError`` keep working.
"""

from __future__ import annotations


class PercellError(Exception):
    """Base class of every error percell raises on purpose."""


class ConfigError(PercellError, ValueError):
    """The config or a sample sheet is wrong: a key, a value or a row."""


class SourceImageError(PercellError, ValueError):
    """A raw image file is missing, unreadable or of the wrong shape or type."""


class ExperimentError(PercellError, RuntimeError):
    """The experiment on disk is not in the state a step expects."""
