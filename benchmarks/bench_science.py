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
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from equilens.evaluation.metrics import mean_std, pairwise_auc
from equilens.evaluation.report import build_report
from equilens.models import DEFAULT_EQUIVARIANT_MODEL
from equilens.simulation.config import parse_set_overrides, resolve_config
from equilens.simulation.generate import generate_dataset
from equilens.training.config import TrainConfig
from equilens.workflows.quickstart import train_and_evaluate


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench_science")
    p.add_argument("--preset", default="model_ii")
    p.add_argument("--legacy", action="store_true",
                   help="simulate with the published DeepLense recipe (fixed orientation, legacy noise) instead")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="simulator config override, as in `equilens simulate --set` (repeatable)")
    p.add_argument("--n-per-class", type=int, default=2000)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--models", default=f"{DEFAULT_EQUIVARIANT_MODEL},resnet18",
                   help="classification models (empty: no classification)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--augmentation", default="none")
    p.add_argument("--regress-n", type=int, default=3000, help="axion images for the regression (0: skip)")
    p.add_argument("--regress-models", default=DEFAULT_EQUIVARIANT_MODEL)
    p.add_argument("--regress-epochs", type=int, default=20)
    p.add_argument("--workers", type=int, default=2, help="simulation processes")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--angle-step", type=float, default=15.0)
    p.add_argument("--tiny", action="store_true", help="tiny smoke setting (32 px, 30 per class, 1 epoch)")
    args = p.parse_args(argv)
    if args.tiny:
        args.n_per_class, args.regress_n, args.epochs, args.regress_epochs = 30, 40, 1, 1
        args.image_size, args.angle_step = args.image_size or 32, 90.0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in _list(args.seeds)]
    angles = [a * args.angle_step for a in range(int(360 // args.angle_step) + 1)]
    overrides = parse_set_overrides(args.overrides)
    if args.image_size:
        overrides["image_size"] = args.image_size
    sim_cfg = resolve_config(args.preset, overrides, legacy=args.legacy)
    command = "python benchmarks/bench_science.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    t0 = time.perf_counter()

    data = out / "data_cls"
    sim_cls_s = 0.0
    if _list(args.models):
        t = time.perf_counter()
        generate_dataset(sim_cfg, ["no_sub", "cdm", "axion"], args.n_per_class, 0, data, workers=args.workers)
        sim_cls_s = time.perf_counter() - t
    runs: list[Path] = []
    results: dict[str, list[dict]] = {}
    for model in _list(args.models):
        for seed in seeds:
            run = out / "runs" / f"cls-{model}-seed{seed}"
            cfg = TrainConfig(data=str(data), model=model, epochs=args.epochs, batch_size=args.batch_size, seed=seed,
                              augmentation=args.augmentation, num_workers=0, accelerator="cpu")
            train_and_evaluate(cfg, run, angles=angles)
            runs.append(run)
            results.setdefault(model, []).append(_read(run))

    reg_results: dict[str, list[dict]] = {}
    sim_reg_s = 0.0
    if args.regress_n > 0:
        reg_data = out / "data_axion"
        t = time.perf_counter()
        generate_dataset(sim_cfg, ["axion"], args.regress_n, 1, reg_data, workers=args.workers)
        sim_reg_s = time.perf_counter() - t
        for model in _list(args.regress_models):
            for seed in seeds:
                run = out / "runs" / f"reg-{model}-seed{seed}"
                cfg = TrainConfig(data=str(reg_data), model=model, task="regress", target="log10_m_a",
                                  predict_variance=True, epochs=args.regress_epochs, batch_size=args.batch_size,
                                  seed=seed, augmentation=args.augmentation, num_workers=0, accelerator="cpu")
                train_and_evaluate(cfg, run, angles=angles)
                runs.append(run)
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
    text = "\n".join(lines)
    print(text)
    (out / "figures.txt").write_text(text + "\n", encoding="utf-8")
    return 0


def _read(run: Path) -> dict:
    m = json.loads((run / "eval" / "metrics.json").read_text())
    s = json.loads((run / "train_summary.json").read_text())
    rot90 = next((r["rel_change"] for r in m.get("symmetry", {}).get("grid", []) if r["name"] == "rot90"),
                 float("nan"))
    pairs = {}
    if m["task"] == "classify":  # from the saved predictions, so runs evaluated before pairs existed have them too
        pred = np.load(run / "eval" / "predictions.npz")
        pairs = pairwise_auc(pred["probs"], pred["truth"], m["class_names"])
    return {**{k: m.get(k) for k in ("auc_macro", "accuracy", "mae")}, "train_s": s["training_seconds"],
            "rot90": rot90, "pairs": pairs}


if __name__ == "__main__":
    sys.exit(main())
