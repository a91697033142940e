"""Errors raised by percell: every error a user can meet is a PercellError.

Each class also inherits the builtin it stands in for, so callers that catch
``ValueError`` or ``RuntimeError`` keep working. Which to raise:

- ``ConfigError``: the config, a sample sheet, a plate map or a positions
  file is wrong (a key, a value, a row);
- ``SourceImageError``: a raw image file is missing, unreadable or does not
  fit;
- ``ExperimentError``: the experiment on disk is not as the step expects
  (an edited label image, a database held by another program, a sentinel
  this version cannot read);
- ``ModelError``: a cellpose model cannot be found, fetched or loaded.

A bare ``ValueError`` means a bug in the caller (a wrong argument), never
bad input.
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


class ModelError(PercellError, RuntimeError):
    """A segmentation model cannot be found, fetched or loaded."""
