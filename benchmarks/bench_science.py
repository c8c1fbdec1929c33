r"""Science figures: classification of a Model-II-like set and log10 m_a regression on the axion class.

Classification: simulate ``model_ii`` (64 px, default physics) with ``--n-per-class`` images of no_sub /
cdm / axion; train the default equivariant model and resnet18 for ``--epochs`` with each of ``--seeds``;
evaluate each on the held-out test split (best checkpoint chosen on validation); print macro one-vs-rest
AUC, accuracy and the one-vs-one AUC of each class pair as mean +/- std over seeds.

Regression: simulate ``--regress-n`` axion images; regress ``log10_m_a`` (with a predicted variance)
with ``--regress-models``; print the test MAE in dex, mean +/- std over seeds.

Everything is resumable (run the same command again after an interruption) and ends with the HTML
report of all runs. The default takes about 27 minutes on the 2-core CPU; ``--tiny`` runs a few-minute proof
that the script works (its numbers mean nothing).

    python benchmarks/bench_science.py --out bench_science            # 2000 per class, default physics
    # the README's tables: the line above with --regress-models steerable_d4,resnet18, and
    python benchmarks/bench_science.py --out bench_slope09 --set subhalo_mass_slope=-0.9 --regress-n 0
    python benchmarks/bench_science.py --out bench_legacy_reg --legacy --models "" --regress-n 6000 \
        --regress-models steerable_d4,resnet18                        # regression on the published recipe
    python benchmarks/bench_science.py --out /tmp/bench_tiny --tiny   # smoke run
"""

from __future__ import annotations

import argparse
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
    run_metrics,
    sim_overrides,
    simulate,
    train_on_cpu,
    write_figures,
)

from equilens.evaluation.metrics import mean_std, pairwise_auc
from equilens.evaluation.report import build_report
from equilens.models import DEFAULT_EQUIVARIANT_MODEL
from equilens.simulation.config import resolve_config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, out="bench_science", preset="model_ii")
    p.add_argument("--legacy", action="store_true",
                   help="simulate with the published DeepLense recipe (fixed orientation, legacy noise) instead")
    add_set_option(p, "simulator config override, as in `equilens simulate --set` (repeatable)")
    add_options(p, n_per_class=2000, seeds="0,1",
                models=(f"{DEFAULT_EQUIVARIANT_MODEL},resnet18", "classification models (empty: no classification)"),
                epochs=15, batch_size=32)
    p.add_argument("--augmentation", default="none")
    add_options(p, regress_n=(3000, "axion images for the regression (0: skip)"),
                regress_models=DEFAULT_EQUIVARIANT_MODEL, regress_epochs=20, workers=2, image_size=None)
    p.add_argument("--angle-step", type=float, default=15.0)
    p.add_argument("--tiny", action="store_true", help="tiny smoke setting (32 px, 30 per class, 1 epoch)")
    args = p.parse_args(argv)
    if args.tiny:
        args.n_per_class, args.regress_n, args.epochs, args.regress_epochs = 30, 40, 1, 1
        args.image_size, args.angle_step = args.image_size or 32, 90.0
    out = output_dir(args.out)
    seeds = [int(s) for s in csv_list(args.seeds)]
    angles = [a * args.angle_step for a in range(int(360 // args.angle_step) + 1)]
    overrides = sim_overrides(args.overrides, args.image_size)
    sim_cfg = resolve_config(args.preset, overrides, legacy=args.legacy)
    command = command_line(Path(__file__).name, argv)
    t0 = time.perf_counter()

    data = out / "data_cls"
    sim_cls_s = 0.0
    if csv_list(args.models):
        sim_cls_s = simulate(sim_cfg, ["no_sub", "cdm", "axion"], args.n_per_class, 0, data, args.workers)
    runs: list[Path] = []
    results: dict[str, list[dict]] = {}
    for model in csv_list(args.models):
        for seed in seeds:
            run = out / "runs" / f"cls-{model}-seed{seed}"
            runs.append(train_on_cpu(run, angles, data=str(data), model=model, epochs=args.epochs,
                                     batch_size=args.batch_size, seed=seed, augmentation=args.augmentation))
            results.setdefault(model, []).append(_read(run))

    reg_results: dict[str, list[dict]] = {}
    sim_reg_s = 0.0
    if args.regress_n > 0:
        reg_data = out / "data_axion"
        sim_reg_s = simulate(sim_cfg, ["axion"], args.regress_n, 1, reg_data, args.workers)
        for model in csv_list(args.regress_models):
            for seed in seeds:
                run = out / "runs" / f"reg-{model}-seed{seed}"
                runs.append(train_on_cpu(run, angles, data=str(reg_data), model=model, task="regress",
                                         target="log10_m_a", predict_variance=True, epochs=args.regress_epochs,
                                         batch_size=args.batch_size, seed=seed, augmentation=args.augmentation))
                reg_results.setdefault(model, []).append(_read(run))

    report = build_report(runs, out / "report", title=f"equilens science benchmark ({args.preset})")
    physics = (f"{args.preset}{' (legacy recipe)' if args.legacy else ''}, image size {sim_cfg.image_size} px"
               + "".join(f", {o}" for o in args.overrides))
    split = "70/15/15 stratified split, best epoch on validation"
    lines = [f"# equilens science benchmark: {command}", f"# {physics}, seeds {seeds}, augmentation "
             f"{args.augmentation}, {split}; simulation {sim_cls_s / 60:.1f} min (classification set), "
             f"{sim_reg_s / 60:.1f} min (axion set)"]
    if results:
        pair_names = list(next(iter(results.values()))[0]["pairs"])
        lines += [f"# classification: {args.n_per_class} images per class, {args.epochs} epochs",
                  "model | macro AUC (mean ± std) | accuracy (mean ± std) | "
                  + " | ".join(f"one-vs-one AUC {p}" for p in pair_names)
                  + " | train min per run | rot90 output change"]
    for model, rs in results.items():
        auc, acc = mean_std([r["auc_macro"] for r in rs]), mean_std([r["accuracy"] for r in rs])
        pairs = [mean_std([r["pairs"][p] for r in rs]) for p in pair_names]
        minutes = mean_std([r["train_s"] / 60 for r in rs])
        rot = mean_std([r["rot90"] for r in rs])
        lines.append(f"{model} | {auc[0]:.4f} ± {auc[1]:.4f} (n={auc[2]}) | {acc[0]:.4f} ± {acc[1]:.4f} | "
                     + " | ".join(f"{p[0]:.4f} ± {p[1]:.4f}" for p in pairs) + f" | {minutes[0]:.1f} | {rot[0]:.2e}")
    if reg_results:
        lines.append(f"# regression of log10_m_a: {args.regress_n} axion images, {args.regress_epochs} epochs, "
                     f"predicted variance (Gaussian NLL)")
    for model, rs in reg_results.items():
        mae = mean_std([r["mae"] for r in rs])
        minutes = mean_std([r["train_s"] / 60 for r in rs])
        lines.append(f"{model} | regression log10_m_a: test MAE {mae[0]:.4f} ± {mae[1]:.4f} dex (n={mae[2]}), "
                     f"{args.regress_n} axion images, {minutes[0]:.1f} train min per run")
    lines.append(f"# total wall time of this invocation: {(time.perf_counter() - t0) / 60:.1f} min; "
                 f"report: {report.resolve()}")
    return write_figures(out, lines)


def _read(run: Path) -> dict:
    m = run_metrics(run)
    rot90 = next((r["rel_change"] for r in m.get("symmetry", {}).get("grid", []) if r["name"] == "rot90"),
                 float("nan"))
    pairs = {}
    if m["task"] == "classify":  # from the saved predictions, so runs evaluated before pairs existed have them too
        pred = np.load(run / "eval" / "predictions.npz")
        pairs = pairwise_auc(pred["probs"], pred["truth"], m["class_names"])
    return {**{k: m.get(k) for k in ("auc_macro", "accuracy", "mae")}, "train_s": m["train_s"],
            "rot90": rot90, "pairs": pairs}


if __name__ == "__main__":
    sys.exit(main())
