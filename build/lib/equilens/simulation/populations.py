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
- ``cdm``: N ~ Poisson(n_subhalos_mean) (or exactly n_subhalos_mean when fixed); masses from
  dN/dm ~ m^slope on [m_min, m_max] by inverse CDF; radii uniform in area (r = sqrt(U(r_min^2, r_max^2)))
  or uniform in r (legacy), angles U(0, 2 pi); point masses in the lens plane.
- ``axion``: log10 m_a ~ U(range), vortex angle ~ U(0, 2 pi), half-length L = coefficient / m_a arcsec,
  ``vortex_n_points`` point masses of vortex_mass_total / n each, evenly spaced on [-L, L] along the line.
  Their positions are a deterministic function of the record (:func:`point_masses`), not stored.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from equilens.errors import ConfigError
from equilens.simulation.config import SimConfig

__all__ = [
    "CLASS_NAMES",
    "POPULATIONS",
    "register_population",
    "draw_parameters",
    "einstein_radius",
    "point_masses",
    "parameter_columns",
    "flatten_parameters",
]

PopulationFn = Callable[[SimConfig, np.random.Generator], dict[str, Any]]

#: Registered substructure populations: class name -> function(config, rng) -> partial record with keys
#: "subhalos" ({"mass", "x", "y", "theta_E"} lists) and "axion" (dict or None).
POPULATIONS: dict[str, PopulationFn] = {}
#: Class names in registration order (the label order of data sets made with all classes).
CLASS_NAMES: list[str] = []


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


# ---------------------------------------------------------------------------------------------------------
# Shared draws (identical for every class)


def _oriented(e1: float, e2: float, fixed: bool, rng: np.random.Generator) -> tuple[float, float, float]:
    """Return (e1, e2, position angle in rad): DeepLense's components, or their modulus at a U(0, pi) angle."""
    if fixed:
        return float(e1), float(e2), float(0.5 * math.atan2(e2, e1))
    phi = float(rng.uniform(0.0, math.pi))
    mod = math.hypot(e1, e2)
    return mod * math.cos(2 * phi), mod * math.sin(2 * phi), phi


def _draw_shared(config: SimConfig, rng: np.random.Generator) -> dict[str, Any]:
    fixed = config.fixed_orientation
    lens_e1, lens_e2, lens_phi = _oriented(config.lens_e1, config.lens_e2, fixed, rng)
    g1, g2, shear_phi = _oriented(config.shear_gamma1, config.shear_gamma2, fixed, rng)
    w = config.source_center_half_width
    sx, sy = (float(v) for v in rng.uniform(-w, w, size=2))
    src_e1, src_e2, src_phi = _oriented(config.source_e1, config.source_e2, fixed, rng)
    lo, hi = config.exposure_time_range
    # one draw even for a fixed exposure, so the stream layout does not depend on the instrument
    exposure = float(10.0 ** rng.uniform(math.log10(lo), math.log10(hi)))
    if lo == hi:
        exposure = float(lo)
    return {
        "lens": {
            "mass": float(config.main_halo_mass),
            "theta_E": float(einstein_radius(config, config.main_halo_mass)),
            "e1": lens_e1,
            "e2": lens_e2,
            "position_angle": lens_phi,
            "center_x": 0.0,
            "center_y": 0.0,
        },
        "shear": {"gamma1": g1, "gamma2": g2, "angle": shear_phi},
        "source": {
            "amp": config.source_amp,
            "magnitude": config.source_magnitude,
            "R_sersic": float(config.source_R_sersic),
            "n_sersic": float(config.source_n_sersic),
            "e1": src_e1,
            "e2": src_e2,
            "position_angle": src_phi,
            "center_x": sx,
            "center_y": sy,
        },
        "exposure_time": exposure,
    }


# ---------------------------------------------------------------------------------------------------------
# Substructure populations


def _empty_subhalos() -> dict[str, list[float]]:
    return {"mass": [], "x": [], "y": [], "theta_E": []}


def sample_power_law(rng: np.random.Generator, n: int, lo: float, hi: float, slope: float) -> np.ndarray:
    """``n`` draws from pdf ~ m^slope on [lo, hi] by inverse CDF (log-uniform when slope == -1)."""
    u = rng.uniform(0.0, 1.0, size=n)
    a = slope + 1.0
    if abs(a) < 1e-12:
        return lo * (hi / lo) ** u
    return (lo**a + (hi**a - lo**a) * u) ** (1.0 / a)


@register_population("no_sub")
def _no_sub(config: SimConfig, rng: np.random.Generator) -> dict[str, Any]:
    """No substructure: the main lens only."""
    return {"subhalos": _empty_subhalos(), "axion": None}


@register_population("cdm")
def _cdm(config: SimConfig, rng: np.random.Generator) -> dict[str, Any]:
    """CDM point-mass subhalos (mass function, count and radial law from the config)."""
    if config.subhalo_count_distribution == "poisson":
        n = int(rng.poisson(config.n_subhalos_mean))
    else:
        n = int(config.n_subhalos_mean)
    m_lo, m_hi = config.subhalo_mass_range
    mass = sample_power_law(rng, n, m_lo, m_hi, config.subhalo_mass_slope)
    r_lo, r_hi = config.subhalo_radius_range
    if config.subhalo_radial_distribution == "uniform_area":
        r = np.sqrt(rng.uniform(r_lo**2, r_hi**2, size=n))
    else:
        r = rng.uniform(r_lo, r_hi, size=n)
    ang = rng.uniform(0.0, 2 * math.pi, size=n)
    x, y = r * np.cos(ang), r * np.sin(ang)
    return {
        "subhalos": {
            "mass": mass.tolist(),
            "x": x.tolist(),
            "y": y.tolist(),
            "theta_E": np.asarray(einstein_radius(config, mass)).tolist(),
        },
        "axion": None,
    }


@register_population("axion")
def _axion(config: SimConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Axion vortex: a line of equal point masses through the centre (DeepLense ``make_vortex``)."""
    lo, hi = config.axion_log10_mass_range
    log10_m = float(rng.uniform(lo, hi))
    m_a = 10.0**log10_m
    angle = float(rng.uniform(0.0, 2 * math.pi))
    half_length = config.vortex_length_coefficient / m_a
    point_mass = config.vortex_mass_total / config.vortex_n_points
    return {
        "subhalos": _empty_subhalos(),
        "axion": {
            "m_a": m_a,
            "log10_m_a": log10_m,
            "vortex_angle": angle,
            "vortex_half_length": float(half_length),
            "vortex_n_points": int(config.vortex_n_points),
            "vortex_point_mass": float(point_mass),
            "vortex_point_theta_E": float(einstein_radius(config, point_mass)),
        },
    }


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
        center_x, center_y}; ``subhalos`` {mass Msun, x, y, theta_E arcsec: lists}; ``axion`` {m_a eV,
        log10_m_a, vortex_angle rad, vortex_half_length arcsec, vortex_n_points, vortex_point_mass Msun,
        vortex_point_theta_E arcsec} or None; ``exposure_time`` s.

    Raises:
        ConfigError: unknown class name (the message lists the valid ones).
    """
    if class_name not in POPULATIONS:
        raise ConfigError(f"unknown class {class_name!r}; valid classes: {', '.join(CLASS_NAMES)}")
    record: dict[str, Any] = {"class": class_name}
    record.update(_draw_shared(config, rng))
    record.update(POPULATIONS[class_name](config, rng))
    return record


def point_masses(params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All point masses of a record (CDM subhalos, then vortex points).

    Returns:
        (theta_E, x, y) arrays in arcsec, each of shape (n,).
    """
    sub = params["subhalos"]
    te = [np.asarray(sub["theta_E"], dtype=float)]
    xs = [np.asarray(sub["x"], dtype=float)]
    ys = [np.asarray(sub["y"], dtype=float)]
    ax = params.get("axion")
    if ax is not None:
        n = int(ax["vortex_n_points"])
        s = np.linspace(-ax["vortex_half_length"], ax["vortex_half_length"], n)
        te.append(np.full(n, float(ax["vortex_point_theta_E"])))
        xs.append(s * math.cos(ax["vortex_angle"]))
        ys.append(s * math.sin(ax["vortex_angle"]))
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
    "m_a",
    "log10_m_a",
    "vortex_angle",
    "vortex_half_length",
    "exposure_time",
)


def parameter_columns(config: SimConfig) -> list[str]:
    """Names of the scalar parameter columns (the same for every class of ``config``)."""
    return list(_COLUMNS)


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def flatten_parameters(params: dict[str, Any]) -> dict[str, float]:
    """One scalar table row: :func:`parameter_columns` -> value, NaN where not applicable.

    ``n_subhalos`` and ``subhalo_mass_total`` count CDM subhalos (0 for no_sub and axion); the axion
    columns are NaN outside the axion class; ``source_amp`` / ``source_magnitude`` are NaN when the
    source is given the other way.
    """
    lens, shear, src, sub = params["lens"], params["shear"], params["source"], params["subhalos"]
    ax = params.get("axion") or {}
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
        "m_a": _num(ax.get("m_a")),
        "log10_m_a": _num(ax.get("log10_m_a")),
        "vortex_angle": _num(ax.get("vortex_angle")),
        "vortex_half_length": _num(ax.get("vortex_half_length")),
        "exposure_time": _num(params["exposure_time"]),
    }
    return row
