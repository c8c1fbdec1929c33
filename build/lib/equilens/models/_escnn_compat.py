"""Import escnn with one compatibility fix applied.

escnn 1.0.11 computes Clebsch-Gordan coefficients (needed for dihedral groups D_N with N >= 3 and for
some restrictions) by passing a ``numpy.matrix`` to scikit-learn's ``randomized_svd``; scikit-learn
>= 1.6 rejects ``numpy.matrix`` with a TypeError. escnn falls back to ``scipy.linalg.svd`` when
``randomized_svd`` is unavailable, and with ``n_components = min(A.shape)`` the randomized SVD was
computing the full decomposition anyway, so this module makes escnn take the exact SciPy path.
Every equilens module that uses escnn imports it from here.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # escnn warns at import that py3nj (a Fortran package only needed for 3D groups) is missing.
    warnings.filterwarnings("ignore", message=".*py3nj.*")
    import escnn.group._numerical as _escnn_numerical
    from escnn import gspaces
    from escnn import nn as enn

_escnn_numerical.randomized_svd = None

__all__ = ["enn", "gspaces"]
