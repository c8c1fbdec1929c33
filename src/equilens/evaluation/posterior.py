"""Evaluation and use of a posterior run (``--task posterior``): samples, intervals, calibration, combination.

``evaluate_posterior`` (``equilens evaluate RUN`` on a posterior run) draws ``n_samples`` posterior samples
for every test image and writes to ``RUN/eval/``:

* ``posterior_samples.npz``: ``samples`` float16 (N, keep, D) (the first ``keep`` draws), ``truth`` (N, D),
  ``positions``, and per image the posterior ``mean``, ``median``, ``std`` and central 68% / 95% intervals
  ``q16``, ``q84``, ``q2.5``, ``q97.5`` (all float64 (N, D), from all ``n_samples`` draws);
* ``metrics.json``: per parameter the MAE / RMSE / bias of the posterior mean, the same per bin of the true
  value (with the mean posterior std, which approaches the prior's std where the images stop carrying
  information), the coverage of the central 68% / 95% intervals, the SBC rank statistics; and the expected
  coverage of highest-density regions at every credibility level;
* figures: ``coverage.png`` (HPD expected coverage against credibility, with the binomial band of the
  test-set size), ``sbc_ranks.png`` (simulation-based-calibration rank histograms, Talts et al. 2018),
  ``posterior_vs_true.png`` (posterior mean with 68% intervals), ``mae_per_bin.png``.

**HPD expected coverage** (as in Hermans et al. 2022): for test image i with true theta_i, the credibility
of the smallest highest-density region that contains theta_i is estimated as the fraction of posterior
draws with a higher density, ``c_i = mean_s [q(theta_s | x_i) > q(theta_i | x_i)]``. A calibrated
posterior has c_i uniform on [0, 1], so the fraction of test images with ``c_i <= alpha`` (the coverage at
credibility alpha) equals alpha at every alpha. **SBC ranks**: per parameter, the number of draws below
the truth, ``r_i = sum_s [theta_s < theta_i]``, uniform on {0..S} for a calibrated posterior.

**Comparison** (``compare``): regression runs (``--task regress``, same target, same data, same test
positions: checked) are evaluated on the same images; their MAE, RMSE and per-bin MAE are reported beside
the posterior mean's, and, with a predicted variance, the coverage of their Gaussian intervals (for a
Gaussian the HPD region is the central interval, so its coverage at credibility alpha is the fraction with
``|z| <= Phi^-1((1 + alpha) / 2)``).

**Population posterior** (:func:`combine_posteriors`): for N images that share the value of one parameter
theta (each with its own nuisance parameters, independent given theta), Bayes' theorem gives
``p(theta | x_1..x_N) ∝ p(theta) prod_i p(x_i | theta) ∝ prod_i q(theta | x_i) / p(theta)^(N - 1)``, where
``q(theta | x_i) ∝ p(x_i | theta) p(theta)`` is the per-image posterior learnt under the training prior
``p(theta)`` (Wagner-Carena et al. 2022 combine per-lens posteriors of Sigma_sub this way). It is computed
on a grid of ``grid_points`` values over the prior range, in log space, with the prior assumed uniform on
that range (true for the simulator's documented ranges; the run records where its range came from), so the
division by ``p(theta)^(N-1)`` is a constant inside the range and zero mass outside. Errors of the
individual posteriors multiply: an overconfident q makes the combined posterior overconfident N times over,
which is why the coverage above matters before combining. One-parameter runs only (a multi-parameter run
would need the marginal density of the shared parameter).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import stats as sps  # noqa: E402

from equilens.cpu import flush_denormals  # noqa: E402
from equilens.data.datamodule import LensDataModule  # noqa: E402
from equilens.data.store import LensDataset, write_json_atomic  # noqa: E402
from equilens.errors import ConfigError, DataError  # noqa: E402
from equilens.training.config import read_run_config  # noqa: E402
from equilens.training.posterior import PosteriorNet, load_posterior, parse_targets  # noqa: E402

#: Credibility levels of the coverage curve.
LEVELS: np.ndarray = np.round(np.linspace(0.0, 1.0, 101), 2)
#: Posterior draws per image kept in ``posterior_samples.npz``.
KEEP_SAMPLES = 200
DPI = 110


# -- sampling ---------------------------------------------------------------------------------------------
@torch.no_grad()
def posterior_draws(net: PosteriorNet, images: torch.Tensor, n_samples: int = 1000, seed: int = 0,
                    batch_size: int = 64, truth: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Posterior draws for normalised images (N, 1, H, W).

    Returns:
        ``samples`` float32 (N, S, D) in the parameters' units, ``log_q`` float32 (N, S) their log density,
        and with ``truth`` (N, D) also ``log_q_truth`` float64 (N,).
    """
    if n_samples < 2:
        raise ConfigError(f"n_samples must be >= 2, got {n_samples}")
    net.eval()
    out_s, out_lp, out_t = [], [], []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for i in range(0, images.shape[0], batch_size):
            ctx = net(images[i:i + batch_size])
            theta, lp = net.sample(ctx, n_samples)
            out_s.append(theta.transpose(0, 1).float().numpy())
            out_lp.append(lp.transpose(0, 1).float().numpy())
            if truth is not None:
                t = torch.as_tensor(truth[i:i + batch_size], dtype=torch.float32)
                out_t.append(net.log_prob(t, ctx).double().numpy())
    dim = net.dim
    res = {"samples": np.concatenate(out_s) if out_s else np.zeros((0, n_samples, dim), np.float32),
           "log_q": np.concatenate(out_lp) if out_lp else np.zeros((0, n_samples), np.float32)}
    if truth is not None:
        res["log_q_truth"] = np.concatenate(out_t) if out_t else np.zeros(0)
    return res


def summarise(samples: np.ndarray) -> dict[str, np.ndarray]:
    """Posterior mean, median, std and central-interval quantiles of draws (N, S, D), each (N, D)."""
    q = np.quantile(samples, [0.025, 0.16, 0.5, 0.84, 0.975], axis=1)
    return {"mean": samples.mean(axis=1, dtype=np.float64), "std": samples.std(axis=1, dtype=np.float64),
            "median": q[2], "q2.5": q[0], "q16": q[1], "q84": q[3], "q97.5": q[4]}


# -- calibration ------------------------------------------------------------------------------------------
def hpd_credibility(log_q: np.ndarray, log_q_truth: np.ndarray) -> np.ndarray:
    """Credibility of the smallest HPD region holding the truth: fraction of draws denser than it. (N,)"""
    return (log_q > log_q_truth[:, None]).mean(axis=1)


def expected_coverage(credibility: np.ndarray, levels: np.ndarray = LEVELS) -> np.ndarray:
    """Fraction of images whose truth lies in the HPD region of each credibility level. (len(levels),)"""
    return (credibility[None, :] <= levels[:, None] + 1e-12).mean(axis=1)


def gaussian_coverage(pred: np.ndarray, sigma: np.ndarray, truth: np.ndarray,
                      levels: np.ndarray = LEVELS) -> np.ndarray:
    """Coverage of Gaussian central intervals (= HPD regions) at each credibility level."""
    z = np.abs(pred - truth) / sigma
    half = sps.norm.ppf((1.0 + np.clip(levels, 0.0, 1.0 - 1e-12)) / 2.0)
    return (z[None, :] <= half[:, None]).mean(axis=1)


def sbc_ranks(samples: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Rank of each truth among its draws, int64 (N, D) in 0..S."""
    return (samples < truth[:, None, :]).sum(axis=1).astype(np.int64)


def rank_uniformity(ranks: np.ndarray, n_samples: int, bins: int = 20) -> dict[str, float]:
    """Chi-square test of uniform SBC ranks (one parameter) in ``bins`` bins, and the largest distance of
    the rank fractions' empirical CDF from the diagonal (Kolmogorov-Smirnov statistic)."""
    counts, _ = np.histogram(ranks / (n_samples + 1.0), bins=bins, range=(0.0, 1.0))
    chi2 = sps.chisquare(counts)
    ks = sps.kstest((ranks + 0.5) / (n_samples + 1.0), "uniform")
    return {"chi2": float(chi2.statistic), "chi2_p": float(chi2.pvalue), "ks": float(ks.statistic),
            "ks_p": float(ks.pvalue)}


def coverage_band(n: int, levels: np.ndarray = LEVELS, width: float = 2.0) -> np.ndarray:
    """+- ``width`` binomial standard errors of a coverage measured on ``n`` images, (len(levels),)."""
    return width * np.sqrt(levels * (1.0 - levels) / max(n, 1))


def binned_errors(pred: np.ndarray, truth: np.ndarray, edges: np.ndarray,
                  spread: np.ndarray | None = None) -> list[dict[str, Any]]:
    """MAE, RMSE and bias of ``pred`` per bin of ``truth`` (1-D), with the mean ``spread`` (posterior std)."""
    rows = []
    idx = np.clip(np.digitize(truth, edges[1:-1]), 0, len(edges) - 2)
    for b in range(len(edges) - 1):
        m = idx == b
        err = pred[m] - truth[m]
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": int(m.sum()),
                     "mae": float(np.abs(err).mean()) if m.any() else float("nan"),
                     "rmse": float(np.sqrt((err**2).mean())) if m.any() else float("nan"),
                     "bias": float(err.mean()) if m.any() else float("nan"),
                     **({"mean_std": float(spread[m].mean()) if m.any() else float("nan")}
                        if spread is not None else {})})
    return rows


# -- population combination -------------------------------------------------------------------------------
@torch.no_grad()
def combine_posteriors(net: PosteriorNet, images: torch.Tensor, grid_points: int = 801,
                       batch_size: int = 64) -> dict[str, Any]:
    """Population posterior of the one parameter shared by all ``images`` (N, 1, H, W) (module docstring).

    Returns:
        ``grid`` (G,), ``density`` (G,) normalised on the grid, ``log_q`` (N, G) the per-image log posteriors,
        ``mean``, ``std``, ``median``, ``hpd68`` and ``hpd95`` [low, high] of the combined posterior, ``n``.
    """
    if net.dim != 1:
        raise ConfigError(f"combining posteriors needs a one-parameter run; this run models {net.dim} parameters "
                          f"(train a run with --target NAME of the shared parameter alone)")
    if images.shape[0] < 1:
        raise DataError("no image to combine")
    low, high = float(net.low[0]), float(net.high[0])
    step = (high - low) / grid_points
    grid = low + step * (np.arange(grid_points) + 0.5)  # cell centres, strictly inside the prior range
    theta = torch.as_tensor(grid, dtype=torch.float32)[:, None, None]  # (G, 1, 1) -> broadcast over images
    rows = []
    for i in range(0, images.shape[0], batch_size):
        ctx = net(images[i:i + batch_size])
        rows.append(net.log_prob(theta.expand(-1, ctx.shape[0], 1), ctx).double().numpy().T)  # (b, G)
    log_q = np.concatenate(rows)
    # uniform prior inside the range: dividing by p(theta)^(N-1) only changes the normalisation
    total = log_q.sum(axis=0)
    density = np.exp(total - total.max())
    density /= density.sum() * step
    mass = density * step
    cdf = np.cumsum(mass)
    mean = float((grid * mass).sum())
    return {"grid": grid, "density": density, "log_q": log_q, "n": int(images.shape[0]),
            "mean": mean, "std": float(np.sqrt(((grid - mean) ** 2 * mass).sum())),
            "median": float(np.interp(0.5, cdf, grid)), "hpd68": _hpd(grid, mass, 0.68),
            "hpd95": _hpd(grid, mass, 0.95)}


def _hpd(grid: np.ndarray, mass: np.ndarray, level: float) -> list[float]:
    """[low, high] of the grid cells holding ``level`` of the mass, densest first (a single interval for a
    unimodal density; the outer edges otherwise)."""
    order = np.argsort(mass)[::-1]
    keep = order[: int(np.searchsorted(np.cumsum(mass[order]), level)) + 1]
    half = (grid[1] - grid[0]) / 2 if grid.size > 1 else 0.0
    return [float(grid[keep].min() - half), float(grid[keep].max() + half)]


# -- evaluation of a run ----------------------------------------------------------------------------------
def _images(dm: LensDataModule, positions: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(dm.normalizer(dm.dataset.get_images(positions)))


def _comparison(run: str | os.PathLike[str], target: str, data_fp: str, positions: np.ndarray,
                raw_images: np.ndarray, truth: np.ndarray, edges: np.ndarray, batch_size: int) -> dict[str, Any]:
    """MAE / RMSE / per-bin MAE (and Gaussian coverage) of a regression run on the same test images
    (``raw_images`` (N, 1, H, W) as stored; normalised here with that run's own statistics)."""
    from equilens.data.transforms import Normalizer
    from equilens.evaluation.evaluate import checkpoint_path, load_run_model, predict
    from equilens.evaluation.metrics import regression_metrics
    from equilens.training.module import split_regression_output

    cfg = read_run_config(run)
    if cfg.task != "regress" or cfg.target != target:
        raise ConfigError(f"--compare {run}: a {cfg.task!r} run of {cfg.target!r}; it must be a --task regress "
                          f"run of {target!r}")
    split, stats = LensDataModule.load_saved(run)
    if split.get("data_fingerprint") != data_fp or sorted(split["test"]) != sorted(positions.tolist()):
        raise DataError(f"--compare {run}: its test split differs from this run's (the same data set, split seed "
                        f"and fractions are needed, so that the test parts hold the same images)")
    model, _ = load_run_model(cfg, checkpoint_path(run, "best"), len(split["class_names"]))
    images = torch.from_numpy(Normalizer.from_dict(stats["image"])(raw_images))
    mean, var = split_regression_output(predict(model, images, batch_size), cfg.predict_variance)
    t = stats["target"]
    pred = mean.double().numpy() * t["std"] + t["mean"]
    sigma = np.sqrt(var.double().numpy()) * t["std"] if var is not None else None
    res: dict[str, Any] = {"run": str(run), "model": cfg.model, "seed": cfg.seed,
                           "kind": "Gaussian-variance regressor" if sigma is not None else "point regressor",
                           **regression_metrics(pred, truth, sigma),
                           "per_bin": binned_errors(pred, truth, edges, sigma)}
    if sigma is not None:
        res["coverage"] = gaussian_coverage(pred, sigma, truth).tolist()
    return res


def evaluate_posterior(
    run_dir: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    checkpoint: str = "best",
    n_samples: int = 1000,
    seed: int = 0,
    bins: int = 8,
    compare: Sequence[str | os.PathLike[str]] = (),
    batch_size: int = 64,
    out: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Evaluate a posterior run on its test split (or all of ``data``); see the module docstring.

    Args:
        run_dir: a run made with ``--task posterior``.
        data: evaluate on every image of this data set with finite targets instead.
        checkpoint: ``best``, ``last`` or a path.
        n_samples: posterior draws per image (S).
        seed: seed of the draws.
        bins: bins of the true value for the per-bin errors (equal width over the prior range).
        compare: regression run directories evaluated on the same images (one-parameter runs).
        batch_size: images per forward pass.
        out: output directory (default ``RUN/eval`` or ``RUN/eval-<data name>``).
        log: message sink.

    Returns:
        The metrics written to ``metrics.json``.
    """
    from equilens.evaluation.evaluate import evaluation_images

    flush_denormals()
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    targets = parse_targets(cfg.target)
    split, stats = LensDataModule.load_saved(run_dir)
    net, meta = load_posterior(run_dir, checkpoint)
    dm, positions, subset, out_dir = evaluation_images(cfg, run_dir, split, stats, data, out, targets=targets,
                                                       class_names=None, log=log)
    if positions.size == 0:
        raise DataError("nothing to evaluate: the selected split is empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = dm.dataset.get_images(positions)
    images = torch.from_numpy(dm.normalizer(raw))
    truth = dm.targets_raw(positions)
    low, high = np.asarray(stats["target"]["low"]), np.asarray(stats["target"]["high"])
    outside = ((truth < low) | (truth > high)).any(axis=1)
    if outside.any():
        raise DataError(f"{int(outside.sum())} evaluated image(s) have a true value outside the run's prior range "
                        f"{dict(zip(targets, zip(low.tolist(), high.tolist(), strict=True), strict=True))}")
    draws = posterior_draws(net, images, n_samples, seed, batch_size, truth=truth)
    summ = summarise(draws["samples"])
    cred = hpd_credibility(draws["log_q"], draws["log_q_truth"])
    coverage = expected_coverage(cred)
    ranks = sbc_ranks(draws["samples"], truth)
    n = int(positions.size)
    band = coverage_band(n)
    result: dict[str, Any] = {
        "run": str(run_dir), "checkpoint": meta["checkpoint"], "checkpoint_epoch": meta.get("epoch"),
        "data": str(dm.data_dir), "subset": subset, "model": cfg.model, "task": "posterior", "target": cfg.target,
        "targets": targets, "seed": cfg.seed, "n": n, "n_samples": n_samples, "sample_seed": seed,
        "prior": {t: {"low": float(low[d]), "high": float(high[d]), "source": stats["target"]["prior_source"][d]}
                  for d, t in enumerate(targets)},
        "coverage": {"levels": LEVELS.tolist(), "hpd": coverage.tolist(),
                     "max_abs_deviation": float(np.abs(coverage - LEVELS).max()),
                     # in binomial standard errors of n images, over the levels strictly inside (0, 1)
                     "max_deviation_in_se": float((np.abs(coverage - LEVELS)[1:-1] / (band[1:-1] / 2)).max()),
                     "at_0.68": float(coverage[68]), "at_0.95": float(coverage[95])},
        "parameters": {},
    }
    edges_all = {}
    for d, t in enumerate(targets):
        err = summ["mean"][:, d] - truth[:, d]
        edges = np.linspace(low[d], high[d], bins + 1)
        edges_all[t] = edges
        central68 = float(((truth[:, d] >= summ["q16"][:, d]) & (truth[:, d] <= summ["q84"][:, d])).mean())
        central95 = float(((truth[:, d] >= summ["q2.5"][:, d]) & (truth[:, d] <= summ["q97.5"][:, d])).mean())
        result["parameters"][t] = {
            "mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean())), "bias": float(err.mean()),
            "mae_median": float(np.abs(summ["median"][:, d] - truth[:, d]).mean()),
            "mean_posterior_std": float(summ["std"][:, d].mean()),
            "prior_std": float(truth[:, d].std()),
            "central68_coverage": central68, "central95_coverage": central95,
            "per_bin": binned_errors(summ["mean"][:, d], truth[:, d], edges, summ["std"][:, d]),
            "sbc": rank_uniformity(ranks[:, d], n_samples),
        }
    # headline numbers of the first parameter at the top level, under the names regression runs use (report)
    first = summ["mean"][:, 0] - truth[:, 0]
    ss_tot = float(((truth[:, 0] - truth[:, 0].mean()) ** 2).sum())
    result.update(mae=result["parameters"][targets[0]]["mae"], rmse=result["parameters"][targets[0]]["rmse"],
                  bias=result["parameters"][targets[0]]["bias"],
                  r2=float(1.0 - (first**2).sum() / ss_tot) if ss_tot > 0 else float("nan"))
    comparisons = []
    for other_run in compare:
        if len(targets) != 1:
            raise ConfigError("--compare needs a one-parameter posterior run (regressors predict one target)")
        comparisons.append(_comparison(other_run, targets[0], split["data_fingerprint"], positions, raw,
                                       truth[:, 0], edges_all[targets[0]], batch_size))
    if comparisons:
        result["comparison"] = comparisons
    keep = min(KEEP_SAMPLES, n_samples)
    np.savez_compressed(out_dir / "posterior_samples.npz", positions=positions, truth=truth, targets=np.array(targets),
                        samples=draws["samples"][:, :keep].astype(np.float16), credibility=cred, ranks=ranks, **summ)
    title = f"{cfg.model} seed {cfg.seed}, {n} images"
    figs = [plot_coverage(coverage, n, out_dir / "coverage.png", comparisons, title=title),
            plot_sbc(ranks, n_samples, targets, out_dir / "sbc_ranks.png", title=title),
            plot_posterior_vs_true(summ, truth, targets, low, high, out_dir / "posterior_vs_true.png", title=title),
            plot_per_bin(result["parameters"], comparisons, out_dir / "mae_per_bin.png", title=title)]
    result["figures"] = [f.name for f in figs]
    write_json_atomic(out_dir / "metrics.json", result)
    log(format_posterior_metrics(result))
    log(f"metrics, samples and figures written to {out_dir}")
    return result


def format_posterior_metrics(m: dict[str, Any]) -> str:
    """A short human-readable summary of :func:`evaluate_posterior`'s result."""
    c = m["coverage"]
    lines = [f"{m['model']} (posterior of {m['target']}) on {m['n']} images ({m['subset']}), "
             f"{m['n_samples']} draws each",
             f"  HPD coverage: at 0.68 {c['at_0.68']:.3f}, at 0.95 {c['at_0.95']:.3f}; largest |coverage - level| "
             f"{c['max_abs_deviation']:.3f}"]
    for t, p in m["parameters"].items():
        lines.append(f"  {t}: posterior-mean MAE {p['mae']:.4f}, RMSE {p['rmse']:.4f}, bias {p['bias']:+.4f}; mean "
                     f"posterior std {p['mean_posterior_std']:.4f} (prior {p['prior_std']:.4f}); central 68/95% "
                     f"intervals hold {p['central68_coverage']:.3f} / {p['central95_coverage']:.3f}; SBC ranks "
                     f"KS {p['sbc']['ks']:.3f} (p {p['sbc']['ks_p']:.2g})")
    for r in m.get("comparison", []):
        extra = (f", within 1/2 sigma {r['calibration']['within_1sigma']:.3f} / {r['calibration']['within_2sigma']:.3f}"
                 if "calibration" in r else "")
        lines.append(f"  compared: {r['kind']} {r['model']} seed {r['seed']}: MAE {r['mae']:.4f}, RMSE {r['rmse']:.4f}"
                     f"{extra}")
    return "\n".join(lines)


# -- inference on new images ------------------------------------------------------------------------------
def infer_posterior(
    run_dir: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    index: Sequence[int] | None = None,
    checkpoint: str = "best",
    n_samples: int = 2000,
    seed: int = 0,
    combine: bool = False,
    grid_points: int = 801,
    max_plots: int = 6,
    batch_size: int = 64,
    out: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Posteriors of images of ``data`` (``index``: data-set positions, default all) under a posterior run.

    Writes ``posteriors.npz`` (draws float32 (N, S, D) and summaries), ``posteriors.json`` (per image mean,
    median, std, 68/95% intervals and, when the data set records them, the true values), ``corner.png`` (the
    first ``max_plots`` images) and, with ``combine``, the population posterior of the shared parameter
    (:func:`combine_posteriors`) in ``combined.json`` and ``combined.png``. Images are normalised with the
    run's statistics; their size must be the run's.
    """
    flush_denormals()
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    targets = parse_targets(cfg.target)
    _, stats = LensDataModule.load_saved(run_dir)
    net, meta = load_posterior(run_dir, checkpoint)
    ds = LensDataset(data)
    n_all = len(ds)
    positions = np.arange(n_all) if index is None else np.asarray(list(index), dtype=np.int64)
    if positions.size == 0:
        raise ConfigError("--index selects no image")
    bad = positions[(positions < 0) | (positions >= n_all)]
    if bad.size:
        raise ConfigError(f"--index {int(bad[0])} is out of range: {data} holds images 0..{n_all - 1}")
    from equilens.data.transforms import Normalizer

    raw = ds.get_images(positions)
    if not np.isfinite(raw).all():
        raise DataError(f"{data}: the selected images contain NaN or inf pixels")
    images = torch.from_numpy(Normalizer.from_dict(stats["image"])(raw))
    recorded = [t for t in targets if t in ds.parameter_names]
    truth = None
    if len(recorded) == len(targets):
        cols = ds.parameters(targets)
        truth = np.stack([cols[t][positions] for t in targets], axis=1)
        if not np.isfinite(truth).all():
            truth = None
    draws = posterior_draws(net, images, n_samples, seed, batch_size)
    summ = summarise(draws["samples"])
    out_dir = Path(out) if out else run_dir / f"infer-{Path(data).resolve().name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    per_image = []
    for i, pos in enumerate(positions.tolist()):
        row: dict[str, Any] = {"position": int(pos)}
        for d, t in enumerate(targets):
            row[t] = {k: float(v[i, d]) for k, v in summ.items()}
            if truth is not None:
                row[t]["true"] = float(truth[i, d])
        per_image.append(row)
    result: dict[str, Any] = {"run": str(run_dir), "checkpoint": meta["checkpoint"], "data": str(data),
                              "targets": targets, "n": int(positions.size), "n_samples": n_samples, "seed": seed,
                              "images": per_image}
    np.savez_compressed(out_dir / "posteriors.npz", positions=positions, samples=draws["samples"],
                        targets=np.array(targets), **summ, **({"truth": truth} if truth is not None else {}))
    figs = [plot_corner(draws["samples"][:max_plots], targets, out_dir / "corner.png",
                        truth=None if truth is None else truth[:max_plots], positions=positions[:max_plots],
                        low=stats["target"]["low"], high=stats["target"]["high"])]
    if combine:
        comb = combine_posteriors(net, images, grid_points, batch_size)
        shared = None
        if truth is not None and np.ptp(truth[:, 0]) == 0:
            shared = float(truth[0, 0])
        result["combined"] = {k: comb[k] for k in ("n", "mean", "std", "median", "hpd68", "hpd95")}
        result["combined"]["parameter"] = targets[0]
        result["combined"]["method"] = ("product of per-image posteriors divided by the prior^(N-1), uniform prior "
                                        f"on [{float(net.low[0])}, {float(net.high[0])}], grid of {grid_points}")
        if shared is not None:
            result["combined"]["true"] = shared
        write_json_atomic(out_dir / "combined.json", result["combined"])
        figs.append(plot_combined(comb, targets[0], out_dir / "combined.png", truth=shared))
        log(f"combined posterior of {targets[0]} from {comb['n']} images: mean {comb['mean']:.4f}, std "
            f"{comb['std']:.4f}, 68% HPD [{comb['hpd68'][0]:.4f}, {comb['hpd68'][1]:.4f}]"
            + (f" (true {shared})" if shared is not None else ""))
    result["figures"] = [f.name for f in figs]
    write_json_atomic(out_dir / "posteriors.json", result)
    for row in per_image[:max_plots]:
        log(f"image {row['position']}: " + "; ".join(
            f"{t} {row[t]['median']:.4f} [{row[t]['q16']:.4f}, {row[t]['q84']:.4f}] (68%)"
            + (f", true {row[t]['true']:.4f}" if "true" in row[t] else "") for t in targets))
    log(f"posteriors written to {out_dir}")
    return result


# -- figures ----------------------------------------------------------------------------------------------
def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_coverage(coverage: np.ndarray, n: int, path: str | os.PathLike[str],
                  comparisons: Sequence[dict[str, Any]] = (), title: str = "") -> Path:
    """Expected coverage of HPD regions against credibility, the diagonal and its +-2 s.e. band."""
    fig, ax = plt.subplots(figsize=(4.4, 4.2))
    band = coverage_band(n)
    ax.fill_between(LEVELS, LEVELS - band, LEVELS + band, color="0.85", label=f"±2 s.e. ({n} images)")
    ax.plot([0, 1], [0, 1], color="0.5", lw=0.8, ls="--")
    ax.plot(LEVELS, coverage, color="C0", lw=1.6, label="posterior (HPD)")
    for k, r in enumerate(c for c in comparisons if "coverage" in c):
        ax.plot(LEVELS, r["coverage"], color=f"C{k + 1}", lw=1.1, label=f"Gaussian {r['model']} s{r['seed']}")
    ax.set_xlabel("credibility level")
    ax.set_ylabel("fraction of truths inside")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"expected coverage, {title}", fontsize=8)
    return _save(fig, path)


def plot_sbc(ranks: np.ndarray, n_samples: int, targets: Sequence[str], path: str | os.PathLike[str],
             bins: int = 20, title: str = "") -> Path:
    """SBC rank histograms (one panel per parameter) with the uniform expectation and its 99% band."""
    d = ranks.shape[1]
    fig, axes = plt.subplots(1, d, figsize=(3.8 * d, 3.2), squeeze=False)
    n = ranks.shape[0]
    expected = n / bins
    lo, hi = sps.binom.ppf([0.005, 0.995], n, 1.0 / bins)
    for k, ax in enumerate(axes[0]):
        ax.axhspan(lo, hi, color="0.85", label="99% band (uniform)")
        ax.axhline(expected, color="0.5", lw=0.8, ls="--")
        ax.hist(ranks[:, k] / (n_samples + 1.0), bins=bins, range=(0, 1), color="C0", alpha=0.8)
        ax.set_xlabel(f"rank of true {targets[k]} / (S + 1)")
        ax.set_ylabel("images")
        ax.legend(fontsize=7)
    fig.suptitle(f"SBC ranks, {title}", fontsize=8)
    return _save(fig, path)


def plot_posterior_vs_true(summ: dict[str, np.ndarray], truth: np.ndarray, targets: Sequence[str],
                           low: np.ndarray, high: np.ndarray, path: str | os.PathLike[str], title: str = "") -> Path:
    """Posterior mean with its central 68% interval against the true value, one panel per parameter."""
    d = truth.shape[1]
    fig, axes = plt.subplots(1, d, figsize=(4.2 * d, 4.0), squeeze=False)
    for k, ax in enumerate(axes[0]):
        m = summ["mean"][:, k]
        err = np.stack([m - summ["q16"][:, k], summ["q84"][:, k] - m]).clip(min=0)
        ax.errorbar(truth[:, k], m, yerr=err, fmt=".", ms=3, lw=0.5, alpha=0.6, color="C0")
        ax.plot([low[k], high[k]], [low[k], high[k]], color="0.5", lw=0.8, ls="--")
        ax.set_xlim(low[k], high[k])
        ax.set_ylim(low[k], high[k])
        ax.set_xlabel(f"true {targets[k]}")
        ax.set_ylabel("posterior mean (68% interval)")
    fig.suptitle(title, fontsize=8)
    return _save(fig, path)


def plot_per_bin(parameters: dict[str, Any], comparisons: Sequence[dict[str, Any]], path: str | os.PathLike[str],
                 title: str = "") -> Path:
    """MAE of the posterior mean per bin of the true value, the mean posterior std, and the regressors' MAE."""
    d = len(parameters)
    fig, axes = plt.subplots(1, d, figsize=(4.8 * d, 4.4), squeeze=False)
    for ax, (t, p) in zip(axes[0], parameters.items(), strict=True):
        rows = p["per_bin"]
        centre = [(r["low"] + r["high"]) / 2 for r in rows]
        ax.plot(centre, [r["mae"] for r in rows], "o-", color="C0", label="posterior mean MAE")
        ax.plot(centre, [r["mean_std"] for r in rows], "s--", color="C0", alpha=0.6, label="mean posterior std")
        for k, r in enumerate(comparisons):
            ax.plot(centre, [b["mae"] for b in r["per_bin"]], "^-", color=f"C{k + 1}", lw=1,
                    label=f"{r['kind'].split()[0]} {r['model']} s{r['seed']} MAE")
        ax.axhline(p["prior_std"], color="0.5", lw=0.8, ls=":", label="std of the true values")
        ax.set_xlabel(f"true {t} (bin centre)")
        ax.set_ylabel("MAE / std")
        ax.set_ylim(bottom=0)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2)
    fig.suptitle(f"errors per bin, {title}", fontsize=8)
    return _save(fig, path)


def plot_corner(samples: np.ndarray, targets: Sequence[str], path: str | os.PathLike[str],
                truth: np.ndarray | None = None, positions: np.ndarray | None = None,
                low: Sequence[float] | None = None, high: Sequence[float] | None = None) -> Path:
    """Corner plot of the posteriors of a few images (samples (M, S, D)): marginal histograms on the diagonal,
    pairwise draws below it, one colour per image, the true values as lines when known."""
    m, _, d = samples.shape
    fig, axes = plt.subplots(d, d, figsize=(2.6 * d + 1.2, 2.6 * d), squeeze=False)
    for i in range(d):
        for j in range(d):
            ax = axes[i][j]
            if j > i:
                ax.axis("off")
                continue
            for k in range(m):
                colour = f"C{k % 10}"
                label = f"image {int(positions[k])}" if positions is not None else f"image {k}"
                if i == j:
                    rng = (low[i], high[i]) if low is not None and high is not None else None
                    ax.hist(samples[k, :, i], bins=40, range=rng, density=True, histtype="step", color=colour,
                            label=label)
                    if truth is not None:
                        ax.axvline(truth[k, i], color=colour, lw=0.8, ls="--")
                else:
                    ax.plot(samples[k, :, j], samples[k, :, i], ",", color=colour, alpha=0.4)
                    if truth is not None:
                        ax.plot(truth[k, j], truth[k, i], "x", color=colour, ms=6)
            if i == d - 1:
                ax.set_xlabel(targets[j])
            if j == 0 and i > 0:
                ax.set_ylabel(targets[i])
    axes[0][0].legend(fontsize=6, loc="best")
    fig.suptitle("posteriors" + (" (dashed / x: true values)" if truth is not None else ""), fontsize=8)
    return _save(fig, path)


def plot_combined(comb: dict[str, Any], target: str, path: str | os.PathLike[str], truth: float | None = None,
                  max_curves: int = 30) -> Path:
    """The combined (population) posterior over the grid, with (up to ``max_curves``) per-image posteriors."""
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    grid, step = comb["grid"], comb["grid"][1] - comb["grid"][0]
    for row in comb["log_q"][:max_curves]:
        dens = np.exp(row - row.max())
        ax.plot(grid, dens / (dens.sum() * step), color="0.6", lw=0.6, alpha=0.6)
    ax.plot(grid, comb["density"], color="C0", lw=1.8, label=f"combined ({comb['n']} images)")
    ax.axvspan(*comb["hpd68"], color="C0", alpha=0.15, label="68% HPD")
    if truth is not None:
        ax.axvline(truth, color="C3", ls="--", label=f"true {truth:g}")
    ax.set_xlabel(target)
    ax.set_ylabel("density")
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    ax.legend(fontsize=7)
    ax.set_title(f"population posterior: {comb['mean']:.3f} ± {comb['std']:.3f} (grey: single images)", fontsize=8)
    return _save(fig, path)
