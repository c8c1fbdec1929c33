r"""Detection sensitivity: no_sub vs cdm_tnfw AUC against Sigma_sub, and regression of Sigma_sub.

For each preset (``--presets``, default the Euclid-like and HST-like 64 px presets) and each Sigma_sub of
``--sigma-grid`` (kpc^-2 at m_pivot = 1e8 Msun; pyHalo's CDM value is 0.025), the script simulates
``--n-per-class`` images of ``no_sub`` and of ``cdm_tnfw`` with Sigma_sub fixed at that value
(``--set sigma_sub_range=[s,s]``; lens, source and everything else drawn as the preset does), trains each of
``--models`` with each of ``--seeds`` (70/15/15 stratified split, best epoch on validation) and evaluates the
test AUC of the binary task. Then, per preset, it simulates ``--regress-n`` ``cdm_tnfw`` images with the
preset's Sigma_sub prior (U(0, 0.05) kpc^-2) and regresses ``sigma_sub`` with a predicted variance: test MAE,
R^2 and calibration (fractions within 1 and 2 predicted sigma).

Published detection limits, shown beside the curve (``sensitivity.png``): the lowest subhalo mass detected
as a single perturber of the arcs, about 10^8.8 Msun for Euclid-like data (O'Riordan et al. 2023, MNRAS 521,
2342) and 1.5e8-3e9 Msun for HST-like data (Despali et al. 2022, MNRAS 510, 2480; the range over their
lenses). They are masses, the curve is in Sigma_sub: each limit is drawn at the Sigma_sub for which the
expected number of subhalos above that mass within +/- ``--ring-halfwidth`` arcsec of a 1.1" Einstein ring
(where a single perturber is detectable) is one, with this project's mass function. A network as sensitive
as those analyses would start to separate the classes around there.

Beside each grid point's AUCs it prints the AUC of the source brightness alone on the same test split
(``brightness_auc``): every point draws the same lenses and sources, so the points share one test set, and a
network that follows the arc's brightness scores that much without seeing substructure. ``--set KEY=VALUE``
overrides the simulator for every set (e.g. zero-width lens and source priors for a control run).

Everything is resumable: finished data sets and runs are kept (run the same command again after an
interruption). ``--tiny`` is a few-minute proof that the script runs end to end (its numbers mean nothing).

    python benchmarks/bench_sensitivity.py --out bench_sens                 # the default grid (about 2 h)
    python benchmarks/bench_sensitivity.py --out /tmp/bench_sens_tiny --tiny
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from _common import (
    add_options,
    add_set_option,
    command_line,
    csv_list,
    output_dir,
    pyplot,
    run_metrics,
    save_figure,
    sim_overrides,
    simulate,
    train_on_cpu,
    write_figures,
)

from equilens.evaluation.metrics import mean_std
from equilens.evaluation.report import build_report
from equilens.models import DEFAULT_EQUIVARIANT_MODEL
from equilens.simulation.config import SimConfig, resolve_config
from equilens.simulation.halos import MassFunction, lensing_units

#: Published single-subhalo detection limits (Msun): (label, low, high).
PUBLISHED_LIMITS: dict[str, tuple[str, float, float]] = {
    "euclid_dm": ("O'Riordan et al. 2023 (Euclid): 10^8.8 Msun", 10**8.8, 10**8.8),
    "hst_dm": ("Despali et al. 2022 (HST-like): 1.5e8-3e9 Msun", 1.5e8, 3e9),
    "hst_dm_150": ("Despali et al. 2022 (HST-like): 1.5e8-3e9 Msun", 1.5e8, 3e9),
}


def sigma_at_one_detectable(preset: str, mass: float, ring_halfwidth: float, theta_E: float = 1.1) -> float:
    """Sigma_sub (kpc^-2) at which one subhalo above ``mass`` is expected within the ring band."""
    cfg = resolve_config(preset)
    units = lensing_units(cfg.H0, cfg.Om0, cfg.Ob0, cfg.z_lens, cfg.z_source)
    lo, hi = cfg.subhalo_mass_range
    area = math.pi * ((theta_E + ring_halfwidth) ** 2 - (theta_E - ring_halfwidth) ** 2) * units.kpc_per_arcsec**2
    per_unit = MassFunction(1.0, cfg.subhalo_mass_slope, lo, hi, cfg.sigma_sub_pivot_mass).expected_number(
        area, min(max(mass, lo), hi * 0.999))
    return 1.0 / per_unit


def substructure_fraction(cfg: SimConfig, sigma: float) -> float:
    """f_sub = 2 kappa_sub: twice the mean subhalo convergence (dimensionless) at Sigma_sub ``sigma`` (kpc^-2)."""
    density = MassFunction(sigma, cfg.subhalo_mass_slope, *cfg.subhalo_mass_range,
                           cfg.sigma_sub_pivot_mass).mass_density()
    return 2 * density / lensing_units(cfg.H0, cfg.Om0, cfg.Ob0, cfg.z_lens, cfg.z_source).sigma_crit


def auc_standard_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil 1982 standard error of an AUC from n_pos positives and n_neg negatives."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def brightness_auc(data: Path, run: Path) -> float:
    """The AUC of the source brightness alone (minus ``source_magnitude``) as a no_sub-vs-cdm_tnfw score on
    ``run``'s test split of ``data``.

    The classes share their priors, so it is 0.5 up to the test set's sampling error (Hanley-McNeil, ~0.017
    for 1200 images); every grid point draws the same lenses and sources (one data seed), so a deviation is
    shared by the whole curve. A network whose output follows the arc's brightness scores about this much
    without seeing any substructure: it is the line a network must clear.
    """
    from sklearn.metrics import roc_auc_score

    from equilens.data.store import LensDataset

    pred = np.load(run / "eval" / "predictions.npz")
    magnitude = LensDataset(data).parameters(["source_magnitude"])["source_magnitude"]
    return float(roc_auc_score(pred["truth"], -magnitude[pred["positions"]]))


def _read(run: Path) -> dict:
    m = run_metrics(run)
    out = {k: m.get(k) for k in ("auc_macro", "accuracy", "mae", "r2", "bias", "train_s")}
    cal = m.get("calibration") or {}
    out["within_1sigma"], out["within_2sigma"] = cal.get("within_1sigma"), cal.get("within_2sigma")
    if m["task"] == "classify":
        pred = np.load(run / "eval" / "predictions.npz")
        truth = np.asarray(pred["truth"])
        out["n_pos"], out["n_neg"] = int((truth == 1).sum()), int((truth == 0).sum())
    return out


def _plot(path: Path, table: dict, presets: list[str], grid: list[float], limits: dict,
          f_sub_per_sigma: dict[str, float], brightness: dict[tuple[str, float], float]) -> None:
    """AUC against Sigma_sub, one panel per preset, on a shared log axis ticked at the grid values, with f_sub
    (``f_sub_per_sigma[preset]`` times Sigma_sub) on the top axis, the published limits drawn in and the
    source-brightness AUC of each test split (``brightness[(preset, sigma)]``) as crosses."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(presets), figsize=(5.5 * len(presets), 4.4), squeeze=False)
    marks = grid + [v for lim in limits.values() for v in lim]
    for ax, preset in zip(axes[0], presets, strict=True):
        for model, marker in zip(sorted({k[1] for k in table if k[0] == preset}), "os^v", strict=False):
            pts = [(s, table[(preset, model, s)]) for s in grid if (preset, model, s) in table]
            xs = [s for s, _ in pts]
            ys = [v[0] for _, v in pts]
            es = [v[1] for _, v in pts]
            ax.errorbar(xs, ys, yerr=es, marker=marker, capsize=3, label=model)
        nuisance = [(s, brightness[(preset, s)]) for s in grid if (preset, s) in brightness]
        if nuisance:
            ax.plot(*zip(*nuisance, strict=True), color="0.4", ls="none", marker="x",
                    label="source brightness alone (the test set's own imbalance)")
        label, lo, hi = PUBLISHED_LIMITS.get(preset, ("", 0.0, 0.0))
        if label:
            s_lo, s_hi = limits[preset]
            if abs(s_hi - s_lo) / s_lo < 1e-6:
                ax.axvline(s_lo, color="k", ls="--", label=f"{label}\n(1 such halo expected near the ring)")
            else:
                ax.axvspan(min(s_lo, s_hi), max(s_lo, s_hi), color="0.85", zorder=0,
                           label=f"{label}\n(1 such halo expected near the ring)")
        ax.axvline(0.025, color="tab:green", ls=":", label="pyHalo CDM Sigma_sub = 0.025")
        ax.axhline(0.5, color="0.5", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlim(min(marks) / 1.25, max(marks) * 1.25)
        ax.set_xticks(grid, [f"{s:g}" for s in grid])
        ax.minorticks_off()
        ax.set_xlabel("Sigma_sub (kpc$^{-2}$, pivot 1e8 Msun)")
        ax.set_ylabel("test AUC, no_sub vs cdm_tnfw")
        k = f_sub_per_sigma[preset]
        top = ax.secondary_xaxis("top", functions=(lambda s, k=k: 100 * k * s, lambda f, k=k: f / (100 * k)))
        top.set_xticks([100 * k * s for s in grid], [f"{100 * k * s:.2g}%" for s in grid])
        top.minorticks_off()
        top.set_xlabel("f_sub = 2 kappa_sub")
        ax.set_title(preset)
        low = min([0.4] + [v[0] - v[1] for key, v in table.items() if key[0] == preset])
        ax.set_ylim(max(0.0, low - 0.05), 1.02)
        ax.legend(fontsize=7, loc="upper left")
    save_figure(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, out="bench_sensitivity", presets="euclid_dm,hst_dm")
    p.add_argument("--sigma-grid", default="0.0125,0.025,0.05,0.1", help="Sigma_sub values, kpc^-2")
    add_options(p, n_per_class=4000, models=f"{DEFAULT_EQUIVARIANT_MODEL},resnet18", seeds="0", epochs=10,
                batch_size=32, regress_n=(6000, "cdm_tnfw images per preset for the regression"),
                regress_models=f"{DEFAULT_EQUIVARIANT_MODEL},resnet18", regress_epochs=15, workers=2,
                image_size=None)
    p.add_argument("--ring-halfwidth", type=float, default=0.25,
                   help="arcsec either side of the Einstein ring for placing the published limits")
    add_set_option(p, "simulator config override for every set, as in `equilens simulate --set` (repeatable; "
                      "e.g. fix the lens and source with zero-width priors for a control run)")
    p.add_argument("--tiny", action="store_true", help="smoke setting: 32 px, 2 grid points, 30 per class, 1 epoch")
    args = p.parse_args(argv)
    if args.tiny:
        args.sigma_grid, args.n_per_class, args.epochs = "0.025,0.1", 30, 1
        args.regress_n, args.regress_epochs = 40, 1
        args.image_size = args.image_size or 32
    out = output_dir(args.out)
    presets, models, seeds = csv_list(args.presets), csv_list(args.models), [int(s) for s in csv_list(args.seeds)]
    grid = [float(s) for s in csv_list(args.sigma_grid)]
    angles = [0.0, 90.0] if args.tiny else [0.0, 45.0, 90.0]
    command = command_line(Path(__file__).name, argv)
    t0 = time.perf_counter()
    runs: list[Path] = []
    auc_table: dict[tuple[str, str, float], tuple[float, float, int]] = {}
    brightness_table: dict[tuple[str, float], float] = {}  # (preset, Sigma_sub) -> brightness_auc
    lines = [f"# {command}"]
    sim_s = 0.0

    def base_overrides() -> dict:
        return sim_overrides(args.overrides, args.image_size)

    limits = {pr: (sigma_at_one_detectable(pr, PUBLISHED_LIMITS[pr][1], args.ring_halfwidth),
                   sigma_at_one_detectable(pr, PUBLISHED_LIMITS[pr][2], args.ring_halfwidth))
              for pr in presets if pr in PUBLISHED_LIMITS}
    for preset in presets:
        lines.append(f"# {preset}: {args.n_per_class} images per class, {args.epochs} epochs, seeds {seeds}; "
                     "test AUC no_sub vs cdm_tnfw (mean over seeds ± Hanley-McNeil standard error of one test set, "
                     "or ± std over seeds when larger)")
        if preset in limits:
            lines.append(f"# published limit {PUBLISHED_LIMITS[preset][0]}: one such subhalo within "
                         f"{args.ring_halfwidth}\" of a 1.1\" ring at Sigma_sub = {limits[preset][0]:.4g}"
                         + (f" .. {limits[preset][1]:.4g}" if limits[preset][1] != limits[preset][0] else "")
                         + " kpc^-2")
        lines.append("Sigma_sub | f_sub | " + " | ".join(f"{m} AUC" for m in models)
                     + " | source brightness alone | train min per run")
        for sigma in grid:
            cfg = resolve_config(preset, {**base_overrides(), "sigma_sub_range": [sigma, sigma]})
            data = out / "data" / f"{preset}-sigma{sigma:g}"
            sim_s += simulate(cfg, ["no_sub", "cdm_tnfw"], args.n_per_class, 0, data, args.workers)
            cells, minutes = [], []
            for model in models:
                res = []
                for seed in seeds:
                    run = out / "runs" / f"{preset}-sigma{sigma:g}-{model}-seed{seed}"
                    runs.append(train_on_cpu(run, angles, data=str(data), model=model, epochs=args.epochs,
                                             batch_size=args.batch_size, seed=seed))
                    res.append(_read(run))
                auc = mean_std([r["auc_macro"] for r in res])
                se = auc_standard_error(auc[0], res[0]["n_pos"], res[0]["n_neg"])
                err = max(se, auc[1] if auc[2] > 1 else 0.0)
                auc_table[(preset, model, sigma)] = (auc[0], err, auc[2])
                cells.append(f"{auc[0]:.3f} ± {err:.3f}")
                minutes.append(np.mean([r["train_s"] / 60 for r in res]))
            f_sub = substructure_fraction(cfg, sigma)
            nuisance = brightness_auc(data, out / "runs" / f"{preset}-sigma{sigma:g}-{models[0]}-seed{seeds[0]}")
            brightness_table[(preset, sigma)] = nuisance
            lines.append(f"{sigma:g} | {100 * f_sub:.2f}% | " + " | ".join(cells)
                         + f" | {nuisance:.3f} | {np.mean(minutes):.1f}")
            print(lines[-1], flush=True)

    if args.regress_n > 0:
        lines.append(f"# regression of sigma_sub on cdm_tnfw (prior U(0, 0.05) kpc^-2), {args.regress_n} images, "
                     f"{args.regress_epochs} epochs, predicted variance; test MAE (kpc^-2), R^2, within 1 / 2 sigma "
                     "(0.683 / 0.954 expected); the MAE of always predicting the prior mean is 0.0125")
        lines.append("preset | model | MAE | R^2 | bias | within 1 sigma | within 2 sigma | train min per run")
        for preset in presets:
            cfg = resolve_config(preset, base_overrides())
            data = out / "data" / f"{preset}-regress"
            sim_s += simulate(cfg, ["cdm_tnfw"], args.regress_n, 1, data, args.workers)
            for model in csv_list(args.regress_models):
                res = []
                for seed in seeds:
                    run = out / "runs" / f"{preset}-regress-{model}-seed{seed}"
                    runs.append(train_on_cpu(run, angles, data=str(data), model=model, task="regress",
                                             target="sigma_sub", predict_variance=True, epochs=args.regress_epochs,
                                             batch_size=args.batch_size, seed=seed))
                    res.append(_read(run))
                cols = [mean_std([r[k] for r in res]) for k in ("mae", "r2", "bias", "within_1sigma", "within_2sigma")]
                lines.append(f"{preset} | {model} | " + " | ".join(f"{c[0]:.4g}" for c in cols)
                             + f" | {np.mean([r['train_s'] / 60 for r in res]):.1f}")
                print(lines[-1], flush=True)

    _plot(out / "sensitivity.png", auc_table, presets, grid, limits,
          {pr: substructure_fraction(resolve_config(pr, base_overrides()), 1.0) for pr in presets}, brightness_table)
    report = build_report(runs, out / "report", title="equilens detection sensitivity (no_sub vs cdm_tnfw)")
    lines.append(f"# simulation {sim_s / 60:.1f} min; total wall time {(time.perf_counter() - t0) / 60:.1f} min; "
                 f"plot {(out / 'sensitivity.png').resolve()}; report {report.resolve()}")
    return write_figures(out, lines)


if __name__ == "__main__":
    sys.exit(main())
