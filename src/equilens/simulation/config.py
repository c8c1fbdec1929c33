"""Validated simulator configuration: a preset plus overrides (YAML file or ``--set key=value``).

:class:`SimConfig` holds every physics and instrument setting of a data set. It is frozen, hashable (the
renderer caches per config) and JSON-able through :meth:`SimConfig.to_dict` / :meth:`SimConfig.from_dict`,
so a data set's manifest records exactly what made it. Defaults come from
:func:`equilens.simulation.presets.preset_defaults`; the keys, their units and meaning are in
:data:`CONFIG_KEYS`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from equilens.errors import ConfigError
from equilens.simulation.halos import check_cross_section, check_log10_m_hm, check_log10_m_uldm
from equilens.simulation.instruments import INSTRUMENTS, NOISE_MODELS, PSF_MODELS
from equilens.simulation.presets import PRESET_NAMES, instrument_values, preset_defaults

__all__ = [
    "SimConfig",
    "CONFIG_KEYS",
    "NOISE_MODES",
    "DISTANCE_CONVENTIONS",
    "SUBHALO_COUNT_DISTRIBUTIONS",
    "SUBHALO_RADIAL_DISTRIBUTIONS",
    "SUBHALO_ABUNDANCES",
    "PSF_MODELS",
    "FLUX_UNITS",
    "resolve_config",
    "parse_set_overrides",
    "load_overrides_file",
]

NOISE_MODES: tuple[str, ...] = ("default", "none")
DISTANCE_CONVENTIONS: tuple[str, ...] = ("angular_diameter", "legacy_luminosity")
SUBHALO_COUNT_DISTRIBUTIONS: tuple[str, ...] = ("poisson", "fixed")
SUBHALO_RADIAL_DISTRIBUTIONS: tuple[str, ...] = ("uniform_area", "uniform_radius")
FLUX_UNITS: tuple[str, ...] = ("counts", "e-/s")
SUBHALO_ABUNDANCES: tuple[str, ...] = ("sigma_sub", "count")

#: Every configuration key with its unit and meaning (also the order of :meth:`SimConfig.to_dict`).
CONFIG_KEYS: dict[str, str] = {
    "preset": f"preset the defaults came from: {', '.join(PRESET_NAMES)}",
    "legacy": "bool; true: the published DeepLense recipe (see presets.LEGACY_DIFFERENCES)",
    "fixed_orientation": "bool; true: lens/shear/source position angles fixed at DeepLense's values",
    "image_size": "int, image side in pixels",
    "pixel_scale": "float > 0, arcsec per pixel",
    "supersampling_factor": "int >= 1, sub-pixels per pixel side for ray tracing",
    "psf_fwhm": "float > 0, Gaussian PSF FWHM in arcsec",
    "psf_truncation": "float > 0, Gaussian PSF kernel truncation in units of sigma",
    "psf_model": f"one of {', '.join(PSF_MODELS)} (gaussian_pixel_integrated: the Gaussian integrated over "
    "each pixel, see instruments.py)",
    "instrument": f"instrument whose numbers the preset uses: {', '.join(INSTRUMENTS)} (overriding it "
    "loads that instrument's pixel scale, PSF, exposure and noise numbers)",
    "noise": f"one of {', '.join(NOISE_MODES)} ('none': noiseless images)",
    "noise_model": f"one of {', '.join(NOISE_MODELS)}",
    "flux_unit": f"one of {', '.join(FLUX_UNITS)} (counts: model times exposure time)",
    "flux_scale": "float > 0, factor on the noiseless image (legacy Models II/III: 2)",
    "exposure_time_range": "[min, max] total exposure in s, drawn log-uniformly (min == max: fixed)",
    "num_exposures": "int >= 1, co-added exposures (each adds read noise)",
    "sky_brightness": "float, sky in mag/arcsec^2, or null (ccd noise model needs it)",
    "magnitude_zero_point": "float, magnitude giving 1 e-/s, or null",
    "read_noise": "float >= 0, e- per exposure, or null",
    "ccd_gain": "float > 0, e-/ADU (recorded only: images are in e-/s), or null",
    "background_rms": "float >= 0, Gaussian background rms in counts/s per pixel, or null",
    "H0": "float > 0, km/s/Mpc (FlatLambdaCDM)",
    "Om0": "float in (0, 1), matter density",
    "Ob0": "float in [0, Om0], baryon density",
    "z_lens": "float > 0, lens redshift",
    "z_source": "float > z_lens, source redshift",
    "distance_convention": f"one of {', '.join(DISTANCE_CONVENTIONS)} (for Einstein radii)",
    "z_source_convention": "null (single plane) or float >= z_source: legacy multi-plane convention",
    "main_halo_mass": "float > 0, Msun, mass inside the main lens's Einstein radius",
    "lens_e1": "float, DeepLense lens ellipticity e1 (its modulus is kept, its angle drawn)",
    "lens_e2": "float, lens ellipticity e2",
    "shear_gamma1": "float, external shear gamma1 (modulus kept, angle drawn)",
    "shear_gamma2": "float, external shear gamma2",
    "lens_theta_E_normal": "[mean, sd] arcsec: main-lens Einstein radius ~ N(mean, sd) truncated at 3 sd, or "
    "null (then from main_halo_mass)",
    "lens_ellipticity_sd": "float >= 0: lens e1, e2 ~ N(0, sd) each, or null (then lens_e1/e2 modulus, angle drawn)",
    "shear_sd": "float >= 0: gamma1, gamma2 ~ N(0, sd) each, or null (then shear_gamma1/2 modulus, angle drawn)",
    "source_amp": "float > 0, lenstronomy Sersic amplitude, or null (then source_magnitude)",
    "source_magnitude": "float, source magnitude, or null (then source_amp)",
    "source_R_sersic": "float > 0, arcsec",
    "source_n_sersic": "float > 0",
    "source_e1": "float, source ellipticity e1 (modulus kept, angle drawn)",
    "source_e2": "float, source ellipticity e2",
    "source_center_half_width": "float >= 0, arcsec; source centre uniform in [-w, w] on each axis",
    "source_magnitude_range": "[min, max] source magnitude drawn uniformly (source_amp and "
    "source_magnitude null), or null",
    "source_R_sersic_range": "[min, max] arcsec, R_sersic drawn uniformly, or null (then source_R_sersic)",
    "source_n_sersic_range": "[min, max], n_sersic drawn uniformly, or null (then source_n_sersic)",
    "source_ellipticity_sd": "float >= 0: source e1, e2 ~ N(0, sd) each, or null (then source_e1/e2)",
    "n_subhalos_mean": "float > 0, mean number of CDM subhalos (Poisson) or the fixed count",
    "subhalo_count_distribution": f"one of {', '.join(SUBHALO_COUNT_DISTRIBUTIONS)}",
    "subhalo_mass_range": "[min, max] Msun, 0 < min < max",
    "subhalo_mass_slope": "float, dN/dm ~ m^slope",
    "subhalo_radius_range": "[min, max] arcsec from the lens centre, 0 <= min < max",
    "subhalo_radial_distribution": f"one of {', '.join(SUBHALO_RADIAL_DISTRIBUTIONS)}",
    "subhalo_abundance": f"one of {', '.join(SUBHALO_ABUNDANCES)} (sigma_sub: Poisson number from the "
    "normalised mass function over the window's area; count: Poisson(n_subhalos_mean), DeepLense)",
    "sigma_sub_range": "[min, max] kpc^-2, 0 <= min <= max: Sigma_sub ~ U(min, max) per image, the mass "
    "function dN/dm dA = Sigma_sub / m_pivot (m / m_pivot)^slope (pyHalo CDM: 0.025)",
    "sigma_sub_pivot_mass": "float > 0, Msun, m_pivot of the mass function (pyHalo: 1e8)",
    "subhalo_render_mass_min": "float > 0 below the max of subhalo_mass_range, Msun: lighter subhalos are not "
    "drawn (sigma_sub abundance), or null (all drawn)",
    "subhalo_window_theta_E": "float >= 1: subhalos uniform in the disk of this many main-lens Einstein radii, "
    "or null (then subhalo_radius_range)",
    "subhalo_mass_sheet": "bool; true: subtract the rendered subhalos' mass as a uniform negative sheet over "
    "their window",
    "axion_log10_mass_range": "[min, max] log10(m_a / eV), drawn uniformly, min <= max",
    "vortex_mass_total": "float > 0, Msun, total mass of the vortex line",
    "vortex_n_points": "int >= 2, point masses on the vortex line",
    "vortex_length_coefficient": "float > 0, eV arcsec: vortex half-length L = coefficient / m_a",
    "wdm_log10_m_hm_range": "[min, max] log10(m_hm / Msun) within [5, 12], min <= max: the wdm class draws "
    "the half-mode mass log10 m_hm ~ U(min, max) per image",
    "vortex_on_subhalos": "bool; true: the axion class draws the vortex on top of the cdm_tnfw subhalo "
    "population and the mass sheet also removes the vortex's mass (per annulus); false: the vortex alone (DeepLense)",
    "sidm_cross_section_range": "[min, max] cm^2/g within [0.01, 100], min <= max: the sidm class draws the "
    "cross-section per unit mass log-uniformly in it per image",
    "uldm_log10_m_range": "[min, max] log10(m / eV) within [-23, -19], min <= max: the uldm class draws the "
    "boson mass log10(m / eV) ~ U(min, max) per image",
}


@dataclass(frozen=True)
class SimConfig:
    """Every physics and instrument setting of a simulated data set (units in :data:`CONFIG_KEYS`).

    Build it with :func:`resolve_config` (preset + overrides) or :meth:`from_dict`; both validate.
    Ranges are tuples ``(min, max)``.
    """

    preset: str
    legacy: bool
    fixed_orientation: bool
    image_size: int
    pixel_scale: float
    supersampling_factor: int
    psf_fwhm: float
    psf_truncation: float
    psf_model: str
    instrument: str
    noise: str
    noise_model: str
    flux_unit: str
    flux_scale: float
    exposure_time_range: tuple[float, float]
    num_exposures: int
    sky_brightness: float | None
    magnitude_zero_point: float | None
    read_noise: float | None
    ccd_gain: float | None
    background_rms: float | None
    H0: float
    Om0: float
    Ob0: float
    z_lens: float
    z_source: float
    distance_convention: str
    z_source_convention: float | None
    main_halo_mass: float
    lens_e1: float
    lens_e2: float
    shear_gamma1: float
    shear_gamma2: float
    lens_theta_E_normal: tuple[float, float] | None
    lens_ellipticity_sd: float | None
    shear_sd: float | None
    source_amp: float | None
    source_magnitude: float | None
    source_R_sersic: float
    source_n_sersic: float
    source_e1: float
    source_e2: float
    source_center_half_width: float
    source_magnitude_range: tuple[float, float] | None
    source_R_sersic_range: tuple[float, float] | None
    source_n_sersic_range: tuple[float, float] | None
    source_ellipticity_sd: float | None
    n_subhalos_mean: float
    subhalo_count_distribution: str
    subhalo_mass_range: tuple[float, float]
    subhalo_mass_slope: float
    subhalo_radius_range: tuple[float, float]
    subhalo_radial_distribution: str
    subhalo_abundance: str
    sigma_sub_range: tuple[float, float]
    sigma_sub_pivot_mass: float
    subhalo_render_mass_min: float | None
    subhalo_window_theta_E: float | None
    subhalo_mass_sheet: bool
    axion_log10_mass_range: tuple[float, float]
    vortex_mass_total: float
    vortex_n_points: int
    vortex_length_coefficient: float
    wdm_log10_m_hm_range: tuple[float, float]
    vortex_on_subhalos: bool
    sidm_cross_section_range: tuple[float, float]
    uldm_log10_m_range: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (ranges as lists), keys in :data:`CONFIG_KEYS` order."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SimConfig:
        """Validate a complete mapping (e.g. a manifest's ``config``) and build the config.

        Raises:
            ConfigError: missing or unknown keys, or invalid values (the message lists what is valid).
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"a simulator config must be a mapping of keys to values, got {type(d).__name__}")
        unknown = sorted(set(d) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(_unknown_keys_message(unknown))
        missing = [k for k in CONFIG_KEYS if k not in d]
        if missing and set(missing) <= set(ADDED_WITH_CLASS) and d.get("preset") in PRESET_NAMES:
            # written before these keys existed: they only matter to classes that did not exist either
            defaults = preset_defaults(str(d["preset"]), legacy=bool(_coerce("legacy", d.get("legacy", False))))
            d = {**d, **{k: defaults[k] for k in missing}}
            missing = []
        if missing:
            raise ConfigError(
                f"simulator config is missing keys {', '.join(missing)}; a complete config has: "
                f"{', '.join(CONFIG_KEYS)}"
            )
        values = {k: _coerce(k, d[k]) for k in CONFIG_KEYS}
        _check_consistency(values)
        return cls(**values)


# ---------------------------------------------------------------------------------------------------------
# Field kinds and coercion


_BOOL = {"legacy", "fixed_orientation", "subhalo_mass_sheet", "vortex_on_subhalos"}
_INT_MIN = {"image_size": 4, "supersampling_factor": 1, "num_exposures": 1, "vortex_n_points": 2}
_POSITIVE = {
    "pixel_scale", "psf_fwhm", "psf_truncation", "flux_scale", "H0", "z_lens", "z_source",
    "main_halo_mass", "source_R_sersic", "source_n_sersic", "n_subhalos_mean", "vortex_mass_total",
    "vortex_length_coefficient", "sigma_sub_pivot_mass",
}
_FINITE = {
    "lens_e1", "lens_e2", "shear_gamma1", "shear_gamma2", "source_e1", "source_e2", "subhalo_mass_slope",
    "Om0", "Ob0",
}
_NONNEG = {"source_center_half_width"}
_OPTIONAL_FLOAT = {
    "sky_brightness": "finite", "magnitude_zero_point": "finite", "read_noise": "nonneg",
    "ccd_gain": "positive", "background_rms": "nonneg", "z_source_convention": "positive",
    "source_amp": "positive", "source_magnitude": "finite",
    "lens_ellipticity_sd": "nonneg", "shear_sd": "nonneg", "source_ellipticity_sd": "nonneg",
    "subhalo_render_mass_min": "positive", "subhalo_window_theta_E": "positive",
}
_RANGES = {
    "exposure_time_range": "positive_le",
    "subhalo_mass_range": "positive_lt",
    "subhalo_radius_range": "nonneg_lt",
    "axion_log10_mass_range": "finite_le",
    "sigma_sub_range": "nonneg_le",
    "wdm_log10_m_hm_range": "finite_le",
    "sidm_cross_section_range": "positive_le",
    "uldm_log10_m_range": "finite_le",
}
#: Ranges that may also be null.
_OPTIONAL_RANGES = {
    "lens_theta_E_normal": "positive_nonneg",  # [mean > 0, sd >= 0]
    "source_magnitude_range": "finite_le",
    "source_R_sersic_range": "positive_le",
    "source_n_sersic_range": "positive_le",
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "preset": PRESET_NAMES,
    "instrument": tuple(INSTRUMENTS),
    "noise": NOISE_MODES,
    "noise_model": NOISE_MODELS,
    "flux_unit": FLUX_UNITS,
    "distance_convention": DISTANCE_CONVENTIONS,
    "subhalo_count_distribution": SUBHALO_COUNT_DISTRIBUTIONS,
    "subhalo_radial_distribution": SUBHALO_RADIAL_DISTRIBUTIONS,
    "subhalo_abundance": SUBHALO_ABUNDANCES,
    "psf_model": PSF_MODELS,
}


#: Config keys added after data sets had been written, each with the class it was added for. Such a key
#: matters only to images of its class (tested), and a data set written before the key existed cannot hold
#: that class, so a manifest without it is completed with its preset's default
#: (:meth:`SimConfig.from_dict`); every other missing key is still an error.
ADDED_WITH_CLASS: dict[str, str] = {
    "wdm_log10_m_hm_range": "wdm",
    "sidm_cross_section_range": "sidm",
    "uldm_log10_m_range": "uldm",
    "vortex_on_subhalos": "axion of the *_dm presets",
}


def _unknown_keys_message(unknown: Sequence[str]) -> str:
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), list(CONFIG_KEYS), n=1)
        if close:
            hints.append(f"{key!r} -> did you mean {close[0]!r}?")
    hint = f" ({'; '.join(hints)})" if hints else ""
    return f"unknown config key(s) {', '.join(map(repr, unknown))}{hint}; valid keys: {', '.join(CONFIG_KEYS)}"


def _bad(key: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"invalid value {value!r} for {key!r}: {why} (expected {CONFIG_KEYS[key]})")


def _as_float(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise _bad(key, value, "a number is required, not a bool")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _bad(key, value, "not a number") from None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise _bad(key, value, "not a number") from None
    if not math.isfinite(out):
        raise _bad(key, value, "must be finite")
    return out


def _check_sign(key: str, value: float, rule: str) -> None:
    if rule == "positive" and not value > 0:
        raise _bad(key, value, "must be > 0")
    if rule == "nonneg" and not value >= 0:
        raise _bad(key, value, "must be >= 0")


def _coerce(key: str, value: Any) -> Any:
    """Return ``value`` converted to the type of ``key``, or raise ConfigError saying what is valid."""
    if key in _BOOL:
        if not isinstance(value, bool):
            raise _bad(key, value, "must be true or false")
        return value
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise ConfigError(
                f"invalid value {value!r} for {key!r}; valid values: {', '.join(_CHOICES[key])}"
            )
        return str(value)
    if key in _INT_MIN:
        f = _as_float(key, value)
        if f != int(f):
            raise _bad(key, value, "must be an integer")
        if int(f) < _INT_MIN[key]:
            raise _bad(key, value, f"must be >= {_INT_MIN[key]}")
        return int(f)
    if key in _POSITIVE:
        f = _as_float(key, value)
        _check_sign(key, f, "positive")
        return f
    if key in _NONNEG:
        f = _as_float(key, value)
        _check_sign(key, f, "nonneg")
        return f
    if key in _FINITE:
        return _as_float(key, value)
    if key in _OPTIONAL_FLOAT:
        if value is None:
            return None
        f = _as_float(key, value)
        _check_sign(key, f, _OPTIONAL_FLOAT[key])
        return f
    if key in _RANGES or key in _OPTIONAL_RANGES:
        if key in _OPTIONAL_RANGES and value is None:
            return None
        if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
            raise _bad(key, value, "must be a pair [min, max]" if key in _RANGES or key != "lens_theta_E_normal"
                       else "must be a pair [mean, sd]")
        lo, hi = _as_float(key, value[0]), _as_float(key, value[1])
        rule = _RANGES.get(key) or _OPTIONAL_RANGES[key]
        if rule == "positive_nonneg":
            if not lo > 0:
                raise _bad(key, list(value), "the mean must be > 0")
            if not hi >= 0:
                raise _bad(key, list(value), "the sd must be >= 0")
            return (lo, hi)
        if rule.startswith("positive") and not lo > 0:
            raise _bad(key, list(value), "min must be > 0")
        if rule.startswith("nonneg") and not lo >= 0:
            raise _bad(key, list(value), "min must be >= 0")
        if rule.endswith("_lt") and not lo < hi:
            raise _bad(key, list(value), "min must be < max")
        if rule.endswith("_le") and not lo <= hi:
            raise _bad(key, list(value), "min must be <= max")
        return (lo, hi)
    raise ConfigError(_unknown_keys_message([key]))  # pragma: no cover - every key has a kind


def _check_consistency(v: dict[str, Any]) -> None:
    """Cross-key rules; raise ConfigError naming the keys and what would be valid."""
    if not v["z_source"] > v["z_lens"]:
        raise ConfigError(f"z_source ({v['z_source']}) must be greater than z_lens ({v['z_lens']})")
    if v["z_source_convention"] is not None and v["z_source_convention"] < v["z_source"]:
        raise ConfigError(
            f"z_source_convention ({v['z_source_convention']}) must be null or >= z_source ({v['z_source']})"
        )
    if not 0 < v["Om0"] < 1:
        raise ConfigError(f"Om0 must be in (0, 1), got {v['Om0']}")
    if not 0 <= v["Ob0"] <= v["Om0"]:
        raise ConfigError(f"Ob0 must be in [0, Om0={v['Om0']}], got {v['Ob0']}")
    for a, b, name in (
        ("lens_e1", "lens_e2", "lens ellipticity"),
        ("source_e1", "source_e2", "source ellipticity"),
        ("shear_gamma1", "shear_gamma2", "shear"),
    ):
        if not math.hypot(v[a], v[b]) < 1:
            raise ConfigError(f"{name} modulus sqrt({a}^2 + {b}^2) must be < 1, got {math.hypot(v[a], v[b])}")
    given = [k for k in ("source_amp", "source_magnitude", "source_magnitude_range") if v[k] is not None]
    if len(given) != 1:
        raise ConfigError(
            "exactly one of source_amp, source_magnitude and source_magnitude_range must be set (the others "
            f"null); got source_amp={v['source_amp']!r}, source_magnitude={v['source_magnitude']!r}, "
            f"source_magnitude_range={v['source_magnitude_range']!r}"
        )
    if given[0] != "source_amp" and v["magnitude_zero_point"] is None:
        raise ConfigError(f"{given[0]} needs magnitude_zero_point; set it or use source_amp")
    for end in v["wdm_log10_m_hm_range"]:
        check_log10_m_hm(end, f"wdm_log10_m_hm_range {list(v['wdm_log10_m_hm_range'])}: log10 m_hm")
    for end in v["sidm_cross_section_range"]:
        check_cross_section(end, f"sidm_cross_section_range {list(v['sidm_cross_section_range'])}: sigma/m")
    for end in v["uldm_log10_m_range"]:
        check_log10_m_uldm(end, f"uldm_log10_m_range {list(v['uldm_log10_m_range'])}: log10(m / eV)")
    m_lo, m_hi = v["subhalo_mass_range"]
    rmin = v["subhalo_render_mass_min"]
    if rmin is not None and not rmin < m_hi:
        raise ConfigError(
            f"subhalo_render_mass_min ({rmin:g} Msun) must be null or below the maximum subhalo mass {m_hi:g} "
            f"Msun (valid: up to {m_hi:g} exclusive; values below the minimum {m_lo:g} draw every subhalo)"
        )
    k = v["subhalo_window_theta_E"]
    if k is not None and k < 1:
        raise ConfigError(
            f"subhalo_window_theta_E ({k}) must be >= 1 (a window at least as large as the Einstein radius, "
            "e.g. 3 as paltas), or null"
        )
    if v["subhalo_count_distribution"] == "fixed" and v["n_subhalos_mean"] != int(v["n_subhalos_mean"]):
        raise ConfigError(
            f"subhalo_count_distribution=fixed needs an integer n_subhalos_mean, got {v['n_subhalos_mean']}"
        )
    nm = v["noise_model"]
    if nm in ("poisson_gaussian_counts", "legacy_deeplense_counts"):
        if v["flux_unit"] != "counts":
            raise ConfigError(f"noise_model={nm} makes images in counts; set flux_unit=counts")
        if v["background_rms"] is None:
            raise ConfigError(f"noise_model={nm} needs background_rms (counts/s per pixel, >= 0)")
    if nm == "ccd":
        if v["flux_unit"] != "e-/s":
            raise ConfigError("noise_model=ccd makes images in e-/s; set flux_unit=e-/s")
        missing = [k for k in ("sky_brightness", "magnitude_zero_point", "read_noise") if v[k] is None]
        if missing:
            raise ConfigError(f"noise_model=ccd needs {', '.join(missing)} (null given)")


# ---------------------------------------------------------------------------------------------------------
# Public construction helpers


def resolve_config(
    preset: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    legacy: bool = False,
    fixed_orientation: bool | None = None,
) -> SimConfig:
    """Preset defaults, then ``overrides``, validated.

    Args:
        preset: preset name (:data:`equilens.simulation.presets.PRESET_NAMES`).
        overrides: key -> value (keys from :data:`CONFIG_KEYS`). ``legacy`` in it selects the legacy
            defaults like the ``legacy`` argument; ``preset`` in it must equal ``preset``.
        legacy: start from the published DeepLense recipe.
        fixed_orientation: force (True) or forbid (False) fixed position angles; None keeps the preset's
            choice (on in legacy mode, off otherwise). Overrides with the same key win over None only.

    Raises:
        ConfigError: unknown preset or key, or an invalid value (the message lists what is valid).
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(_unknown_keys_message(unknown))
    if "preset" in overrides and overrides["preset"] != preset:
        raise ConfigError(
            f"override preset={overrides['preset']!r} conflicts with the chosen preset {preset!r}; "
            f"choose the preset directly (valid presets: {', '.join(PRESET_NAMES)})"
        )
    if "legacy" in overrides:
        legacy = bool(_coerce("legacy", overrides.pop("legacy"))) or legacy
    values = preset_defaults(preset, legacy=legacy)
    if fixed_orientation is not None:
        values["fixed_orientation"] = bool(fixed_orientation)
        if "fixed_orientation" in overrides and bool(overrides["fixed_orientation"]) != fixed_orientation:
            raise ConfigError(
                f"fixed_orientation={overrides['fixed_orientation']!r} in the overrides conflicts with "
                f"fixed_orientation={fixed_orientation!r}; give it once"
            )
    if "instrument" in overrides:
        # another instrument: its pixel grid, PSF and noise numbers replace the preset's (then the other
        # overrides apply on top)
        name = overrides["instrument"]
        if name not in INSTRUMENTS:
            raise ConfigError(f"invalid value {name!r} for 'instrument'; valid values: {', '.join(INSTRUMENTS)}")
        values.update(instrument_values(name))
    values.update(overrides)
    return SimConfig.from_dict(values)


def _scalar(text: str) -> Any:
    """YAML scalar, plus the number forms YAML 1.1 leaves as strings (``1e6``, ``-2.5e-3``)."""
    value = yaml.safe_load(text) if text.strip() else None
    return _numberify(value)


def _numberify(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
        try:
            f = float(value)
        except ValueError:
            return value
        return f if math.isfinite(f) else value
    if isinstance(value, list):
        return [_numberify(x) for x in value]
    return value


def parse_set_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``["noise=none", "image_size=64", "subhalo_mass_range=[1e7, 1e10]"]`` into typed values.

    Each value is a YAML scalar or flow list (``null``, ``true``, ``1e6``, ``[a, b]``). Keys are checked
    against :data:`CONFIG_KEYS`; values are checked later by :func:`resolve_config`.

    Raises:
        ConfigError: an item without ``=``, an unknown key, or a value that is not valid YAML.
    """
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}; valid keys: {', '.join(CONFIG_KEYS)}")
        key, text = item.split("=", 1)
        key = key.strip()
        if key not in CONFIG_KEYS:
            raise ConfigError(_unknown_keys_message([key]))
        try:
            out[key] = _scalar(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: value {text!r} is not a valid YAML value ({exc})") from None
    return out


def load_overrides_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of config overrides.

    Raises:
        ConfigError: missing file, invalid YAML, not a mapping, or unknown keys (listing the valid ones).
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read overrides file {str(p)!r}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"overrides file {str(p)!r} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"overrides file {str(p)!r} must hold a mapping of key: value, got {type(data).__name__}; "
            f"valid keys: {', '.join(CONFIG_KEYS)}"
        )
    unknown = sorted(str(k) for k in set(data) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"in {str(p)!r}: " + _unknown_keys_message(unknown))
    return {str(k): _numberify(v) for k, v in data.items()}
