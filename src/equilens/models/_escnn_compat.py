"""Import escnn with one compatibility fix applied.

escnn 1.0.11 computes Clebsch-Gordan coefficients (needed for dihedral groups D_N with N >= 3 and for
some restrictions) by passing a ``numpy.matrix`` to scikit-learn's ``randomized_svd``; scikit-learn
>= 1.6 rejects ``numpy.matrix`` with a TypeError. escnn falls back to ``scipy.linalg.svd`` when
``randomized_svd`` is unavailable, and with ``n_components = min(A.shape)`` the randomized SVD was
computing the full decomposition anyway, so this module makes escnn take the exact SciPy path.

escnn computes the Clebsch-Gordan coefficients of O(2) (used by the kernel bases of the ``steerable_o2``
layers) from random group elements drawn with NumPy's global generator, and caches them on disk inside its
own installation. Each coefficient tensor is unique up to the sign of each multiplicity slice, so every
installation draws its own signs: with every seed fixed, the same model started from different filters on
different machines (and a short training of ``steerable_o2`` ended 0.15, 0.21 or 0.29 off-grid change). For the
continuous groups (escnn draws random elements only for groups without a finite set of generators) this
module flips each slice so that its first clearly non-zero entry is positive, which makes the coefficients,
and so every basis, the same everywhere whatever escnn has cached; any sign choice is an equally valid basis.
The finite groups' coefficients (D_N), which escnn solves from the generators alone, keep escnn's signs.

Every equilens module that uses escnn imports it from here.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

with warnings.catch_warnings():
    # escnn warns at import that py3nj (a Fortran package only needed for 3D groups) is missing.
    warnings.filterwarnings("ignore", message=".*py3nj.*")
    import escnn.group as _escnn_group
    import escnn.group._clebsh_gordan as _escnn_cg
    import escnn.group._numerical as _escnn_numerical
    from escnn import gspaces
    from escnn import nn as enn

_escnn_numerical.randomized_svd = None


def canonical_cg_sign(cg: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Clebsch-Gordan coefficients ``cg`` (indexed [J, l, s, j] as escnn returns them) with each slice ``s``
    multiplied by -1 or 1 so that its first entry (in C order) larger than ``tol`` times the slice's largest
    entry in absolute value is positive. Returns a new array; an empty slice axis is returned unchanged."""
    out = np.array(cg, dtype=float, copy=True)
    for s in range(out.shape[2]):
        flat = out[:, :, s, :].ravel()
        big = np.abs(flat) > tol * np.abs(flat).max()
        if big.any() and flat[np.argmax(big)] < 0:
            out[:, :, s, :] *= -1.0
    return out


_computed_cg = _escnn_cg._clebsh_gordan_tensor


def _draws_random_elements(group_class: str, group_keys: dict[str, Any]) -> bool:
    """escnn solves for a group's coefficients from random group elements when the group has no finite
    generating set (the continuous groups); finite groups (C_N, D_N) are solved from their generators alone."""
    try:
        _ = _escnn_group.groups_dict[group_class]._generator(**group_keys).generators
    except ValueError:
        return True
    return False


def _canonical_cg_tensor(J: Any, l: Any, j: Any, group_class: str, **group_keys: Any) -> np.ndarray:  # noqa: E741
    cg = _computed_cg(J, l, j, group_class, **group_keys)
    return canonical_cg_sign(cg) if _draws_random_elements(group_class, group_keys) else cg


if not getattr(_escnn_cg._clebsh_gordan_tensor, "equilens_canonical", False):
    _canonical_cg_tensor.equilens_canonical = True  # type: ignore[attr-defined]
    _escnn_cg._clebsh_gordan_tensor = _canonical_cg_tensor

__all__ = ["enn", "gspaces"]
