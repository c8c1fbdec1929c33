"""The DeepLense presets ``model_i``, ``model_ii``, ``model_iii`` as data (corrected and legacy variants).

Every number below comes from the public DeepLense simulator (``mwt5345/DeepLenseSim``, files
``deeplense/lens.py`` and ``Model_*/sim_*.py``) unless a comment says otherwise; the instrument numbers
live in :mod:`equilens.simulation.instruments` with their own sources.

Common physics (``deeplense/lens.py``):

- lens at z = 0.5, source at z = 1.0, FlatLambdaCDM(H0=70, Om0=0.3, Ob0=0.05);
- main lens ``SIE`` + ``SHEAR``: Einstein radius of a 1e12 Msun mass, e1 = 0.1, e2 = 0, gamma1 = 0.05,
  gamma2 = 0, centred on the origin; no lens light;
- source ``SERSIC_ELLIPSE``: R_sersic = 0.25", n_sersic = 1, e1 = -0.1, e2 = 0.1, centre uniform in
  [-0.35, 0.35]" on each axis; Model I amplitude 20 (lenstronomy ``amp``), Models II/III magnitude 20;
- ``cdm``: point-mass subhalos, 1e6..1e10 Msun, radius 0.25..2.0" from the centre, mean number 25;
- ``axion``: 100 point masses totalling 3e10 Msun on a line through the centre, half-length
  L = 3e-24 eV arcsec / m_a (``axion_length_to_mass``: m_a = 0.06e-22 / (2 L), documented there as valid for
  a halo at z = 0.5), m_a = 10^U(-24, -22) eV (``Model_*/sim_axion.py``).

Corrected defaults (this project): angular-diameter distances, a Poisson number of subhalos with mean 25,
mass function dN/dm ~ m^-1.9 (the slope DeepLense's docstring names; ``beta=-0.9`` was what ran), subhalo
positions uniform in area, single-plane lensing with the source at z_source, noise counted once
(instrument noise models in :mod:`equilens.simulation.render`), position angles of lens ellipticity,
shear and source ellipticity drawn uniformly (the magnitudes |e|, |gamma| stay DeepLense's).

Realistic substructure abundance (issue #9): the DeepLense presets' ``cdm`` class normalises its point-mass
subhalos by Sigma_sub = 0.025 kpc^-2 at m_pivot = 1e8 Msun (pyHalo's CDM preset, see
:mod:`equilens.simulation.halos`): on average 1.75 subhalos of 1e6-1e10 Msun per kpc^2, 800 in the
0.25-2.0" annulus (f_sub = 1.4% at the Einstein radius), of which the ~100 above 1e7 Msun are drawn and
rendered (``subhalo_render_mass_min``; a 1e7 Msun point mass has an Einstein radius of 0.005"), with a negative
mass sheet over the annulus removing their mass. DeepLense's mean count of 25 (``subhalo_abundance=count``)
held 3.4e8 Msun per image, f_sub about 0.05%, 30x below lensing measurements; it stays available and is the
legacy recipe.

The ``*_dm`` family (``euclid_dm``, ``hst_dm``, ``hst_dm_150``), classes ``no_sub`` and ``cdm_tnfw``, draws
the main lens and the source per image, identically for every class:

- Einstein radius ~ N(1.1", 0.15") truncated at 3 sd, lens ellipticity e1, e2 ~ N(0, 0.1) each, shear
  gamma1, gamma2 ~ N(0, 0.05) each (the paltas main-deflector priors, Wagner-Carena et al. 2022);
- source: magnitude ~ U(21.5, 24) (lensed sources of SLACS / BELLS / Euclid lenses are about 21.5-25 mag;
  the DeepLense magnitude 20 is far brighter), R_sersic ~ U(0.1", 0.4"), n_sersic ~ U(0.8, 2.5),
  e1, e2 ~ N(0, 0.15) each, centre uniform in [-0.2", 0.2"]^2 (inside the caustics of such lenses);
  these are choices of this project, documented rather than taken from one survey;
- ``cdm_tnfw`` subhalos: Sigma_sub ~ U(0, 0.05) kpc^-2 (centred on pyHalo's 0.025; recorded per image, a
  regression target), 1e6-1e10 Msun, slope -1.9, truncated NFW halos inside 3 Einstein radii (paltas),
  those above ``subhalo_render_mass_min`` rendered, the rendered mass subtracted as a sheet;
- ``wdm``, ``sidm``, ``axion``, ``uldm`` (issue #10): the alternatives on the same population (their priors in
  the table below, their physics in :mod:`equilens.simulation.halos` and the README).

Legacy variants (``legacy=True``) restore the published behaviour; :data:`LEGACY_DIFFERENCES` lists every
difference. The ``*_dm`` presets have no legacy variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from equilens.errors import ConfigError
from equilens.simulation.instruments import get_instrument

__all__ = [
    "PresetInfo",
    "PRESET_NAMES",
    "DEEPLENSE_PRESETS",
    "DM_PRESETS",
    "LEGACY_DIFFERENCES",
    "LEGACY_NOT_REPRODUCED",
    "list_presets",
    "preset_defaults",
    "instrument_values",
]


@dataclass(frozen=True)
class PresetInfo:
    """Summary of one preset for ``equilens simulate --list-presets``.

    Attributes:
        name: preset name.
        classes: substructure classes the preset can simulate (names registered in
            :mod:`equilens.simulation.populations`).
        image_size: image side in pixels.
        pixel_scale: arcsec per pixel.
        instrument: instrument registry name (:data:`equilens.simulation.instruments.INSTRUMENTS`).
        description: one line.
    """

    name: str
    classes: tuple[str, ...]
    image_size: int
    pixel_scale: float
    instrument: str
    description: str


# Subhalos lighter than this are not drawn in the *_dm presets (README "Simulation speed": rendering cost
# grows with the number of halos; published detection limits are 10^8.2-10^9.5 Msun).
_DM_RENDER_MASS_MIN = 1e8

# Rays per pixel side of the *_dm presets (chosen for the speed goals; README "Simulation speed").
_DM_SUPERSAMPLING_64 = 2
_DM_SUPERSAMPLING_150 = 1

#: Classes of the *_dm family (issue #9: no_sub, cdm_tnfw; issue #10: the alternatives to CDM; uldm last, so
#: the label indices of the earlier classes stay what they were).
_DM_CLASSES = ("no_sub", "cdm_tnfw", "wdm", "sidm", "axion", "uldm")

# Per-preset settings that differ between presets (DeepLenseSim ``simple_sim`` / ``simple_sim_2``).
_PRESET_TABLE: dict[str, dict[str, Any]] = {
    "model_i": {
        "instrument": "deeplense_model_i",
        "legacy_instrument": "deeplense_model_i",
        "image_size": 150,  # numPix in DeepLens.simple_sim
        "source_amp": 20.0,  # DeepLens.make_source_light
        "source_magnitude": None,
        "supersampling_factor": 1,  # see the note below the table
        "classes": ("no_sub", "cdm", "axion"),
        "description": "DeepLense Model I: 150x150 px, 0.05\"/px, Gaussian PSF 0.087\", counts",
    },
    "model_ii": {
        "instrument": "euclid_vis",
        "legacy_instrument": "euclid_vis_deeplense",
        "image_size": 64,  # numpix in DeepLens.simple_sim_2
        "source_amp": None,
        "source_magnitude": 20.0,  # DeepLens.make_source_light_mag
        "supersampling_factor": 3,  # see the note below the table
        "classes": ("no_sub", "cdm", "axion"),
        "description": "DeepLense Model II (Euclid-like): 64x64 px, Euclid VIS 0.101\"/px, e-/s",
    },
    "model_iii": {
        "instrument": "hst_wfc3_f160w",
        "legacy_instrument": "hst_wfc3_f160w",
        "image_size": 64,  # Model_III/README.md
        "source_amp": None,
        "source_magnitude": 20.0,
        "supersampling_factor": 3,  # see the note below the table
        "classes": ("no_sub", "cdm", "axion"),
        "description": "DeepLense Model III (HST-like): 64x64 px, HST WFC3/F160W 0.08\"/px, e-/s",
    },
    "euclid_dm": {
        "instrument": "euclid_vis",
        "legacy_instrument": None,
        "image_size": 64,
        "source_amp": None,
        "source_magnitude": None,
        "supersampling_factor": _DM_SUPERSAMPLING_64,
        "classes": _DM_CLASSES,
        "description": "Euclid VIS-like, drawn lens and source, realistic CDM: 64x64 px, 0.101\"/px, e-/s",
    },
    "hst_dm": {
        "instrument": "hst_f160w_dm",
        "legacy_instrument": None,
        "image_size": 64,
        "source_amp": None,
        "source_magnitude": None,
        "supersampling_factor": _DM_SUPERSAMPLING_64,
        "classes": _DM_CLASSES,
        "description": "HST F160W-like (pixel-integrated PSF 0.16\"), drawn lens and source, realistic CDM: "
        "64x64 px, 0.08\"/px, e-/s",
    },
    "hst_dm_150": {
        "instrument": "hst_f160w_dm_fine",
        "legacy_instrument": None,
        "image_size": 150,
        "source_amp": None,
        "source_magnitude": None,
        "supersampling_factor": _DM_SUPERSAMPLING_150,
        "classes": _DM_CLASSES,
        "description": "HST F160W-like, 150x150 px of 0.04\" (pixel-integrated PSF 0.16\"), drawn lens and "
        "source, realistic CDM, e-/s",
    },
}

PRESET_NAMES: tuple[str, ...] = tuple(_PRESET_TABLE)
#: The DeepLense presets (with a legacy recipe) and the realistic dark-matter family.
DEEPLENSE_PRESETS: tuple[str, ...] = tuple(k for k, t in _PRESET_TABLE.items() if t["legacy_instrument"] is not None)
DM_PRESETS: tuple[str, ...] = tuple(k for k, t in _PRESET_TABLE.items() if t["classes"] == _DM_CLASSES)

# Why Models II/III supersample by 3 by default (measured; command in the README): with one ray per pixel
# (DeepLense) the largest pixelisation error against a supersampling-6 render is 5-9% of the image peak for
# these 0.08-0.1" pixels and the 0.25" exponential source, 8-19x the noise sd at the peak pixel of these
# bright images (0.7% of the peak for Model II, 0.45% for Model III); supersampling 3 brings it to 0.4-0.7%,
# about the noise level, at about 4-7x the rendering cost. Model I (0.05" pixels) errs by 2% of the peak with one
# ray per pixel, against a noise sd of 7% at the peak, so it keeps DeepLense's 1.

# Physics shared by every preset (deeplense/lens.py unless noted).
_COMMON: dict[str, Any] = {
    "noise": "default",
    "flux_scale": 1.0,
    "H0": 70.0,  # DeepLens.__init__
    "Om0": 0.3,
    "Ob0": 0.05,
    "z_lens": 0.5,
    "z_source": 1.0,
    "distance_convention": "angular_diameter",
    "z_source_convention": None,
    "main_halo_mass": 1e12,  # Model_*/sim_*.py: make_single_halo(1e12)
    "lens_e1": 0.1,  # make_single_halo
    "lens_e2": 0.0,
    "shear_gamma1": 0.05,
    "shear_gamma2": 0.0,
    "source_R_sersic": 0.25,  # make_source_light(_mag)
    "source_n_sersic": 1.0,
    "source_e1": -0.1,
    "source_e2": 0.1,
    "source_center_half_width": 0.35,
    "n_subhalos_mean": 25.0,  # draw_old_cdm_sub_masses(n_sub=25)
    "subhalo_count_distribution": "poisson",
    "subhalo_mass_range": (1e6, 1e10),  # draw_old_cdm_sub_masses(m_sub_min=1e6, m_sub_max=1e10)
    "subhalo_mass_slope": -1.9,  # dN/dm ~ m^slope; the slope make_old_cdm's docstring names
    "subhalo_radius_range": (0.25, 2.0),  # make_old_cdm: np.random.uniform(0.25, 2.0)
    "subhalo_radial_distribution": "uniform_area",
    "axion_log10_mass_range": (-24.0, -22.0),  # Model_*/sim_axion.py: 10**np.random.uniform(-24, -22)
    "vortex_mass_total": 3e10,  # make_vortex(3e10)
    "vortex_n_points": 100,  # make_vortex(res=100)
    "vortex_length_coefficient": 3e-24,  # L[arcsec] = 3e-24 / m_a[eV], from axion_length_to_mass
    # wdm class (issue #10): log10 m_hm ~ U(7, 10), the range named in issue #10 (from below the current
    # Lyman-alpha / lensing limits of ~10^7.5-10^8 Msun up to masses that erase most rendered subhalos)
    "wdm_log10_m_hm_range": (7.0, 10.0),
    # sidm class (issue #10): sigma/m log-uniform in 1-10 cm^2/g, the range SIDM models of dwarf-galaxy cores
    # need (Tulin & Yu 2018, Phys. Rep. 730, 1, sec. 6); core radii in equilens.simulation.halos
    "sidm_cross_section_range": (1.0, 10.0),
    # uldm class (issue #10): log10(m / eV) ~ U(-22.5, -20), i.e. m22 = 0.3-100: from bosons whose suppression
    # leaves almost no subhalo above 1e8 Msun (m0 = 8e10 Msun at m22 = 0.3) to ones whose population is close to
    # CDM there (m0 = 3.4e7 Msun at m22 = 100); the lensing bound m > 4.4e-21 eV (Powell et al. 2023) lies
    # inside, the Lyman-alpha bound m > 2e-20 eV (Rogers & Peiris 2021) at its upper end (README, halos.py)
    "uldm_log10_m_range": (-22.5, -20.0),
    "vortex_on_subhalos": False,  # DeepLense: the vortex alone
    # drawn main lens / source (null: DeepLense's fixed values above)
    "lens_theta_E_normal": None,
    "lens_ellipticity_sd": None,
    "shear_sd": None,
    "source_magnitude_range": None,
    "source_R_sersic_range": None,
    "source_n_sersic_range": None,
    "source_ellipticity_sd": None,
    # realistic abundance (module docstring; equilens.simulation.halos for the sources)
    "subhalo_abundance": "sigma_sub",
    "sigma_sub_range": (0.025, 0.025),  # kpc^-2, pyHalo CDM preset
    "sigma_sub_pivot_mass": 1e8,  # Msun, pyHalo CDM preset
    "subhalo_render_mass_min": 1e7,  # Msun; lighter subhalos (theta_E < 0.005") are not drawn
    "subhalo_window_theta_E": None,  # DeepLense annulus subhalo_radius_range
    "subhalo_mass_sheet": True,
}

# The *_dm family: drawn lens and source, truncated NFW subhalos (module docstring for the sources).
_DM_PHYSICS: dict[str, Any] = {
    "lens_theta_E_normal": (1.1, 0.15),  # paltas main deflector theta_E ~ N(1.1, 0.15)
    "lens_ellipticity_sd": 0.1,  # paltas e1, e2 ~ N(0, 0.1)
    "shear_sd": 0.05,  # paltas gamma1, gamma2 ~ N(0, 0.05)
    "source_magnitude_range": (21.5, 24.0),
    "source_R_sersic_range": (0.1, 0.4),
    "source_n_sersic_range": (0.8, 2.5),
    "source_ellipticity_sd": 0.15,
    "source_center_half_width": 0.2,
    "sigma_sub_range": (0.0, 0.05),
    "subhalo_window_theta_E": 3.0,  # paltas renders subhalos within 3 theta_E
    "subhalo_render_mass_min": _DM_RENDER_MASS_MIN,
    # axion class of the *_dm family (issue #10): the vortex on top of the cdm_tnfw population, its mass
    # removed by the sheet annulus by annulus (only its shape is left), with 1e10 Msun in 100 points instead
    # of DeepLense's 3e10: a choice of this project, 1% of a 1e12 Msun main halo and of the order of the
    # CDM subhalo mass rendered in the window (README, realistic CDM section)
    "vortex_on_subhalos": True,
    "vortex_mass_total": 1e10,
}

# What legacy=True changes, as config values (applied on top of the corrected defaults).
_LEGACY_COMMON: dict[str, Any] = {
    "distance_convention": "legacy_luminosity",
    "subhalo_count_distribution": "fixed",
    "subhalo_mass_slope": -0.9,
    "subhalo_radial_distribution": "uniform_radius",
    "subhalo_abundance": "count",
    "subhalo_render_mass_min": None,
    "subhalo_mass_sheet": False,
}
_LEGACY_PER_PRESET: dict[str, dict[str, Any]] = {
    "model_i": {"noise_model": "legacy_deeplense_counts", "supersampling_factor": 1},
    # simple_sim_2: SimAPI multi-plane with z_source_convention=2.5, source at z=1, and
    # image_real = image_model + image_model (no noise is ever added).
    # DeepLense used SimAPI's default numerics: supersampling_factor 1.
    "model_ii": {"z_source_convention": 2.5, "flux_scale": 2.0, "noise": "none", "supersampling_factor": 1},
    "model_iii": {"z_source_convention": 2.5, "flux_scale": 2.0, "noise": "none", "supersampling_factor": 1},
}

#: Every difference between ``legacy=True`` and the corrected default, for the README.
LEGACY_DIFFERENCES: tuple[str, ...] = (
    "Einstein radii use luminosity distances and D_LS = D_S - D_L (DeepLens.mass_to_radius): "
    "theta_E(1e12 Msun) = 1.281\" instead of the angular-diameter 1.665\" (0.77x; subhalos and vortex "
    "points likewise).",
    "Always exactly 25 subhalos (DeepLense draws a Poisson number and discards it) instead of a "
    "Poisson number with mean 25.",
    "Subhalo masses from pdf ~ m^-0.9 (beta=-0.9, inverse CDF) instead of dN/dm ~ m^-1.9.",
    "25 subhalos per image (subhalo_abundance=count, all of 1e6-1e10 Msun drawn) and no mass sheet, instead of "
    "a Poisson number from Sigma_sub = 0.025 kpc^-2 (pyHalo; about 800 in the annulus, the ~100 above 1e7 Msun "
    "drawn) with their mass subtracted as a negative sheet over the annulus.",
    "Subhalo radii uniform in r on [0.25, 2.0]\" instead of uniform in area.",
    "Fixed orientation: lens ellipticity (e1=0.1, e2=0), shear (gamma1=0.05, gamma2=0) and source "
    "ellipticity (e1=-0.1, e2=0.1) never rotate, instead of uniform position angles.",
    "Model I noise: image = Poisson(clip(t*(model + N(0, sqrt(|model|/t)) + N(0, 0.01)), 0)): source shot "
    "noise counted twice and the Gaussian background clipped before the Poisson draw, instead of "
    "Poisson(t*model) + N(0, 0.01 t).",
    "Models II/III: multi-plane convention z_source_convention=2.5 with the source at z=1, so every "
    "deflection is weakened by D_LS/D_S(z=1) / D_LS/D_S(z=2.5) = 0.634 (effective main theta_E 0.81\"). "
    "Rendered as the exactly equivalent single plane (SIE theta_E and shear times 0.634, point-mass "
    "theta_E times sqrt(0.634)); tests check it against lenstronomy's multi-plane LensModel.",
    "Model II output is 2x the noiseless image with no noise (simple_sim_2 returns "
    "image_model + image_model), reproduced as flux_scale=2, noise=none; "
    "'--set noise=default --set flux_scale=1' gives the legacy geometry with Euclid noise.",
    "Models II/III: one ray per pixel (supersampling_factor=1, SimAPI's default numerics) instead of 3.",
    "Model II uses the Euclid VIS numbers lenstronomy had before its 2026 update (zero point 24.0, sky 22.35, "
    "4 x 565 s; instrument euclid_vis_deeplense) instead of lenstronomy 1.14.2's (zero point 25.72, sky 22.3, "
    "4 x 566 s): a magnitude-20 source gives 4.9x fewer e-/s, the published flux scale.",
    "Model III crashed in the public code (no HST branch in set_instrument); legacy Model III runs the "
    "Model II legacy recipe (multi-plane 0.634, 2x, no noise) on the HST-like instrument "
    "(lenstronomy WFC3_F160W settings).",
)


#: What legacy mode does not reproduce (and why), for the README.
LEGACY_NOT_REPRODUCED: tuple[str, ...] = (
    "The random streams: DeepLense drew from the global NumPy RNG; legacy draws come from per-image "
    "Generators, so legacy sets have the published distributions, not the published images.",
    "DeepLense's multi-plane cosmology was pyHalo's default astropy instance (WMAP9, H0=69.7, Om0=0.281, "
    "in pyHalo releases of that period; Planck 2018 in later ones), giving a deflection factor 0.6343 "
    "(0.6335 with Planck 2018); legacy uses FlatLambdaCDM(70, 0.3, 0.05) throughout (0.6337, within 0.1%).",
    "Numerics are those of the installed lenstronomy (1.14.2), not the 2021 release DeepLense ran.",
)


def preset_defaults(name: str, *, legacy: bool = False) -> dict[str, Any]:
    """Every configuration value of preset ``name`` (corrected physics, or the legacy recipe).

    Args:
        name: one of :data:`PRESET_NAMES`.
        legacy: return the published DeepLense behaviour (see :data:`LEGACY_DIFFERENCES`).

    Returns:
        A dict with one entry per :class:`equilens.simulation.config.SimConfig` field.

    Raises:
        ConfigError: unknown preset (the message lists the valid presets).
    """
    if name not in _PRESET_TABLE:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESET_NAMES)}")
    table = _PRESET_TABLE[name]
    if legacy and table["legacy_instrument"] is None:
        with_legacy = [k for k, t in _PRESET_TABLE.items() if t["legacy_instrument"] is not None]
        raise ConfigError(f"preset {name!r} has no legacy recipe; presets with one: {', '.join(with_legacy)}")
    values: dict[str, Any] = {
        "preset": name,
        "legacy": bool(legacy),
        "fixed_orientation": bool(legacy),
        "image_size": table["image_size"],
        "supersampling_factor": table["supersampling_factor"],
        "source_amp": table["source_amp"],
        "source_magnitude": table["source_magnitude"],
    }
    values.update(instrument_values(table["legacy_instrument" if legacy else "instrument"]))
    values.update(_COMMON)
    if table["classes"] == _DM_CLASSES:
        values.update(_DM_PHYSICS)
        values["source_magnitude"] = None
    if legacy:
        values.update(_LEGACY_COMMON)
        values.update(_LEGACY_PER_PRESET[name])
    return values


def instrument_values(instrument: str) -> dict[str, Any]:
    """The config values an instrument sets (pixel scale, PSF, noise model and numbers, exposure range).

    Raises:
        ConfigError: unknown instrument (the message lists the valid ones).
    """
    inst = get_instrument(instrument)
    return {
        "instrument": inst.name,
        "pixel_scale": inst.pixel_scale,
        "psf_fwhm": inst.psf_fwhm,
        "psf_truncation": inst.psf_truncation,
        "psf_model": inst.psf_model,
        "noise_model": inst.noise_model,
        "flux_unit": inst.flux_unit,
        "exposure_time_range": inst.exposure_time_range,
        "num_exposures": inst.num_exposures,
        "sky_brightness": inst.sky_brightness,
        "magnitude_zero_point": inst.magnitude_zero_point,
        "read_noise": inst.read_noise,
        "ccd_gain": inst.ccd_gain,
        "background_rms": inst.background_rms,
    }


def list_presets() -> list[PresetInfo]:
    """Every preset with its classes, image size, pixel scale and instrument."""
    out = []
    for name, table in _PRESET_TABLE.items():
        inst = get_instrument(table["instrument"])
        out.append(
            PresetInfo(
                name=name,
                classes=tuple(table["classes"]),
                image_size=int(table["image_size"]),
                pixel_scale=float(inst.pixel_scale),
                instrument=inst.name,
                description=str(table["description"]),
            )
        )
    return out

