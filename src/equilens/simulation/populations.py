"""Parameter draws: pure functions of (config, class name, ``numpy.random.Generator``).

:func:`draw_parameters` returns one JSON-serialisable record per image. The main lens, the shear, the
source and the exposure time are drawn first, with the same draws in the same order for every class, so
the same generator state gives the same lens and source whatever the class; only the substructure drawn
afterwards differs. Substructure classes are registered by name (:func:`register_population`), so a new
dark-matter model is one new function (e.g. ``wdm``, ``sidm`` later).

Physics (sources in :mod:`equilens.simulation.presets`):

- Einstein radius of a mass M (Msun): theta_E = sqrt(4 G M / c^2 * D_LS / (D_L D_S)) (arcsec), with
  angular-diameter distances (default) or DeepLense's luminosity distances and D_LS = D_S - D_L
  (``distance_convention='legacy_luminosity'``). For the main SIE the same formula is used (as DeepLense):
  for any circular lens, M is then the projected mass inside the Einstein radius.
- Position angles (default): lens ellipticity, shear and source ellipticity keep DeepLense's moduli
  |e| = sqrt(e1^2 + e2^2), |gamma| and take a position angle phi ~ U(0, pi):
  (e1, e2) = |e| (cos 2 phi, sin 2 phi), lenstronomy's convention. With ``fixed_orientation`` the DeepLense
  components are used as they are (and no angle is drawn).
- Subhalo populations (``cdm``: point masses; ``cdm_tnfw``: truncated NFW halos; ``wdm``: the same with a
  half-mode suppression of the mass function and concentrations; ``sidm``: cored ``CNFW`` halos; ``uldm``: the
  ultra-light suppression and a soliton in each halo, profile ``ULDM``) are one
  :class:`SubhaloPopulation` with a different profile name or parameter (:func:`subhalo_population`). Abundance
  ``subhalo_abundance='sigma_sub'``: Sigma_sub ~ U(sigma_sub_range) kpc^-2 (recorded), masses a Poisson
  realisation of :class:`equilens.simulation.halos.MassFunction` over the window's physical area, only
  masses >= ``subhalo_render_mass_min`` drawn and rendered (the others are a smooth mass whose mean the
  mass sheet would remove again: left out altogether); ``'count'``: N ~ Poisson(n_subhalos_mean) (or
  exactly n_subhalos_mean when fixed), masses from dN/dm ~ m^slope on the mass range (DeepLense).
  Window: the disk of radius ``subhalo_window_theta_E`` x the main lens's Einstein radius, or (null) the
  annulus ``subhalo_radius_range`` in arcsec; radii uniform in area (r = sqrt(U(r_min^2, r_max^2))) or in
  r (legacy), angles U(0, 2 pi). ``TNFW`` halos: c200 from :data:`equilens.simulation.halos.DUFFY08`,
  truncation from :data:`equilens.simulation.halos.PALTAS_TRUNCATION` at the projected distance.
  Mass sheet (``subhalo_mass_sheet``): negative convergence over the window whose mass equals the projected
  mass the rendered halos put inside the window, so the mean convergence in the window is the main lens's
  alone (pyHalo subtracts the mean mass likewise). Its radial profile is the *expected* one of the halos
  (16 annuli): a truncated halo's mass grows with its distance from the centre (r_t ~ r^(2/3)), so a uniform
  sheet would remove too much mass inside the Einstein ring and shrink it (measured: -0.7 mas on average
  at Sigma_sub = 0.05, against +1.8 mas for no sheet; with the profile the shift is consistent with zero).
- ``axion``: log10 m_a ~ U(range), vortex angle ~ U(0, 2 pi), half-length L = coefficient / m_a arcsec,
  ``vortex_n_points`` point masses of vortex_mass_total / n each, evenly spaced on [-L, L] along the line.
  Their positions are a deterministic function of the record (:func:`point_masses`), not stored.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from equilens.errors import ConfigError
from equilens.simulation.config import SimConfig
from equilens.simulation.halos import (
    DUFFY08,
    PALTAS_TRUNCATION,
    ULDM_SOLITON_MAX_FRACTION,
    ConcentrationRelation,
    HalfModeSuppression,
    MassFunction,
    TruncationRule,
    ULDMSuppression,
    WDMConcentrationFactor,
    check_log10_m_uldm,
    lensing_units,
    nfw_angles,
    sample_power_law,
    sidm_core_radius,
    soliton_angles,
    soliton_mass,
    uldm_core_radius,
    uldm_half_mode_mass,
    uldm_m0,
    uldm_mass_split,
    uldm_min_halo_mass,
)

__all__ = [
    "CLASS_NAMES",
    "POPULATIONS",
    "PROFILES",
    "SubhaloPopulation",
    "register_population",
    "draw_parameters",
    "einstein_radius",
    "point_masses",
    "halo_profiles",
    "parameter_columns",
    "flatten_parameters",
    "sample_power_law",
    "subhalo_population",
]

PopulationFn = Callable[[SimConfig, np.random.Generator, dict[str, Any]], dict[str, Any]]

#: Registered substructure populations: class name -> function(config, rng, shared record) -> partial
#: record with keys "subhalos" (per-halo lists), "population" (per-image scalars or None), "mass_sheet"
#: (dict or None) and "axion" (dict or None).
POPULATIONS: dict[str, PopulationFn] = {}
#: Class names in registration order.
CLASS_NAMES: list[str] = []
#: Subhalo profile names the renderer knows (lenstronomy names; :mod:`equilens.simulation.profiles`).
PROFILES: tuple[str, ...] = ("POINT_MASS", "TNFW", "CNFW", "ULDM")


def register_population(name: str) -> Callable[[PopulationFn], PopulationFn]:
    """Decorator registering a substructure population under ``name``."""

    def deco(fn: PopulationFn) -> PopulationFn:
        if name in POPULATIONS:
            raise ValueError(f"population {name!r} is already registered")
        POPULATIONS[name] = fn
        CLASS_NAMES.append(name)
        return fn

    return deco


# ---------------------------------------------------------------------------------------------------------
# Einstein radii

_RAD_TO_ARCSEC = 180.0 / math.pi * 3600.0


@functools.lru_cache(maxsize=64)
def _einstein_radius_factor(
    H0: float, Om0: float, Ob0: float, z_lens: float, z_source: float, convention: str
) -> float:
    """theta_E / sqrt(M / Msun) in arcsec, for the given cosmology and distance convention."""
    from astropy import units as u
    from astropy.constants import G, M_sun, c
    from astropy.cosmology import FlatLambdaCDM

    cosmo = FlatLambdaCDM(H0=H0, Om0=Om0, Ob0=Ob0)
    if convention == "angular_diameter":
        d_l = cosmo.angular_diameter_distance(z_lens)
        d_s = cosmo.angular_diameter_distance(z_source)
        d_ls = cosmo.angular_diameter_distance_z1z2(z_lens, z_source)
    elif convention == "legacy_luminosity":
        # DeepLenseSim deeplense/lens.py DeepLens.mass_to_radius
        d_l = cosmo.luminosity_distance(z_lens)
        d_s = cosmo.luminosity_distance(z_source)
        d_ls = d_s - d_l
    else:  # pragma: no cover - validated in config
        raise ConfigError(f"unknown distance_convention {convention!r}")
    theta2 = 4 * G * M_sun / c**2 * d_ls / (d_l * d_s)
    return float(np.sqrt(theta2.to(u.dimensionless_unscaled).value) * _RAD_TO_ARCSEC)


def einstein_radius(config: SimConfig, mass: float | np.ndarray) -> float | np.ndarray:
    """Point-mass Einstein radius in arcsec of ``mass`` (Msun) at z_lens for a source at z_source."""
    k = _einstein_radius_factor(
        config.H0, config.Om0, config.Ob0, config.z_lens, config.z_source, config.distance_convention
    )
    return k * np.sqrt(mass)


def _mass_from_einstein_radius(config: SimConfig, theta_E: float) -> float:
    k = _einstein_radius_factor(
        config.H0, config.Om0, config.Ob0, config.z_lens, config.z_source, config.distance_convention
    )
    return float((theta_E / k) ** 2)


# ---------------------------------------------------------------------------------------------------------
# Shared draws (identical for every class)


def _oriented(e1: float, e2: float, fixed: bool, rng: np.random.Generator) -> tuple[float, float, float]:
    """Return (e1, e2, position angle in rad): DeepLense's components, or their modulus at a U(0, pi) angle."""
    if fixed:
        return float(e1), float(e2), float(0.5 * math.atan2(e2, e1))
    phi = float(rng.uniform(0.0, math.pi))
    mod = math.hypot(e1, e2)
    return mod * math.cos(2 * phi), mod * math.sin(2 * phi), phi


#: Drawn ellipticities / shears are redrawn while their modulus is at or above this (a sample from a
#: normal per component truncated to a disk; with sd <= 0.2 fewer than 1 in 1e5 draws are redrawn).
_MAX_MODULUS = 0.9


def _gaussian_components(sd: float, rng: np.random.Generator) -> tuple[float, float, float]:
    """(e1, e2, position angle): both components ~ N(0, sd), modulus < _MAX_MODULUS (uniform angle)."""
    while True:
        e1, e2 = (float(v) for v in rng.normal(0.0, sd, size=2))
        if math.hypot(e1, e2) < _MAX_MODULUS:
            return e1, e2, float(0.5 * math.atan2(e2, e1) % math.pi)


def _truncated_normal(mean: float, sd: float, rng: np.random.Generator) -> float:
    """N(mean, sd) truncated to mean +/- 3 sd and to > 0."""
    while True:
        v = float(rng.normal(mean, sd))
        if abs(v - mean) <= 3 * sd and v > 0:
            return v


def _draw_shared(config: SimConfig, rng: np.random.Generator) -> dict[str, Any]:
    fixed = config.fixed_orientation
    if config.lens_theta_E_normal is not None:
        theta_E = _truncated_normal(*config.lens_theta_E_normal, rng)
        lens_mass = _mass_from_einstein_radius(config, theta_E)
    else:
        lens_mass = float(config.main_halo_mass)
        theta_E = float(einstein_radius(config, lens_mass))
    if config.lens_ellipticity_sd is not None:
        lens_e1, lens_e2, lens_phi = _gaussian_components(config.lens_ellipticity_sd, rng)
    else:
        lens_e1, lens_e2, lens_phi = _oriented(config.lens_e1, config.lens_e2, fixed, rng)
    if config.shear_sd is not None:
        g1, g2, shear_phi = _gaussian_components(config.shear_sd, rng)
    else:
        g1, g2, shear_phi = _oriented(config.shear_gamma1, config.shear_gamma2, fixed, rng)
    w = config.source_center_half_width
    sx, sy = (float(v) for v in rng.uniform(-w, w, size=2))
    if config.source_ellipticity_sd is not None:
        src_e1, src_e2, src_phi = _gaussian_components(config.source_ellipticity_sd, rng)
    else:
        src_e1, src_e2, src_phi = _oriented(config.source_e1, config.source_e2, fixed, rng)
    lo, hi = config.exposure_time_range
    # one draw even for a fixed exposure, so the stream layout does not depend on the instrument
    exposure = float(10.0 ** rng.uniform(math.log10(lo), math.log10(hi)))
    if lo == hi:
        exposure = float(lo)
    magnitude = config.source_magnitude
    if config.source_magnitude_range is not None:
        magnitude = float(rng.uniform(*config.source_magnitude_range))
    r_sersic = float(config.source_R_sersic)
    if config.source_R_sersic_range is not None:
        r_sersic = float(rng.uniform(*config.source_R_sersic_range))
    n_sersic = float(config.source_n_sersic)
    if config.source_n_sersic_range is not None:
        n_sersic = float(rng.uniform(*config.source_n_sersic_range))
    return {
        "lens": {
            "mass": lens_mass,
            "theta_E": theta_E,
            "e1": lens_e1,
            "e2": lens_e2,
            "position_angle": lens_phi,
            "center_x": 0.0,
            "center_y": 0.0,
        },
        "shear": {"gamma1": g1, "gamma2": g2, "angle": shear_phi},
        "source": {
            "amp": config.source_amp,
            "magnitude": magnitude,
            "R_sersic": r_sersic,
            "n_sersic": n_sersic,
            "e1": src_e1,
            "e2": src_e2,
            "position_angle": src_phi,
            "center_x": sx,
            "center_y": sy,
        },
        "exposure_time": exposure,
    }


# ---------------------------------------------------------------------------------------------------------
# Subhalo populations

_HALO_KEYS: tuple[str, ...] = ("profile", "mass", "x", "y", "theta_E", "concentration", "r_trunc_kpc", "Rs",
                               "alpha_Rs", "r_trunc", "r_core", "r_core_kpc", "kappa_0", "theta_c", "r_c_kpc",
                               "soliton_mass", "soliton_mass_relation")


def _empty_subhalos() -> dict[str, list[Any]]:
    return {k: [] for k in _HALO_KEYS}


def _nothing() -> dict[str, Any]:
    return {"subhalos": _empty_subhalos(), "population": None, "mass_sheet": None, "axion": None}


@dataclass(frozen=True)
class SubhaloPopulation:
    """One substructure population: what is drawn, how many, where, and with which profile.

    Attributes:
        profile: one of :data:`PROFILES` (every halo of the population; records hold it per halo).
        abundance: ``"sigma_sub"`` (Sigma_sub ~ U(sigma_sub_range), mass function normalised per area) or
            ``"count"`` (N ~ Poisson(mean_count) or exactly ``mean_count``).
        sigma_sub_range: (min, max) kpc^-2 at ``m_pivot`` (``sigma_sub`` abundance).
        m_pivot: pivot mass of the mass function, Msun.
        mean_count: mean (or fixed) number of halos (``count`` abundance).
        fixed_count: True: exactly ``mean_count`` halos.
        slope, m_min, m_max: dN/dm ~ m^slope on [m_min, m_max] Msun.
        render_mass_min: only masses >= this are drawn and rendered (``sigma_sub`` abundance).
        suppression: optional factor on the mass function (see :class:`MassFunction`).
        concentration: mass-concentration relation (``TNFW``).
        truncation: tidal truncation rule (``TNFW``).
        window_theta_E: window = disk of this many main-lens Einstein radii; None: ``radius_range``.
        radius_range: (r_in, r_out) arcsec annulus when ``window_theta_E`` is None.
        uniform_area: radii uniform in area (True) or in r (DeepLense legacy).
        mass_sheet: subtract the rendered halos' mass as a uniform sheet over the window.
        log10_m_hm_range: warm dark matter (None: CDM): log10 m_hm ~ U(range) per image (drawn right after
            Sigma_sub), which multiplies the mass function by
            :class:`equilens.simulation.halos.HalfModeSuppression` and the concentrations by
            :class:`equilens.simulation.halos.WDMConcentrationFactor`.
        log10_cross_section_range: self-interacting dark matter (profile ``CNFW``): log10(sigma/m / cm^2 g^-1)
            ~ U(range) per image (drawn after m_hm), core radii from
            :func:`equilens.simulation.halos.sidm_core_radius`.
        log10_m_uldm_range: ultra-light dark matter (profile ``ULDM``): log10(m / eV) of the boson ~ U(range)
            per image (drawn after sigma/m), which fixes ``log10_m_uldm`` (:meth:`with_boson_mass`).
        log10_m_uldm: the boson mass, log10(m / eV), once drawn (None: not ULDM): the mass function is
            multiplied by :class:`equilens.simulation.halos.ULDMSuppression`, concentrations by
            :class:`equilens.simulation.halos.WDMConcentrationFactor` at the ULDM half-mode mass, and each
            ``ULDM`` halo is a soliton (Schive et al. 2014 core-halo relation) plus its TNFW counterpart as an
            envelope holding the rest of the mass (:func:`equilens.simulation.halos.uldm_mass_split`).
    """

    profile: str
    abundance: str
    sigma_sub_range: tuple[float, float]
    m_pivot: float
    mean_count: float
    fixed_count: bool
    slope: float
    m_min: float
    m_max: float
    render_mass_min: float
    concentration: ConcentrationRelation
    truncation: TruncationRule
    window_theta_E: float | None
    radius_range: tuple[float, float]
    uniform_area: bool
    mass_sheet: bool
    suppression: Callable[[np.ndarray], np.ndarray] | None = None
    log10_m_hm_range: tuple[float, float] | None = None
    log10_cross_section_range: tuple[float, float] | None = None
    log10_m_uldm_range: tuple[float, float] | None = None
    log10_m_uldm: float | None = None

    def with_half_mode(self, log10_m_hm: float, z: float) -> SubhaloPopulation:
        """This population with the warm-dark-matter suppressions of half-mode mass 10^log10_m_hm Msun at z.

        Raises:
            ConfigError: log10_m_hm outside :data:`equilens.simulation.halos.WDM_LOG10_M_HM_VALID`.
        """
        m_hm = 10.0**log10_m_hm
        hm = HalfModeSuppression(m_hm)
        prev = self.suppression
        suppression: Callable[[np.ndarray], np.ndarray] = hm if prev is None else _Product(prev, hm)
        conc = dataclasses.replace(self.concentration, modifier=WDMConcentrationFactor(m_hm, z))
        return dataclasses.replace(self, suppression=suppression, concentration=conc, log10_m_hm_range=None)

    def with_boson_mass(self, log10_m: float, z: float, H0: float, Om0: float) -> SubhaloPopulation:
        """This population with the ultra-light dark matter of boson mass 10^log10_m eV at redshift z (cosmology
        H0, Om0): the suppressed mass function (Schive et al. 2016, no halo below the Schive et al. 2014 minimum
        mass), the concentrations at its half-mode mass and ``log10_m_uldm`` set (the solitons of ``ULDM`` halos).

        Raises:
            ConfigError: log10_m outside :data:`equilens.simulation.halos.ULDM_LOG10_M_VALID`.
        """
        check_log10_m_uldm(log10_m)
        m22 = 10.0 ** (log10_m + 22.0)
        sup = ULDMSuppression(m22, uldm_min_halo_mass(m22, z, Om0))
        suppression: Callable[[np.ndarray], np.ndarray] = sup if self.suppression is None else _Product(
            self.suppression, sup)
        conc = dataclasses.replace(self.concentration,
                                   modifier=WDMConcentrationFactor(uldm_half_mode_mass(m22, H0, Om0), z))
        return dataclasses.replace(self, suppression=suppression, concentration=conc, log10_m_uldm_range=None,
                                   log10_m_uldm=log10_m)

    def _sheet_shape(self, config: SimConfig, units: Any, r_in: float, r_out: float) -> tuple[np.ndarray, np.ndarray]:
        """Annulus edges (arcsec) and the relative expected subhalo convergence in each annulus."""
        return _sheet_shape_impl(self, config, units, r_in, r_out)

    def window(self, theta_E: float) -> tuple[float, float]:
        """(r_in, r_out) of the window in arcsec for a main lens of Einstein radius ``theta_E``."""
        if self.window_theta_E is not None:
            return 0.0, self.window_theta_E * theta_E
        return self.radius_range

    def draw(self, config: SimConfig, rng: np.random.Generator, shared: dict[str, Any],
             _drawn: tuple[float, SubhaloPopulation, float] | None = None) -> dict[str, Any]:
        """Draw the halos of one image (``shared``: the record's lens/source draws), as a partial record.

        ``_drawn`` (internal): Sigma_sub already drawn, the population whose expected profile shapes the
        mass sheet and the SIDM cross-section (cm^2/g, NaN: none). The warm / self-interacting paths draw
        log10 m_hm and sigma/m after Sigma_sub, then the halos from the modified population; the sheet's
        shape uses log10 m_hm rounded to 0.05 dex so that it is cached (its total is the realised mass).
        """
        units = lensing_units(config.H0, config.Om0, config.Ob0, config.z_lens, config.z_source)
        r_in, r_out = self.window(float(shared["lens"]["theta_E"]))
        area_arcsec2 = math.pi * (r_out**2 - r_in**2)
        area_kpc2 = area_arcsec2 * units.kpc_per_arcsec**2
        population: dict[str, Any] = {"window_r_in": r_in, "window_r_out": r_out, "abundance": self.abundance}
        shape_pop = self
        sigma_sub = 0.0
        cross_section = float("nan")
        if _drawn is None:
            if self.abundance == "sigma_sub":
                lo, hi = self.sigma_sub_range
                sigma_sub = float(rng.uniform(lo, hi))  # one draw even when lo == hi: same stream layout
            if (self.log10_m_hm_range is not None or self.log10_cross_section_range is not None
                    or self.log10_m_uldm_range is not None):
                extra: dict[str, float] = {}
                pop, shape_pop = self, self
                if self.log10_m_hm_range is not None:
                    log10_m_hm = float(rng.uniform(*self.log10_m_hm_range))
                    pop = self.with_half_mode(log10_m_hm, config.z_lens)
                    shape_pop = self.with_half_mode(_round_to(log10_m_hm, 0.05), config.z_lens)
                    extra.update({"log10_m_hm": log10_m_hm, "m_hm": 10.0**log10_m_hm})
                if self.log10_cross_section_range is not None:
                    log10_cs = float(rng.uniform(*self.log10_cross_section_range))
                    cross_section = 10.0**log10_cs
                    extra.update({"log10_cross_section": log10_cs, "cross_section": cross_section})
                if self.log10_m_uldm_range is not None:
                    log10_m = float(rng.uniform(*self.log10_m_uldm_range))
                    zl, h0, om0 = config.z_lens, config.H0, config.Om0
                    pop = pop.with_boson_mass(log10_m, zl, h0, om0)
                    shape_pop = shape_pop.with_boson_mass(_round_to(log10_m, 0.05), zl, h0, om0)
                    m22 = 10.0 ** (log10_m + 22.0)
                    extra.update({"log10_m_uldm": log10_m, "m22": m22, "uldm_m0": uldm_m0(m22),
                                  "uldm_m_min": uldm_min_halo_mass(m22, zl, om0),
                                  "uldm_m_hm": uldm_half_mode_mass(m22, h0, om0),
                                  "soliton_max_fraction": ULDM_SOLITON_MAX_FRACTION})
                pop = dataclasses.replace(pop, log10_m_hm_range=None, log10_cross_section_range=None,
                                          log10_m_uldm_range=None)
                out = pop.draw(config, rng, shared, _drawn=(sigma_sub, shape_pop, cross_section))
                out["population"].update(extra)
                return out
        else:
            sigma_sub, shape_pop, cross_section = _drawn
        if self.abundance == "sigma_sub":
            mf = MassFunction(sigma_sub, self.slope, self.m_min, self.m_max, self.m_pivot, self.suppression)
            mass = mf.draw(rng, area_kpc2, lo=self.render_mass_min)
            kappa_all = mf.mass_density() / units.sigma_crit
            population.update({
                "sigma_sub": sigma_sub,
                "m_pivot": self.m_pivot,
                "render_mass_min": self.render_mass_min,
                "n_expected": mf.expected_number(area_kpc2),
                "n_expected_rendered": mf.expected_number(area_kpc2, self.render_mass_min),
                # expected projected subhalo mass fraction at the Einstein radius (all masses, m200):
                # kappa_sub / kappa_main(theta_E), kappa_main(theta_E) = 1/2 for an isothermal lens
                "kappa_sub_expected": kappa_all,
                "f_sub": 2.0 * kappa_all,
            })
        else:
            n = int(self.mean_count) if self.fixed_count else int(rng.poisson(self.mean_count))
            mass = sample_power_law(rng, n, self.m_min, self.m_max, self.slope)
            if self.suppression is not None:  # thinned as MassFunction.draw does
                mass = mass[rng.uniform(0.0, 1.0, size=n) < self.suppression(mass)]
            population.update({"sigma_sub": None, "f_sub": None})
        n = len(mass)
        if self.uniform_area:
            r = np.sqrt(rng.uniform(r_in**2, r_out**2, size=n))
        else:
            r = rng.uniform(r_in, r_out, size=n)
        ang = rng.uniform(0.0, 2 * math.pi, size=n)
        x, y = r * np.cos(ang), r * np.sin(ang)
        theta_E = np.asarray(einstein_radius(config, mass), dtype=float)
        none = [None] * n  # not applicable (JSON null; numpy reads it as NaN)
        conc: Any = none
        rt_kpc: Any = none
        rs: Any = none
        alpha_rs: Any = none
        rt: Any = none
        rc: Any = none
        rc_kpc: Any = none
        kappa_0: Any = none
        theta_c: Any = none
        rsol_kpc: Any = none
        sol_mass: Any = none
        sol_relation: Any = none
        if self.profile in ("TNFW", "CNFW", "ULDM"):
            conc = self.concentration.draw(rng, mass, config.z_lens)
            rt_kpc = self.truncation.radius(mass, r * units.kpc_per_arcsec)
            rs, alpha_rs = nfw_angles(units, mass, conc)
            rt = rt_kpc / units.kpc_per_arcsec
            if self.profile == "CNFW":
                if not math.isfinite(cross_section):
                    raise ConfigError("the CNFW profile needs a drawn cross-section (log10_cross_section_range)")
                rc_kpc = sidm_core_radius(units, mass, conc, cross_section)
                rc = rc_kpc / units.kpc_per_arcsec
                alpha_rs, rt = _cored_counterpart(rs, alpha_rs, rt, rc)
            if self.profile == "ULDM":
                if self.log10_m_uldm is None:
                    raise ConfigError("the ULDM profile needs a drawn boson mass (log10_m_uldm_range)")
                from equilens.simulation.profiles import tnfw_total_mass

                m22 = 10.0 ** (self.log10_m_uldm + 22.0)
                rsol_kpc = uldm_core_radius(mass, m22, config.z_lens, config.Om0)
                sol_relation = soliton_mass(rsol_kpc, m22)
                total_msun = tnfw_total_mass(rs, alpha_rs, rt) * units.sigma_crit_arcsec2
                sol_mass, envelope = uldm_mass_split(total_msun, sol_relation)
                alpha_rs = alpha_rs * envelope  # the TNFW envelope keeps the rest of the counterpart's mass
                kappa_0, theta_c = soliton_angles(units, sol_mass, rsol_kpc)
                mass_kappa = (_mass_in_window("TNFW", rs, alpha_rs, rt, rc, r, r_in, r_out)
                              + _soliton_mass_in_window(kappa_0, theta_c, r, r_in, r_out))
            else:
                mass_kappa = _mass_in_window(self.profile, rs, alpha_rs, rt, rc, r, r_in, r_out)
        else:
            mass_kappa = math.pi * theta_E**2
        sheet = None
        total = float(np.sum(mass_kappa))
        if self.mass_sheet and area_arcsec2 > 0:
            radii, shape = shape_pop._sheet_shape(config, units, r_in, r_out)
            areas = math.pi * np.diff(radii**2)
            kappa = -total * shape / np.sum(shape * areas)
            sheet = {"radii": radii.tolist(), "kappa": kappa.tolist(), "kappa_mean": -total / area_arcsec2}
        population["kappa_sub_rendered"] = total / area_arcsec2 if area_arcsec2 > 0 else 0.0
        return {
            "subhalos": {
                "profile": [self.profile] * n,
                "mass": mass.tolist(),
                "x": x.tolist(),
                "y": y.tolist(),
                "theta_E": theta_E.tolist(),
                "concentration": list(np.asarray(conc).tolist()),
                "r_trunc_kpc": list(np.asarray(rt_kpc).tolist()),
                "Rs": list(np.asarray(rs).tolist()),
                "alpha_Rs": list(np.asarray(alpha_rs).tolist()),
                "r_trunc": list(np.asarray(rt).tolist()),
                "r_core": list(np.asarray(rc).tolist()),
                "r_core_kpc": list(np.asarray(rc_kpc).tolist()),
                "kappa_0": list(np.asarray(kappa_0).tolist()),
                "theta_c": list(np.asarray(theta_c).tolist()),
                "r_c_kpc": list(np.asarray(rsol_kpc).tolist()),
                "soliton_mass": list(np.asarray(sol_mass).tolist()),
                "soliton_mass_relation": list(np.asarray(sol_relation).tolist()),
            },
            "population": population,
            "mass_sheet": sheet,
            "axion": None,
        }


@dataclass(frozen=True)
class _Product:
    """Product of two mass-function factors (hashable, so populations stay cache keys)."""

    a: Callable[[np.ndarray], np.ndarray]
    b: Callable[[np.ndarray], np.ndarray]

    def __call__(self, m: np.ndarray) -> np.ndarray:
        return self.a(m) * self.b(m)


#: Radii (log-spaced) of the projected-profile integral for a halo that straddles the window's edge.
_EDGE_RADII = 256


def _cored_counterpart(rs: np.ndarray, alpha_rs: np.ndarray, rt: np.ndarray,
                       rc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """lenstronomy ``CNFW`` alpha_Rs and projected truncation radius (arcsec) of cored halos with the NFW
    halos' rho_s and Rs (``alpha_rs``: the NFW's) and the total mass of their TNFW counterparts (truncation
    ``rt``), found by bisection in log radius (the CNFW projected mass increases with radius)."""
    from equilens.simulation.profiles import cnfw_G, tnfw_total_mass

    b = rc / rs
    rho_s = alpha_rs / (4.0 * rs * rs * (1.0 + math.log(0.5)))  # NFW rho_s, convergence units per arcsec
    alpha_c = 4.0 * rho_s * rs * rs * cnfw_G(np.ones_like(rs), b)  # CNFW alpha_Rs with the same rho_s
    target = tnfw_total_mass(rs, alpha_rs, rt) / (4.0 * math.pi * rho_s * rs**3)  # G(R_t / Rs, b) wanted
    from equilens.simulation.kernels import cnfw_G_inverse  # bisection on ln(R_t / Rs), compiled

    return alpha_c, rs * cnfw_G_inverse(b, target)


def _mass_in_window(profile: str, rs: np.ndarray, alpha_rs: np.ndarray, rt: np.ndarray, rc: Any, r: np.ndarray,
                    r_in: float, r_out: float) -> np.ndarray:
    """Projected mass (convergence x arcsec^2) of each TNFW or CNFW halo inside the window annulus.

    A halo farther than ``TNFW_FAR_FIELD_RADIUS`` x max(r_trunc, Rs) from both edges counts with its total
    mass; for one closer to an edge, its mass inside the edge circle is the integral over radii s around
    the halo of 2 pi s Sigma(s) ds times the fraction of that ring inside the circle (``_EDGE_RADII``
    log-spaced radii out to 100 max(r_t, Rs); the mass beyond counts with the fraction at the last radius).
    """
    from equilens.simulation.profiles import (
        TNFW_FAR_FIELD_RADIUS,
        cnfw_convergence_profile,
        cnfw_projected_mass,
        tnfw_convergence_profile,
        tnfw_total_mass,
    )

    cored = profile == "CNFW"
    mass = cnfw_projected_mass(rt, rs, alpha_rs, rc) if cored else tnfw_total_mass(rs, alpha_rs, rt)
    size = np.maximum(rt, rs)

    def kappa(idx: np.ndarray, s: np.ndarray) -> np.ndarray:
        if cored:
            return cnfw_convergence_profile((s / rs[idx, None]) ** 2, rs[idx, None], alpha_rs[idx, None],
                                            np.asarray(rc)[idx, None], rt[idx, None])
        return tnfw_convergence_profile((s / rs[idx, None]) ** 2, rs[idx, None], alpha_rs[idx, None],
                                        (rt / rs)[idx, None])

    return _edge_corrected(np.asarray(mass, dtype=float), size, TNFW_FAR_FIELD_RADIUS * size, kappa, r, r_in, r_out)


#: A soliton's convergence (1 + a R^2 / theta_c^2)^-7.5 beyond this many core radii holds < 3e-7 of its mass.
_SOLITON_REACH = 10.0


def _soliton_mass_in_window(kappa_0: np.ndarray, theta_c: np.ndarray, r: np.ndarray, r_in: float,
                            r_out: float) -> np.ndarray:
    """Projected mass (convergence x arcsec^2) of each ULDM soliton inside the window annulus (as
    :func:`_mass_in_window`, with the soliton's convergence near the edges)."""
    from equilens.simulation.profiles import uldm_convergence_profile, uldm_total_mass

    k0, tc = np.asarray(kappa_0, dtype=float), np.asarray(theta_c, dtype=float)

    def kappa(idx: np.ndarray, s: np.ndarray) -> np.ndarray:
        return uldm_convergence_profile(s, k0[idx, None], tc[idx, None])

    return _edge_corrected(np.asarray(uldm_total_mass(k0, tc), dtype=float), tc, _SOLITON_REACH * tc, kappa, r,
                           r_in, r_out)


def _edge_corrected(mass: np.ndarray, size: np.ndarray, reach: np.ndarray,
                    kappa: Callable[[np.ndarray, np.ndarray], np.ndarray], r: np.ndarray, r_in: float,
                    r_out: float) -> np.ndarray:
    """Total projected masses ``mass`` (shape (n,)) of halos at distances ``r`` reduced to their parts inside the
    window annulus [r_in, r_out]: for a halo within ``reach`` of an edge, the integral over radii s around it
    (``_EDGE_RADII`` log-spaced in 1e-4..100 ``size``) of 2 pi s ``kappa(idx, s)`` ds times the fraction
    arccos((r^2 + s^2 - edge^2) / (2 r s)) / pi of that ring inside the edge circle; the mass beyond the last
    radius counts with the fraction at the last radius."""
    mass = mass.copy()
    grid = np.geomspace(1e-4, 100.0, _EDGE_RADII)  # in units of size
    dlog = np.gradient(np.log(grid))
    for edge, sign in ((r_out, 1.0), (r_in, -1.0)):
        idx = np.flatnonzero(np.abs(r - edge) < reach) if edge > 0 else np.zeros(0, dtype=int)
        if not idx.size:
            continue
        s = size[idx, None] * grid[None, :]  # (halos, radii) around each halo, arcsec
        dm = 2.0 * math.pi * s * s * kappa(idx, s) * dlog[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            cosang = (r[idx, None] ** 2 + s**2 - edge**2) / (2.0 * r[idx, None] * s)
        frac = np.arccos(np.clip(np.nan_to_num(cosang, nan=-1.0), -1.0, 1.0)) / math.pi
        inside = np.sum(dm * frac, axis=1) + (mass[idx] - np.sum(dm, axis=1)) * frac[:, -1]
        # outer edge: keep the part inside it; inner edge: remove the part inside the hole
        mass[idx] = inside if sign > 0 else mass[idx] - inside
    return mass


#: Annuli of the mass sheet; grids of its expected radial profile (masses, halo distances, radii around a halo).
_SHEET_ANNULI = 16
_SHEET_MASSES = 8
_SHEET_DISTANCES = 16
_SHEET_RADII = 96


def _sheet_shape_impl(pop: SubhaloPopulation, config: SimConfig, units: Any, r_in: float,
                      r_out: float) -> tuple[np.ndarray, np.ndarray]:
    radii = np.linspace(r_in, r_out, _SHEET_ANNULI + 1)
    if pop.profile not in ("TNFW", "CNFW", "ULDM"):
        return radii, np.ones(_SHEET_ANNULI)  # point masses: uniform in area, so is their mean convergence
    # cored halos and soliton + envelope halos carry the mass of their TNFW counterparts, spread alike (the
    # solitons more compactly, within each halo's truncation radius or a few core radii): the TNFW shape
    pop = dataclasses.replace(pop, profile="TNFW", log10_cross_section_range=None, log10_m_uldm=None)
    return radii, _tnfw_sheet_shape(pop, config.z_lens, units, _round_to(r_in, 0.05), _round_to(r_out, 0.05))


def _round_to(v: float, step: float) -> float:
    return round(round(v / step) * step, 6)


#: Cached sheet shapes: windows in 0.05" steps (~55 for theta_E ~ N(1.1, 0.15) within 3 sd) times the warm
#: half-mode masses in 0.05 dex steps (60 for U(7, 10)), about 3300 for wdm; each entry is 16 floats.
_SHEET_CACHE_SIZE = 8192


@functools.lru_cache(maxsize=_SHEET_CACHE_SIZE)
def _tnfw_sheet_shape(pop: SubhaloPopulation, z_lens: float, units: Any, r_in: float, r_out: float) -> np.ndarray:
    """Mean subhalo convergence in each sheet annulus, relative, for halos centred uniformly in the window.

    A truncated halo's mass grows with its distance from the centre (r_t ~ r^(2/3)) and spreads over a few
    r_t, comparable to the Einstein radius; so the expected mass inside a circle of radius R is computed as
    the average over halo masses (the mass function), halo distances (uniform in area) and each halo's
    projected profile of the fraction of its mass inside the circle (the ring of radius s around a halo at
    distance r lies inside a fraction arccos((r^2 + s^2 - R^2) / (2 r s)) / pi of its length). Cached by
    window (edges rounded to 0.05"): the profile is only a shape, the sheet's total is the realised mass.
    """
    from equilens.simulation.profiles import tnfw_convergence_profile

    radii = np.linspace(r_in, r_out, _SHEET_ANNULI + 1)
    m = np.geomspace(pop.render_mass_min, pop.m_max, _SHEET_MASSES)
    weight = m ** (pop.slope + 1.0)  # dN/dlog m on the log grid
    if pop.suppression is not None:
        weight = weight * pop.suppression(m)
    rs, alpha_rs = nfw_angles(units, m, pop.concentration.mean(m, z_lens))
    u = (np.arange(_SHEET_DISTANCES) + 0.5) / _SHEET_DISTANCES
    dist = np.sqrt(r_in**2 + u * (r_out**2 - r_in**2))  # equal-area halo distances
    s = np.geomspace(1e-4, 4.0 * r_out, _SHEET_RADII)  # radii around a halo, arcsec
    ds = np.gradient(s)
    enclosed = np.zeros(_SHEET_ANNULI + 1)
    big_r = radii[:, None, None]
    r = dist[None, :, None]
    cosang = (r**2 + s[None, None, :] ** 2 - big_r**2) / (2 * r * s[None, None, :])
    frac = np.arccos(np.clip(cosang, -1.0, 1.0)) / math.pi  # (edges, distances, radii): the same for every mass
    for i in range(_SHEET_MASSES):
        rt = pop.truncation.radius(np.full(_SHEET_DISTANCES, m[i]), dist * units.kpc_per_arcsec) / units.kpc_per_arcsec
        kappa = tnfw_convergence_profile((s[None, :] / rs[i]) ** 2, rs[i], alpha_rs[i], rt[:, None] / rs[i])
        dm = 2 * math.pi * s[None, :] * ds[None, :] * kappa  # (distances, radii)
        enclosed += weight[i] * np.sum(frac * dm[None, :, :], axis=(1, 2))
    areas = math.pi * np.diff(radii**2)
    return np.maximum(np.diff(enclosed), 0.0) / areas


def subhalo_population(config: SimConfig, profile: str) -> SubhaloPopulation:
    """The :class:`SubhaloPopulation` a config describes, with ``profile`` for every halo.

    Raises:
        ConfigError: unknown profile (the message lists :data:`PROFILES`).
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown subhalo profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    m_lo, m_hi = config.subhalo_mass_range
    render_min = config.subhalo_render_mass_min if config.subhalo_render_mass_min is not None else m_lo
    return SubhaloPopulation(
        profile=profile,
        abundance=config.subhalo_abundance,
        sigma_sub_range=config.sigma_sub_range,
        m_pivot=config.sigma_sub_pivot_mass,
        mean_count=config.n_subhalos_mean,
        fixed_count=config.subhalo_count_distribution == "fixed",
        slope=config.subhalo_mass_slope,
        m_min=m_lo,
        m_max=m_hi,
        render_mass_min=max(render_min, m_lo),
        concentration=DUFFY08,
        truncation=PALTAS_TRUNCATION,
        window_theta_E=config.subhalo_window_theta_E,
        radius_range=config.subhalo_radius_range,
        uniform_area=config.subhalo_radial_distribution == "uniform_area",
        mass_sheet=config.subhalo_mass_sheet,
    )


@register_population("no_sub")
def _no_sub(config: SimConfig, rng: np.random.Generator, shared: dict[str, Any]) -> dict[str, Any]:
    """No substructure: the main lens only."""
    return _nothing()


@register_population("cdm")
def _cdm(config: SimConfig, rng: np.random.Generator, shared: dict[str, Any]) -> dict[str, Any]:
    """CDM subhalos as point masses (abundance, mass function, window and sheet from the config)."""
    return subhalo_population(config, "POINT_MASS").draw(config, rng, shared)


@register_population("axion")
def _axion(config: SimConfig, rng: np.random.Generator, shared: dict[str, Any]) -> dict[str, Any]:
    """Axion vortex: a line of equal point masses through the centre (DeepLense ``make_vortex``); with
    ``vortex_on_subhalos`` on top of the cdm_tnfw population (drawn after the vortex), the mass sheet then
    also removing the vortex's mass annulus by annulus (:func:`_add_vortex_to_sheet`)."""
    lo, hi = config.axion_log10_mass_range
    log10_m = float(rng.uniform(lo, hi))
    m_a = 10.0**log10_m
    angle = float(rng.uniform(0.0, 2 * math.pi))
    half_length = config.vortex_length_coefficient / m_a
    point_mass = config.vortex_mass_total / config.vortex_n_points
    out = subhalo_population(config, "TNFW").draw(config, rng, shared) if config.vortex_on_subhalos else _nothing()
    out["axion"] = {
            "m_a": m_a,
            "log10_m_a": log10_m,
            "vortex_angle": angle,
            "vortex_half_length": float(half_length),
            "vortex_n_points": int(config.vortex_n_points),
            "vortex_point_mass": float(point_mass),
            "vortex_point_theta_E": float(einstein_radius(config, point_mass)),
    }
    if config.vortex_on_subhalos and out["mass_sheet"] is not None:
        _add_vortex_to_sheet(out)
    return out


def _add_vortex_to_sheet(out: dict[str, Any]) -> None:
    """Subtract the vortex's point masses from the mass sheet of ``out``, each annulus the mass of the points
    inside it (so the vortex changes no annulus's mean convergence: only its shape is left)."""
    sheet = out["mass_sheet"]
    ax = out["axion"]
    n = int(ax["vortex_n_points"])
    s = np.abs(np.linspace(-ax["vortex_half_length"], ax["vortex_half_length"], n))
    radii = np.asarray(sheet["radii"], dtype=float)
    point = math.pi * float(ax["vortex_point_theta_E"]) ** 2  # convergence x arcsec^2
    counts = np.histogram(s, bins=radii)[0]
    areas = math.pi * np.diff(radii**2)
    kappa = np.asarray(sheet["kappa"], dtype=float) - counts * point / areas
    sheet["kappa"] = kappa.tolist()
    total_area = math.pi * (radii[-1] ** 2 - radii[0] ** 2)
    sheet["kappa_mean"] = float(np.sum(kappa * areas) / total_area)
    out["population"]["vortex_mass_in_window"] = float(counts.sum() * ax["vortex_point_mass"])


@register_population("cdm_tnfw")
def _cdm_tnfw(config: SimConfig, rng: np.random.Generator, shared: dict[str, Any]) -> dict[str, Any]:
    """CDM subhalos as truncated NFW halos (Duffy 2008 concentrations, paltas truncation)."""
    return subhalo_population(config, "TNFW").draw(config, rng, shared)


@register_population("wdm")
def _wdm(config: SimConfig, rng: np.random.Generator, shared: dict[str, Any]) -> dict[str, Any]:
    """Warm dark matter: the cdm_tnfw population with log10 m_hm ~ U(wdm_log10_m_hm_range) per image, the
    Lovell et al. 2014 mass-function suppression and the Bose et al. 2016 concentrations
    (:mod:`equilens.simulation.halos`)."""
    pop = dataclasses.replace(subhalo_population(config, "TNFW"), log10_m_hm_range=config.wdm_log10_m_hm_range)
    return pop.draw(config, rng, shared)


@register_population("sidm")
def _sidm(config: SimConfig, rng: np.random.Generator, shared: dict[str, Any]) -> dict[str, Any]:
    """Self-interacting dark matter: the cdm_tnfw halos (same mass function, concentrations, truncation) with
    cores (lenstronomy ``CNFW``, truncated in projection to the TNFW counterpart's mass), core radius from
    sigma/m ~ log-uniform in sidm_cross_section_range (:func:`equilens.simulation.halos.sidm_core_radius`)."""
    lo, hi = config.sidm_cross_section_range
    pop = dataclasses.replace(subhalo_population(config, "CNFW"),
                              log10_cross_section_range=(math.log10(lo), math.log10(hi)))
    return pop.draw(config, rng, shared)


@register_population("uldm")
def _uldm(config: SimConfig, rng: np.random.Generator, shared: dict[str, Any]) -> dict[str, Any]:
    """Ultra-light dark matter: the cdm_tnfw population with log10(m / eV) ~ U(uldm_log10_m_range) per image, the
    Schive et al. 2016 mass-function suppression (no halo below the Schive et al. 2014 minimum mass), WDM-type
    concentrations at the ULDM half-mode mass, and in each halo a soliton (Schive et al. 2014 core-halo relation,
    lenstronomy ``ULDM``) inside a TNFW envelope holding the rest of the halo's mass (the soliton capped at
    :data:`equilens.simulation.halos.ULDM_SOLITON_MAX_FRACTION` of it; :mod:`equilens.simulation.halos`)."""
    pop = dataclasses.replace(subhalo_population(config, "ULDM"), log10_m_uldm_range=config.uldm_log10_m_range)
    return pop.draw(config, rng, shared)


# ---------------------------------------------------------------------------------------------------------
# Public API


def draw_parameters(config: SimConfig, class_name: str, rng: np.random.Generator) -> dict[str, Any]:
    """Draw every parameter of one image.

    Args:
        config: validated simulator config.
        class_name: a registered class (:data:`CLASS_NAMES`).
        rng: the only source of randomness.

    Returns:
        JSON-serialisable record: ``class``; ``lens`` {mass Msun, theta_E arcsec, e1, e2,
        position_angle rad, center_x, center_y arcsec}; ``shear`` {gamma1, gamma2, angle rad};
        ``source`` {amp or magnitude (the other None), R_sersic arcsec, n_sersic, e1, e2, position_angle,
        center_x, center_y}; ``subhalos``: per-halo lists {profile (:data:`PROFILES`), mass (m200, Msun),
        x, y (arcsec), theta_E (point-mass Einstein radius of the mass, arcsec), concentration (c200),
        r_trunc_kpc, Rs, alpha_Rs, r_trunc (arcsec; lenstronomy TNFW parameters; None for point masses;
        for ``CNFW`` halos alpha_Rs is lenstronomy's CNFW one and r_trunc the projected truncation radius,
        r_trunc_kpc the tidal radius of the TNFW counterpart), r_core, r_core_kpc (``CNFW`` core radius);
        ``ULDM`` halos (TNFW envelope: Rs, alpha_Rs scaled to the envelope's share, r_trunc): kappa_0, theta_c
        (arcsec; the lenstronomy ``ULDM`` soliton), r_c_kpc (soliton core radius), soliton_mass (Msun, after the
        cap) and soliton_mass_relation (Msun, Schive's, before it)};
        ``population`` {abundance, window_r_in, window_r_out (arcsec), sigma_sub (kpc^-2 or None),
        f_sub, kappa_sub_expected, kappa_sub_rendered, n_expected, n_expected_rendered, m_pivot,
        render_mass_min; wdm: log10_m_hm, m_hm (Msun); sidm: cross_section (cm^2/g), log10_cross_section;
        uldm: log10_m_uldm (log10 eV), m22, uldm_m0, uldm_m_min, uldm_m_hm (Msun), soliton_max_fraction;
        axion on subhalos: vortex_mass_in_window (Msun)} or None; ``mass_sheet`` {radii (arcsec), kappa per
        annulus (< 0), kappa_mean} or None; ``axion``
        {m_a eV, log10_m_a, vortex_angle rad, vortex_half_length arcsec, vortex_n_points, vortex_point_mass
        Msun, vortex_point_theta_E arcsec} or None; ``exposure_time`` s.

    Raises:
        ConfigError: unknown class name (the message lists the valid ones).
    """
    if class_name not in POPULATIONS:
        raise ConfigError(f"unknown class {class_name!r}; valid classes: {', '.join(CLASS_NAMES)}")
    record: dict[str, Any] = {"class": class_name}
    record.update(_draw_shared(config, rng))
    record.update(POPULATIONS[class_name](config, rng, record))
    return record


def halo_profiles(params: dict[str, Any]) -> np.ndarray:
    """Profile name of every subhalo of a record, shape (n,) (records from before per-halo profile names
    hold point masses only)."""
    sub = params["subhalos"]
    names = sub.get("profile")
    if names is None:
        return np.full(len(sub["mass"]), "POINT_MASS")
    return np.asarray(names, dtype=str)


def point_masses(params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All point masses of a record (``POINT_MASS`` subhalos, then vortex points).

    Returns:
        (theta_E, x, y) arrays in arcsec, each of shape (n,).
    """
    sub = params["subhalos"]
    keep = halo_profiles(params) == "POINT_MASS"
    te = [np.asarray(sub["theta_E"], dtype=float)[keep]]
    xs = [np.asarray(sub["x"], dtype=float)[keep]]
    ys = [np.asarray(sub["y"], dtype=float)[keep]]
    ax = params.get("axion")
    if ax is not None:
        from equilens.simulation.profiles import vortex_points

        n = int(ax["vortex_n_points"])
        _, x, y = vortex_points(float(ax["vortex_half_length"]), n, float(ax["vortex_angle"]))
        te.append(np.full(n, float(ax["vortex_point_theta_E"])))
        xs.append(x)
        ys.append(y)
    return np.concatenate(te), np.concatenate(xs), np.concatenate(ys)


_COLUMNS: tuple[str, ...] = (
    "lens_theta_E",
    "lens_mass",
    "lens_e1",
    "lens_e2",
    "lens_position_angle",
    "lens_center_x",
    "lens_center_y",
    "shear_gamma1",
    "shear_gamma2",
    "shear_angle",
    "source_x",
    "source_y",
    "source_e1",
    "source_e2",
    "source_position_angle",
    "source_R_sersic",
    "source_n_sersic",
    "source_amp",
    "source_magnitude",
    "n_subhalos",
    "subhalo_mass_total",
    "sigma_sub",
    "f_sub",
    "kappa_sub_rendered",
    "mass_sheet_kappa",
    "m_a",
    "log10_m_a",
    "vortex_angle",
    "vortex_half_length",
    "log10_m_hm",
    "cross_section",
    "log10_m_uldm",
    "exposure_time",
)


def parameter_columns(config: SimConfig) -> list[str]:
    """Names of the scalar parameter columns (the same for every class of ``config``)."""
    return list(_COLUMNS)


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def flatten_parameters(params: dict[str, Any]) -> dict[str, float]:
    """One scalar table row: :func:`parameter_columns` -> value, NaN where not applicable.

    ``n_subhalos`` and ``subhalo_mass_total`` (m200, Msun) count the rendered subhalos (0 for no_sub and
    axion); ``sigma_sub`` (kpc^-2), ``f_sub`` and ``kappa_sub_rendered`` are NaN without a Sigma_sub
    population, ``mass_sheet_kappa`` is 0 without a sheet; the axion
    columns are NaN outside the axion class; ``source_amp`` / ``source_magnitude`` are NaN when the
    source is given the other way.
    """
    lens, shear, src, sub = params["lens"], params["shear"], params["source"], params["subhalos"]
    ax = params.get("axion") or {}
    pop = params.get("population") or {}
    sheet = params.get("mass_sheet") or {}
    row = {
        "lens_theta_E": _num(lens["theta_E"]),
        "lens_mass": _num(lens["mass"]),
        "lens_e1": _num(lens["e1"]),
        "lens_e2": _num(lens["e2"]),
        "lens_position_angle": _num(lens["position_angle"]),
        "lens_center_x": _num(lens["center_x"]),
        "lens_center_y": _num(lens["center_y"]),
        "shear_gamma1": _num(shear["gamma1"]),
        "shear_gamma2": _num(shear["gamma2"]),
        "shear_angle": _num(shear["angle"]),
        "source_x": _num(src["center_x"]),
        "source_y": _num(src["center_y"]),
        "source_e1": _num(src["e1"]),
        "source_e2": _num(src["e2"]),
        "source_position_angle": _num(src["position_angle"]),
        "source_R_sersic": _num(src["R_sersic"]),
        "source_n_sersic": _num(src["n_sersic"]),
        "source_amp": _num(src.get("amp")),
        "source_magnitude": _num(src.get("magnitude")),
        "n_subhalos": float(len(sub["mass"])),
        "subhalo_mass_total": float(np.sum(sub["mass"])) if len(sub["mass"]) else 0.0,
        "sigma_sub": _num(pop.get("sigma_sub")),
        "f_sub": _num(pop.get("f_sub")),
        "kappa_sub_rendered": _num(pop.get("kappa_sub_rendered")),
        "mass_sheet_kappa": float(sheet.get("kappa_mean", 0.0)),
        "m_a": _num(ax.get("m_a")),
        "log10_m_a": _num(ax.get("log10_m_a")),
        "vortex_angle": _num(ax.get("vortex_angle")),
        "vortex_half_length": _num(ax.get("vortex_half_length")),
        "log10_m_hm": _num(pop.get("log10_m_hm")),
        "cross_section": _num(pop.get("cross_section")),
        "log10_m_uldm": _num(pop.get("log10_m_uldm")),
        "exposure_time": _num(params["exposure_time"]),
    }
    return row
