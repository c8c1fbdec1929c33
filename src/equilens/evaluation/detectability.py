r"""Ideal-observer detectability of substructure: the chi^2 difference a perfect model would see.

For one image index, the parameters of a class (``cdm_tnfw``, ``wdm``, ...) and of a reference class
(``no_sub``) are drawn from the *same* parameter stream (:func:`equilens.simulation.generate.image_streams`,
as :func:`~equilens.simulation.generate.generate_dataset` does). The shared draws (main lens, shear, source,
exposure time) come first in that stream, so the two records differ only in their substructure (subhalos
and the negative mass sheet that removes their mean convergence); :func:`check_same_lens_and_source` checks
this and :func:`paired_delta_chi2` refuses a pair that fails it. Both records are rendered without noise
(:func:`~equilens.simulation.render.render_noiseless`), and

    Delta chi^2 = sum over pixels of (m_cls - m_ref)^2 / var_ref,

with ``var_ref`` the per-pixel variance of the preset's noise around the reference model
(:func:`noise_variance`).

Ideal AUC. An observer who knows both noiseless models exactly and faces x = m + noise, with Gaussian
noise of variance ``var_ref`` under both hypotheses, is best served (Neyman-Pearson) by the log-likelihood
ratio

    L(x) = sum (m_cls - m_ref) (x - (m_cls + m_ref) / 2) / var_ref,

which is Gaussian with mean -Delta chi^2 / 2 under the reference and +Delta chi^2 / 2 under the class,
variance Delta chi^2 under both: the separation in standard deviations is d' = sqrt(Delta chi^2), and the
area under its ROC curve is AUC = Phi(d' / sqrt(2)) = Phi(sqrt(Delta chi^2 / 2)).

This is an upper bound, not a forecast: the observer knows the lens, the source and every subhalo exactly
(a known-signal test, one image at a time). A real analysis or a network must marginalise over the lens
and source parameters, which absorb much of the signal (a slightly different lens or source can mimic the
subhalos' effect), and over the random substructure itself. ``mean_ideal_auc`` averages the per-image AUC
over images; a classifier that sees each image once can do no better than a test that knows each image's
two models.

Noise variances (the recipes of :func:`~equilens.simulation.render.add_noise`; t = the record's exposure
time in s, m = the noiseless model in the preset's unit):

- ``poisson_gaussian_counts``: var = max(m, 0) + (background_rms t)^2  (counts^2);
- ``legacy_deeplense_counts``: counts = Poisson(max(Z, 0)), Z ~ N(m, s^2), s^2 = |m| + (background_rms t)^2.
  With X = max(Z, 0) (a rectified Gaussian, a = m / s): E[X] = m Phi(a) + s phi(a),
  E[X^2] = (m^2 + s^2) Phi(a) + m s phi(a), and var = E[X] + E[X^2] - E[X]^2 (law of total variance; it
  is 2 m + (background_rms t)^2 where m >> s);
- ``ccd``: var = (t max(m, 0) + t s_sky + n r^2) / t^2  ((e-/s)^2), s_sky the sky rate per pixel
  (:func:`~equilens.simulation.render.sky_rate_per_pixel`), n exposures of read noise r e-.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr

from equilens.errors import ConfigError, DataError
from equilens.simulation.config import SimConfig
from equilens.simulation.generate import check_classes, image_streams
from equilens.simulation.instruments import NOISE_MODELS
from equilens.simulation.populations import draw_parameters
from equilens.simulation.render import render_noiseless, sky_rate_per_pixel

__all__ = [
    "SHARED_KEYS",
    "DetectabilityResult",
    "check_same_lens_and_source",
    "ideal_auc",
    "noise_variance",
    "paired_delta_chi2",
]

#: Top-level keys of a parameter record that every class of a preset draws identically from one stream.
SHARED_KEYS: tuple[str, ...] = ("lens", "shear", "source", "exposure_time")


def noise_variance(config: SimConfig, model_image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Per-pixel variance of :func:`~equilens.simulation.render.add_noise` around a noiseless image.

    Args:
        config: the simulator config; its ``noise_model`` selects the recipe (module docstring).
        model_image: noiseless image from :func:`~equilens.simulation.render.render_noiseless`, shape
            (H, W), in the preset's unit (counts, or e-/s for ``ccd``).
        params: the record the image was rendered from (its ``exposure_time``, s, is used).

    Returns:
        float64 array of shape (H, W): variance in the image's unit squared.

    Raises:
        ConfigError: ``config.noise == 'none'`` (noiseless images: chi^2 is undefined), an unknown noise
            model (the message lists the valid ones), or a non-positive exposure time.
    """
    if config.noise == "none":
        raise ConfigError("config.noise is 'none': noiseless images have no noise variance, so chi^2 is "
                          "undefined; use noise='default' with one of the noise models "
                          f"{', '.join(NOISE_MODELS)}")
    t = float(params["exposure_time"])
    if not (math.isfinite(t) and t > 0):
        raise ConfigError(f"exposure_time must be a finite number of seconds > 0, got {params['exposure_time']!r}")
    m = np.asarray(model_image, dtype=np.float64)
    nm = config.noise_model
    if nm == "poisson_gaussian_counts":
        sigma = (config.background_rms or 0.0) * t
        return np.clip(m, 0.0, None) + sigma**2
    if nm == "legacy_deeplense_counts":
        sigma = (config.background_rms or 0.0) * t
        s = np.sqrt(np.abs(m) + sigma**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(s > 0, m / np.where(s > 0, s, 1.0), 0.0)
        cdf = ndtr(a)
        pdf = np.exp(-0.5 * a**2) / math.sqrt(2.0 * math.pi)
        mean_x = np.where(s > 0, m * cdf + s * pdf, np.clip(m, 0.0, None))
        mean_x2 = np.where(s > 0, (m**2 + s**2) * cdf + m * s * pdf, np.clip(m, 0.0, None) ** 2)
        return np.asarray(mean_x + np.clip(mean_x2 - mean_x**2, 0.0, None), dtype=np.float64)
    if nm == "ccd":
        sky = sky_rate_per_pixel(config) * t
        read_var = (config.read_noise or 0.0) ** 2 * config.num_exposures
        return (np.clip(m, 0.0, None) * t + sky + read_var) / t**2
    raise ConfigError(f"unknown noise_model {nm!r}; valid noise models: {', '.join(NOISE_MODELS)}")


def ideal_auc(delta_chi2: np.ndarray | float) -> np.ndarray:
    """AUC of the known-signal likelihood-ratio test in Gaussian noise: Phi(sqrt(Delta chi^2 / 2)).

    Args:
        delta_chi2: Delta chi^2 >= 0, any shape (inf gives 1).

    Returns:
        float64 array of the same shape, in [0.5, 1].
    """
    d = np.asarray(delta_chi2, dtype=np.float64)
    if np.any(d < 0) or np.any(np.isnan(d)):
        raise ConfigError("delta_chi2 must be >= 0 (and not NaN)")
    return np.asarray(ndtr(np.sqrt(d / 2.0)), dtype=np.float64)


def check_same_lens_and_source(params: dict[str, Any], reference: dict[str, Any]) -> None:
    """Raise unless two records share their main lens, shear, source and exposure time exactly.

    Raises:
        DataError: naming the first differing key (a pair that differs there measures the lens or the
            source, not the substructure).
    """
    for key in SHARED_KEYS:
        a, b = params.get(key), reference.get(key)
        if a != b:
            raise DataError(f"the paired records differ in {key!r} ({a!r} vs {b!r}): Delta chi^2 between them "
                            "would not isolate the substructure; both must be drawn from the same parameter "
                            "stream (image_streams(seed, index))")


@dataclass(frozen=True)
class DetectabilityResult:
    """Per-image ideal-observer numbers of :func:`paired_delta_chi2` (every array has shape (n,)).

    Attributes:
        preset, cls, reference, seed: what was compared.
        index: global image indices (their parameter streams: ``image_streams(seed, index)``).
        delta_chi2: sum over pixels of (m_cls - m_ref)^2 / var_ref (dimensionless).
        ideal_auc: Phi(sqrt(delta_chi2 / 2)) per image.
        reference_snr: sqrt(sum m_ref^2 / var_ref), the signal-to-noise of the whole reference image.
        sigma_sub: Sigma_sub of the class record, kpc^-2 (NaN without a Sigma_sub population).
        f_sub: expected projected subhalo mass fraction at the Einstein radius (NaN likewise).
        n_subhalos: rendered subhalos of the class record.
        subhalo_mass_total: their total m200, Msun.
        subhalo_mass_max: the largest rendered subhalo's m200, Msun (0 without subhalos).
        lens_theta_E: main-lens Einstein radius, arcsec.
        source_magnitude: source magnitude (NaN when the source is given by amplitude).
        exposure_time: s.
    """

    preset: str
    cls: str
    reference: str
    seed: int
    index: np.ndarray
    delta_chi2: np.ndarray
    ideal_auc: np.ndarray
    reference_snr: np.ndarray
    sigma_sub: np.ndarray
    f_sub: np.ndarray
    n_subhalos: np.ndarray
    subhalo_mass_total: np.ndarray
    subhalo_mass_max: np.ndarray
    lens_theta_E: np.ndarray
    source_magnitude: np.ndarray
    exposure_time: np.ndarray

    @property
    def mean_ideal_auc(self) -> float:
        """Mean over images of the per-image ideal AUC."""
        return float(np.mean(self.ideal_auc))

    def summary(self, thresholds: tuple[float, ...] = (9.0, 25.0)) -> dict[str, float]:
        """Median, mean, 16th and 84th percentiles of Delta chi^2, the fraction above each threshold
        (``frac_gt_9`` ...) and the mean ideal AUC."""
        d = self.delta_chi2
        out = {"n": float(len(d)), "median": float(np.median(d)), "mean": float(np.mean(d)),
               "p16": float(np.percentile(d, 16)), "p84": float(np.percentile(d, 84)),
               "mean_ideal_auc": self.mean_ideal_auc}
        for t in thresholds:
            out[f"frac_gt_{t:g}"] = float(np.mean(d > t))
        return out


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def paired_delta_chi2(config: SimConfig, cls: str, n: int, seed: int, reference: str = "no_sub",
                      start: int = 0) -> DetectabilityResult:
    """Ideal-observer Delta chi^2 between ``cls`` and ``reference`` for images ``start .. start+n-1``.

    For each index, both records are drawn from ``image_streams(seed, index)`` (the same stream), checked
    to share lens, shear, source and exposure (:func:`check_same_lens_and_source`), rendered without
    noise, and compared with the reference's noise variance (:func:`noise_variance`). An upper bound on
    what any analysis can detect: the observer knows lens, source and substructure exactly (module
    docstring). Pixels with zero variance count 0 if the models agree there and inf otherwise.

    Args:
        config: simulator config (e.g. ``resolve_config("euclid_dm", {"sigma_sub_range": [s, s]})``);
            its noise must not be 'none'.
        cls: a class of the config's preset.
        n: number of image pairs (> 0).
        seed: non-negative integer, the data-set seed of :func:`~equilens.simulation.generate.image_streams`.
        reference: the class compared against (default ``no_sub``).
        start: first global image index (>= 0).

    Returns:
        :class:`DetectabilityResult` with per-image arrays of shape (n,).

    Raises:
        ConfigError: unknown class for the preset (listing the valid ones), bad n / seed / start, or noise
            'none'.
        DataError: a pair whose lens, shear, source or exposure differ.
    """
    if not isinstance(config, SimConfig):
        raise ConfigError(f"config must be a SimConfig (from resolve_config), got {type(config).__name__}")
    check_classes(config, [cls], "cls")
    check_classes(config, [reference], "reference")
    for arg, number, lo in (("n", n, 1), ("seed", seed, 0), ("start", start, 0)):
        if isinstance(number, bool) or not isinstance(number, int | np.integer) or number < lo:
            raise ConfigError(f"{arg} must be an integer >= {lo}, got {number!r}")
    if config.noise == "none":
        noise_variance(config, np.zeros((1, 1)), {"exposure_time": 1.0})  # raises the explanatory error
    cols: dict[str, list[float]] = {k: [] for k in (
        "delta_chi2", "reference_snr", "sigma_sub", "f_sub", "n_subhalos", "subhalo_mass_total", "subhalo_mass_max",
        "lens_theta_E", "source_magnitude", "exposure_time")}
    indices = np.arange(int(start), int(start) + int(n), dtype=np.int64)
    for index in indices.tolist():
        rec = draw_parameters(config, cls, image_streams(int(seed), index)[0])
        ref = draw_parameters(config, reference, image_streams(int(seed), index)[0])
        check_same_lens_and_source(rec, ref)
        m_ref = render_noiseless(config, ref)
        m_cls = m_ref if cls == reference else render_noiseless(config, rec)
        var = noise_variance(config, m_ref, ref)
        diff2 = (m_cls - m_ref) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(var > 0, diff2 / np.where(var > 0, var, 1.0), np.where(diff2 > 0, np.inf, 0.0))
            snr2 = np.where(var > 0, m_ref**2 / np.where(var > 0, var, 1.0), 0.0)
        cols["delta_chi2"].append(float(terms.sum()))
        cols["reference_snr"].append(float(math.sqrt(snr2.sum())))
        pop = rec.get("population") or {}
        mass = np.asarray(rec["subhalos"]["mass"], dtype=float)
        cols["sigma_sub"].append(_num(pop.get("sigma_sub")))
        cols["f_sub"].append(_num(pop.get("f_sub")))
        cols["n_subhalos"].append(float(len(mass)))
        cols["subhalo_mass_total"].append(float(mass.sum()) if len(mass) else 0.0)
        cols["subhalo_mass_max"].append(float(mass.max()) if len(mass) else 0.0)
        cols["lens_theta_E"].append(float(rec["lens"]["theta_E"]))
        cols["source_magnitude"].append(_num(rec["source"].get("magnitude")))
        cols["exposure_time"].append(float(rec["exposure_time"]))
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}
    return DetectabilityResult(preset=config.preset, cls=cls, reference=reference, seed=int(seed), index=indices,
                               ideal_auc=ideal_auc(arrays["delta_chi2"]), **arrays)
