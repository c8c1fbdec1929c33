"""Rendering against an independent lenstronomy reference, and the exact 90-degree rotation identity.

The reference images are built here directly from lenstronomy (the DeepLense way: one ImageModel per
image; SimAPI with lenstronomy's own Euclid / HST settings for Models II/III; lenstronomy's multi-plane
LensModel for the legacy Models II/III), from the recorded parameters only.
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest

from equilens.simulation.config import resolve_config
from equilens.simulation.populations import draw_parameters
from equilens.simulation.render import render_image, render_noiseless

PRESETS = ("model_i", "model_ii", "model_iii")
DEEPLENSE_CLASSES = ("no_sub", "cdm", "axion")

# lenstronomy's Euclid VIS settings before its 2026 update (Euclid.py VIS_obs + camera), which DeepLense used.
EUCLID_VIS_BEFORE_2026 = {
    "exposure_time": 565.0, "sky_brightness": 22.35, "magnitude_zero_point": 24.0, "num_exposures": 4,
    "seeing": 0.16, "psf_type": "GAUSSIAN", "read_noise": 4.2, "pixel_scale": 0.101, "ccd_gain": 3.1,
}


def _reference_lens(params: dict) -> tuple[list[str], list[dict]]:
    lens, shear = params["lens"], params["shear"]
    models = ["SIE", "SHEAR"]
    kwargs = [
        {k: lens[k] for k in ("theta_E", "e1", "e2", "center_x", "center_y")},
        {"gamma1": shear["gamma1"], "gamma2": shear["gamma2"]},
    ]
    sub = params["subhalos"]
    for te, x, y in zip(sub["theta_E"], sub["x"], sub["y"], strict=True):
        models.append("POINT_MASS")
        kwargs.append({"theta_E": te, "center_x": x, "center_y": y})
    ax = params["axion"]
    if ax is not None:
        # DeepLense make_vortex: np.linspace(-L, L, res) rotated by the vortex angle
        coords = np.linspace(-ax["vortex_half_length"], ax["vortex_half_length"], ax["vortex_n_points"])
        for c in coords:
            models.append("POINT_MASS")
            kwargs.append(
                {
                    "theta_E": ax["vortex_point_theta_E"],
                    "center_x": c * math.cos(ax["vortex_angle"]),
                    "center_y": c * math.sin(ax["vortex_angle"]),
                }
            )
    return models, kwargs


def _reference_source(params: dict) -> dict:
    src = params["source"]
    out = {k: src[k] for k in ("R_sersic", "n_sersic", "e1", "e2", "center_x", "center_y")}
    if src["amp"] is not None:
        out["amp"] = src["amp"]
    else:
        out["magnitude"] = src["magnitude"]
    return out


def reference_image(cfg, params: dict) -> np.ndarray:
    """Independent lenstronomy rendering of a record (no equilens rendering code involved)."""
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    models, kwargs_lens = _reference_lens(params)
    kwargs_source = _reference_source(params)
    kwargs_numerics = {"supersampling_factor": cfg.supersampling_factor, "supersampling_convolution": False}
    if cfg.preset == "model_i":
        # DeepLense simple_sim
        import lenstronomy.Util.util as util
        from lenstronomy.Data.imaging_data import ImageData
        from lenstronomy.Data.psf import PSF
        from lenstronomy.ImSim.image_model import ImageModel

        _, _, ra0, dec0, _, _, m, _ = util.make_grid_with_coordtransform(
            num_pix=150, delta_pix=0.05, center_ra=0, center_dec=0, subgrid_res=1, inverse=False
        )
        data = ImageData(image_data=np.zeros((150, 150)), ra_at_xy_0=ra0, dec_at_xy_0=dec0, transform_pix2angle=m)
        psf = PSF(psf_type="GAUSSIAN", fwhm=0.087, pixel_size=0.05, truncation=3)
        im = ImageModel(data, psf, lens_model_class=LensModel(models),
                        source_model_class=LightModel(["SERSIC_ELLIPSE"]), kwargs_numerics=kwargs_numerics)
        return im.image(kwargs_lens, [kwargs_source]) * params["exposure_time"]  # counts

    # DeepLense simple_sim_2: SimAPI with lenstronomy's instrument settings
    from astropy.cosmology import FlatLambdaCDM
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.SimulationAPI.sim_api import SimAPI

    if cfg.preset == "model_ii" and cfg.legacy:
        band = dict(EUCLID_VIS_BEFORE_2026)
    elif cfg.preset == "model_ii":
        from lenstronomy.SimulationAPI.ObservationConfig.Euclid import Euclid

        band = Euclid(band="VIS", psf_type="GAUSSIAN", coadd_years=6).kwargs_single_band()
    else:
        from lenstronomy.SimulationAPI.ObservationConfig.HST import HST

        band = HST(band="WFC3_F160W", psf_type="GAUSSIAN").kwargs_single_band()
    sim = SimAPI(num_pix=64, kwargs_single_band=band,
                 kwargs_model={"lens_model_list": models, "source_light_model_list": ["SERSIC_ELLIPSE"]})
    _, kwargs_source_amp, _ = sim.magnitude2amplitude(None, [kwargs_source])
    if not cfg.legacy:
        return sim.image_model_class(kwargs_numerics).image(kwargs_lens, kwargs_source_amp)
    # Legacy: multi-plane, z_source_convention 2.5, source at z=1 (cosmo_interp: lenstronomy 1.14.2's
    # direct astropy call fails with astropy 7), and image_model + image_model.
    cosmo = FlatLambdaCDM(H0=70, Om0=0.3, Ob0=0.05)
    lens_model = LensModel(models, lens_redshift_list=[0.5] * len(models), z_source=1.0, z_source_convention=2.5,
                           multi_plane=True, cosmo=cosmo, cosmo_interp=True)
    im = ImageModel(sim.data_class, sim.psf_class, lens_model_class=lens_model,
                    source_model_class=LightModel(["SERSIC_ELLIPSE"]), kwargs_numerics=kwargs_numerics)
    image = im.image(kwargs_lens, kwargs_source_amp)
    return image + image


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("preset", PRESETS)
def test_noiseless_matches_direct_lenstronomy(preset: str, legacy: bool) -> None:
    # lenstronomy has no uniform-disk profile: the mass sheet is tested on its own (test_profiles.py)
    cfg = resolve_config(preset, {"subhalo_mass_sheet": False}, legacy=legacy)
    for k, class_name in enumerate(DEEPLENSE_CLASSES):
        params = draw_parameters(cfg, class_name, np.random.default_rng(100 + k))
        if class_name == "axion":
            # a vortex long enough to cross the arcs
            params["axion"]["vortex_half_length"] = 1.5
        ours = render_noiseless(cfg, params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = reference_image(cfg, params)
        assert ours.shape == ref.shape == (cfg.image_size, cfg.image_size)
        scale = np.max(np.abs(ref))
        assert scale > 0
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6 * scale, err_msg=f"{preset} {class_name}")


@pytest.mark.parametrize("preset", PRESETS)
def test_noise_none_is_noiseless(preset: str) -> None:
    cfg = resolve_config(preset, {"noise": "none"})
    params = draw_parameters(cfg, "cdm", np.random.default_rng(3))
    img = render_image(cfg, params, np.random.default_rng(4))
    assert img.dtype == np.float32
    np.testing.assert_array_equal(img, render_noiseless(cfg, params).astype(np.float32))


def _rotated(params: dict) -> dict:
    """Every angle + 90 degrees, every position (x, y) -> (-y, x)."""
    p = copy.deepcopy(params)
    for block in ("lens", "source"):
        b = p[block]
        b["e1"], b["e2"] = -b["e1"], -b["e2"]  # position angle + 90 deg: 2 phi + 180 deg
        b["position_angle"] += math.pi / 2
        b["center_x"], b["center_y"] = -b["center_y"], b["center_x"]
    p["shear"]["gamma1"], p["shear"]["gamma2"] = -p["shear"]["gamma1"], -p["shear"]["gamma2"]
    p["shear"]["angle"] += math.pi / 2
    sub = p["subhalos"]
    sub["x"], sub["y"] = [-y for y in sub["y"]], list(sub["x"])
    if p["axion"] is not None:
        p["axion"]["vortex_angle"] += math.pi / 2
    return p


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("preset", PRESETS)
def test_rotation_by_90_degrees_is_rot90(preset: str, legacy: bool) -> None:
    """Row index = y, column index = x (both increasing), so a +90 deg sky rotation (counter-clockwise in
    x, y) is ``np.rot90(image, k=-1)`` in numpy's (row, column) order."""
    cfg = resolve_config(preset, legacy=legacy)
    for k, class_name in enumerate(DEEPLENSE_CLASSES):
        params = draw_parameters(cfg, class_name, np.random.default_rng(200 + k))
        img = render_noiseless(cfg, params)
        rot = render_noiseless(cfg, _rotated(params))
        scale = np.max(np.abs(img))
        np.testing.assert_allclose(rot, np.rot90(img, k=-1), rtol=0, atol=1e-5 * scale)
        # and the identity is not trivially satisfied: the image itself is not rot90-symmetric
        assert np.max(np.abs(np.rot90(img, k=-1) - img)) > 1e-2 * scale


def test_point_mass_deflection_matches_lenstronomy() -> None:
    from lenstronomy.LensModel.lens_model import LensModel

    from equilens.simulation.render import point_mass_deflection

    rng = np.random.default_rng(0)
    x, y = rng.uniform(-2, 2, 500), rng.uniform(-2, 2, 500)
    te, cx, cy = rng.uniform(0.001, 0.1, 7), rng.uniform(-2, 2, 7), rng.uniform(-2, 2, 7)
    x[0], y[0] = cx[3], cy[3]  # a ray exactly on a point mass (lenstronomy clips r at 1e-25)
    ax, ay = point_mass_deflection(x, y, te, cx, cy)
    kw = [{"theta_E": t, "center_x": a, "center_y": b} for t, a, b in zip(te, cx, cy, strict=True)]
    rx, ry = LensModel(["POINT_MASS"] * 7).alpha(x, y, kw)
    np.testing.assert_allclose(ax, rx, rtol=1e-12, atol=0)
    np.testing.assert_allclose(ay, ry, rtol=1e-12, atol=0)
    assert np.isfinite(ax).all() and np.isfinite(ay).all()


@pytest.mark.parametrize(("preset", "legacy", "class_name"),
                         [("model_i", False, "cdm"), ("model_ii", True, "axion"), ("hst_dm", False, "cdm_tnfw")])
def test_lenstronomy_kwargs_give_the_same_image(preset: str, legacy: bool, class_name: str) -> None:
    """``lenstronomy_kwargs`` (for plain-lenstronomy comparisons) renders the same image in one ImageModel."""
    import lenstronomy.Util.util as util
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    from equilens.simulation.render import lenstronomy_kwargs

    cfg = resolve_config(preset, {"subhalo_mass_sheet": False}, legacy=legacy)
    params = draw_parameters(cfg, class_name, np.random.default_rng(5))
    models, kwargs_lens, kwargs_source = lenstronomy_kwargs(cfg, params)
    n = cfg.image_size
    _, _, ra0, dec0, _, _, m, _ = util.make_grid_with_coordtransform(
        num_pix=n, delta_pix=cfg.pixel_scale, subgrid_res=1, left_lower=False, inverse=False
    )
    if cfg.psf_model == "gaussian":
        psf = PSF(psf_type="GAUSSIAN", fwhm=cfg.psf_fwhm, truncation=cfg.psf_truncation, pixel_size=cfg.pixel_scale)
    else:
        from equilens.simulation.render import pixel_integrated_gaussian

        kernel = pixel_integrated_gaussian(cfg.psf_fwhm, cfg.pixel_scale, cfg.psf_truncation)
        psf = PSF(psf_type="PIXEL", kernel_point_source=kernel, pixel_size=cfg.pixel_scale)
    im = ImageModel(
        ImageData(image_data=np.zeros((n, n)), ra_at_xy_0=ra0, dec_at_xy_0=dec0, transform_pix2angle=m),
        psf,
        lens_model_class=LensModel(models),
        source_model_class=LightModel(["SERSIC_ELLIPSE"]),
        kwargs_numerics={"supersampling_factor": cfg.supersampling_factor, "supersampling_convolution": False},
    )
    ref = im.image(kwargs_lens, [kwargs_source]) * cfg.flux_scale
    if cfg.flux_unit == "counts":
        ref = ref * params["exposure_time"]
    ours = render_noiseless(cfg, params)
    # TNFW halos are rendered with their far-field series beyond 4 r_t (<= 1e-3 of their own deflection)
    tol = 1e-5 if class_name == "cdm_tnfw" else 1e-9
    if class_name == "cdm_tnfw":
        assert "TNFW" in models
        bare = render_noiseless(cfg, {**params, "subhalos": {k: [] for k in params["subhalos"]}, "mass_sheet": None})
        assert np.max(np.abs(ours - bare)) > 100 * tol * np.abs(ref).max()  # halos change the image far more
    np.testing.assert_allclose(ours, ref, rtol=0, atol=tol * np.abs(ref).max())


def test_rerender_from_recorded_json_is_exact() -> None:
    """A record written as JSON (as data sets store it) re-renders the identical noiseless image."""
    import json

    from equilens.simulation.config import SimConfig

    cfg = resolve_config("model_ii", {"image_size": 32})
    for class_name in DEEPLENSE_CLASSES:
        params = draw_parameters(cfg, class_name, np.random.default_rng(9))
        stored_cfg = SimConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        stored = json.loads(json.dumps(params))
        np.testing.assert_array_equal(render_noiseless(stored_cfg, stored), render_noiseless(cfg, params))
