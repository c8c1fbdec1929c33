"""Compiled (numba) deflection kernels of the renderer: the formulas of :mod:`equilens.simulation.profiles`.

The numpy functions of :mod:`equilens.simulation.profiles` are the reference implementation (each tested
against lenstronomy); the kernels here compute the *same* expressions, in the same order of operations, one
ray and one halo at a time, without the numpy temporaries and the per-halo Python overhead. They agree with
the numpy reference to float rounding (tested, ``tests/simulation/test_kernels.py``: rendered images of
every ``*_dm`` class match the reference path to 1e-9 of the image peak, deflections to 1e-12 relative).
No physics changes here: no new approximation, no change of the far-field radius.

Layout of :func:`tnfw_deflection` (the renderer's ``TNFW`` path, ``far_field=True`` of the reference):
for each halo, pass 1 runs over every ray and adds the far-field series, set to 0 within
:data:`~equilens.simulation.profiles.TNFW_FAR_FIELD_RADIUS` x max(r_trunc, Rs) (branch-free, so the
compiler vectorises it); pass 2 adds the exact profile at the rays inside that radius. When the rays'
``y`` is sorted (row-major pixel grids, as the renderer's), pass 2 only visits the rows within reach of
the halo (two binary searches). ``CNFW`` halos likewise (beyond R_t: the point of the halo's mass; inside:
the exact cored profile). Point masses (the axion vortex and ``POINT_MASS`` subhalos): one branch-free
loop per point.

numba is a dependency of lenstronomy (which the renderer imports anyway). This module imports numba only
when it is first imported itself (the renderer imports it at the first substructure deflection), and
compiles with ``cache=True`` (numba's on-disk cache: a new process loads the machine code in ~0.1 s
instead of compiling for ~2 s). Set the environment variable ``EQUILENS_JIT=0`` to render with the numpy
reference instead (:func:`jit_enabled`).
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np

from equilens.simulation import profiles as _ref

__all__ = [
    "JIT_ENV",
    "jit_enabled",
    "point_mass_deflection",
    "tnfw_deflection",
    "cnfw_deflection",
    "cnfw_G_inverse",
]

#: Environment variable: "0" renders with the numpy reference of :mod:`equilens.simulation.profiles`.
JIT_ENV = "EQUILENS_JIT"

_PI = math.pi
_LN_HALF_1 = 1.0 + math.log(0.5)
_TNFW_R2_MIN_FRAC = _ref.TNFW_R_MIN * _ref.TNFW_R_MIN
_CNFW_R2_MIN = _ref.CNFW_R_MIN * _ref.CNFW_R_MIN
_PM_R2_MIN = _ref.POINT_MASS_R_MIN**2

_JIT = numba.njit(cache=True, error_model="numpy", nogil=True)


def jit_enabled() -> bool:
    """True unless the environment variable ``EQUILENS_JIT`` is "0" (then the numpy reference renders)."""
    return os.environ.get(JIT_ENV, "1") != "0"


@_JIT
def _nfw_F(x2: float) -> float:  # pragma: no cover - compiled
    """F of the NFW projection from x^2 (profiles._nfw_F, one value)."""
    s = math.sqrt(abs(x2 - 1.0))
    if s == 0.0:
        return 1.0
    if x2 < 1.0:
        return math.atanh(s) / s
    return math.atan(s) / s


@_JIT
def _row_range(y: np.ndarray, y_sorted: bool, lo_y: float, hi_y: float) -> tuple[int, int]:  # pragma: no cover
    """Index range [i0, i1) holding every ray with lo_y <= y < hi_y (all rays when y is not sorted)."""
    if not y_sorted:
        return 0, y.size
    pad = 1e-9 * (abs(lo_y) + abs(hi_y)) + 1e-12  # wider than any rounding of y - center: the caller tests r^2
    return int(np.searchsorted(y, lo_y - pad, side="left")), int(np.searchsorted(y, hi_y + pad, side="right"))


@_JIT
def _is_sorted(y: np.ndarray) -> bool:  # pragma: no cover - compiled
    for i in range(1, y.size):
        if y[i] < y[i - 1]:
            return False
    return True


@_JIT
def _tnfw_kernel(x: np.ndarray, y: np.ndarray, rs_a: np.ndarray, ars_a: np.ndarray, rt_a: np.ndarray,
                 cx_a: np.ndarray, cy_a: np.ndarray, mt_a: np.ndarray, reach: float,
                 ax: np.ndarray, ay: np.ndarray) -> None:  # pragma: no cover - compiled
    n = x.size
    y_sorted = _is_sorted(y)
    for h in range(rs_a.size):
        rs = rs_a[h]
        a_rs = ars_a[h]
        rt = rt_a[h]
        cx = cx_a[h]
        cy = cy_a[h]
        m_tot = mt_a[h]
        tau = rt / rs
        t2 = tau * tau
        k = a_rs * rs / _LN_HALF_1
        a5 = a_rs / (4.0 * rs * rs * _LN_HALF_1) * rs**3 * rt * rt
        c2 = 4.0 * _PI / 3.0 * a5
        c3 = _PI**2 / 2.0 * rs * a5
        c4 = 8.0 * _PI / 15.0 * (3.0 * rs * rs - rt * rt) * a5
        near_r = reach * max(rt, rs)
        near2 = near_r * near_r
        inv_pi = 1.0 / _PI
        # pass 1: far-field series at every ray, 0 inside the near radius (profiles.tnfw_deflection order)
        for i in range(n):
            dx = x[i] - cx
            dy = y[i] - cy
            r2 = dx * dx + dy * dy
            q = 1.0 / r2
            w = math.sqrt(q) * c3
            w -= c2
            w -= q * c4
            w *= q
            w += m_tot
            w *= q
            w *= inv_pi
            if r2 < near2:
                w = 0.0
            ax[i] += w * dx
            ay[i] += w * dy
        # pass 2: the exact profile inside the near radius (profiles._tnfw_g)
        const = tau * _PI + (t2 - 1.0) * math.log(tau)
        lt = (t2 - 1.0) / tau
        pre = t2 / (t2 + 1.0) ** 2
        rs2 = rs * rs
        i0, i1 = _row_range(y, y_sorted, cy - near_r, cy + near_r)
        for i in range(i0, i1):
            dx = x[i] - cx
            dy = y[i] - cy
            r2 = dx * dx + dy * dy
            if r2 < near2:
                x2 = max(r2 / rs2, _TNFW_R2_MIN_FRAC)
                root = math.sqrt(t2 + x2)
                L = math.log(math.sqrt(x2) / (tau + root))
                g = (t2 - 1.0 + 2.0 * x2) * _nfw_F(x2)
                g += const
                g += root * (L * lt - _PI)
                g *= pre
                w = k * g / (x2 * rs * rs)
                ax[i] += w * dx
                ay[i] += w * dy


@_JIT
def _cnfw_G(x: float, b: float) -> float:  # pragma: no cover - compiled
    """profiles.cnfw_G for one x > 0 and one b (already moved off 1)."""
    x2 = x * x
    b2 = b * b
    fac = (1.0 - b) ** 2
    xb2 = x2 / b2
    out = fac * math.log(0.25 * x2) - b2 * math.log(b2)
    out = out + 2.0 * (b2 - x2) * _nfw_F(xb2)
    out = out + 2.0 * (1.0 + b * (x2 - 2.0)) * _nfw_F(x2)
    return 0.5 * out / fac


@_JIT
def _cnfw_kernel(x: np.ndarray, y: np.ndarray, rs_a: np.ndarray, k_a: np.ndarray, gt_a: np.ndarray,
                 b_a: np.ndarray, rt_a: np.ndarray, cx_a: np.ndarray, cy_a: np.ndarray,
                 ax: np.ndarray, ay: np.ndarray) -> None:  # pragma: no cover - compiled
    n = x.size
    y_sorted = _is_sorted(y)
    for h in range(rs_a.size):
        rs = rs_a[h]
        k = k_a[h]
        b = b_a[h]
        rt = rt_a[h]
        cx = cx_a[h]
        cy = cy_a[h]
        truncated = math.isfinite(rt)
        if truncated:
            far = k * rs * gt_a[h]
            rt2 = rt * rt
            # pass 1: beyond R_t, the point of the halo's mass M2D(R_t) / (pi R^2)
            for i in range(n):
                dx = x[i] - cx
                dy = y[i] - cy
                r2 = max(dx * dx + dy * dy, _CNFW_R2_MIN)
                w = far / r2
                if r2 < rt2:
                    w = 0.0
                ax[i] += w * dx
                ay[i] += w * dy
            i0, i1 = _row_range(y, y_sorted, cy - rt, cy + rt)
        else:
            rt2 = math.inf
            i0, i1 = 0, n
        # pass 2: inside R_t the exact cored profile
        for i in range(i0, i1):
            dx = x[i] - cx
            dy = y[i] - cy
            r2 = max(dx * dx + dy * dy, _CNFW_R2_MIN)
            if r2 < rt2:
                rr = math.sqrt(r2)
                xs = max(rr / rs, _ref.CNFW_R_MIN)
                w = k * _cnfw_G(xs, b) / xs / rr
                ax[i] += w * dx
                ay[i] += w * dy


@_JIT
def _point_mass_kernel(x: np.ndarray, y: np.ndarray, te_a: np.ndarray, cx_a: np.ndarray, cy_a: np.ndarray,
                       ax: np.ndarray, ay: np.ndarray) -> None:  # pragma: no cover - compiled
    n = x.size
    for h in range(te_a.size):
        te2 = te_a[h] * te_a[h]
        cx = cx_a[h]
        cy = cy_a[h]
        for i in range(n):
            dx = x[i] - cx
            dy = y[i] - cy
            w = te2 / max(dx * dx + dy * dy, _PM_R2_MIN)
            ax[i] += w * dx
            ay[i] += w * dy


@_JIT
def _cnfw_G_inverse_kernel(b_a: np.ndarray, target_a: np.ndarray, lo0: float, hi0: float, steps: int,
                           out: np.ndarray) -> None:  # pragma: no cover - compiled
    for h in range(b_a.size):
        lo = lo0
        hi = hi0
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            if _cnfw_G(math.exp(mid), b_a[h]) > target_a[h]:
                hi = mid
            else:
                lo = mid
        out[h] = math.exp(0.5 * (lo + hi))


#: Bisection of :func:`cnfw_G_inverse`: ln x in [ln 1e-3, ln 1e5], 48 halvings of 18.4 (< 1e-13).
_G_INVERSE_LN_RANGE = (math.log(1e-3), math.log(1e5))
_G_INVERSE_STEPS = 48


def cnfw_G_inverse(b: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The x = R / Rs in [1e-3, 1e5] with cnfw_G(x, b) = target (G increases with x), by bisection on ln x.

    Args:
        b: r_core / Rs per halo, shape (m,).
        target: wanted G per halo, shape (m,).

    Returns:
        x per halo, shape (m,): the midpoint of the last bracket (48 halvings: relative width < 1e-13).
    """
    b_ = _halo(b)
    t_ = _halo(target)
    lo0, hi0 = _G_INVERSE_LN_RANGE
    if not jit_enabled():  # the numpy reference: the same bisection, vectorised over halos
        lo = np.full_like(b_, lo0)
        hi = np.full_like(b_, hi0)
        for _ in range(_G_INVERSE_STEPS):
            mid = 0.5 * (lo + hi)
            above = _ref.cnfw_G(np.exp(mid), b_) > t_
            hi = np.where(above, mid, hi)
            lo = np.where(above, lo, mid)
        return np.asarray(np.exp(0.5 * (lo + hi)))
    out = np.empty_like(b_)
    _cnfw_G_inverse_kernel(_halo(np.broadcast_to(_ref._cnfw_b(b_), b_.shape)), t_, lo0, hi0, _G_INVERSE_STEPS, out)
    return out


def _rays(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (np.ascontiguousarray(np.asarray(x, dtype=np.float64).ravel()),
            np.ascontiguousarray(np.asarray(y, dtype=np.float64).ravel()))


def _halo(v: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.atleast_1d(np.asarray(v, dtype=np.float64)))


def point_mass_deflection(x: np.ndarray, y: np.ndarray, theta_E: np.ndarray, center_x: np.ndarray,
                          center_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`equilens.simulation.profiles.point_mass_deflection`, compiled (same arguments and result)."""
    if not jit_enabled():
        return _ref.point_mass_deflection(x, y, theta_E, center_x, center_y)
    x, y = _rays(x, y)
    ax = np.zeros_like(x)
    ay = np.zeros_like(y)
    _point_mass_kernel(x, y, _halo(theta_E), _halo(center_x), _halo(center_y), ax, ay)
    return ax, ay


def tnfw_deflection(x: np.ndarray, y: np.ndarray, Rs: np.ndarray, alpha_Rs: np.ndarray, r_trunc: np.ndarray,
                    center_x: np.ndarray, center_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`equilens.simulation.profiles.tnfw_deflection` with ``far_field=True``, compiled.

    Args:
        x, y: ray positions in arcsec, shape (n,).
        Rs, alpha_Rs, r_trunc, center_x, center_y: per-halo lenstronomy ``TNFW`` parameters, arcsec, (m,).

    Returns:
        (alpha_x, alpha_y) in arcsec, each of shape (n,).
    """
    if not jit_enabled():
        return _ref.tnfw_deflection(x, y, Rs, alpha_Rs, r_trunc, center_x, center_y, far_field=True)
    x, y = _rays(x, y)
    ax = np.zeros_like(x)
    ay = np.zeros_like(y)
    rs, ars, rt = _halo(Rs), _halo(alpha_Rs), _halo(r_trunc)
    masses = _halo(_ref.tnfw_total_mass(rs, ars, rt))
    _tnfw_kernel(x, y, rs, ars, rt, _halo(center_x), _halo(center_y), masses, float(_ref.TNFW_FAR_FIELD_RADIUS),
                 ax, ay)
    return ax, ay


def cnfw_deflection(x: np.ndarray, y: np.ndarray, Rs: np.ndarray, alpha_Rs: np.ndarray, r_core: np.ndarray,
                    r_trunc: np.ndarray, center_x: np.ndarray, center_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`equilens.simulation.profiles.cnfw_deflection`, compiled (same arguments and result)."""
    if not jit_enabled():
        return _ref.cnfw_deflection(x, y, Rs, alpha_Rs, r_core, r_trunc, center_x, center_y)
    x, y = _rays(x, y)
    ax = np.zeros_like(x)
    ay = np.zeros_like(y)
    rs, rc, rt = _halo(Rs), _halo(r_core), _halo(r_trunc)
    if rs.size:
        # per-halo constants as the reference computes them: k = 4 rho0 Rs^2, G(R_t / Rs, b), b moved off 1
        ks = _halo(4.0 * _ref.cnfw_rho0(rs, alpha_Rs, rc) * rs**2)
        with np.errstate(invalid="ignore"):
            g_ts = _halo(np.broadcast_to(_ref.cnfw_G(np.maximum(np.where(np.isfinite(rt), rt, 1.0) / rs,
                                                                  _ref.CNFW_R_MIN), rc / rs), rs.shape))
        bs = _halo(np.broadcast_to(_ref._cnfw_b(rc / rs), rs.shape))
        _cnfw_kernel(x, y, rs, ks, g_ts, bs, rt, _halo(center_x), _halo(center_y), ax, ay)
    return ax, ay
