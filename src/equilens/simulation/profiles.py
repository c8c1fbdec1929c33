"""Lensing profiles of substructure, vectorised with numpy over halos and rays (no lenstronomy here).

Every function takes ray positions ``x, y`` (arcsec, shape (n,)) and per-halo parameter arrays (shape
(m,)) and returns the *summed* quantity over the halos, shape (n,). Halos are looped over with the rays
vectorised (as :func:`point_mass_deflection` does), with preallocated work buffers, which is the fastest
numpy layout for m << n here (an (m, n) array of 200 halos x 37k rays would not fit in cache).

Profiles and sources (each is tested against the lenstronomy 1.14.2 profile of the same name to 1e-6
relative in ``tests/simulation/test_profiles.py``):

- ``POINT_MASS``: alpha = theta_E^2 (x - x_i) / max(|x - x_i|^2, r_min^2), r_min = 1e-25 arcsec as
  lenstronomy's ``PointMass``.
- ``TNFW``: the truncated NFW halo of Baltz, Marshall & Oguri 2009 (JCAP 01, 015; their eq. A.24-A.27 for
  the truncation exponent n = 1), rho(r) = rho0 / [(r/rs)(1 + r/rs)^2] * r_t^2 / (r^2 + r_t^2), in
  lenstronomy's parametrisation (Rs: scale radius, alpha_Rs: deflection of the *untruncated* NFW at Rs,
  r_trunc: truncation radius, all arcsec): rho0 = alpha_Rs / (4 Rs^2 (1 + ln 1/2)) in convergence units.
  With x = R/Rs and tau = r_trunc/Rs the projected mass inside R is M2D = 4 pi rho0 Rs^3 g(x), with

      g(x) = tau^2/(tau^2+1)^2 [(tau^2 + 1 + 2(x^2 - 1)) F(x) + tau pi + (tau^2 - 1) ln tau
             + sqrt(tau^2 + x^2) (-pi + L(x) (tau^2 - 1)/tau)],
      F(x) = arccosh(1/x)/sqrt(1 - x^2) (x < 1), arccos(1/x)/sqrt(x^2 - 1) (x > 1), 1 (x = 1),
      L(x) = ln(x / (tau + sqrt(tau^2 + x^2))),

  the deflection is M2D / (pi R^2) (x - x_i) and the convergence 2 rho0 Rs F_t(x) with
  F_t = tau^2/(tau^2+1)^2 [(tau^2+1)(1 - F)/(x^2 - 1) + 2F - pi/sqrt(tau^2+x^2)
  + (tau^2 - 1) L / (tau sqrt(tau^2 + x^2))]. Radii below 1e-4 Rs are clipped to 1e-4 Rs (lenstronomy's
  ``TNFW._s``). Total mass: 4 pi rho0 Rs^3 tau^2/(tau^2+1)^2 [(tau^2 - 1) ln tau + tau pi - (tau^2 + 1)].
- ``CNFW`` (self-interacting dark matter, issue #10): lenstronomy's cored NFW,
  rho(r) = rho0 Rs^3 / ((r + r_core) (r + Rs)^2), with b = r_core / Rs, x = R / Rs and F the NFW function
  above, projected mass M2D(R) = 4 pi rho0 Rs^3 G(x, b) with

      G(x, b) = [(1 - b)^2 ln(x^2 / 4) - b^2 ln b^2 + 2 (b^2 - x^2) F(x / b) + 2 (1 + b (x^2 - 2)) F(x)]
                / (2 (1 - b)^2),

  deflection 4 rho0 Rs^2 G(x, b) / x (radial), convergence 2 rho0 Rs F_c(x, b) with
  F_c = [(1 - b - (1 - b x^2) F(x)) / (x^2 - 1) - F(x / b)] / (b - 1)^2, alpha_Rs the deflection at Rs
  (rho0 = alpha_Rs / (4 Rs^2 G(1, b))), radii clipped as lenstronomy (R >= 1e-3 arcsec, x >= 1e-3,
  b = 1 moved to 1 + 1e-6). The untruncated profile's mass diverges, so subhalos are truncated *in
  projection* at R_t (``r_trunc``): the projected mass is M2D(min(R, R_t)), i.e. the convergence is the
  CNFW one inside R_t and zero outside, and beyond R_t the halo deflects exactly as a point of its total
  mass. (A simplification: the 3D-truncated cored profile has no closed form; the population chooses R_t so
  that the total mass equals that of the halo's truncated NFW counterpart.)
- ``ULDM`` (soliton of ultra-light dark matter; the ``uldm`` class adds it to a TNFW envelope): lenstronomy's
  ``Uldm``, rho ~ (1 + a (r / theta_c)^2)^-beta with a = 0.5^(-1/beta) - 1 (so the density halves at theta_c;
  Schive et al. 2014, Nature Physics 10, 496, beta = 8), convergence kappa_0 (1 + a R^2 / theta_c^2)^(1/2 - beta),
  radial deflection 2 kappa_0 theta_c^2 / ((2 beta - 3) a R) (1 - (1 + a R^2 / theta_c^2)^(3/2 - beta)), total
  mass 2 pi kappa_0 theta_c^2 / ((2 beta - 3) a); radii below 1e-8 arcsec clipped as lenstronomy.
- ``UNIFORM_DISK``: a disk of constant convergence kappa0 and radius R: alpha = kappa0 (x - x0) inside,
  kappa0 R^2 (x - x0) / r^2 outside. ``ANNULAR_SHEET``: concentric annuli [r_k, r_k+1] of constant
  convergence kappa_k around the origin (the negative mass sheet that removes the mean convergence the
  subhalos add): the enclosed mass M(r) is linear in r^2 within each annulus, alpha = M(r) / (pi r^2) (x, y),
  evaluated by one linear interpolation in r^2 (equal to the sum of disks, tested).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "POINT_MASS_R_MIN",
    "TNFW_R_MIN",
    "point_mass_deflection",
    "vortex_points",
    "tnfw_deflection",
    "tnfw_convergence",
    "tnfw_convergence_profile",
    "tnfw_total_mass",
    "uniform_disk_deflection",
    "annular_sheet_deflection",
    "CNFW_R_MIN",
    "cnfw_G",
    "cnfw_rho0",
    "cnfw_deflection",
    "cnfw_convergence_profile",
    "cnfw_projected_mass",
    "uldm_deflection",
    "uldm_total_mass",
    "uldm_convergence_profile",
    "ULDM_FAR_FIELD_RADIUS",
]

#: lenstronomy 1.14.2 LensModel/Profiles/point_mass.py: PointMass.r_min (arcsec)
POINT_MASS_R_MIN = 1e-25
#: lenstronomy 1.14.2 LensModel/Profiles/tnfw.py: TNFW._s (radii below TNFW_R_MIN * Rs are clipped)
TNFW_R_MIN = 1e-4

_LN_HALF_1 = 1.0 + math.log(0.5)  # NFW: alpha_Rs = 4 rho0 Rs^2 (1 + ln 1/2)


def _as_rays(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()


def point_mass_deflection(
    x: np.ndarray, y: np.ndarray, theta_E: np.ndarray, center_x: np.ndarray, center_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Summed deflection of point masses (lenstronomy ``POINT_MASS``), all in arcsec.

    Args:
        x, y: ray positions, shape (n,).
        theta_E, center_x, center_y: Einstein radii and centres of the point masses, shape (m,).

    Returns:
        (alpha_x, alpha_y), each of shape (n,).
    """
    x, y = _as_rays(x, y)
    ax = np.zeros_like(x)
    ay = np.zeros_like(y)
    dx, dy, w, tmp = (np.empty_like(x) for _ in range(4))  # work buffers: no allocation per point mass
    r2_min = POINT_MASS_R_MIN**2
    for te, cx, cy in zip(np.asarray(theta_E).tolist(), np.asarray(center_x).tolist(),
                          np.asarray(center_y).tolist(), strict=True):
        np.subtract(x, cx, out=dx)
        np.subtract(y, cy, out=dy)
        np.multiply(dx, dx, out=w)
        np.multiply(dy, dy, out=tmp)
        w += tmp
        np.maximum(w, r2_min, out=w)  # |x - x_i|^2, clipped as lenstronomy does
        np.divide(te * te, w, out=w)  # theta_E^2 / |x - x_i|^2
        np.multiply(w, dx, out=tmp)
        ax += tmp
        np.multiply(w, dy, out=tmp)
        ay += tmp
    return ax, ay


def _nfw_F(x2: np.ndarray) -> np.ndarray:
    """F(x) of the NFW projection (module docstring) from x^2 > 0."""
    # s = sqrt(|x^2 - 1|); x > 1: arctan(s)/s (= arccos(1/x)/sqrt(x^2-1)); x < 1: arctanh(s)/s (= arccosh(1/x)/...)
    s = np.sqrt(np.abs(x2 - 1.0))
    out = np.arctan(s)
    inner = x2 < 1.0
    if inner.any():
        out[inner] = np.arctanh(s[inner])
    exact = s == 0.0
    np.divide(out, s, out=out, where=~exact)
    out[exact] = 1.0
    return out


def _tnfw_g(x2: np.ndarray, tau: float) -> np.ndarray:
    """g(x) of the module docstring from x^2 (already clipped at TNFW_R_MIN^2)."""
    t2 = tau * tau
    root = np.sqrt(t2 + x2)
    L = np.log(np.sqrt(x2) / (tau + root))
    g = (t2 - 1.0 + 2.0 * x2) * _nfw_F(x2)
    g += tau * math.pi + (t2 - 1.0) * math.log(tau)
    g += root * (L * ((t2 - 1.0) / tau) - math.pi)
    g *= t2 / (t2 + 1.0) ** 2
    return g


#: Beyond this many times max(r_trunc, Rs) from a halo, :func:`tnfw_deflection` with ``far_field=True`` uses
#: the far-field series of the projected mass. For r >> Rs, r_t the TNFW density is
#: A r^-5 (1 - 2 Rs/r + (3 Rs^2 - r_t^2)/r^2 + ...), A = rho0 Rs^3 r_t^2, and projecting term by term,
#: M2D(R) = M_tot - A [(4 pi / 3) / R^2 - (pi^2 / 2) Rs / R^3 + (8 pi / 15) (3 Rs^2 - r_t^2) / R^4 + O(R^-5)].
#: At 4 radii the relative error of the halo's deflection is below 1e-3 (tested against the exact profile;
#: the point-mass term alone errs by 3% there).
TNFW_FAR_FIELD_RADIUS = 4.0


def tnfw_deflection(
    x: np.ndarray,
    y: np.ndarray,
    Rs: np.ndarray,
    alpha_Rs: np.ndarray,
    r_trunc: np.ndarray,
    center_x: np.ndarray,
    center_y: np.ndarray,
    *,
    far_field: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Summed deflection of truncated NFW halos (lenstronomy ``TNFW``; formulas in the module docstring).

    Args:
        x, y: ray positions in arcsec, shape (n,).
        Rs, alpha_Rs, r_trunc, center_x, center_y: per-halo scale radius, deflection at Rs of the
            untruncated NFW, truncation radius and centre, all arcsec, shape (m,).
        far_field: False: the exact profile at every ray. True: the exact profile within
            :data:`TNFW_FAR_FIELD_RADIUS` x max(r_trunc, Rs) of each halo and the far-field series beyond
            (what the renderer uses: several times faster for halos much smaller than the image).

    Returns:
        (alpha_x, alpha_y) in arcsec, each of shape (n,).
    """
    x, y = _as_rays(x, y)
    ax = np.zeros_like(x)
    ay = np.zeros_like(y)
    dx, dy, r2, w, q, t = (np.empty_like(x) for _ in range(6))
    r2_min_frac = TNFW_R_MIN * TNFW_R_MIN
    masses = tnfw_total_mass(Rs, alpha_Rs, r_trunc)
    for rs, a_rs, rt, cx, cy, m_tot in zip(*(np.asarray(v, dtype=float).tolist()
                                             for v in (Rs, alpha_Rs, r_trunc, center_x, center_y)),
                                           masses.tolist(), strict=True):
        tau = rt / rs
        # alpha = 4 rho0 Rs g(x) / x^2 * (dx, dy), rho0 = alpha_Rs / (4 Rs^2 (1 + ln 1/2)), x = R / Rs
        k = a_rs * rs / _LN_HALF_1
        np.subtract(x, cx, out=dx)
        np.subtract(y, cy, out=dy)
        np.multiply(dx, dx, out=r2)
        np.multiply(dy, dy, out=w)
        r2 += w
        if far_field:
            # alpha / (dx, dy) = M2D(R) / (pi R^2) with the far-field series (TNFW_FAR_FIELD_RADIUS docstring):
            # M2D = M_tot + q (-c2 + c3 sqrt(q) - c4 q), q = 1 / R^2
            a5 = a_rs / (4.0 * rs * rs * _LN_HALF_1) * rs**3 * rt * rt
            c2 = 4.0 * math.pi / 3.0 * a5
            c3 = math.pi**2 / 2.0 * rs * a5
            c4 = 8.0 * math.pi / 15.0 * (3.0 * rs * rs - rt * rt) * a5
            with np.errstate(divide="ignore"):  # R = 0 is a near ray: overwritten below
                np.divide(1.0, r2, out=q)  # q = 1 / R^2
            np.sqrt(q, out=w)
            w *= c3
            w -= c2
            np.multiply(q, c4, out=t)
            w -= t  # -c2 + c3 / R - c4 / R^2
            w *= q
            w += m_tot  # M2D(R)
            w *= q
            w *= 1.0 / math.pi  # M2D / (pi R^2)
            near = np.flatnonzero(r2 < (TNFW_FAR_FIELD_RADIUS * max(rt, rs)) ** 2)
            if near.size:
                x2 = np.maximum(r2[near] / (rs * rs), r2_min_frac)
                w[near] = k * _tnfw_g(x2, tau) / (x2 * rs * rs)
        else:
            x2 = np.maximum(r2 / (rs * rs), r2_min_frac)
            np.divide(k * _tnfw_g(x2, tau), x2 * rs * rs, out=w)
        np.multiply(w, dx, out=r2)
        ax += r2
        np.multiply(w, dy, out=r2)
        ay += r2
    return ax, ay


def tnfw_convergence(
    x: np.ndarray,
    y: np.ndarray,
    Rs: np.ndarray,
    alpha_Rs: np.ndarray,
    r_trunc: np.ndarray,
    center_x: np.ndarray,
    center_y: np.ndarray,
) -> np.ndarray:
    """Summed convergence of truncated NFW halos (arguments as :func:`tnfw_deflection`), shape (n,)."""
    x, y = _as_rays(x, y)
    kappa = np.zeros_like(x)
    for rs, a_rs, rt, cx, cy in zip(*(np.asarray(v, dtype=float).tolist()
                                      for v in (Rs, alpha_Rs, r_trunc, center_x, center_y)), strict=True):
        x2 = ((x - cx) ** 2 + (y - cy) ** 2) / (rs * rs)
        kappa += tnfw_convergence_profile(x2, rs, a_rs, rt / rs)
    return kappa


def tnfw_convergence_profile(x2: np.ndarray, Rs: np.ndarray | float, alpha_Rs: np.ndarray | float,
                             tau: np.ndarray | float) -> np.ndarray:
    """Convergence of TNFW halos at x^2 = (R / Rs)^2; the halo parameters broadcast against ``x2``.

    Near x = 1, (1 - F)/(x^2 - 1) is evaluated by its series 1/3 - e/5 + e^2/7 (e = x^2 - 1, |e| < 1e-3),
    which the direct formula loses to cancellation.
    """
    t2 = np.asarray(tau, dtype=float) ** 2
    rho0 = np.asarray(alpha_Rs, dtype=float) / (4.0 * np.asarray(Rs, dtype=float) ** 2 * _LN_HALF_1)
    x2 = np.maximum(np.asarray(x2, dtype=float), TNFW_R_MIN * TNFW_R_MIN)
    f = _nfw_F(x2)
    e = x2 - 1.0
    small = np.abs(e) < 1e-3
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.where(small, 1.0 / 3.0 - e / 5.0 + e * e / 7.0, (1.0 - f) / e)
    root = np.sqrt(t2 + x2)
    L = np.log(np.sqrt(x2) / (tau + root))
    ft = t2 / (t2 + 1.0) ** 2 * ((t2 + 1.0) * b + 2.0 * f - math.pi / root + (t2 - 1.0) * L / (tau * root))
    return 2.0 * rho0 * Rs * ft


def tnfw_total_mass(Rs: np.ndarray, alpha_Rs: np.ndarray, r_trunc: np.ndarray) -> np.ndarray:
    """Total projected mass of each TNFW halo in convergence units (kappa * arcsec^2), shape (m,).

    Multiply by Sigma_crit in Msun / arcsec^2 for solar masses. Formula in the module docstring.
    """
    Rs, alpha_Rs, r_trunc = (np.asarray(v, dtype=float) for v in (Rs, alpha_Rs, r_trunc))
    tau = r_trunc / Rs
    t2 = tau * tau
    rho0 = alpha_Rs / (4.0 * Rs * Rs * _LN_HALF_1)
    return 4.0 * math.pi * rho0 * Rs**3 * t2 / (t2 + 1.0) ** 2 * ((t2 - 1.0) * np.log(tau) + tau * math.pi - (t2 + 1.0))


def uniform_disk_deflection(
    x: np.ndarray, y: np.ndarray, kappa: float, radius: float, center_x: float = 0.0, center_y: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Deflection of a disk of constant convergence ``kappa`` (negative for a mass sheet) and ``radius``.

    Args:
        x, y: ray positions in arcsec, shape (n,).
        kappa: convergence inside the disk.
        radius: disk radius in arcsec (> 0).
        center_x, center_y: disk centre in arcsec.

    Returns:
        (alpha_x, alpha_y) in arcsec, shape (n,): kappa (x - x0) inside, kappa R^2 (x - x0) / r^2 outside.
    """
    x, y = _as_rays(x, y)
    dx, dy = x - center_x, y - center_y
    r2 = dx * dx + dy * dy
    factor = np.where(r2 <= radius * radius, kappa, kappa * radius * radius / np.maximum(r2, 1e-300))
    return factor * dx, factor * dy


def annular_sheet_deflection(
    x: np.ndarray, y: np.ndarray, radii: np.ndarray, kappa: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Deflection of concentric annuli of constant convergence around the origin.

    Args:
        x, y: ray positions in arcsec, shape (n,).
        radii: annulus edges in arcsec, increasing, shape (k + 1,) (radii[0] may be 0).
        kappa: convergence of each annulus, shape (k,).

    Returns:
        (alpha_x, alpha_y) in arcsec, shape (n,).
    """
    x, y = _as_rays(x, y)
    r2_edges = np.asarray(radii, dtype=float) ** 2
    mass = np.concatenate([[0.0], np.cumsum(np.asarray(kappa, dtype=float) * math.pi * np.diff(r2_edges))])
    r2 = x * x + y * y
    enclosed = np.interp(r2, r2_edges, mass)  # linear in r^2 inside each annulus, constant beyond the last
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(r2 > 0, enclosed / (math.pi * r2), kappa[0] if r2_edges[0] == 0 else 0.0)
    return factor * x, factor * y


#: lenstronomy 1.14.2 LensModel/Profiles/cnfw.py: CNFW._s (radii below 1e-3 arcsec, and x below 1e-3, clipped)
CNFW_R_MIN = 1e-3


def _cnfw_b(b: np.ndarray | float) -> np.ndarray:
    b = np.asarray(b, dtype=float)
    return np.where(np.abs(b - 1.0) < 1e-6, 1.0 + 1e-6, b)  # lenstronomy moves b = 1 to 1 + 1e-6


def cnfw_G(x: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """G(x, b) of the cored NFW (module docstring); ``x`` = R / Rs > 0, ``b`` = r_core / Rs > 0, broadcast."""
    x = np.asarray(x, dtype=float)
    b = _cnfw_b(b)
    x2 = x * x
    b2 = b * b
    fac = (1.0 - b) ** 2
    xb2 = x2 / b2
    out = fac * np.log(0.25 * x2) - b2 * np.log(b2)
    out = out + 2.0 * (b2 - x2) * _nfw_F(np.atleast_1d(xb2 * np.ones_like(out)))
    out = out + 2.0 * (1.0 + b * (x2 - 2.0)) * _nfw_F(np.atleast_1d(x2 * np.ones_like(out)))
    return 0.5 * out / fac


def cnfw_rho0(Rs: np.ndarray | float, alpha_Rs: np.ndarray | float, r_core: np.ndarray | float) -> np.ndarray:
    """rho0 in convergence units per arcsec (lenstronomy CNFW ``_alpha2rho0``): alpha_Rs / (4 Rs^2 G(1, b))."""
    Rs = np.asarray(Rs, dtype=float)
    b = np.asarray(r_core, dtype=float) / Rs
    return np.asarray(alpha_Rs, dtype=float) / (4.0 * Rs**2 * cnfw_G(np.ones_like(b), b))


def cnfw_projected_mass(R: np.ndarray, Rs: np.ndarray, alpha_Rs: np.ndarray, r_core: np.ndarray) -> np.ndarray:
    """Projected mass (convergence x arcsec^2) of the untruncated CNFW inside radius R (arcsec); broadcast."""
    Rs = np.asarray(Rs, dtype=float)
    x = np.maximum(np.asarray(R, dtype=float) / Rs, CNFW_R_MIN)
    return 4.0 * math.pi * cnfw_rho0(Rs, alpha_Rs, r_core) * Rs**3 * cnfw_G(x, np.asarray(r_core) / Rs)


def cnfw_deflection(
    x: np.ndarray,
    y: np.ndarray,
    Rs: np.ndarray,
    alpha_Rs: np.ndarray,
    r_core: np.ndarray,
    r_trunc: np.ndarray,
    center_x: np.ndarray,
    center_y: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Summed deflection of cored NFW halos truncated in projection at ``r_trunc`` (module docstring).

    Args:
        x, y: ray positions in arcsec, shape (n,).
        Rs, alpha_Rs, r_core, r_trunc, center_x, center_y: per-halo lenstronomy ``CNFW`` parameters, the
            projected truncation radius (``inf``: lenstronomy's untruncated CNFW) and centre, arcsec, (m,).

    Returns:
        (alpha_x, alpha_y) in arcsec, each of shape (n,).
    """
    x, y = _as_rays(x, y)
    ax = np.zeros_like(x)
    ay = np.zeros_like(y)
    dx, dy, r2, w = (np.empty_like(x) for _ in range(4))
    Rs_, r_core_, r_trunc_ = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (Rs, r_core, r_trunc))
    # per-halo constants, vectorised: k = 4 rho0 Rs^2 (alpha_r = k G(x, b) / x) and G(R_t / Rs, b)
    ks = (4.0 * cnfw_rho0(Rs_, alpha_Rs, r_core_) * Rs_**2) if Rs_.size else Rs_
    with np.errstate(invalid="ignore"):
        g_ts = cnfw_G(np.maximum(np.where(np.isfinite(r_trunc_), r_trunc_, 1.0) / Rs_, CNFW_R_MIN), r_core_ / Rs_)
    for rs, k, g_t, rc, rt, cx, cy in zip(
            *(np.asarray(v, dtype=float).tolist() for v in (Rs_, ks, np.broadcast_to(g_ts, Rs_.shape), r_core_,
                                                           r_trunc_, center_x, center_y)), strict=True):
        b = rc / rs
        np.subtract(x, cx, out=dx)
        np.subtract(y, cy, out=dy)
        np.multiply(dx, dx, out=r2)
        np.multiply(dy, dy, out=w)
        r2 += w
        np.maximum(r2, CNFW_R_MIN * CNFW_R_MIN, out=r2)
        if math.isfinite(rt):
            # beyond R_t: M2D(R_t) / (pi R^2) = k Rs G(R_t / Rs, b) / R^2 (M2D = 4 pi rho0 Rs^3 G = pi k Rs G)
            np.divide(k * rs * g_t, r2, out=w)
            near = np.flatnonzero(r2 < rt * rt)
        else:
            near = np.arange(x.size)
        if near.size:
            rr = np.sqrt(r2[near])
            xs = np.maximum(rr / rs, CNFW_R_MIN)
            w[near] = k * cnfw_G(xs, b) / xs / rr
        np.multiply(w, dx, out=r2)
        ax += r2
        np.multiply(w, dy, out=r2)
        ay += r2
    return ax, ay


def cnfw_convergence_profile(x2: np.ndarray, Rs: np.ndarray | float, alpha_Rs: np.ndarray | float,
                             r_core: np.ndarray | float, r_trunc: np.ndarray | float = math.inf) -> np.ndarray:
    """Convergence of cored NFW halos at x^2 = (R / Rs)^2 (zero beyond ``r_trunc`` arcsec); broadcast."""
    Rs = np.asarray(Rs, dtype=float)
    b = _cnfw_b(np.asarray(r_core, dtype=float) / Rs)
    x2 = np.asarray(x2, dtype=float)
    shape = np.broadcast_shapes(x2.shape, Rs.shape, b.shape)
    x2 = np.broadcast_to(x2, shape).copy()
    x2 = np.where(x2 == 1.0, (1.0 - 1e-3) ** 2, x2)  # lenstronomy moves x = 1 to 1 - 1e-3
    f = _nfw_F(x2.ravel()).reshape(shape)
    fb = _nfw_F((x2 / (b * b) * np.ones(shape)).ravel()).reshape(shape)
    e = x2 - 1.0
    fc = ((1.0 - b - (1.0 - b * x2) * f) / e - fb) / (b - 1.0) ** 2
    kappa = 2.0 * cnfw_rho0(Rs, alpha_Rs, np.asarray(r_core, dtype=float)) * Rs * fc
    return np.where(x2 * Rs**2 < np.asarray(r_trunc, dtype=float) ** 2, kappa, 0.0)


#: Beyond this many core radii, :func:`uldm_deflection` with ``far_field=True`` deflects a soliton as a point of
#: its total mass: the projected mass outside R is the fraction (1 + a R^2 / theta_c^2)^(3/2 - slope) of the total,
#: 3e-7 at 10 core radii for slope 8 (tested against the exact profile).
ULDM_FAR_FIELD_RADIUS = 10.0


def uldm_deflection(x: np.ndarray, y: np.ndarray, kappa_0: np.ndarray, theta_c: np.ndarray,
                    center_x: np.ndarray, center_y: np.ndarray, slope: float = 8.0, *,
                    far_field: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Summed deflection of ULDM solitons (lenstronomy ``ULDM``; module docstring), all angles in arcsec.

    Args:
        x, y: ray positions, shape (n,).
        kappa_0, theta_c, center_x, center_y: central convergence, core radius and centre per soliton, (m,).
        slope: beta of the profile (8: a soliton without an external potential).
        far_field: False: the exact profile at every ray. True: exact within :data:`ULDM_FAR_FIELD_RADIUS` core
            radii of each soliton, a point of its total mass beyond (what the renderer uses).

    Returns:
        (alpha_x, alpha_y), each of shape (n,).
    """
    x, y = _as_rays(x, y)
    ax = np.zeros_like(x)
    ay = np.zeros_like(y)
    dx, dy, r2, w = (np.empty_like(x) for _ in range(4))
    a = 0.5 ** (-1.0 / slope) - 1.0
    for k0, tc, cx, cy in zip(*(np.asarray(v, dtype=float).tolist() for v in (kappa_0, theta_c, center_x, center_y)),
                              strict=True):
        pref = 2.0 * k0 * tc * tc / ((2.0 * slope - 3.0) * a)  # total mass / pi
        np.subtract(x, cx, out=dx)
        np.subtract(y, cy, out=dy)
        np.multiply(dx, dx, out=r2)
        np.multiply(dy, dy, out=w)
        r2 += w
        np.maximum(r2, 1e-16, out=r2)  # R >= 1e-8 arcsec (lenstronomy Uldm.derivatives)
        if far_field:
            np.divide(pref, r2, out=w)  # a point of the total mass
            near = np.flatnonzero(r2 < (ULDM_FAR_FIELD_RADIUS * tc) ** 2)
            if near.size:
                rn = r2[near]
                w[near] = pref * (1.0 - (1.0 + rn * (a / (tc * tc))) ** (1.5 - slope)) / rn
        else:
            np.multiply(r2, a / (tc * tc), out=w)
            w += 1.0
            np.power(w, 1.5 - slope, out=w)
            np.subtract(1.0, w, out=w)
            w *= pref
            w /= r2  # alpha_r / R
        np.multiply(w, dx, out=r2)
        ax += r2
        np.multiply(w, dy, out=r2)
        ay += r2
    return ax, ay


def uldm_total_mass(kappa_0: np.ndarray, theta_c: np.ndarray, slope: float = 8.0) -> np.ndarray:
    """Total projected mass (convergence x arcsec^2) of ULDM solitons, shape of the inputs."""
    a = 0.5 ** (-1.0 / slope) - 1.0
    return 2.0 * math.pi * np.asarray(kappa_0, dtype=float) * np.asarray(theta_c, dtype=float) ** 2 / (
        (2.0 * slope - 3.0) * a)


def uldm_convergence_profile(R: np.ndarray, kappa_0: np.ndarray | float, theta_c: np.ndarray | float,
                             slope: float = 8.0) -> np.ndarray:
    """Convergence kappa_0 (1 + a R^2 / theta_c^2)^(1/2 - slope) of ULDM solitons at radii ``R`` (arcsec); broadcast."""
    a = 0.5 ** (-1.0 / slope) - 1.0
    R = np.asarray(R, dtype=float)
    return np.asarray(kappa_0, dtype=float) * (1.0 + a * R * R / np.asarray(theta_c, dtype=float) ** 2) ** (0.5 - slope)


def vortex_points(half_length: float, n_points: int, angle: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The axion vortex's point masses: ``n_points`` evenly spaced on [-half_length, half_length] (arcsec)
    along a line through the origin at ``angle`` (rad).

    Returns:
        (s, x, y): positions along the line and centres, arcsec, each of shape (n_points,).
    """
    s = np.linspace(-half_length, half_length, n_points)
    return s, s * math.cos(angle), s * math.sin(angle)
