"""BaSiCPy's flat-field of a stack of fields, as a reference.

BaSiCPy cannot be installed beside percell's pins (basicpy 2.0.0 needs
scipy<1.13), so it runs in its own environment (``.venv-basicpy``, see the
README) as a script: ``python basicpy_reference.py fields.npy flat.npy``.
It imports only numpy and basicpy.
"""

import sys

import numpy as np
from basicpy import BaSiC

fields = np.load(sys.argv[1])
basic = BaSiC(get_darkfield=False)  # flat-field only, as percell fits it
basic.fit(fields)
flat = np.asarray(basic.flatfield, np.float64)
np.save(sys.argv[2], flat / flat.mean())
