r"""Posterior benchmark: neural posterior estimation of log10 m_a on the axion class, beside regressors.

Simulates ``--n`` axion images of ``--preset`` (default: ``model_ii``, 64 px, with ``--legacy`` the published
DeepLense recipe); for each of ``--seeds`` trains on one 70/15/15 split (split seed 0):

* ``post``: ``--task posterior`` (``--model`` embedding + zuko neural spline flow),
* ``point``: ``--task regress`` (mean squared error),
* ``gauss``: ``--task regress --predict-variance`` (Gaussian negative log-likelihood),

evaluates the posterior run on the shared test split with the two regressors as ``--compare`` runs, and
prints per seed and as mean +/- std over seeds: posterior-mean MAE in dex beside the regressors', the HPD
coverage at 0.68 / 0.95 and its largest distance from the diagonal, the SBC rank KS statistic, and the
MAE per bin of the true mass. Then the population test: ``--pop-n`` images simulated at each fixed
``--pop-values`` (``axion_log10_mass_range=[v, v]``, other draws as usual), combined with the seed-0
posterior run (``equilens infer --combine``); prints combined mean +/- std against the truth.

Everything is resumable (run the same command again). ``--tiny`` is a few-minute smoke run (32 px, 300
images, 2 epochs; its numbers mean nothing).

    python benchmarks/bench_posterior.py --out bench_posterior --legacy            # the README figures
    python benchmarks/bench_posterior.py --out /tmp/bench_post_tiny --legacy --tiny  # smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    add_options,
    add_set_option,
    command_line,
    csv_list,
    output_dir,
    sim_overrides,
    simulate,
    training_seconds,
    write_figures,
)

from equilens.evaluation.metrics import mean_std
from equilens.evaluation.posterior import evaluate_posterior, infer_posterior
from equilens.models import DEFAULT_EQUIVARIANT_MODEL
from equilens.simulation.config import resolve_config
from equilens.training.config import TrainConfig
from equilens.training.fit import train
from equilens.workflows.quickstart import train_and_evaluate


def _train(cfg: TrainConfig, run: Path) -> None:
    """Train ``run`` unless finished (resumed if interrupted)."""
    summary = run / "train_summary.json"
    status = json.loads(summary.read_text()).get("status", "") if summary.is_file() else ""
    if status.startswith(("complete", "stopped early")):
        print(f"{run.name}: already trained, kept")
    elif (run / "checkpoints" / "last.ckpt").is_file():
        train(cfg, run, resume=True, progress=False)
    else:
        print(f"training {run.name} ({cfg.task}, seed {cfg.seed}, {cfg.epochs} epochs)")
        train(cfg, run, overwrite=run.exists(), progress=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, out="bench_posterior", preset="model_ii")
    p.add_argument("--legacy", action="store_true", help="the published DeepLense recipe (as the README regression)")
    add_set_option(p)
    p.add_argument("--n", type=int, default=5000, help="axion images (70/15/15 split)")
    add_options(p, seeds="0,1")
    p.add_argument("--model", default=DEFAULT_EQUIVARIANT_MODEL, help="embedding / regressor model")
    add_options(p, epochs=20, batch_size=32)
    p.add_argument("--samples", type=int, default=1000, help="posterior draws per test image")
    p.add_argument("--bins", type=int, default=8)
    p.add_argument("--pop-values", default="-23.5,-23.0,-22.5", help="fixed log10 m_a of the population sets")
    p.add_argument("--pop-n", type=int, default=20, help="images per population set (0: skip)")
    add_options(p, workers=2, image_size=None)
    p.add_argument("--tiny", action="store_true", help="smoke setting: 32 px, 300 images, 2 epochs, 5 per set")
    args = p.parse_args(argv)
    if args.tiny:
        args.n, args.epochs, args.samples, args.pop_n = 300, 2, 200, 5
        args.image_size = args.image_size or 32
    out = output_dir(args.out)
    seeds = [int(s) for s in csv_list(args.seeds)]
    overrides = sim_overrides(args.overrides, args.image_size)
    sim_cfg = resolve_config(args.preset, overrides, legacy=args.legacy)
    command = command_line(Path(__file__).name, argv)
    t0 = time.perf_counter()
    data = out / "data_axion"
    sim_s = simulate(sim_cfg, ["axion"], args.n, 1, data, args.workers, progress=False)

    rows: list[dict[str, Any]] = []
    for seed in seeds:
        common = dict(data=str(data), model=args.model, target="log10_m_a", epochs=args.epochs,
                      batch_size=args.batch_size, seed=seed, num_workers=0, accelerator="cpu")
        runs = {"point": out / "runs" / f"point-seed{seed}", "gauss": out / "runs" / f"gauss-seed{seed}",
                "post": out / "runs" / f"post-seed{seed}"}
        _train(TrainConfig(task="posterior", **common), runs["post"])
        train_and_evaluate(TrainConfig(task="regress", **common), runs["point"], angles=[0.0], progress=False)
        train_and_evaluate(TrainConfig(task="regress", predict_variance=True, **common), runs["gauss"], angles=[0.0],
                           progress=False)
        metrics_path = runs["post"] / "eval" / "metrics.json"
        m = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        if len(m.get("comparison", [])) != 2 or m.get("n_samples") != args.samples:
            m = evaluate_posterior(runs["post"], n_samples=args.samples, bins=args.bins,
                                   compare=[runs["point"], runs["gauss"]])
        rows.append({"seed": seed, "m": m, "train_min": training_seconds(runs["post"]) / 60,
                     "best_epoch": m.get("checkpoint_epoch")})

    pop = []
    if args.pop_n > 0:
        for value in (float(v) for v in csv_list(args.pop_values)):
            pop_data = out / f"data_pop_{value:+.2f}"
            pop_cfg = resolve_config(args.preset, {**overrides, "axion_log10_mass_range": [value, value]},
                                     legacy=args.legacy)
            simulate(pop_cfg, ["axion"], args.pop_n, 2, pop_data, args.workers, progress=False)
            r = infer_posterior(out / "runs" / f"post-seed{seeds[0]}", pop_data, n_samples=args.samples,
                                combine=True, out=out / "runs" / f"post-seed{seeds[0]}" / f"infer-pop_{value:+.2f}",
                                log=lambda s: None)
            pop.append({"true": value, **r["combined"],
                        "single_std": float(np.mean([im["log10_m_a"]["std"] for im in r["images"]]))})

    physics = (f"{args.preset}{' (legacy recipe)' if args.legacy else ''}, {sim_cfg.image_size} px, {args.n} axion "
               f"images" + "".join(f", {o}" for o in args.overrides))
    lines = [f"# equilens posterior benchmark: {command}",
             f"# {physics}; 70/15/15 split (split seed 0, shared by every run), {args.epochs} epochs, batch "
             f"{args.batch_size}, best epoch on validation; {args.samples} posterior draws per test image; "
             f"simulation {sim_s / 60:.1f} min",
             "seed | test images | posterior-mean MAE (dex) | point regressor MAE | Gaussian regressor MAE | "
             "HPD coverage at 0.68 / 0.95 | max |coverage - level| (in s.e.) | Gaussian within 1 / 2 sigma | "
             "SBC KS (p) | mean posterior std | best epoch | train min"]
    for r in rows:
        m = r["m"]
        par, cov = m["parameters"]["log10_m_a"], m["coverage"]
        point, gauss = m["comparison"]
        cal = gauss["calibration"]
        lines.append(f"{r['seed']} | {m['n']} | {par['mae']:.4f} | {point['mae']:.4f} | {gauss['mae']:.4f} | "
                     f"{cov['at_0.68']:.3f} / {cov['at_0.95']:.3f} | {cov['max_abs_deviation']:.3f} "
                     f"({cov['max_deviation_in_se']:.1f}) | {cal['within_1sigma']:.3f} / {cal['within_2sigma']:.3f} | "
                     f"{par['sbc']['ks']:.3f} ({par['sbc']['ks_p']:.2g}) | {par['mean_posterior_std']:.3f} | "
                     f"{r['best_epoch']} | {r['train_min']:.1f}")

    def ms(values: list[float]) -> str:
        mean, std, _ = mean_std(values)
        return f"{mean:.4f} ± {std:.4f}"

    ms_rows = [r["m"] for r in rows]
    lines.append(f"mean ± std over {len(rows)} seeds: posterior-mean MAE "
                 f"{ms([m['parameters']['log10_m_a']['mae'] for m in ms_rows])}, point regressor "
                 f"{ms([m['comparison'][0]['mae'] for m in ms_rows])}, Gaussian regressor "
                 f"{ms([m['comparison'][1]['mae'] for m in ms_rows])}; max |coverage - level| "
                 f"{ms([m['coverage']['max_abs_deviation'] for m in ms_rows])}")
    lines.append("# MAE per bin of the true log10 m_a (seed " + str(rows[0]["seed"]) + "): bin | n | posterior mean | "
                 "mean posterior std | point | Gaussian")
    m0 = rows[0]["m"]
    for b, pb, gb in zip(m0["parameters"]["log10_m_a"]["per_bin"], m0["comparison"][0]["per_bin"],
                         m0["comparison"][1]["per_bin"], strict=True):
        lines.append(f"[{b['low']:.2f}, {b['high']:.2f}) | {b['n']} | {b['mae']:.3f} | {b['mean_std']:.3f} | "
                     f"{pb['mae']:.3f} | {gb['mae']:.3f}")
    if pop:
        lines.append(f"# population posterior (seed {seeds[0]} run; {args.pop_n} images per set at a fixed log10 m_a, "
                     f"combined with the uniform prior divided out): true | combined mean ± std | 68% HPD | "
                     f"pull | mean single-image std")
        for r in pop:
            pull = (r["mean"] - r["true"]) / r["std"] if r["std"] > 0 else float("nan")
            lines.append(f"{r['true']:+.2f} | {r['mean']:.4f} ± {r['std']:.4f} | [{r['hpd68'][0]:.3f}, "
                         f"{r['hpd68'][1]:.3f}] | {pull:+.2f} | {r['single_std']:.3f}")
    lines.append(f"# figures: {out / 'runs' / 'post-seed*' / 'eval'}/coverage.png, sbc_ranks.png, "
                 f"posterior_vs_true.png, mae_per_bin.png; combined.png under infer-pop_*; total wall time "
                 f"{(time.perf_counter() - t0) / 60:.1f} min")
    return write_figures(out, lines)


if __name__ == "__main__":
    sys.exit(main())
