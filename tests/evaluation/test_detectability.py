"""Ideal-observer detectability: noise variances against the simulator's own noise, the ideal AUC against a
Monte-Carlo likelihood-ratio test scored by scikit-learn, and Delta chi^2 of paired records."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from equilens.errors import ConfigError, DataError
from equilens.evaluation import detectability
from equilens.evaluation.detectability import (
    check_same_lens_and_source,
    ideal_auc,
    noise_variance,
    paired_delta_chi2,
)
from equilens.simulation.config import resolve_config
from equilens.simulation.generate import image_streams
from equilens.simulation.populations import draw_parameters
from equilens.simulation.render import add_noise, render_noiseless

SMALL = {"image_size": 32, "supersampling_factor": 1}
N_REAL = 1500


def _empirical_variance(cfg, image, params, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([add_noise(cfg, image, params, rng) for _ in range(N_REAL)]).var(axis=0, ddof=1)


@pytest.mark.parametrize(("preset", "legacy", "noise_model"), [
    ("model_i", False, "poisson_gaussian_counts"),
    ("model_i", True, "legacy_deeplense_counts"),
    ("euclid_dm", False, "ccd"),
    ("hst_dm", False, "ccd"),
])
def test_noise_variance_matches_add_noise(preset: str, legacy: bool, noise_model: str) -> None:
    cfg = resolve_config(preset, SMALL, legacy=legacy)
    assert cfg.noise_model == noise_model
    params = draw_parameters(cfg, "no_sub", np.random.default_rng(3))
    image = render_noiseless(cfg, params)
    var = noise_variance(cfg, image, params)
    emp = _empirical_variance(cfg, image, params)
    assert var.shape == image.shape and np.all(var > 0)
    ratio = emp / var
    # 1500 realisations: each pixel's sample variance within ~4% (1 sd, Gaussian) -> 6 sd; the mean over
    # 1024 pixels within ~0.2%
    assert abs(ratio.mean() - 1) < 0.02
    assert np.all(np.abs(ratio - 1) < 0.3)
    bright = image > 0.3 * image.max()
    assert abs(emp[bright].mean() / var[bright].mean() - 1) < 0.05  # the source term, not only the background


def test_legacy_variance_handles_the_clip_at_zero() -> None:
    """Where the background rms dominates, the clip at zero shrinks the variance well below 2 m + sigma^2:
    the rectified-Gaussian formula follows the simulator there, the naive one does not."""
    cfg = resolve_config("model_i", {**SMALL, "background_rms": 0.2}, legacy=True)
    params = {"exposure_time": 10.0}
    sigma = 0.2 * 10.0
    image = np.tile(np.linspace(0.0, 3.0, 32), (32, 1))  # counts, from 0 to 1.5 sigma
    var = noise_variance(cfg, image, params)
    emp = _empirical_variance(cfg, image, params)
    naive = 2 * image + sigma**2
    assert abs((emp / var).mean() - 1) < 0.02
    assert np.abs(emp[:, 0].mean() / naive[:, 0].mean() - 1) > 0.3  # m = 0: 0.4 s + 0.34 s^2 vs s^2


def test_ideal_auc_matches_a_monte_carlo_likelihood_ratio_test() -> None:
    """Scale one real substructure signal to Delta chi^2 = 4, draw the simulator's noise around both models,
    score the log-likelihood ratio with scikit-learn: AUC = Phi(sqrt(2)) = 0.921."""
    cfg = resolve_config("euclid_dm", {**SMALL, "sigma_sub_range": [0.1, 0.1]})
    ref = draw_parameters(cfg, "no_sub", image_streams(0, 0)[0])
    rec = draw_parameters(cfg, "cdm_tnfw", image_streams(0, 0)[0])
    m_ref = render_noiseless(cfg, ref)
    var = noise_variance(cfg, m_ref, ref)
    delta = render_noiseless(cfg, rec) - m_ref
    delta *= np.sqrt(4.0 / np.sum(delta**2 / var))
    m_cls = m_ref + delta
    rng = np.random.default_rng(1)
    n = 2000

    def llr(model: np.ndarray) -> np.ndarray:
        x = np.stack([add_noise(cfg, model, ref, rng) for _ in range(n)])
        return np.sum(delta * (x - m_ref - delta / 2) / var, axis=(1, 2))

    scores = np.concatenate([llr(m_ref), llr(m_cls)])
    auc = roc_auc_score(np.r_[np.zeros(n), np.ones(n)], scores)
    assert float(ideal_auc(4.0)) == pytest.approx(norm.cdf(np.sqrt(2.0)), abs=1e-12)
    assert auc == pytest.approx(float(ideal_auc(4.0)), abs=0.02)  # standard error ~0.004


def test_ideal_auc_values_and_errors() -> None:
    assert float(ideal_auc(0.0)) == 0.5
    assert float(ideal_auc(np.inf)) == 1.0
    np.testing.assert_allclose(ideal_auc(np.array([2.0, 8.0])), norm.cdf([1.0, 2.0]), rtol=1e-12)
    with pytest.raises(ConfigError, match=">= 0"):
        ideal_auc(-1.0)


@pytest.mark.parametrize("cls", ["no_sub", "cdm_tnfw"])
def test_delta_chi2_is_zero_against_itself(cls: str) -> None:
    cfg = resolve_config("euclid_dm", SMALL)
    res = paired_delta_chi2(cfg, cls, 3, 5, reference=cls)
    assert np.all(res.delta_chi2 == 0.0)
    assert np.all(res.ideal_auc == 0.5)


def test_delta_chi2_positive_and_grows_with_sigma_sub() -> None:
    sums, results = [], []
    for s in (0.0125, 0.1, 0.4):
        cfg = resolve_config("euclid_dm", {**SMALL, "sigma_sub_range": [s, s]})
        res = paired_delta_chi2(cfg, "cdm_tnfw", 4, 0)
        assert res.delta_chi2.shape == (4,) and np.all(res.delta_chi2 > 0)
        assert np.all(res.sigma_sub == s) and np.all(res.n_subhalos > 0)
        assert np.all((res.ideal_auc > 0.5) & (res.ideal_auc <= 1.0))
        sums.append(res.delta_chi2.sum())
        results.append(res)
    assert sums[0] < sums[1] < sums[2]
    # the same lenses and sources at every Sigma_sub (one parameter stream per index)
    np.testing.assert_array_equal(results[0].lens_theta_E, results[2].lens_theta_E)
    np.testing.assert_array_equal(results[0].source_magnitude, results[2].source_magnitude)
    assert results[0].summary()["n"] == 4.0 and 0.5 < results[0].mean_ideal_auc <= 1.0


def test_delta_chi2_matches_a_direct_computation() -> None:
    cfg = resolve_config("hst_dm", SMALL)
    res = paired_delta_chi2(cfg, "sidm", 2, 7, start=10)
    for j, index in enumerate((10, 11)):
        ref = draw_parameters(cfg, "no_sub", image_streams(7, index)[0])
        rec = draw_parameters(cfg, "sidm", image_streams(7, index)[0])
        m_ref = render_noiseless(cfg, ref)
        t = ref["exposure_time"]
        var = (m_ref.clip(0) * t + 10 ** (-0.4 * (cfg.sky_brightness - cfg.magnitude_zero_point))
               * cfg.pixel_scale**2 * t + cfg.read_noise**2 * cfg.num_exposures) / t**2
        expected = np.sum((render_noiseless(cfg, rec) - m_ref) ** 2 / var)
        assert res.delta_chi2[j] == pytest.approx(expected, rel=1e-12)
        assert res.index[j] == index


def test_pairing_check_raises_on_a_tampered_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = resolve_config("euclid_dm", SMALL)
    a = draw_parameters(cfg, "cdm_tnfw", image_streams(0, 0)[0])
    b = draw_parameters(cfg, "no_sub", image_streams(0, 0)[0])
    check_same_lens_and_source(a, b)  # the real pair passes
    b["source"]["center_x"] += 1e-9
    with pytest.raises(DataError, match="'source'"):
        check_same_lens_and_source(a, b)
    c = draw_parameters(cfg, "no_sub", image_streams(0, 1)[0])  # another image's stream
    with pytest.raises(DataError, match="'lens'"):
        check_same_lens_and_source(a, c)

    real = detectability.draw_parameters

    def tampered(config, class_name, rng):
        rec = real(config, class_name, rng)
        if class_name == "no_sub":
            rec["exposure_time"] *= 2
        return rec

    monkeypatch.setattr(detectability, "draw_parameters", tampered)
    with pytest.raises(DataError, match="exposure_time"):
        paired_delta_chi2(cfg, "cdm_tnfw", 1, 0)


def test_bad_input_errors() -> None:
    cfg = resolve_config("euclid_dm", SMALL)
    with pytest.raises(ConfigError, match="chi\\^2 is undefined"):
        paired_delta_chi2(resolve_config("euclid_dm", {**SMALL, "noise": "none"}), "cdm_tnfw", 1, 0)
    with pytest.raises(ConfigError, match="chi\\^2 is undefined"):
        noise_variance(resolve_config("euclid_dm", {**SMALL, "noise": "none"}), np.zeros((2, 2)),
                       {"exposure_time": 1.0})
    with pytest.raises(ConfigError, match="valid noise models: poisson_gaussian_counts"):
        noise_variance(dataclasses.replace(cfg, noise_model="bogus"), np.zeros((2, 2)), {"exposure_time": 1.0})
    with pytest.raises(ConfigError, match="exposure_time"):
        noise_variance(cfg, np.zeros((2, 2)), {"exposure_time": 0.0})
    with pytest.raises(ConfigError, match="valid classes: no_sub, cdm_tnfw"):
        paired_delta_chi2(cfg, "cdm", 1, 0)
    with pytest.raises(ConfigError, match="reference"):
        paired_delta_chi2(cfg, "cdm_tnfw", 1, 0, reference="nothing")
    for kw in ({"n": 0}, {"n": 2.5}, {"seed": -1}, {"start": -3}, {"n": True}):
        args = {"n": 1, "seed": 0, **kw}
        with pytest.raises(ConfigError, match="must be an integer"):
            paired_delta_chi2(cfg, "cdm_tnfw", **args)
    with pytest.raises(ConfigError, match="SimConfig"):
        paired_delta_chi2({"preset": "euclid_dm"}, "cdm_tnfw", 1, 0)  # type: ignore[arg-type]
