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

Point masses (CDM subhalos, vortex points) are deflected with lenstronomy's ``POINT_MASS`` formula,
alpha = sum_i theta_E,i^2 (x - x_i) / max(|x - x_i|^2, r_min^2) with its r_min = 1e-25 arcsec, evaluated in
one numpy loop (:func:`point_mass_deflection`) rather than one lenstronomy profile object per point mass:
about 3x faster for the 100-point vortex (measured 20 ms against 63 ms on 36864 rays), equal to
lenstronomy's ``POINT_MASS`` to 1e-12 relative (tested, and every class's image against lenstronomy).

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
from equilens.simulation.populations import point_masses

__all__ = [
    "render_noiseless",
    "add_noise",
    "render_image",
    "deflection_scale",
    "lenstronomy_kwargs",
    "point_mass_deflection",
    "sky_rate_per_pixel",
]

# lenstronomy 1.14.2 LensModel/Profiles/point_mass.py: PointMass.r_min
_POINT_MASS_R_MIN = 1e-25


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
    te, xs, ys = point_masses(params)
    sf = math.sqrt(f)
    for t, x, y in zip(te.tolist(), xs.tolist(), ys.tolist(), strict=True):
        kwargs_lens.append({"theta_E": t * sf, "center_x": x, "center_y": y})
    model_list = ["SIE", "SHEAR"] + ["POINT_MASS"] * len(te)
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


def point_mass_deflection(
    x: np.ndarray, y: np.ndarray, theta_E: np.ndarray, center_x: np.ndarray, center_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Summed deflection of point masses (lenstronomy ``POINT_MASS``), all in arcsec.

    Args:
        x, y: positions, shape (n,).
        theta_E, center_x, center_y: Einstein radii and centres of the point masses, shape (m,).

    Returns:
        (alpha_x, alpha_y), each of shape (n,).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ax = np.zeros_like(x)
    ay = np.zeros_like(y)
    dx, dy, w, tmp = (np.empty_like(x) for _ in range(4))  # work buffers: no allocation per point mass
    r2_min = _POINT_MASS_R_MIN**2
    for te, cx, cy in zip(theta_E.tolist(), center_x.tolist(), center_y.tolist(), strict=True):
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


def render_noiseless(config: SimConfig, params: dict[str, Any]) -> np.ndarray:
    """The noiseless image of a record, in the preset's unit (counts or e-/s).

    Deterministic: re-renders any recorded image's noiseless model from its parameters.

    Returns:
        float64 array of shape (image_size, image_size); row index = y, column index = x.
    """
    r = _renderer(config)
    kwargs_main, kwargs_source = _main_and_source_kwargs(config, params)
    bx, by = r.main_lens.ray_shooting(r.x, r.y, kwargs_main)
    te, xs, ys = point_masses(params)
    if len(te):
        ax, ay = point_mass_deflection(r.x, r.y, te * math.sqrt(deflection_scale(config)), xs, ys)
        bx = bx - ax
        by = by - ay
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
