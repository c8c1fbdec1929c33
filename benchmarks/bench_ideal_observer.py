r"""Ideal-observer detectability of substructure in the realistic presets (no training, no noise draws).

For each preset (``--presets``, default the Euclid-like and HST-like 64 px presets):

(a) for each Sigma_sub of ``--sigma-grid`` (kpc^-2 at m_pivot = 1e8 Msun; pyHalo's CDM value is 0.025),
    ``--n`` pairs of ``cdm_tnfw`` and ``no_sub`` images drawn from the same parameter stream (same lens,
    shear, source and exposure; Sigma_sub fixed with ``sigma_sub_range=[s, s]``, as
    ``bench_sensitivity.py`` does), rendered without noise;
(b) each other class of the preset (``--classes``) at its default prior against ``no_sub``, likewise.

For every pair: Delta chi^2 = sum (m_cls - m_ref)^2 / var_ref with the preset's noise variance around the
no_sub model, and the known-signal ideal AUC Phi(sqrt(Delta chi^2 / 2))
(:mod:`equilens.evaluation.detectability`). The table gives, per cell, the median, mean and 16-84% range of
Delta chi^2, the fractions of images above 9 and 25 (3 and 5 sigma for a known signal), the mean per-image
ideal AUC and the median signal-to-noise of the no_sub image. This is an upper bound: the observer knows
lens, source and subhalos exactly.

Writes ``figures.txt`` (the tables with the command), ``ideal_observer.png`` and one ``cells/*.npz`` per
cell with the per-image arrays (kept: re-running the same command reuses them).

    python benchmarks/bench_ideal_observer.py --out bench_ideal                 # about 10 CPU-minutes
    python benchmarks/bench_ideal_observer.py --out /tmp/bench_ideal_tiny --tiny
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import add_options, command_line, csv_list, output_dir, pyplot, save_figure, sim_overrides, write_figures

from equilens.evaluation.detectability import DetectabilityResult, paired_delta_chi2
from equilens.simulation.config import resolve_config


def network_aucs(figures: Path) -> dict[str, dict[float, tuple[float, float, str]]]:
    """The networks' no_sub vs cdm_tnfw test AUCs from a ``bench_sensitivity.py`` ``figures.txt``.

    Returns ``{preset: {Sigma_sub: (AUC, error, model)}}`` for the first model column of each preset's AUC
    table (rows ``Sigma_sub | f_sub | <model> AUC | ...`` after a ``# <preset>: ... test AUC`` header).
    """
    out: dict[str, dict[float, tuple[float, float, str]]] = {}
    preset: str | None = None
    model = ""
    for line in figures.read_text(encoding="utf-8").splitlines():
        if line.startswith("# ") and "test AUC" in line:
            preset = line[2:].split(":", 1)[0].strip()
            out.setdefault(preset, {})
        elif line.startswith("#"):
            if "regression" in line:
                preset = None
        elif preset is not None and line.startswith("Sigma_sub |"):
            model = line.split("|")[2].strip().removesuffix(" AUC")
        elif preset is not None and "|" in line:
            cells = [c.strip() for c in line.split("|")]
            try:
                sigma = float(cells[0])
            except ValueError:
                continue
            auc, _, err = cells[2].partition("±")
            out[preset][sigma] = (float(auc), float(err) if err.strip() else 0.0, model)
    return out


_FIELDS = ("index", "delta_chi2", "ideal_auc", "reference_snr", "sigma_sub", "f_sub", "n_subhalos",
           "subhalo_mass_total", "subhalo_mass_max", "lens_theta_E", "source_magnitude", "exposure_time")


def _cell(path: Path, overrides: dict, preset: str, cls: str, n: int, seed: int) -> DetectabilityResult:
    """One cell, reusing the npz an earlier run with the same settings left: pair i depends only on the seed
    and i, so a cell of more pairs is cut to its first ``n`` and one of fewer is extended."""
    meta = [preset, cls, str(seed), repr(sorted(overrides.items()))]
    have: dict[str, np.ndarray] = {}
    if path.is_file():
        with np.load(path) as z:
            if z["meta"].tolist() == meta:
                have = {k: z[k] for k in _FIELDS}
    done = len(have.get("index", ()))
    if done < n:
        res = paired_delta_chi2(resolve_config(preset, overrides), cls, n - done, seed, start=done)
        new = {k: getattr(res, k) for k in _FIELDS}
        have = {k: np.concatenate([have[k], new[k]]) for k in _FIELDS} if done else new
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, meta=np.array(meta), **have)
        tmp.replace(path)
    return DetectabilityResult(preset=preset, cls=cls, reference="no_sub", seed=seed,
                               **{k: have[k][:n] for k in _FIELDS})


def _row(label: str, res: DetectabilityResult, f_sub: str) -> str:
    s = res.summary()
    return (f"{label} | {f_sub} | {s['median']:.3g} | {s['mean']:.3g} | {s['p16']:.3g}-{s['p84']:.3g} | "
            f"{s['frac_gt_9']:.2f} | {s['frac_gt_25']:.2f} | {s['mean_ideal_auc']:.3f} | "
            f"{np.median(res.reference_snr):.0f}")


HEADER = "| Delta chi^2 median | mean | 16-84% | frac > 9 | frac > 25 | mean ideal AUC | median S/N of no_sub image"


def _sigma_axis(ax: Any, ticks: list[float]) -> None:
    """Log Sigma_sub axis labelled at the grid values only."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


def _plot(path: Path, grid_res: dict[str, dict[float, DetectabilityResult]],
          class_res: dict[str, dict[str, DetectabilityResult]],
          networks: dict[str, dict[float, tuple[float, float, str]]]) -> None:
    plt = pyplot()
    presets = list(grid_res)
    colors = dict(zip(presets, ["tab:blue", "tab:orange", "tab:green", "tab:red"], strict=False))
    fig, axes = plt.subplots(1, 3, figsize=(16.5, 4.8))
    ax = axes[0]
    for preset in presets:
        sig = sorted(grid_res[preset])
        med = [np.median(grid_res[preset][s].delta_chi2) for s in sig]
        lo = [np.percentile(grid_res[preset][s].delta_chi2, 16) for s in sig]
        hi = [np.percentile(grid_res[preset][s].delta_chi2, 84) for s in sig]
        ax.plot(sig, med, "o-", color=colors[preset], label=f"{preset}: median")
        ax.fill_between(sig, lo, hi, color=colors[preset], alpha=0.2, label=f"{preset}: 16-84% of images")
    x_text = max(min(grid_res[p]) for p in presets)
    for level, text in ((9.0, "3 sigma (9)"), (25.0, "5 sigma (25)")):
        ax.axhline(level, color="0.3", ls="--", lw=0.9)
        ax.text(x_text, level * 1.08, text, fontsize=8, color="0.3")
    ax.axvline(0.025, color="tab:green", ls=":", label="pyHalo CDM Sigma_sub = 0.025")
    _sigma_axis(ax, sorted({s for p in presets for s in grid_res[p]}))
    ax.set_yscale("log")
    ax.set_xlabel("Sigma_sub (kpc$^{-2}$, pivot 1e8 Msun)")
    ax.set_ylabel("ideal-observer $\\Delta\\chi^2$ (cdm_tnfw vs no_sub)")
    ax.set_title("known lens, source and subhalos")
    ax.legend(fontsize=7, loc="upper left")

    ax = axes[1]
    for preset in presets:
        sig = sorted(grid_res[preset])
        ax.plot(sig, [grid_res[preset][s].mean_ideal_auc for s in sig], "o-", color=colors[preset],
                label=f"{preset}: ideal observer (mean per-image AUC)")
        net = networks.get(preset, {})
        if net:
            ks = sorted(net)
            ax.errorbar(ks, [net[k][0] for k in ks], yerr=[net[k][1] for k in ks], fmt="s--", color=colors[preset],
                        alpha=0.7, capsize=3, label=f"{preset}: {net[ks[0]][2]} test AUC\n(bench_sensitivity)")
    ax.axhline(0.5, color="0.5", lw=0.8)
    ax.axvline(0.025, color="tab:green", ls=":")
    _sigma_axis(ax, sorted({s for p in presets for s in grid_res[p]}))
    ax.set_ylim(0.45, 1.02)
    ax.set_xlabel("Sigma_sub (kpc$^{-2}$, pivot 1e8 Msun)")
    ax.set_ylabel("AUC, no_sub vs cdm_tnfw")
    ax.set_title("ideal AUC vs trained network")
    ax.legend(fontsize=7, loc="center right")

    ax = axes[2]
    classes = sorted({c for p in class_res for c in class_res[p]}, key=lambda c: list(class_res[presets[0]]).index(c)
                     if c in class_res[presets[0]] else 99)
    width = 0.8 / max(1, len(presets))
    for j, preset in enumerate(presets):
        xs = np.arange(len(classes)) + (j - (len(presets) - 1) / 2) * width
        med = [np.median(class_res[preset][c].delta_chi2) if c in class_res[preset] else np.nan for c in classes]
        lo = [np.percentile(class_res[preset][c].delta_chi2, 16) if c in class_res[preset] else np.nan for c in classes]
        hi = [np.percentile(class_res[preset][c].delta_chi2, 84) if c in class_res[preset] else np.nan for c in classes]
        yerr = np.array([np.subtract(med, lo), np.subtract(hi, med)])
        ax.bar(xs, med, width=width, color=colors[preset], alpha=0.8, label=preset)
        ax.errorbar(xs, med, yerr=yerr, fmt="none", ecolor="k", capsize=3, lw=0.8)
    for level in (9.0, 25.0):
        ax.axhline(level, color="0.3", ls="--", lw=0.9)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(0, None)
    ax.set_xticks(np.arange(len(classes)))
    ax.set_xticklabels(classes)
    ax.set_ylabel("$\\Delta\\chi^2$ vs no_sub: median, bar 16-84%")
    ax.set_title("each class at its default prior")
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, out="bench_ideal", presets=("euclid_dm,hst_dm", "e.g. euclid_dm,hst_dm,hst_dm_150"))
    p.add_argument("--sigma-grid", default="0.0125,0.025,0.05,0.1,0.2,0.4", help="Sigma_sub values, kpc^-2")
    p.add_argument("--classes", default="cdm_tnfw,wdm,sidm,uldm,axion",
                   help="classes compared with no_sub at their default priors")
    p.add_argument("--n", type=int, default=300, help="image pairs per cell")
    p.add_argument("--seed", type=int, default=0, help="parameter-stream seed (the same lenses in every cell)")
    add_options(p, image_size=None)
    p.add_argument("--network-figures", default=None, metavar="FIGURES_TXT",
                   help="a bench_sensitivity.py figures.txt: its networks' AUCs drawn beside the ideal curve")
    p.add_argument("--tiny", action="store_true", help="smoke setting: 32 px, 2 grid points, 2 classes, 5 pairs")
    args = p.parse_args(argv)
    if args.tiny:
        args.sigma_grid, args.classes, args.n = "0.025,0.1", "cdm_tnfw,wdm", 5
        args.image_size = args.image_size or 32
    out = output_dir(args.out)
    presets, classes = csv_list(args.presets), csv_list(args.classes)
    grid = [float(s) for s in csv_list(args.sigma_grid)]
    base = sim_overrides([], args.image_size)
    command = command_line(Path(__file__).name, argv)
    t0 = time.perf_counter()
    lines = [f"# {command}",
             f"# {args.n} image pairs per cell, parameter seed {args.seed} (pair i: image_streams({args.seed}, i)); "
             "Delta chi^2 = sum (m_cls - m_no_sub)^2 / var_no_sub, noiseless models, the preset's noise variance; "
             "ideal AUC = Phi(sqrt(Delta chi^2 / 2)) per image (known lens, source and subhalos: an upper bound)"]
    grid_res: dict[str, dict[float, DetectabilityResult]] = {p: {} for p in presets}
    class_res: dict[str, dict[str, DetectabilityResult]] = {p: {} for p in presets}
    # cheap cells first (Sigma_sub <= 0.1 and the default priors), the dense populations last
    tasks = [("grid", p, s) for s in grid if s <= 0.1 for p in presets] + [("class", p, c) for p in presets
                                                                           for c in classes]
    tasks += [("grid", p, s) for s in grid if s > 0.1 for p in presets]
    for kind, preset, what in tasks:
        t = time.perf_counter()
        if kind == "grid":
            sigma = float(what)
            res = _cell(out / "cells" / f"{preset}-cdm_tnfw-sigma{sigma:g}.npz",
                        {**base, "sigma_sub_range": [sigma, sigma]}, preset, "cdm_tnfw", args.n, args.seed)
            grid_res[preset][sigma] = res
        else:
            res = _cell(out / "cells" / f"{preset}-{what}-default.npz", dict(base), preset, str(what), args.n,
                        args.seed)
            class_res[preset][str(what)] = res
        print(f"{preset} {what}: median Delta chi^2 {np.median(res.delta_chi2):.3g} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
    for preset in presets:
        lines += ["", f"## {preset}: cdm_tnfw vs no_sub at fixed Sigma_sub",
                  "Sigma_sub (kpc^-2) | f_sub " + HEADER]
        for sigma in grid:
            res = grid_res[preset][sigma]
            lines.append(_row(f"{sigma:g}", res, f"{100 * np.nanmean(res.f_sub):.2f}%"))
        lines += ["", f"## {preset}: each class at its default prior vs no_sub",
                  "class | mean f_sub " + HEADER]
        for cls in classes:
            res = class_res[preset][cls]
            f = np.nanmean(res.f_sub) if np.any(np.isfinite(res.f_sub)) else float("nan")
            lines.append(_row(cls, res, "n/a" if not np.isfinite(f) else f"{100 * f:.2f}%"))
    networks = network_aucs(Path(args.network_figures)) if args.network_figures else {}
    _plot(out / "ideal_observer.png", grid_res, class_res, networks)
    lines += ["", f"# total wall time {(time.perf_counter() - t0) / 60:.1f} min; plot "
              f"{(out / 'ideal_observer.png').resolve()}"]
    return write_figures(out, lines)


if __name__ == "__main__":
    sys.exit(main())
