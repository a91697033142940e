"""percell: raw fluorescence microscopy → PerCell 3 experiments.

The Snakemake workflow in this repository calls into this package; every
step's logic lives here, one module per concept.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("percell")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
