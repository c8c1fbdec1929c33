r"""Issue #10 science figures: a five-class dark-matter classifier and the regression of the WDM half-mode mass.

For each preset (``--presets``, default the Euclid-like and HST-like 64 px presets ``euclid_dm``, ``hst_dm``) the
script simulates ``--n-per-class`` images of each of ``--classes`` (default ``no_sub, cdm_tnfw, wdm, sidm, uldm``:
every class on the same drawn lens and source priors, the mass sheet removing the substructure's mean
convergence), trains each of ``--models`` (default the equivariant ``DEFAULT_EQUIVARIANT_MODEL`` and ``resnet18``)
with each of ``--seeds`` (one 70/15/15 stratified split, split seed 0, so every seed sees the same test set;
best epoch on validation) and reads the test-split evaluation ``equilens evaluate`` writes
(``eval/metrics.json``): accuracy, per-class one-vs-rest AUC, one-vs-one AUC of every class pair and the
confusion matrix, printed as mean +/- sample std over the seeds. Then, per preset, it simulates
``--regress-n`` ``wdm`` images (log10 m_hm ~ U(7, 10), the preset's prior) and regresses ``log10_m_hm`` with a
predicted variance (Gaussian NLL): test MAE (dex), R^2, bias, the fractions within 1 and 2 predicted sigma
(0.683 / 0.954 for a calibrated model), and the same per bin of the true log10 m_hm (``--bins`` equal bins of
the prior) from the run's ``eval/predictions.npz``. Always predicting the prior mean gives an MAE of 0.75 dex.

Outputs in ``--out``: ``figures.txt`` (the tables, headed by the command), ``confusion.png`` (mean row-normalised
confusion matrix per preset and model), ``wdm_per_bin.png`` (MAE and within-1-sigma fraction per bin of the true
log10 m_hm), ``report/`` (the HTML report of every run). Everything is resumable: finished data sets and runs are
kept, an interrupted run resumes (run the same command again).

Default size, for about 2 hours on this project's 2-core CPU machine with nothing else running: 2000 images per
class (10k per preset; 7000 training images), 10 epochs, seeds 0 and 1 (8 classification runs), 4000 wdm images
and 15 epochs for the regression (8 runs). Training rates at 64 px: about 150 img/s for resnet18 and 375 img/s
for the former steerable_d4 layout (README, "Science figures"); the anti-aliased default trains at about 1.5x
resnet18's rate instead of 2.8x (README, "Model speed"), i.e. ~230 img/s. So the classification runs take ~50 min,
the regressions ~30 min, simulating 28k images with 2 workers (10-30 ms per image per core) ~5-10 min and
evaluating 16 runs ~10 min. Halve ``--n-per-class`` or drop a seed to halve the training time; with one seed
the +/- columns are empty.

    python benchmarks/bench_dm_classes.py --out bench_dm                      # the issue's figures (~2 h)
    python benchmarks/bench_dm_classes.py --out /tmp/bench_dm_tiny --tiny     # smoke run, numbers meaningless
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

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
from equilens.simulation.config import resolve_config

DM_CLASSES = "no_sub,cdm_tnfw,wdm,sidm,uldm"


def _pm(values: list[float], fmt: str = ".3f") -> str:
    """'mean ± std' over seeds ('mean' alone for one seed, '-' for none)."""
    mean, std, n = mean_std(values)
    if n == 0:
        return "-"
    return f"{mean:{fmt}}" + (f" ± {std:{fmt}}" if n > 1 else "")


def per_bin_calibration(pred: np.ndarray, truth: np.ndarray, sigma: np.ndarray,
                        edges: np.ndarray) -> list[dict[str, float]]:
    """Per bin of ``truth`` (``edges``, shape (B + 1,)): n, MAE, bias, mean predicted sigma and the fractions
    of |pred - truth| / sigma below 1 and 2 (0.683 / 0.954 for a calibrated Gaussian)."""
    idx = np.clip(np.digitize(truth, edges[1:-1]), 0, len(edges) - 2)
    rows = []
    for b in range(len(edges) - 1):
        m = idx == b
        err, s = pred[m] - truth[m], sigma[m]
        nan = float("nan")
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": int(m.sum()),
                     "mae": float(np.abs(err).mean()) if m.any() else nan,
                     "bias": float(err.mean()) if m.any() else nan,
                     "mean_sigma": float(s.mean()) if m.any() else nan,
                     "within_1sigma": float((np.abs(err) < s).mean()) if m.any() else nan,
                     "within_2sigma": float((np.abs(err) < 2 * s).mean()) if m.any() else nan})
    return rows


def _plot_confusions(path: Path, conf: dict[tuple[str, str], np.ndarray], presets: list[str], models: list[str],
                     classes: list[str]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(len(presets), len(models), figsize=(4.2 * len(models), 3.9 * len(presets)),
                             squeeze=False)
    for i, preset in enumerate(presets):
        for j, model in enumerate(models):
            ax = axes[i][j]
            c = conf.get((preset, model))
            if c is None:
                ax.set_axis_off()
                continue
            ax.imshow(c, vmin=0.0, vmax=1.0, cmap="Blues")
            for (r, k), v in np.ndenumerate(c):
                ax.text(k, r, f"{v:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if v > 0.6 else "black")
            ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
            ax.set_yticks(range(len(classes)), classes, fontsize=8)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.set_title(f"{preset}, {model}\n(row fractions, mean over seeds)", fontsize=9)
    save_figure(fig, path, dpi=110)


def _plot_per_bin(path: Path, bins: dict[tuple[str, str], list[list[dict[str, float]]]]) -> None:
    plt = pyplot()
    fig, (ax_mae, ax_cal) = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, ((preset, model), per_seed) in enumerate(sorted(bins.items())):
        centre = [0.5 * (b["low"] + b["high"]) for b in per_seed[0]]
        for ax, key in ((ax_mae, "mae"), (ax_cal, "within_1sigma")):
            vals = np.array([[b[key] for b in rows] for rows in per_seed])
            with warnings.catch_warnings():  # an empty bin is NaN in every seed: not drawn
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(vals, axis=0)
                err = np.nanstd(vals, axis=0, ddof=1) if len(per_seed) > 1 else None
            ax.errorbar(centre, mean, yerr=err, marker="os^v"[k % 4], capsize=3, label=f"{preset}, {model}")
    ax_mae.axhline(0.75, color="0.5", ls=":", label="prior mean guess (0.75 dex)")
    ax_mae.set_ylabel("test MAE (dex)")
    ax_cal.axhline(0.683, color="0.5", ls=":", label="calibrated (0.683)")
    ax_cal.set_ylabel("fraction within 1 predicted sigma")
    ax_cal.set_ylim(0, 1.02)
    for ax in (ax_mae, ax_cal):
        ax.set_xlabel("true log10(m_hm / Msun)")
        ax.legend(fontsize=7)
    fig.suptitle("regression of log10 m_hm on the wdm class, per bin of the true value (mean ± std over seeds)")
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, out="bench_dm_classes", presets="euclid_dm,hst_dm")
    p.add_argument("--classes", default=DM_CLASSES)
    add_options(p, n_per_class=2000, models=f"{DEFAULT_EQUIVARIANT_MODEL},resnet18", seeds="0,1", epochs=10,
                batch_size=32, regress_n=(4000, "wdm images per preset for the regression (0: skip)"),
                regress_models=f"{DEFAULT_EQUIVARIANT_MODEL},resnet18", regress_epochs=15)
    p.add_argument("--bins", type=int, default=6, help="bins of the true log10 m_hm for the per-bin figures")
    add_set_option(p, "simulator config overrides for every set (as equilens simulate --set)")
    add_options(p, workers=2, image_size=None)
    p.add_argument("--tiny", action="store_true",
                   help="smoke setting: 32 px, 20 images per class, 40 wdm images, 1 epoch")
    args = p.parse_args(argv)
    if args.tiny:
        args.n_per_class, args.epochs, args.regress_n, args.regress_epochs = 20, 1, 40, 1
        args.image_size = args.image_size or 32
    out = output_dir(args.out)
    presets, classes, models = csv_list(args.presets), csv_list(args.classes), csv_list(args.models)
    seeds = [int(s) for s in csv_list(args.seeds)]
    overrides = sim_overrides(args.overrides, args.image_size)
    angles = [0.0, 90.0] if args.tiny else [0.0, 45.0, 90.0]
    command = command_line(Path(__file__).name, argv)
    t0 = time.perf_counter()
    sim_s = 0.0
    runs: list[Path] = []
    conf_mean: dict[tuple[str, str], np.ndarray] = {}
    lines = [f"# {command}"]

    def simulate_set(preset: str, names: list[str], n: int, seed: int, name: str) -> Path:
        nonlocal sim_s
        data = out / "data" / f"{preset}-{name}"
        sim_s += simulate(resolve_config(preset, overrides), names, n, seed, data, args.workers)
        return data

    def fit(data: Path, run: Path, model: str, seed: int, **task: Any) -> dict[str, Any]:
        epochs = args.regress_epochs if task else args.epochs
        runs.append(train_on_cpu(run, angles, data=str(data), model=model, epochs=epochs,
                                 batch_size=args.batch_size, seed=seed, **task))
        return run_metrics(run)

    # ---- five-class classification
    pairs: list[str] = []
    per_class: list[str] = []
    for preset in presets:
        data = simulate_set(preset, classes, args.n_per_class, 0, "classes")
        results = {model: [fit(data, out / "runs" / f"{preset}-classify-{model}-seed{seed}", model, seed)
                           for seed in seeds] for model in models}
        n_test = next(iter(results.values()))[0]["n"]
        per_class += [f"# {preset}: {len(classes)} classes x {args.n_per_class} images, {args.epochs} epoch(s), seeds "
                      f"{seeds}, {n_test} test images; one-vs-rest AUC per class (mean ± std over seeds)",
                      "model | accuracy | macro AUC | " + " | ".join(classes) + " | train min per run"]
        for model, rs in results.items():
            per_class.append(f"{model} | {_pm([r['accuracy'] for r in rs])} | {_pm([r['auc_macro'] for r in rs])} | "
                             + " | ".join(_pm([r["auc_per_class"][c] for r in rs]) for c in classes)
                             + f" | {np.mean([r['train_s'] / 60 for r in rs]):.1f}")
            print(per_class[-1], flush=True)
        pairs += [f"# {preset}: one-vs-one AUC of each class pair (0.5: the model cannot tell them apart)",
                  "pair | " + " | ".join(models)]
        names = list(next(iter(results.values()))[0]["auc_pairwise"])
        pairs += [f"{pair} | " + " | ".join(_pm([r["auc_pairwise"][pair] for r in results[m]]) for m in models)
                  for pair in names]
        for model, rs in results.items():
            counts = [np.asarray(r["confusion_matrix"], dtype=float) for r in rs]
            fracs = np.stack([c / np.maximum(c.sum(axis=1, keepdims=True), 1.0) for c in counts])
            conf_mean[(preset, model)] = fracs.mean(axis=0)
            pairs += [f"# {preset}, {model}: confusion matrix, rows true, columns predicted, fraction of each true "
                      "class (mean ± std over seeds)", "true \\ predicted | " + " | ".join(classes)]
            pairs += [f"{c} | " + " | ".join(_pm(fracs[:, i, j].tolist(), ".2f") for j in range(len(classes)))
                      for i, c in enumerate(classes)]
    lines += per_class + pairs
    _plot_confusions(out / "confusion.png", conf_mean, presets, models, classes)

    # ---- regression of log10 m_hm on wdm
    bins: dict[tuple[str, str], list[list[dict[str, float]]]] = {}
    if args.regress_n > 0:
        lo, hi = resolve_config(presets[0], overrides).wdm_log10_m_hm_range
        edges = np.linspace(lo, hi, args.bins + 1)
        summary = [f"# regression of log10 m_hm on wdm (prior U({lo:g}, {hi:g})), {args.regress_n} images, "
                   f"{args.regress_epochs} epoch(s), predicted variance, seeds {seeds}; test MAE (dex; the prior mean "
                   "guess: 0.75), R^2, bias, within 1 / 2 predicted sigma (0.683 / 0.954 calibrated)",
                   "preset | model | MAE | R^2 | bias | within 1 sigma | within 2 sigma | train min per run"]
        per_bin = [f"# per bin of the true log10 m_hm ({args.bins} bins), mean ± std over seeds",
                   "preset | model | true log10 m_hm | n (per seed) | MAE | bias | mean sigma | within 1 sigma | "
                   "within 2 sigma"]
        for preset in presets:
            data = simulate_set(preset, ["wdm"], args.regress_n, 1, "wdm")
            for model in csv_list(args.regress_models):
                res: list[dict[str, Any]] = []
                rows: list[list[dict[str, float]]] = []
                for seed in seeds:
                    run = out / "runs" / f"{preset}-regress-{model}-seed{seed}"
                    res.append(fit(data, run, model, seed, task="regress", target="log10_m_hm", predict_variance=True))
                    pred = np.load(run / "eval" / "predictions.npz")
                    rows.append(per_bin_calibration(np.asarray(pred["pred"]), np.asarray(pred["truth"]),
                                                    np.asarray(pred["sigma"]), edges))
                bins[(preset, model)] = rows
                cal = [r["calibration"] for r in res]
                cells = [_pm([r[k] for r in res]) for k in ("mae", "r2", "bias")]
                cells += [_pm([c[k] for c in cal]) for k in ("within_1sigma", "within_2sigma")]
                summary.append(f"{preset} | {model} | " + " | ".join(cells)
                               + f" | {np.mean([r['train_s'] / 60 for r in res]):.1f}")
                print(summary[-1], flush=True)
                for b in range(args.bins):
                    cells = [_pm([r[b][k] for r in rows]) for k in ("mae", "bias", "mean_sigma", "within_1sigma",
                                                                    "within_2sigma")]
                    per_bin.append(f"{preset} | {model} | {edges[b]:.2f}-{edges[b + 1]:.2f} | {rows[0][b]['n']} | "
                                   + " | ".join(cells))
        lines += summary + per_bin
        _plot_per_bin(out / "wdm_per_bin.png", bins)

    report = build_report(runs, out / "report",
                          title="equilens issue #10: five dark-matter classes, WDM half-mode mass")
    lines.append(f"# simulation {sim_s / 60:.1f} min; total wall time {(time.perf_counter() - t0) / 60:.1f} min; "
                 f"figures {(out / 'confusion.png').resolve()}"
                 + (f", {(out / 'wdm_per_bin.png').resolve()}" if bins else "") + f"; report {report.resolve()}")
    return write_figures(out, lines)


if __name__ == "__main__":
    sys.exit(main())
