"""percell: raw fluorescence microscopy → PerCell 3 experiments.

The Snakemake workflow in this repository calls into this package; every
step's logic lives here, one module per concept.
"""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    # looked up on first use: reading the installed metadata costs every job
    # ~40 ms at start-up, and most never ask
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("percell")
        except PackageNotFoundError:  # a source tree without install
            return "0.0.0"
    raise AttributeError(f"module 'percell' has no attribute {name!r}")
