"""Noise models: statistics against the expected variances (lenstronomy's own noise estimate for the CCD
presets), generator-only randomness, and the instrument numbers against the installed lenstronomy."""

from __future__ import annotations

import numpy as np
import pytest

from equilens.simulation.config import resolve_config
from equilens.simulation.instruments import INSTRUMENTS
from equilens.simulation.populations import draw_parameters
from equilens.simulation.render import add_noise, render_image, render_noiseless, sky_rate_per_pixel

N_REAL = 300


def _realisations(cfg, params, image, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([add_noise(cfg, image, params, rng) for _ in range(N_REAL)])


def _assert_unbiased(real: np.ndarray, image: np.ndarray, expected_var: np.ndarray) -> None:
    """Per-pixel means agree with the noiseless image: standardised errors have mean ~0, none beyond 5.5."""
    z = (real.mean(axis=0) - image) / np.sqrt(expected_var / real.shape[0])
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert np.abs(z).max() < 5.5


def _small(preset: str, size: int = 24, legacy: bool = False) -> object:
    return resolve_config(preset, {"image_size": size, "supersampling_factor": 1}, legacy=legacy)


@pytest.mark.parametrize("preset", ["model_ii", "model_iii"])
def test_ccd_noise_matches_lenstronomy_estimate(preset: str) -> None:
    from lenstronomy.SimulationAPI.observation_api import SingleBand

    cfg = _small(preset)
    params = draw_parameters(cfg, "no_sub", np.random.default_rng(1))
    image = render_noiseless(cfg, params)
    real = _realisations(cfg, params, image)
    inst = INSTRUMENTS[cfg.instrument]
    band = SingleBand(
        pixel_scale=inst.pixel_scale, exposure_time=inst.exposure_time_range[0] / inst.num_exposures,
        magnitude_zero_point=inst.magnitude_zero_point, read_noise=inst.read_noise, ccd_gain=inst.ccd_gain,
        sky_brightness=inst.sky_brightness, seeing=inst.psf_fwhm, num_exposures=inst.num_exposures,
    )
    expected_var = band.estimate_noise(image) ** 2
    emp_var = real.var(axis=0)
    ratio = emp_var / expected_var
    # 300 realisations: each pixel's variance is within ~8% (1 sigma); the mean over 576 pixels ~0.3%
    assert abs(ratio.mean() - 1) < 0.02
    assert np.all(np.abs(ratio - 1) < 0.45)
    _assert_unbiased(real, image, expected_var)  # sky subtracted
    # the source term really is there: bright pixels are noisier than the background
    bright = image > 0.5 * image.max()
    assert emp_var[bright].mean() > 1.5 * emp_var[image < 1e-3 * image.max()].mean()


def test_model_i_noise_counts_poisson_once_plus_background() -> None:
    cfg = _small("model_i", size=64)
    params = draw_parameters(cfg, "no_sub", np.random.default_rng(2))
    params["source"]["center_x"] = params["source"]["center_y"] = 0.0
    image = render_noiseless(cfg, params)  # counts
    t = params["exposure_time"]
    assert 1e3 <= t <= 10**3.5
    real = _realisations(cfg, params, image)
    expected_var = image + (0.01 * t) ** 2
    ratio = real.var(axis=0) / expected_var
    assert abs(ratio.mean() - 1) < 0.02
    _assert_unbiased(real, image, expected_var)
    # integer Poisson counts plus continuous Gaussian background
    assert not np.allclose(real, np.round(real))


def test_legacy_model_i_noise_double_shot_noise_and_clipping() -> None:
    cfg = _small("model_i", size=64, legacy=True)
    params = draw_parameters(cfg, "no_sub", np.random.default_rng(2))
    params["source"]["center_x"] = params["source"]["center_y"] = 0.0
    image = render_noiseless(cfg, params)
    real = _realisations(cfg, params, image)
    assert np.all(real >= 0) and np.allclose(real, np.round(real))  # Poisson of a clipped rate
    t = params["exposure_time"]
    bright = image > 5 * np.sqrt(2 * image + (0.01 * t) ** 2)  # where the clipping never bites
    assert bright.sum() > 5
    ratio = real.var(axis=0)[bright] / (2 * image[bright] + (0.01 * t) ** 2)
    assert abs(ratio.mean() - 1) < 0.05
    # far from the source, clipping at 0 biases the mean upwards
    dark = image < 1e-3 * image.max()
    assert real.mean(axis=0)[dark].mean() > 0.2 * 0.01 * t


def test_noise_uses_only_the_generator_passed_in() -> None:
    cfg = _small("model_ii")
    params = draw_parameters(cfg, "cdm", np.random.default_rng(3))
    # the global numpy RNG is only inspected here, to show the renderer never touches it
    np.random.seed(123)  # noqa: NPY002
    state = np.random.get_state()[1].copy()  # noqa: NPY002
    a = render_image(cfg, params, np.random.default_rng(5))
    b = render_image(cfg, params, np.random.default_rng(5))
    c = render_image(cfg, params, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # noqa: NPY002


def test_sky_rate() -> None:
    cfg = resolve_config("model_ii")
    # Euclid VIS: 10^(-0.4 (22.3 - 25.72)) e-/s/arcsec^2 * 0.101^2 arcsec^2
    assert sky_rate_per_pixel(cfg) == pytest.approx(10 ** (0.4 * 3.42) * 0.101**2)


def test_instrument_numbers_match_installed_lenstronomy() -> None:
    from lenstronomy.SimulationAPI.ObservationConfig.Euclid import Euclid
    from lenstronomy.SimulationAPI.ObservationConfig.HST import HST

    for inst, band in (
        (INSTRUMENTS["euclid_vis"], Euclid(band="VIS", psf_type="GAUSSIAN", coadd_years=6).kwargs_single_band()),
        (INSTRUMENTS["hst_wfc3_f160w"], HST(band="WFC3_F160W", psf_type="GAUSSIAN").kwargs_single_band()),
    ):
        assert inst.pixel_scale == band["pixel_scale"]
        assert inst.psf_fwhm == band["seeing"]
        assert inst.read_noise == band["read_noise"]
        assert inst.ccd_gain == band["ccd_gain"]
        assert inst.sky_brightness == band["sky_brightness"]
        assert inst.magnitude_zero_point == band["magnitude_zero_point"]
        assert inst.num_exposures == band["num_exposures"]
        assert inst.exposure_time_range == (band["exposure_time"] * band["num_exposures"],) * 2
