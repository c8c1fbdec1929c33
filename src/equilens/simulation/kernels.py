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
the exact cored profile). Point masses (``POINT_MASS`` subhalos): one branch-free loop per point.

The axion vortex (:func:`vortex_deflection`: n equal point masses evenly spaced on a segment through the
origin) is summed in the frame of its line, in complex notation: with w = (x + i y) e^(-i angle) and the
points at s_k (real, |s_k| <= L), alpha_x + i alpha_y = e^(i angle) theta_E^2 conj(sum_k 1 / (w - s_k)).
Rays with |w| < :data:`VORTEX_FAR_RADIUS` x L take that sum point by point (the same terms as the point-mass
kernel, clipped at the same minimum radius); rays beyond take its multipole (Laurent) series about the
centre, sum_k 1/(w - s_k) = (1/w) sum_j S_2j (L/w)^(2j) with S_m = sum_k (s_k/L)^m (the odd moments
vanish: the points are symmetric about the centre), truncated where the remainder is below
:data:`VORTEX_SERIES_RTOL` of the sum (:func:`vortex_series_terms`). Not an approximation of the physics:
the two agree to float rounding (tested against the point-by-point sum to 1e-12).

numba is a dependency of lenstronomy (which the renderer imports anyway). This module imports numba only
when it is first imported itself (the renderer imports it at the first substructure deflection), and
compiles with ``cache=True`` (numba's on-disk cache: a new process loads the machine code in ~0.1 s
instead of compiling for ~2 s). Set the environment variable ``EQUILENS_JIT=0`` to render with the numpy
reference instead (:func:`jit_enabled`).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from equilens.cpu import JIT_ENV, jit_enabled  # re-exported: the renderer's switch
from equilens.simulation import profiles as _ref

__all__ = [
    "JIT_ENV",
    "jit_enabled",
    "point_mass_deflection",
    "tnfw_deflection",
    "cnfw_deflection",
    "cnfw_G_inverse",
    "vortex_deflection",
    "vortex_series_terms",
    "VORTEX_FAR_RADIUS",
    "VORTEX_SERIES_RTOL",
]


_PI = math.pi
_LN_HALF_1 = 1.0 + math.log(0.5)
_TNFW_R2_MIN_FRAC = _ref.TNFW_R_MIN * _ref.TNFW_R_MIN
_CNFW_R2_MIN = _ref.CNFW_R_MIN * _ref.CNFW_R_MIN
_PM_R2_MIN = _ref.POINT_MASS_R_MIN**2

_JIT = numba.njit(cache=True, error_model="numpy", nogil=True)


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


#: Vortex rays at least this many half-lengths from the centre take the multipole series (module docstring).
VORTEX_FAR_RADIUS = 2.0
#: Bound on the relative error of the truncated vortex series (float rounding of the point-by-point sum: ~1e-15).
VORTEX_SERIES_RTOL = 1e-14


def vortex_series_terms(far_radius: float = VORTEX_FAR_RADIUS, rtol: float = VORTEX_SERIES_RTOL) -> int:
    """Number of even terms j = 0 .. J of the vortex series for relative error <= rtol at |w| >= far_radius L.

    With q = 1 / far_radius^2 (|s_k / w|^2 <= q), the remainder after J is at most (n / |w|) q^(J+1) / (1 - q)
    and the sum is at least (n / |w|) (1 - q / (1 - q)) (its first term minus all others), so the relative
    error is at most q^(J+1) / (1 - 2 q); needs far_radius > sqrt(2).
    """
    q = 1.0 / (far_radius * far_radius)
    if not 0.0 < q < 0.5:
        raise ValueError(f"far_radius must be > sqrt(2), got {far_radius}")
    return max(1, math.ceil(math.log(rtol * (1.0 - 2.0 * q)) / math.log(q)))  # J + 1 terms


@_JIT
def _vortex_near_kernel(a: np.ndarray, b2: np.ndarray, s: np.ndarray, sum_d: np.ndarray,
                        sum_i: np.ndarray) -> None:  # pragma: no cover - compiled
    """Point by point: sum_d += (a - s_k) / r^2, sum_i += 1 / r^2 (r^2 clipped as the point-mass kernel).

    Two points share one division (1/r_1^2 = r_2^2 / (r_1^2 r_2^2)): the loop is bound by the divider."""
    m = s.size
    k = 0
    while k + 1 < m:
        s1 = s[k]
        s2 = s[k + 1]
        for i in range(a.size):
            d1 = a[i] - s1
            d2 = a[i] - s2
            r1 = max(d1 * d1 + b2[i], _PM_R2_MIN)
            r2 = max(d2 * d2 + b2[i], _PM_R2_MIN)
            inv = 1.0 / (r1 * r2)
            i1 = r2 * inv
            i2 = r1 * inv
            sum_d[i] += d1 * i1 + d2 * i2
            sum_i[i] += i1 + i2
        k += 2
    if k < m:
        sk = s[k]
        for i in range(a.size):
            d = a[i] - sk
            inv = 1.0 / max(d * d + b2[i], _PM_R2_MIN)
            sum_d[i] += d * inv
            sum_i[i] += inv


#: Rays per tile of the vortex kernel (its work arrays stay in the L1 cache).
_VORTEX_TILE = 256


@_JIT
def _vortex_far_kernel(a: np.ndarray, b: np.ndarray, l2: float, coeffs: np.ndarray, acc_r: np.ndarray,
                       acc_i: np.ndarray, tr: np.ndarray, ti: np.ndarray) -> None:  # pragma: no cover - compiled
    """The series at rays w = a + i b: acc = (1/w) sum_j coeffs[j] t^j with t = l2 / w^2 (Horner, terms outer;
    tr, ti: work buffers of the size of a)."""
    n = a.size
    m = coeffs.size
    top = coeffs[m - 1]
    for i in range(n):
        inv = 1.0 / (a[i] * a[i] + b[i] * b[i])
        qr = a[i] * inv  # 1 / w = conj(w) / |w|^2
        qi = -b[i] * inv
        tr[i] = l2 * (qr * qr - qi * qi)
        ti[i] = l2 * (2.0 * qr * qi)
        acc_r[i] = top
        acc_i[i] = 0.0
    for j in range(m - 2, -1, -1):
        c = coeffs[j]
        for i in range(n):
            r = acc_r[i] * tr[i] - acc_i[i] * ti[i] + c
            acc_i[i] = acc_r[i] * ti[i] + acc_i[i] * tr[i]
            acc_r[i] = r
    for i in range(n):
        inv = 1.0 / (a[i] * a[i] + b[i] * b[i])
        qr = a[i] * inv
        qi = -b[i] * inv
        r = qr * acc_r[i] - qi * acc_i[i]
        acc_i[i] = qr * acc_i[i] + qi * acc_r[i]
        acc_r[i] = r


@_JIT
def _vortex_moments(u: np.ndarray, m: int) -> np.ndarray:  # pragma: no cover - compiled
    """sum_k u_k^p for p = 0 .. m - 1."""
    out = np.zeros(m)
    for k in range(u.size):
        v = 1.0
        for p in range(m):
            out[p] += v
            v *= u[k]
    return out


@_JIT
def _vortex_kernel(x: np.ndarray, y: np.ndarray, te2: float, s: np.ndarray, half_length: float, cos_a: float,
                   sin_a: float, far_radius: float, coeffs: np.ndarray, ax: np.ndarray,
                   ay: np.ndarray) -> None:  # pragma: no cover - compiled
    """Tiles of consecutive rays: a tile wholly beyond far_radius x L takes the series, any other tile the
    point-by-point sum (exact everywhere)."""
    n = x.size
    far2 = (far_radius * half_length) ** 2
    l2 = half_length * half_length
    a = np.empty(_VORTEX_TILE)
    b = np.empty(_VORTEX_TILE)
    b2 = np.empty(_VORTEX_TILE)
    p = np.empty(_VORTEX_TILE)
    q = np.empty(_VORTEX_TILE)
    w1 = np.empty(_VORTEX_TILE)
    w2 = np.empty(_VORTEX_TILE)
    for t0 in range(0, n, _VORTEX_TILE):
        m = min(_VORTEX_TILE, n - t0)
        n_near = 0
        for j in range(m):
            xi = x[t0 + j]
            yi = y[t0 + j]
            aj = xi * cos_a + yi * sin_a
            bj = yi * cos_a - xi * sin_a
            a[j] = aj
            b[j] = bj
            b2[j] = bj * bj
            n_near += aj * aj + bj * bj < far2
        if n_near == 0:  # the series: alpha in the line's frame = te2 conj(sum)
            _vortex_far_kernel(a[:m], b[:m], l2, coeffs, p[:m], q[:m], w1[:m], w2[:m])
            for j in range(m):
                pa = te2 * p[j]
                pb = -te2 * q[j]
                ax[t0 + j] += pa * cos_a - pb * sin_a
                ay[t0 + j] += pa * sin_a + pb * cos_a
        else:  # point by point: alpha in the line's frame = te2 (sum_d, b sum_i)
            p[:m] = 0.0
            q[:m] = 0.0
            _vortex_near_kernel(a[:m], b2[:m], s, p[:m], q[:m])
            for j in range(m):
                pa = te2 * p[j]
                pb = te2 * b[j] * q[j]
                ax[t0 + j] += pa * cos_a - pb * sin_a
                ay[t0 + j] += pa * sin_a + pb * cos_a


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


def vortex_deflection(x: np.ndarray, y: np.ndarray, theta_E: float, half_length: float, n_points: int,
                      angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Deflection of the axion vortex: ``n_points`` point masses of Einstein radius ``theta_E`` (arcsec) evenly
    spaced on [-half_length, half_length] (arcsec) along a line through the origin at ``angle`` (rad).

    Equal to :func:`equilens.simulation.profiles.point_mass_deflection` of those points to float rounding (the
    module docstring: point by point near the line, its multipole series beyond :data:`VORTEX_FAR_RADIUS`
    half-lengths); with ``EQUILENS_JIT=0``, that function itself.

    Args:
        x, y: ray positions in arcsec, shape (n,).

    Returns:
        (alpha_x, alpha_y) in arcsec, each of shape (n,).
    """
    s, cx, cy = _ref.vortex_points(half_length, n_points, angle)
    if not jit_enabled():
        return _ref.point_mass_deflection(x, y, np.full(n_points, float(theta_E)), cx, cy)
    x, y = _rays(x, y)
    ax = np.zeros_like(x)
    ay = np.zeros_like(y)
    if n_points == 0:
        return ax, ay
    te = float(theta_E)
    if half_length <= 0 or not math.isfinite(half_length):  # all points at the centre (or an invalid line)
        _point_mass_kernel(x, y, np.full(n_points, te), _halo(cx), _halo(cy), ax, ay)
        return ax, ay
    u = s / half_length
    moments = _vortex_moments(_halo(u), 2 * vortex_series_terms(VORTEX_FAR_RADIUS))  # sum_k u_k^m, m <= 2 J + 1
    # the series keeps the even moments only; were the points not symmetric about the centre to float
    # rounding (np.linspace makes them so), every ray would take the point-by-point sum instead
    symmetric = bool(np.all(np.abs(moments[1::2]) <= 1e-13 * n_points))
    far_radius = VORTEX_FAR_RADIUS if symmetric else math.inf
    _vortex_kernel(x, y, te * te, _halo(s), float(half_length), math.cos(angle), math.sin(angle), far_radius,
                   _halo(moments[0::2]), ax, ay)
    return ax, ay
