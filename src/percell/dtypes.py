"""Float results back in an image's dtype, the one rule for every step.

Smoothing, background subtraction and flat-field division compute in float64
(exact for every accepted type, 32-bit integers included) and store the
result in the image's own dtype: integers rounded half to even and clipped to
the type's range, floats cast.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def cast_to(values: np.ndarray, dtype: npt.DTypeLike) -> np.ndarray:
    """``values`` in ``dtype``: rounded and clipped for integer types."""
    kind = np.dtype(dtype)
    if kind.kind in "ui":
        info = np.iinfo(kind)
        values = np.clip(np.rint(values), info.min, info.max)
    return values.astype(kind)
