"""Subhalo physics as small objects: mass function, concentration relation, tidal truncation, units.

Pure numpy + astropy (no lenstronomy). A subhalo population (:mod:`equilens.simulation.populations`) is
a :class:`MassFunction` (with an optional suppression of small masses), a :class:`ConcentrationRelation`
(with an optional modifier), a :class:`TruncationRule` and a profile name: warm dark matter, cored or
solitonic halos are new values of these parameters, not new populations.

Sources of the numbers (also in the README):

- Mass function (pyHalo's CDM subhalo normalisation, Gilman et al. 2020, MNRAS 491, 6077, and the pyHalo
  ``CDM`` preset): dN / dm dA = (Sigma_sub / m_pivot) (m / m_pivot)^slope, slope -1.9, m_pivot = 1e8 Msun,
  Sigma_sub = 0.025 kpc^-2 for a ~1e13 Msun host at z ~ 0.5, m in [1e6, 1e10] Msun (m: the infall M200).
  Lensing measurements of the projected substructure fraction near the Einstein radius, 0.5-2%
  (Dalal & Kochanek 2002; Vegetti et al. 2012, 2014; Hezaveh et al. 2016), correspond to Sigma_sub of
  roughly 0.01-0.04 kpc^-2 with this mass function (f_sub = 2 kappa_sub for an isothermal main lens).
- Concentration: Duffy et al. 2008 (MNRAS 390, L64, table 1, NFW, M200 w.r.t. the critical density,
  full sample): c200 = 5.71 (M200 / (2e12 Msun / h))^-0.084 (1 + z)^-0.47, with a log-normal scatter of
  0.2 dex (pyHalo's default concentration scatter). Fitted on 1e11-1e15 Msun halos and extrapolated here
  (it gives c ~ 11 at 1e8 Msun, z = 0.5, below the ~15-20 of the Diemer & Joyce 2019 relation pyHalo uses,
  which needs the matter power spectrum and the colossus package, not a dependency of equilens).
- Truncation (paltas, Wagner-Carena et al. 2022, ApJ 942, 75, following the tidal radius of Cyr-Racine et
  al. 2016 / Gilman et al. 2020): r_t = 1.4 kpc (m / 1e7 Msun)^(1/3) (r / 50 kpc)^(2/3), with r the
  subhalo's distance from the host centre. The 3D distance is not drawn: the projected distance is used
  (a lower bound of r, so halos are truncated at least as strongly as paltas would).
- Conversion to lensing angles (lenstronomy's ``LensCosmo.nfw_physical2angle``, which fails with
  lenstronomy 1.14.2 and astropy 7, re-done here with astropy): r200 = (3 M / (800 pi rho_crit(z_lens)))^(1/3),
  Rs = r200 / c, rho0 = M / (4 pi Rs^3 (ln(1 + c) - c / (1 + c))), and in arcsec
  Rs_angle = Rs / D_d, alpha_Rs = 4 rho0 Rs^2 (1 + ln 1/2) / (Sigma_crit D_d), r_trunc = r_t / D_d, with
  angular-diameter distances and Sigma_crit = c^2 D_s / (4 pi G D_d D_ds).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from equilens.errors import ConfigError

__all__ = [
    "LensingUnits",
    "lensing_units",
    "MassFunction",
    "ConcentrationRelation",
    "DUFFY08",
    "TruncationRule",
    "PALTAS_TRUNCATION",
    "nfw_angles",
    "sample_power_law",
]

_RAD_TO_ARCSEC = 180.0 / math.pi * 3600.0


@dataclass(frozen=True)
class LensingUnits:
    """Distances and critical densities of one (cosmology, z_lens, z_source).

    Attributes:
        d_d, d_s, d_ds: angular-diameter distances in Mpc.
        kpc_per_arcsec: physical kpc per arcsec at the lens.
        sigma_crit: critical surface density in Msun / kpc^2.
        rho_crit: critical density of the universe at z_lens in Msun / kpc^3.
    """

    d_d: float
    d_s: float
    d_ds: float
    kpc_per_arcsec: float
    sigma_crit: float
    rho_crit: float

    @property
    def sigma_crit_arcsec2(self) -> float:
        """Critical surface density in Msun / arcsec^2."""
        return self.sigma_crit * self.kpc_per_arcsec**2


@functools.lru_cache(maxsize=64)
def lensing_units(H0: float, Om0: float, Ob0: float, z_lens: float, z_source: float) -> LensingUnits:
    """:class:`LensingUnits` for FlatLambdaCDM(H0, Om0, Ob0) (astropy), lens at z_lens, source at z_source."""
    from astropy import units as u
    from astropy.constants import G, c
    from astropy.cosmology import FlatLambdaCDM

    cosmo = FlatLambdaCDM(H0=H0, Om0=Om0, Ob0=Ob0)
    d_d = cosmo.angular_diameter_distance(z_lens)
    d_s = cosmo.angular_diameter_distance(z_source)
    d_ds = cosmo.angular_diameter_distance_z1z2(z_lens, z_source)
    sigma_crit = (c**2 / (4 * math.pi * G) * d_s / (d_d * d_ds)).to(u.Msun / u.kpc**2).value
    rho_crit = cosmo.critical_density(z_lens).to(u.Msun / u.kpc**3).value
    return LensingUnits(
        d_d=float(d_d.to(u.Mpc).value),
        d_s=float(d_s.to(u.Mpc).value),
        d_ds=float(d_ds.to(u.Mpc).value),
        kpc_per_arcsec=float(d_d.to(u.kpc).value / _RAD_TO_ARCSEC),
        sigma_crit=float(sigma_crit),
        rho_crit=float(rho_crit),
    )


def sample_power_law(rng: np.random.Generator, n: int, lo: float, hi: float, slope: float) -> np.ndarray:
    """``n`` draws from pdf ~ m^slope on [lo, hi] by inverse CDF (log-uniform when slope == -1)."""
    u = rng.uniform(0.0, 1.0, size=n)
    a = slope + 1.0
    if abs(a) < 1e-12:
        return lo * (hi / lo) ** u
    return (lo**a + (hi**a - lo**a) * u) ** (1.0 / a)


def _power_integral(lo: float, hi: float, p: float) -> float:
    """Integral of m^p dm over [lo, hi]."""
    if abs(p + 1.0) < 1e-12:
        return math.log(hi / lo)
    return (hi ** (p + 1.0) - lo ** (p + 1.0)) / (p + 1.0)


@dataclass(frozen=True)
class MassFunction:
    """dN / dm dA = (sigma_sub / m_pivot) (m / m_pivot)^slope * S(m) on [m_min, m_max] (m in Msun, A in kpc^2).

    Attributes:
        sigma_sub: normalisation in kpc^-2 (>= 0).
        slope: logarithmic slope (pyHalo CDM: -1.9).
        m_min, m_max: mass range in Msun, 0 < m_min < m_max.
        m_pivot: pivot mass in Msun (> 0).
        suppression: optional S(m) in [0, 1] (e.g. a warm-dark-matter half-mode suppression); None: 1.
            Draws with a suppression are thinned from the power law (each kept with probability S(m)).
    """

    sigma_sub: float
    slope: float
    m_min: float
    m_max: float
    m_pivot: float = 1e8
    suppression: Callable[[np.ndarray], np.ndarray] | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma_sub) and self.sigma_sub >= 0):
            raise ConfigError(f"the subhalo normalisation Sigma_sub must be >= 0 kpc^-2, got {self.sigma_sub}")
        if not (0 < self.m_min < self.m_max):
            raise ConfigError(
                f"the subhalo mass range needs 0 < min < max (Msun), got [{self.m_min:g}, {self.m_max:g}]"
            )
        if not self.m_pivot > 0:
            raise ConfigError(f"the pivot mass must be > 0 Msun, got {self.m_pivot}")

    def _norm(self) -> float:
        return self.sigma_sub / self.m_pivot * self.m_pivot ** (-self.slope)

    def expected_number(self, area_kpc2: float, lo: float | None = None, hi: float | None = None) -> float:
        """Mean number of halos (before any suppression) with mass in [lo, hi] (default: the whole range)."""
        lo = self.m_min if lo is None else lo
        hi = self.m_max if hi is None else hi
        return area_kpc2 * self._norm() * _power_integral(lo, hi, self.slope)

    def mass_density(self, lo: float | None = None, hi: float | None = None) -> float:
        """Mean subhalo mass per area, Msun / kpc^2, of masses in [lo, hi] (before any suppression)."""
        lo = self.m_min if lo is None else lo
        hi = self.m_max if hi is None else hi
        return self._norm() * _power_integral(lo, hi, self.slope + 1.0)

    def draw(self, rng: np.random.Generator, area_kpc2: float, lo: float | None = None) -> np.ndarray:
        """Poisson realisation of the masses in [lo, m_max] (Msun) over ``area_kpc2``, shape (N,).

        ``lo`` (default ``m_min``) lets a renderer draw only the halos it renders.
        """
        lo = self.m_min if lo is None else lo
        n = int(rng.poisson(self.expected_number(area_kpc2, lo, self.m_max)))
        masses = sample_power_law(rng, n, lo, self.m_max, self.slope)
        if self.suppression is not None:
            keep = rng.uniform(0.0, 1.0, size=n) < self.suppression(masses)
            masses = masses[keep]
        return masses


@dataclass(frozen=True)
class ConcentrationRelation:
    """c200(m, z) = amplitude (m / m_pivot)^mass_slope (1 + z)^redshift_slope * M(m), log-normal scatter.

    Attributes:
        name: short name (recorded).
        amplitude, m_pivot (Msun), mass_slope, redshift_slope: the power law.
        scatter_dex: standard deviation of log10 c around the relation (0: none).
        modifier: optional factor M(m) on the mean (e.g. a warm-dark-matter suppression); None: 1.
        source: citation.
    """

    name: str
    amplitude: float
    m_pivot: float
    mass_slope: float
    redshift_slope: float
    scatter_dex: float
    source: str
    modifier: Callable[[np.ndarray], np.ndarray] | None = None

    def mean(self, m: np.ndarray, z: float) -> np.ndarray:
        """Mean concentration of halos of mass ``m`` (Msun, any shape) at redshift ``z``."""
        m = np.asarray(m, dtype=float)
        c = self.amplitude * (m / self.m_pivot) ** self.mass_slope * (1.0 + z) ** self.redshift_slope
        if self.modifier is not None:
            c = c * self.modifier(m)
        return c

    def draw(self, rng: np.random.Generator, m: np.ndarray, z: float) -> np.ndarray:
        """Concentrations with the log-normal scatter (always one normal draw per halo), shape of ``m``."""
        m = np.asarray(m, dtype=float)
        return self.mean(m, z) * 10.0 ** (self.scatter_dex * rng.standard_normal(m.shape))


#: Duffy et al. 2008, table 1 (NFW, M200c, full sample, 0 < z < 2): A = 5.71, B = -0.084, C = -0.47,
#: M_pivot = 2e12 Msun / h with h = 0.7 (this project's H0 = 70); 0.2 dex scatter (pyHalo's default).
DUFFY08 = ConcentrationRelation(
    name="duffy08",
    amplitude=5.71,
    m_pivot=2e12 / 0.7,
    mass_slope=-0.084,
    redshift_slope=-0.47,
    scatter_dex=0.2,
    source="Duffy et al. 2008, MNRAS 390, L64, table 1 (NFW, M200c, full); scatter 0.2 dex as pyHalo",
)


@dataclass(frozen=True)
class TruncationRule:
    """r_t = r0 (m / m0)^mass_exponent (r / r_ref)^radius_exponent, in kpc (m in Msun, r in kpc)."""

    name: str
    r0_kpc: float
    m0: float
    mass_exponent: float
    r_ref_kpc: float
    radius_exponent: float
    source: str

    def radius(self, m: np.ndarray, r_kpc: np.ndarray) -> np.ndarray:
        """Truncation radius in kpc of halos of mass ``m`` at host distance ``r_kpc`` (same shapes)."""
        m = np.asarray(m, dtype=float)
        r = np.asarray(r_kpc, dtype=float)
        return self.r0_kpc * (m / self.m0) ** self.mass_exponent * (r / self.r_ref_kpc) ** self.radius_exponent


#: paltas (Wagner-Carena et al. 2022, ApJ 942, 75; ``paltas/Substructure/nfw_functions.py``):
#: r_t = 1.4 kpc (m / 1e7 Msun)^(1/3) (r / 50 kpc)^(2/3).
PALTAS_TRUNCATION = TruncationRule(
    name="paltas",
    r0_kpc=1.4,
    m0=1e7,
    mass_exponent=1.0 / 3.0,
    r_ref_kpc=50.0,
    radius_exponent=2.0 / 3.0,
    source="Wagner-Carena et al. 2022 (paltas): r_t = 1.4 kpc (m/1e7)^(1/3) (r/50 kpc)^(2/3)",
)


def nfw_angles(units: LensingUnits, m200: np.ndarray, c200: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Rs, alpha_Rs) in arcsec of NFW halos of mass ``m200`` (Msun, w.r.t. rho_crit(z_lens)) and ``c200``.

    The lenstronomy ``TNFW`` / ``NFW`` angular parameters (module docstring), shapes as the inputs.
    """
    m = np.asarray(m200, dtype=float)
    c = np.asarray(c200, dtype=float)
    r200 = (3.0 * m / (4.0 * math.pi * 200.0 * units.rho_crit)) ** (1.0 / 3.0)  # kpc
    rs = r200 / c
    rho0 = m / (4.0 * math.pi * rs**3 * (np.log1p(c) - c / (1.0 + c)))  # Msun / kpc^3
    rs_arcsec = rs / units.kpc_per_arcsec
    alpha_rs = rho0 * 4.0 * rs**2 * (1.0 + math.log(0.5)) / units.sigma_crit / units.kpc_per_arcsec
    return rs_arcsec, alpha_rs
