"""Rendering: a parameter record -> an image. The only equilens module that imports lenstronomy.

Pipeline per image (lenstronomy 1.14.2 objects; what ``ImageModel.image`` does for an analytic source,
without rebuilding the unchanging parts for every image):

1. once per config (cached, :func:`_renderer`): the pixel grid (``ImageData``, x along columns, y along
   rows, both increasing with the array index, as DeepLense's ``make_grid_with_coordtransform(...,
   inverse=False)`` and lenstronomy's ``DataAPI``), the Gaussian PSF, the numerics (``NumericsSubFrame``
   with ``supersampling_factor`` from the config, no supersampled convolution, as DeepLense), the
   ``SERSIC_ELLIPSE`` source model and the ray-tracing coordinates;
2. the main lens ``LensModel(['SIE', 'SHEAR'])`` (single plane) is also built once;
3. per image: ray shooting through the main lens and the point masses, source surface brightness,
   re-size and PSF convolution, times ``flux_scale``, times the exposure time when the unit is counts.

Substructure goes through one path, :func:`substructure_deflection`: every subhalo carries a profile name
(lenstronomy's: ``POINT_MASS``, ``TNFW``), halos are grouped by profile and each group is deflected by its
function: the compiled kernels of :mod:`equilens.simulation.kernels` for ``TNFW``, ``CNFW`` and point
masses (the same formulas as the numpy reference in :mod:`equilens.simulation.profiles`, equal to float
rounding; ``EQUILENS_JIT=0`` renders with the reference), then the axion vortex
(:func:`equilens.simulation.kernels.vortex_deflection`: its point masses summed along its line, by their
multipole series far from it; equal to the point-mass sum to float rounding) and the negative mass sheet
(``ANNULAR_SHEET``). A new profile is one entry of
:data:`PROFILE_DEFLECTIONS`. Each profile equals lenstronomy's to 1e-6 relative (tested). ``TNFW`` halos
are rendered with the profile's far field (``profiles.TNFW_FAR_FIELD_RADIUS``): exact within
4 x max(r_trunc, Rs), the far-field series of the projected mass beyond. lenstronomy has no uniform-disk
profile, so :func:`lenstronomy_kwargs` leaves the sheet out.

PSF: ``psf_model='gaussian'`` is lenstronomy's ``GAUSSIAN`` kernel; ``'gaussian_pixel_integrated'`` is a
``PIXEL`` kernel whose entries are the Gaussian integrated over each pixel (:func:`pixel_integrated_gaussian`,
reasons in :mod:`equilens.simulation.instruments`).

Legacy Models II/III (``z_source_convention`` set): DeepLense rendered them with lenstronomy's multi-plane
mode, all deflectors at z_lens, deflections defined for a source at ``z_source_convention`` = 2.5 and the
source at z_source = 1. With a single deflector plane this equals single-plane lensing with every
deflection multiplied by f = (D_LS/D_S)(z_source) / (D_LS/D_S)(z_source_convention) (0.634 here): SIE
theta_E and shear times f, point-mass theta_E times sqrt(f). The tests compare it with lenstronomy's
multi-plane ``LensModel``.

Magnitudes (Models II/III): counts per second = 10^(-0.4 (magnitude - magnitude_zero_point)) e-/s, and the
Sersic ``amp`` that gives this total flux, as lenstronomy's ``SimAPI.magnitude2amplitude``.

Noise (:func:`add_noise`) draws only from the ``numpy.random.Generator`` passed in (lenstronomy's own noise
helpers use the global numpy RNG):

- ``poisson_gaussian_counts`` (Model I): counts = Poisson(t * model) + N(0, (background_rms * t)^2);
- ``legacy_deeplense_counts`` (legacy Model I, DeepLense ``simple_sim``): with lam = t * model,
  counts = Poisson(clip(lam + N(0, |lam|) + N(0, (background_rms t)^2), 0));
- ``ccd`` (Models II/III, e-/s): with total exposure T, sky rate s = 10^(-0.4 (sky - zp)) * pixel_scale^2 e-/s
  per pixel and n exposures of read noise r: image = [Poisson(T (model + s)) - T s + N(0, n r^2)] / T. Its
  variance, (T model + T s + n r^2) / T^2, is lenstronomy's ``SingleBand.estimate_noise`` squared.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from equilens.errors import ConfigError
from equilens.simulation.config import SimConfig
from equilens.simulation.populations import halo_profiles, point_masses
from equilens.simulation.profiles import annular_sheet_deflection, point_mass_deflection, uldm_deflection

__all__ = [
    "render_noiseless",
    "add_noise",
    "render_image",
    "deflection_scale",
    "lenstronomy_kwargs",
    "point_mass_deflection",
    "pixel_integrated_gaussian",
    "substructure_deflection",
    "PROFILE_DEFLECTIONS",
    "sky_rate_per_pixel",
]


def _point_mass_group(x: np.ndarray, y: np.ndarray, sub: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    from equilens.simulation import kernels

    return kernels.point_mass_deflection(x, y, sub["theta_E"], sub["x"], sub["y"])


def _tnfw_group(x: np.ndarray, y: np.ndarray, sub: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    from equilens.simulation import kernels  # compiled far_field=True path of profiles.tnfw_deflection

    return kernels.tnfw_deflection(x, y, sub["Rs"], sub["alpha_Rs"], sub["r_trunc"], sub["x"], sub["y"])


def _cnfw_group(x: np.ndarray, y: np.ndarray, sub: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    from equilens.simulation import kernels

    return kernels.cnfw_deflection(x, y, sub["Rs"], sub["alpha_Rs"], sub["r_core"], sub["r_trunc"], sub["x"],
                                   sub["y"])


def _uldm_group(x: np.ndarray, y: np.ndarray, sub: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """ULDM halos: the TNFW envelope plus the soliton (lenstronomy ``ULDM``) at each centre."""
    ax, ay = _tnfw_group(x, y, sub)
    bx, by = uldm_deflection(x, y, sub["kappa_0"], sub["theta_c"], sub["x"], sub["y"], far_field=True)
    return ax + bx, ay + by


def _vortex(x: np.ndarray, y: np.ndarray, axion: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The axion vortex of a record (its points: :func:`equilens.simulation.profiles.vortex_points`;
    :func:`equilens.simulation.kernels.vortex_deflection`)."""
    from equilens.simulation import kernels

    return kernels.vortex_deflection(x, y, float(axion["vortex_point_theta_E"]), float(axion["vortex_half_length"]),
                                     int(axion["vortex_n_points"]), float(axion["vortex_angle"]))


#: Profile name -> function(x, y, halos of that profile as arrays of the record's per-halo keys) -> deflection.
PROFILE_DEFLECTIONS = {"POINT_MASS": _point_mass_group, "TNFW": _tnfw_group, "CNFW": _cnfw_group,
                       "ULDM": _uldm_group}

_HALO_ARRAY_KEYS = ("mass", "x", "y", "theta_E", "Rs", "alpha_Rs", "r_trunc", "r_core", "kappa_0", "theta_c")


def substructure_deflection(x: np.ndarray, y: np.ndarray, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Deflection in arcsec of everything but the main lens: subhalos (any profile), vortex, mass sheet.

    Args:
        x, y: ray positions in arcsec, shape (n,).
        params: record from :func:`equilens.simulation.populations.draw_parameters`.

    Returns:
        (alpha_x, alpha_y), each of shape (n,), before any legacy multi-plane scaling.
    """
    ax = np.zeros(np.shape(x))
    ay = np.zeros(np.shape(y))
    sub = params["subhalos"]
    profiles = halo_profiles(params)
    for name in np.unique(profiles).tolist():
        if name not in PROFILE_DEFLECTIONS:
            raise ConfigError(f"unknown subhalo profile {name!r}; the renderer knows {', '.join(PROFILE_DEFLECTIONS)}")
        keep = profiles == name
        group = {k: np.asarray(sub[k], dtype=float)[keep] for k in _HALO_ARRAY_KEYS if k in sub}
        dx, dy = PROFILE_DEFLECTIONS[name](x, y, group)
        ax += dx
        ay += dy
    vortex = params.get("axion")
    if vortex is not None:
        dx, dy = _vortex(x, y, vortex)
        ax += dx
        ay += dy
    sheet = params.get("mass_sheet")
    if sheet:
        dx, dy = annular_sheet_deflection(x, y, np.asarray(sheet["radii"]), np.asarray(sheet["kappa"]))
        ax += dx
        ay += dy
    return ax, ay


def pixel_integrated_gaussian(fwhm: float, pixel_scale: float, truncation: float) -> np.ndarray:
    """Gaussian PSF kernel integrated over each pixel, normalised to sum 1.

    Args:
        fwhm: FWHM in arcsec.
        pixel_scale: arcsec per pixel.
        truncation: kernel half-width in units of sigma (rounded up to whole pixels; odd side).

    Returns:
        float64 array of shape (k, k), k odd: entry (i, j) is the integral of the Gaussian over the pixel
        centred (i - k//2, j - k//2) pixels from the centre, divided by the kernel's sum.
    """
    from scipy.special import erf

    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0))) / pixel_scale  # pixels
    half = max(1, int(math.ceil(truncation * sigma)))
    edges = np.arange(-half - 0.5, half + 1.0, 1.0)
    cdf = 0.5 * (1.0 + erf(edges / (math.sqrt(2.0) * sigma)))
    p1 = np.diff(cdf)
    kernel = np.outer(p1, p1)
    return kernel / kernel.sum()


def deflection_scale(config: SimConfig) -> float:
    """Factor on all deflections: 1 for single-plane, the legacy multi-plane weakening otherwise."""
    if config.z_source_convention is None:
        return 1.0
    return _convention_factor(
        config.H0, config.Om0, config.Ob0, config.z_lens, config.z_source, config.z_source_convention
    )


@functools.lru_cache(maxsize=16)
def _convention_factor(H0: float, Om0: float, Ob0: float, z_lens: float, z_source: float, z_conv: float) -> float:
    from astropy.cosmology import FlatLambdaCDM

    cosmo = FlatLambdaCDM(H0=H0, Om0=Om0, Ob0=Ob0)

    def ratio(zs: float) -> float:
        return float(cosmo.angular_diameter_distance_z1z2(z_lens, zs) / cosmo.angular_diameter_distance(zs))

    return ratio(z_source) / ratio(z_conv)


def sky_rate_per_pixel(config: SimConfig) -> float:
    """Sky in e-/s per pixel (ccd noise model), from sky brightness and zero point."""
    if config.sky_brightness is None or config.magnitude_zero_point is None:
        return 0.0
    return 10.0 ** (-0.4 * (config.sky_brightness - config.magnitude_zero_point)) * config.pixel_scale**2


def lenstronomy_kwargs(
    config: SimConfig, params: dict[str, Any], *, scale_deflections: bool = True
) -> tuple[list[str], list[dict[str, float]], dict[str, float]]:
    """lenstronomy lens-model list, lens kwargs and source kwargs (``amp`` form) for a record.

    The mass sheet (``params["mass_sheet"]``) has no lenstronomy profile and is not included, nor are
    ``CNFW`` halos (lenstronomy's CNFW has no truncation; the renderer truncates them in projection).

    Args:
        config: the config the record was drawn with.
        params: record from :func:`equilens.simulation.populations.draw_parameters`.
        scale_deflections: apply :func:`deflection_scale` (legacy multi-plane equivalence). False gives
            the kwargs as recorded (what a multi-plane lenstronomy model takes).

    Returns:
        (lens_model_list, kwargs_lens, kwargs_source) with angles in arcsec.
    """
    kwargs_lens, kwargs_source = _main_and_source_kwargs(config, params, scale_deflections=scale_deflections)
    f = deflection_scale(config) if scale_deflections else 1.0
    model_list = ["SIE", "SHEAR"]
    sub = params["subhalos"]
    profiles = halo_profiles(params)
    for i in np.flatnonzero((profiles == "TNFW") | (profiles == "ULDM")).tolist():
        kwargs_lens.append({"Rs": sub["Rs"][i], "alpha_Rs": sub["alpha_Rs"][i] * f, "r_trunc": sub["r_trunc"][i],
                            "center_x": sub["x"][i], "center_y": sub["y"][i]})
        model_list.append("TNFW")
        if profiles[i] == "ULDM":  # the soliton beside its TNFW envelope
            kwargs_lens.append({"kappa_0": sub["kappa_0"][i] * f, "theta_c": sub["theta_c"][i],
                                "center_x": sub["x"][i], "center_y": sub["y"][i]})
            model_list.append("ULDM")
    te, xs, ys = point_masses(params)
    sf = math.sqrt(f)
    for t, x, y in zip(te.tolist(), xs.tolist(), ys.tolist(), strict=True):
        kwargs_lens.append({"theta_E": t * sf, "center_x": x, "center_y": y})
    model_list += ["POINT_MASS"] * len(te)
    return model_list, kwargs_lens, kwargs_source


def _main_and_source_kwargs(
    config: SimConfig, params: dict[str, Any], *, scale_deflections: bool = True
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """lenstronomy kwargs of the SIE, the shear and the Sersic source of a record."""
    f = deflection_scale(config) if scale_deflections else 1.0
    lens, shear = params["lens"], params["shear"]
    kwargs_lens: list[dict[str, float]] = [
        {
            "theta_E": lens["theta_E"] * f,
            "e1": lens["e1"],
            "e2": lens["e2"],
            "center_x": lens["center_x"],
            "center_y": lens["center_y"],
        },
        {"gamma1": shear["gamma1"] * f, "gamma2": shear["gamma2"] * f, "ra_0": 0.0, "dec_0": 0.0},
    ]
    src = params["source"]
    kwargs_source = {
        "amp": _source_amp(config, src),
        "R_sersic": src["R_sersic"],
        "n_sersic": src["n_sersic"],
        "e1": src["e1"],
        "e2": src["e2"],
        "center_x": src["center_x"],
        "center_y": src["center_y"],
    }
    return kwargs_lens, kwargs_source


def _source_amp(config: SimConfig, src: dict[str, Any]) -> float:
    if src.get("amp") is not None:
        return float(src["amp"])
    if src.get("magnitude") is None or config.magnitude_zero_point is None:
        raise ConfigError("a source needs 'amp', or 'magnitude' with a magnitude_zero_point in the config")
    cps = 10.0 ** (-0.4 * (float(src["magnitude"]) - config.magnitude_zero_point))
    return cps / _sersic_unit_flux(float(src["R_sersic"]), float(src["n_sersic"]))


@functools.lru_cache(maxsize=64)
def _sersic_unit_flux(R_sersic: float, n_sersic: float) -> float:
    """Total flux of lenstronomy's SERSIC_ELLIPSE with amp=1 (it does not depend on e1, e2)."""
    from lenstronomy.LightModel.light_model import LightModel

    kw = {"amp": 1.0, "R_sersic": R_sersic, "n_sersic": n_sersic, "e1": 0.0, "e2": 0.0,
          "center_x": 0.0, "center_y": 0.0}
    return float(LightModel(["SERSIC_ELLIPSE"]).total_flux([kw], norm=True)[0])


class _Renderer:
    """Everything that does not change between images of one config (see the module docstring)."""

    def __init__(self, config: SimConfig) -> None:
        import lenstronomy.Util.util as lutil
        from lenstronomy.Data.imaging_data import ImageData
        from lenstronomy.Data.psf import PSF
        from lenstronomy.ImSim.image_model import ImageModel
        from lenstronomy.LightModel.light_model import LightModel

        n = config.image_size
        _, _, ra0, dec0, _, _, pix2angle, _ = lutil.make_grid_with_coordtransform(
            num_pix=n, delta_pix=config.pixel_scale, subgrid_res=1, left_lower=False, inverse=False
        )
        self.kwargs_data = {
            "image_data": np.zeros((n, n)),
            "ra_at_xy_0": ra0,
            "dec_at_xy_0": dec0,
            "transform_pix2angle": pix2angle,
        }
        if config.psf_model == "gaussian_pixel_integrated":
            self.kwargs_psf = {
                "psf_type": "PIXEL",
                "kernel_point_source": pixel_integrated_gaussian(
                    config.psf_fwhm, config.pixel_scale, config.psf_truncation
                ),
                "pixel_size": config.pixel_scale,
            }
        else:
            self.kwargs_psf = {
                "psf_type": "GAUSSIAN",
                "fwhm": config.psf_fwhm,
                "truncation": config.psf_truncation,
                "pixel_size": config.pixel_scale,
            }
        self.kwargs_numerics = {
            "supersampling_factor": config.supersampling_factor,
            "supersampling_convolution": False,
        }
        self.source_model = LightModel(["SERSIC_ELLIPSE"])
        image_model = ImageModel(
            ImageData(**self.kwargs_data),
            PSF(**self.kwargs_psf),
            source_model_class=self.source_model,
            kwargs_numerics=self.kwargs_numerics,
        )
        self.numerics = image_model.ImageNumerics
        x, y = self.numerics.coordinates_evaluate
        self.x = np.asarray(x, dtype=float)
        self.y = np.asarray(y, dtype=float)
        from lenstronomy.LensModel.lens_model import LensModel

        self.main_lens = LensModel(["SIE", "SHEAR"])


@functools.lru_cache(maxsize=8)
def _renderer(config: SimConfig) -> _Renderer:
    return _Renderer(config)


def render_noiseless(config: SimConfig, params: dict[str, Any],
                     grid_offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The noiseless image of a record, in the preset's unit (counts or e-/s).

    Deterministic: re-renders any recorded image's noiseless model from its parameters.

    Args:
        config: the data set's config.
        params: the record.
        grid_offset: (dx, dy) in pixels: every ray (supersampled too) is moved by this much in (x, y), so the
            whole scene (lens, source, substructure, mass sheet) appears shifted by (-dx, -dy) pixels on the
            same grid. (0, 0), the default, is the recorded image; an offset of whole pixels equals the
            recorded image moved by that many pixels, away from the borders (tested).

    Returns:
        float64 array of shape (image_size, image_size); row index = y, column index = x.
    """
    dx, dy = (float(v) for v in grid_offset)
    if not (math.isfinite(dx) and math.isfinite(dy)):
        raise ConfigError(f"grid_offset must be finite (pixels), got {grid_offset}")
    r = _renderer(config)
    x, y = (r.x, r.y) if dx == 0.0 and dy == 0.0 else (r.x + dx * config.pixel_scale, r.y + dy * config.pixel_scale)
    kwargs_main, kwargs_source = _main_and_source_kwargs(config, params)
    bx, by = r.main_lens.ray_shooting(x, y, kwargs_main)
    ax, ay = substructure_deflection(x, y, params)
    f = deflection_scale(config)
    bx = bx - f * ax
    by = by - f * ay
    flux = r.source_model.surface_brightness(bx, by, [kwargs_source])
    image = np.asarray(r.numerics.re_size_convolve(flux, unconvolved=False), dtype=np.float64)
    scale = config.flux_scale
    if config.flux_unit == "counts":
        scale *= float(params["exposure_time"])
    if scale != 1.0:
        image = image * scale
    return image


def add_noise(
    config: SimConfig, image: np.ndarray, params: dict[str, Any], rng: np.random.Generator
) -> np.ndarray:
    """A noise realisation of a noiseless image (same unit), drawn only from ``rng``.

    Args:
        config: the config (its ``noise_model`` picks the recipe in the module docstring).
        image: noiseless image from :func:`render_noiseless`, shape (H, W).
        params: the record (its ``exposure_time`` in s is used).
        rng: random generator.

    Returns:
        float64 array of shape (H, W).
    """
    t = float(params["exposure_time"])
    model = np.asarray(image, dtype=np.float64)
    if config.noise_model == "poisson_gaussian_counts":
        sigma = (config.background_rms or 0.0) * t
        return rng.poisson(np.clip(model, 0.0, None)).astype(np.float64) + rng.normal(0.0, sigma, model.shape)
    if config.noise_model == "legacy_deeplense_counts":
        sigma = (config.background_rms or 0.0) * t
        shot = rng.normal(0.0, 1.0, model.shape) * np.sqrt(np.abs(model))
        bkg = rng.normal(0.0, sigma, model.shape)
        return rng.poisson(np.clip(model + shot + bkg, 0.0, None)).astype(np.float64)
    if config.noise_model == "ccd":
        sky = sky_rate_per_pixel(config) * t
        electrons = rng.poisson(np.clip(model, 0.0, None) * t + sky).astype(np.float64) - sky
        read = (config.read_noise or 0.0) * math.sqrt(config.num_exposures)
        if read > 0:
            electrons += rng.normal(0.0, read, model.shape)
        return electrons / t
    raise ConfigError(f"unknown noise_model {config.noise_model!r}")  # pragma: no cover - validated


def render_image(config: SimConfig, params: dict[str, Any], noise_rng: np.random.Generator) -> np.ndarray:
    """The image of a record: noiseless model plus noise (none if ``config.noise == 'none'``).

    Returns:
        float32 array of shape (image_size, image_size).
    """
    image = render_noiseless(config, params)
    if config.noise != "none":
        image = add_noise(config, image, params, noise_rng)
    return image.astype(np.float32)
