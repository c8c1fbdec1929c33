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
- Warm dark matter (issue #10), both as functions of the half-mode mass m_hm (the mass at which the WDM
  transfer function's amplitude is half the CDM one):
  mass function suppression S(m) = (1 + m_hm / m)^-1.3 (Lovell et al. 2014, MNRAS 439, 300, eq. 5 with
  beta = 1.3, fitted to the subhalos of the Aquarius WDM runs), and concentrations
  c_WDM / c_CDM = (1 + 60 m_hm / m)^-0.17 (1 + z)^(0.026 z - 0.04) (Bose et al. 2016, MNRAS 455, 318, eq. 17,
  gamma_1 = 60, gamma_2 = 0.17; the same forms pyHalo's ``WDM`` preset uses). log10 m_hm must lie in
  :data:`WDM_LOG10_M_HM_VALID` (5-12: below 1e5 Msun it changes nothing the renderer draws, above 1e12 no
  subhalo is left; Lyman-alpha and lensing limits put m_hm below ~10^7.5-10^8 Msun).
- Self-interacting dark matter (issue #10): a subhalo of cross-section per unit mass sigma/m keeps the NFW
  halo's outer profile (same rho_s, Rs) and gets a core (lenstronomy ``CNFW``) of radius r_core = r_1, the
  radius inside which a particle scatters about once over the halo's age (Kaplinghat, Tulin & Yu 2016,
  PRL 116, 041302: rho(r_1) (sigma/m) v t_age = 1). With the NFW density rho_s / (x (1 + x)^2), x = r / Rs,
  r_1 = x_1 Rs where x_1 (1 + x_1)^2 = rho_s (sigma/m) v_max t_age; v_max is the NFW halo's maximum circular
  velocity (at 2.163 Rs; the velocity scale of the scattering, a documented order-unity choice) and t_age
  the age of the universe at z_lens. Example (tested): a 1e8 Msun, c = 11 subhalo at z = 0.5 with
  1 cm^2/g gets r_core = 0.16 Rs, with 10 cm^2/g 0.72 Rs. sigma/m must lie in
  :data:`SIDM_CROSS_SECTION_VALID` (cm^2/g). Core collapse is not modelled.
- Ultra-light dark matter (issue #10), boson mass m = m22 x 1e-22 eV, log10(m / eV) within
  :data:`ULDM_LOG10_M_VALID`:

  * mass function suppression S(m) = (1 + (m / m0)^-1.1)^-2.2, m0 = 1.6e10 m22^(-4/3) Msun (Schive et al. 2016,
    ApJ 818, 89, their fit to the FDM halo mass function; pyHalo's ``ULDM`` preset applies it to subhalos
    too), and no halo below the minimum mass M_min(z) = a^(-3/4) (zeta(z) / zeta(0))^(1/4) 4.4e7 m22^(-3/2) Msun
    (Schive et al. 2014, PRL 113, 261302: a halo of that mass is a bare soliton), with a = 1 / (1 + z) and
    zeta(z) = (18 pi^2 + 82 (Omega_m(z) - 1) - 39 (Omega_m(z) - 1)^2) / Omega_m(z);
  * concentrations: the warm-dark-matter factor of Bose et al. 2016 (:class:`WDMConcentrationFactor`) at the
    ULDM half-mode mass m_1/2 = (4 pi / 3) rho_m (pi / k_1/2)^3, where the transfer function of Hu, Barkana &
    Gruzinov 2000 (PRL 85, 1158), T(k) = cos(x^3) / (1 + x^8), x = 1.61 m22^(1/18) k / k_Jeq,
    k_Jeq = 9 m22^(1/2) Mpc^-1, falls to 1/2 (x = 0.9084; the half-mode convention of the WDM relations):
    m_1/2 = 4.05e10 m22^(-4/3) Msun for H0 = 70, Om0 = 0.3 (pyHalo likewise modifies ULDM concentrations with
    a WDM-type relation, as no ULDM-specific one has been measured);
  * solitonic cores (Schive et al. 2014, Nature Physics 10, 496, and PRL 113, 261302, eqs. 3 and 7, in
    physical units): core radius r_c = 1.6 kpc m22^-1 a^(1/2) (zeta(z) / zeta(0))^(-1/6) (M_h / 1e9 Msun)^(-1/3)
    (M_h: the halo's m200, the virial mass of the relation), density rho(r) = rho_c / (1 + a_s (r / r_c)^2)^8 with
    rho_c = 1.9e7 m22^-2 (r_c / kpc)^-4 Msun / kpc^3 (Schive's 1.9 (m / 1e-23 eV)^-2 (r_c / kpc)^-4 Msun / pc^3)
    and a_s = 2^(1/8) - 1 = 0.0905 (lenstronomy ``Uldm``: the density halves at r_c; Schive's fit: 0.091),
    total mass M_sol = 4 pi rho_c r_c^3 B(3/2, 13/2) / (2 a_s^(3/2)) = 2.22e8 m22^-2 (r_c / kpc)^-1 Msun.
    At m22 = 1 a 1e8 Msun halo at z = 0.5 gets r_c = 3.0 kpc and M_sol = 7.5e7 Msun, more than the mass its
    tidally truncated NFW keeps: the mass split (:func:`uldm_mass_split`) caps the soliton at
    :data:`ULDM_SOLITON_MAX_FRACTION` of the halo's (truncated) total mass.
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
    "HalfModeSuppression",
    "WDMConcentrationFactor",
    "WDM_LOG10_M_HM_VALID",
    "check_log10_m_hm",
    "SIDM_CROSS_SECTION_VALID",
    "check_cross_section",
    "sidm_core_radius",
    "ULDM_LOG10_M_VALID",
    "ULDM_SOLITON_MAX_FRACTION",
    "check_log10_m_uldm",
    "schive_zeta",
    "uldm_m0",
    "uldm_min_halo_mass",
    "uldm_half_mode_mass",
    "ULDMSuppression",
    "uldm_core_radius",
    "soliton_central_density",
    "soliton_mass",
    "soliton_angles",
    "uldm_mass_split",
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
        age_gyr: age of the universe at z_lens in Gyr.
    """

    d_d: float
    d_s: float
    d_ds: float
    kpc_per_arcsec: float
    sigma_crit: float
    rho_crit: float
    age_gyr: float = float("nan")

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
        age_gyr=float(cosmo.age(z_lens).to(u.Gyr).value),
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


#: Valid range of log10(m_hm / Msun) (module docstring).
WDM_LOG10_M_HM_VALID: tuple[float, float] = (5.0, 12.0)


def check_log10_m_hm(log10_m_hm: float, what: str = "log10 of the half-mode mass") -> None:
    """Raise ConfigError naming :data:`WDM_LOG10_M_HM_VALID` if ``log10_m_hm`` is outside it."""
    lo, hi = WDM_LOG10_M_HM_VALID
    if not (math.isfinite(log10_m_hm) and lo <= log10_m_hm <= hi):
        raise ConfigError(f"{what} must be in [{lo:g}, {hi:g}] (log10 Msun), got {log10_m_hm}")


@dataclass(frozen=True)
class HalfModeSuppression:
    """Warm-dark-matter subhalo mass function factor S(m) = (1 + m_hm / m)^exponent (Lovell et al. 2014).

    Attributes:
        m_hm: half-mode mass in Msun (log10 within :data:`WDM_LOG10_M_HM_VALID`).
        exponent: -1.3 (Lovell et al. 2014, MNRAS 439, 300, eq. 5).
    """

    m_hm: float
    exponent: float = -1.3

    def __post_init__(self) -> None:
        check_log10_m_hm(math.log10(self.m_hm) if self.m_hm > 0 else float("nan"))

    def __call__(self, m: np.ndarray) -> np.ndarray:
        """S(m) for masses ``m`` in Msun, shape of ``m``, values in (0, 1]."""
        return (1.0 + self.m_hm / np.asarray(m, dtype=float)) ** self.exponent


@dataclass(frozen=True)
class WDMConcentrationFactor:
    """c_WDM / c_CDM = (1 + gamma1 m_hm / m)^-gamma2 (1 + z)^(0.026 z - 0.04) (Bose et al. 2016, eq. 17).

    Attributes:
        m_hm: half-mode mass in Msun.
        z: redshift of the halos.
        gamma1, gamma2: 60, 0.17 (Bose et al. 2016, MNRAS 455, 318).
    """

    m_hm: float
    z: float
    gamma1: float = 60.0
    gamma2: float = 0.17

    def __post_init__(self) -> None:
        check_log10_m_hm(math.log10(self.m_hm) if self.m_hm > 0 else float("nan"))

    def __call__(self, m: np.ndarray) -> np.ndarray:
        """The factor for masses ``m`` in Msun, shape of ``m``."""
        m = np.asarray(m, dtype=float)
        z = self.z
        return (1.0 + self.gamma1 * self.m_hm / m) ** (-self.gamma2) * (1.0 + z) ** (0.026 * z - 0.04)


#: Valid range of the SIDM cross-section per unit mass, cm^2 / g (module docstring).
SIDM_CROSS_SECTION_VALID: tuple[float, float] = (0.01, 100.0)

#: Newton's constant in kpc (km/s)^2 / Msun; 1 km/s in kpc/Gyr; 1 cm^2/g in kpc^2/Msun (astropy constants).
_G_KPC_KMS2 = 4.300917270038e-06
_KMS_TO_KPC_PER_GYR = 1.0227121650537077
_CM2_PER_G_TO_KPC2_PER_MSUN = 2.088357e-10


def check_cross_section(cross_section: float, what: str = "the SIDM cross-section per unit mass") -> None:
    """Raise ConfigError naming :data:`SIDM_CROSS_SECTION_VALID` if ``cross_section`` (cm^2/g) is outside it."""
    lo, hi = SIDM_CROSS_SECTION_VALID
    if not (math.isfinite(cross_section) and lo <= cross_section <= hi):
        raise ConfigError(f"{what} must be in [{lo:g}, {hi:g}] cm^2/g, got {cross_section}")


def sidm_core_radius(units: LensingUnits, m200: np.ndarray, c200: np.ndarray,
                     cross_section: float) -> np.ndarray:
    """Core radius r_1 in kpc of SIDM halos (module docstring, Kaplinghat, Tulin & Yu 2016), shape of ``m200``.

    Args:
        units: distances, rho_crit and age at the lens redshift.
        m200, c200: NFW mass (Msun, w.r.t. rho_crit(z_lens)) and concentration.
        cross_section: sigma/m in cm^2/g, within :data:`SIDM_CROSS_SECTION_VALID`.

    Raises:
        ConfigError: cross-section outside its valid range.
    """
    check_cross_section(cross_section)
    m = np.asarray(m200, dtype=float)
    c = np.asarray(c200, dtype=float)
    r200 = (3.0 * m / (4.0 * math.pi * 200.0 * units.rho_crit)) ** (1.0 / 3.0)
    rs = r200 / c
    mu = np.log1p(c) - c / (1.0 + c)
    rho_s = m / (4.0 * math.pi * rs**3 * mu)
    x_max = 2.16258  # radius of the NFW maximum circular velocity, in Rs
    m_max = 4.0 * math.pi * rho_s * rs**3 * (math.log1p(x_max) - x_max / (1.0 + x_max))
    v_max = np.sqrt(_G_KPC_KMS2 * m_max / (x_max * rs)) * _KMS_TO_KPC_PER_GYR  # kpc / Gyr
    k = rho_s * cross_section * _CM2_PER_G_TO_KPC2_PER_MSUN * v_max * units.age_gyr  # x (1 + x)^2 = k
    lo = np.full_like(k, -12.0)
    hi = np.full_like(k, 6.0)
    for _ in range(48):  # bisection on log10 x (x (1 + x)^2 is increasing); 18 / 2^48 < 1e-13
        mid = 0.5 * (lo + hi)
        xm = 10.0**mid
        above = xm * (1.0 + xm) ** 2 > k
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return 10.0 ** (0.5 * (lo + hi)) * rs


# ---------------------------------------------------------------------------------------------------------
# Ultra-light dark matter (module docstring)

#: Valid range of log10(m / eV) of the ULDM boson: below 1e-23 eV the half-mode mass passes 1e12 Msun (no
#: subhalo is left, and the Bose et al. concentrations leave their range), above 1e-19 eV the suppression
#: (m0 < 2e6 Msun) and the solitons (M_sol < 1e-3 of a 1e8 Msun halo) change nothing the renderer draws.
ULDM_LOG10_M_VALID: tuple[float, float] = (-23.0, -19.0)

#: Largest share of a subhalo's total (tidally truncated) mass the soliton may hold; the rest stays in the
#: NFW envelope. A choice of this project (module docstring, README): Schive's relation is fitted to isolated
#: halos, whose soliton fraction reaches 1 only at the minimum halo mass; for stripped subhalos it can predict
#: a soliton heavier than all the mass left. At the default prior the cap binds only on rare halos (those
#: close to the minimum mass, which the mass function suppresses by 1e-3 and more).
ULDM_SOLITON_MAX_FRACTION = 0.5

#: Soliton density slope (rho ~ (1 + a_s (r / r_c)^2)^-8) and a_s (the density halves at r_c).
_SOLITON_SLOPE = 8.0
_SOLITON_A = 0.5 ** (-1.0 / _SOLITON_SLOPE) - 1.0
#: M_sol / (rho_c r_c^3) = 4 pi * (1/2) B(3/2, slope - 3/2) a_s^(-3/2) (B(3/2, 13/2) = Gamma(3/2) Gamma(13/2) / 7!).
_SOLITON_MASS_FACTOR = (4.0 * math.pi * 0.5 * math.gamma(1.5) * math.gamma(_SOLITON_SLOPE - 1.5)
                        / math.gamma(_SOLITON_SLOPE) * _SOLITON_A**-1.5)
#: Schive et al. 2014: r_c = 1.6 kpc m22^-1 (M_h / 1e9 Msun)^(-1/3) at z = 0;
#: rho_c = 1.9e7 m22^-2 (r_c / kpc)^-4 Msun / kpc^3.
_SCHIVE_RC_KPC = 1.6
_SCHIVE_RHO_C = 1.9e7
#: Schive et al. 2016 mass function fit: m0 = 1.6e10 m22^(-4/3) Msun, S = (1 + (m / m0)^-1.1)^-2.2.
_SCHIVE16_M0 = 1.6e10
_SCHIVE16_ALPHA = 1.1
_SCHIVE16_BETA = 2.2
#: Schive et al. 2014: minimum halo mass M_min,0 = 4.4e7 m22^(-3/2) Msun.
_SCHIVE_M_MIN0 = 4.4e7
#: Hu, Barkana & Gruzinov 2000: x at which cos(x^3) / (1 + x^8) = 1/2; k_Jeq = 9 m22^(1/2) Mpc^-1,
#: x = 1.61 m22^(1/18) k / k_Jeq.
_HBG_X_HALF = 0.9084322
_HBG_K_JEQ = 9.0
_HBG_X_FACTOR = 1.61
#: Critical density today per h^2 in Msun / Mpc^3 (astropy: 3 H^2 / (8 pi G) with H = 100 km/s/Mpc).
_RHO_CRIT_H2_MSUN_MPC3 = 2.775366e11


def check_log10_m_uldm(log10_m: float, what: str = "log10 of the ULDM boson mass") -> None:
    """Raise ConfigError naming :data:`ULDM_LOG10_M_VALID` if ``log10_m`` (log10 of m / eV) is outside it."""
    lo, hi = ULDM_LOG10_M_VALID
    if not (math.isfinite(log10_m) and lo <= log10_m <= hi):
        raise ConfigError(f"{what} must be in [{lo:g}, {hi:g}] (log10 eV), got {log10_m}")


def schive_zeta(z: float, Om0: float) -> float:
    """zeta(z) of Schive et al. 2014 (the Bryan & Norman virial overdensity w.r.t. the mean matter density) in
    a flat LambdaCDM universe without radiation: Omega_m(z) = Om0 (1 + z)^3 / (Om0 (1 + z)^3 + 1 - Om0)."""
    om = Om0 * (1.0 + z) ** 3 / (Om0 * (1.0 + z) ** 3 + 1.0 - Om0)
    return (18.0 * math.pi**2 + 82.0 * (om - 1.0) - 39.0 * (om - 1.0) ** 2) / om


def uldm_m0(m22: float) -> float:
    """Characteristic mass m0 = 1.6e10 m22^(-4/3) Msun of the Schive et al. 2016 mass function suppression."""
    return _SCHIVE16_M0 * m22 ** (-4.0 / 3.0)


def uldm_min_halo_mass(m22: float, z: float, Om0: float) -> float:
    """Minimum ULDM halo mass M_min(z) = a^(-3/4) (zeta(z) / zeta(0))^(1/4) 4.4e7 m22^(-3/2) Msun (Schive 2014)."""
    a = 1.0 / (1.0 + z)
    return a**-0.75 * (schive_zeta(z, Om0) / schive_zeta(0.0, Om0)) ** 0.25 * _SCHIVE_M_MIN0 * m22**-1.5


def uldm_half_mode_mass(m22: float, H0: float, Om0: float) -> float:
    """ULDM half-mode mass in Msun: (4 pi / 3) rho_m (pi / k_1/2)^3 with k_1/2 where the Hu, Barkana & Gruzinov
    2000 transfer function is 1/2 (module docstring); rho_m = Om0 rho_crit,0 (comoving)."""
    k_half = _HBG_X_HALF * _HBG_K_JEQ * math.sqrt(m22) / (_HBG_X_FACTOR * m22 ** (1.0 / 18.0))  # Mpc^-1
    rho_m = Om0 * _RHO_CRIT_H2_MSUN_MPC3 * (H0 / 100.0) ** 2
    return 4.0 * math.pi / 3.0 * rho_m * (math.pi / k_half) ** 3


@dataclass(frozen=True)
class ULDMSuppression:
    """ULDM subhalo mass function factor S(m) = (1 + (m / m0)^-1.1)^-2.2 for m >= m_min, 0 below (module docstring).

    Attributes:
        m22: boson mass / 1e-22 eV (log10(m / eV) within :data:`ULDM_LOG10_M_VALID`).
        m_min: minimum halo mass in Msun (:func:`uldm_min_halo_mass`; 0: none).
    """

    m22: float
    m_min: float = 0.0

    def __post_init__(self) -> None:
        check_log10_m_uldm(math.log10(self.m22) - 22.0 if self.m22 > 0 else float("nan"))

    def __call__(self, m: np.ndarray) -> np.ndarray:
        """S(m) for masses ``m`` in Msun, shape of ``m``, values in [0, 1]."""
        m = np.asarray(m, dtype=float)
        s = (1.0 + (m / uldm_m0(self.m22)) ** -_SCHIVE16_ALPHA) ** -_SCHIVE16_BETA
        return np.where(m >= self.m_min, s, 0.0)


def uldm_core_radius(m200: np.ndarray, m22: float, z: float, Om0: float) -> np.ndarray:
    """Soliton core radius r_c in kpc (physical; Schive et al. 2014 core-halo relation), shape of ``m200`` (Msun)."""
    a = 1.0 / (1.0 + z)
    zeta = schive_zeta(z, Om0) / schive_zeta(0.0, Om0)
    m = np.asarray(m200, dtype=float)
    return _SCHIVE_RC_KPC / m22 * math.sqrt(a) * zeta ** (-1.0 / 6.0) * (m / 1e9) ** (-1.0 / 3.0)


def soliton_central_density(r_c_kpc: np.ndarray, m22: float) -> np.ndarray:
    """Central soliton density rho_c = 1.9e7 m22^-2 (r_c / kpc)^-4 in Msun / kpc^3 (Schive et al. 2014)."""
    return _SCHIVE_RHO_C / m22**2 * np.asarray(r_c_kpc, dtype=float) ** -4


def soliton_mass(r_c_kpc: np.ndarray, m22: float) -> np.ndarray:
    """Total soliton mass in Msun, 4 pi rho_c r_c^3 B(3/2, 13/2) / (2 a_s^(3/2)) (module docstring)."""
    r_c = np.asarray(r_c_kpc, dtype=float)
    return _SOLITON_MASS_FACTOR * soliton_central_density(r_c, m22) * r_c**3


def soliton_angles(units: LensingUnits, mass: np.ndarray, r_c_kpc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """lenstronomy ``ULDM`` parameters (kappa_0, theta_c in arcsec) of solitons of total ``mass`` (Msun) and core
    radius ``r_c_kpc``: theta_c = r_c / D_d and kappa_0 = M (2 slope - 3) a_s / (2 pi theta_c^2) in convergence
    units (the ``Uldm`` total mass 2 pi kappa_0 theta_c^2 / ((2 slope - 3) a_s) inverted)."""
    theta_c = np.asarray(r_c_kpc, dtype=float) / units.kpc_per_arcsec
    m_kappa = np.asarray(mass, dtype=float) / units.sigma_crit_arcsec2
    kappa_0 = m_kappa * (2.0 * _SOLITON_SLOPE - 3.0) * _SOLITON_A / (2.0 * math.pi * theta_c**2)
    return kappa_0, theta_c


def uldm_mass_split(total: np.ndarray, soliton: np.ndarray,
                    max_fraction: float = ULDM_SOLITON_MAX_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Split each ULDM subhalo's total mass between its soliton and its NFW envelope.

    Args:
        total: total mass of each halo (its truncated NFW counterpart's), any unit, shape (n,).
        soliton: the soliton mass the Schive relation gives, same unit, shape (n,).
        max_fraction: the soliton holds at most this share of ``total`` (in (0, 1]).

    Returns:
        (soliton mass, envelope factor): min(soliton, max_fraction total) and the factor 1 - soliton / total on
        the envelope's density; soliton mass + factor x total == total (the halo's mass is conserved).
    """
    if not 0.0 < max_fraction <= 1.0:
        raise ConfigError(f"the soliton's largest mass fraction must be in (0, 1], got {max_fraction}")
    total = np.asarray(total, dtype=float)
    sol = np.minimum(np.asarray(soliton, dtype=float), max_fraction * total)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(total > 0, 1.0 - sol / total, 1.0)
    return sol, factor
