"""Evaluation figures (matplotlib, Agg backend): ROC curves, confusion matrix, predicted versus true,
uncertainty calibration, the symmetry of a trained model, the output change of a model against rotation
angle (``check-equivariance``) and the comparison of models over runs (``report``). Each function writes
one PNG and returns its path.

Log axes and exact zeros: an output change that is exactly 0 (the identity, or an exact grid rotation of
an image) has no place on a log axis; it is drawn as an open marker on the bottom edge of the axes, with
"exactly 0" in the legend, never as a measured point at an arbitrary small value.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from equilens.evaluation.metrics import GAUSS_WITHIN, roc_curve  # noqa: E402

DPI = 110
#: Smallest font size (points) used in the figures; at :data:`DPI` this is about 12 px when shown at
#: the figure's own size.
MIN_FONT = 8.5

#: Axis labels with units of the recorded parameters most often regressed (names as in
#: :func:`equilens.simulation.populations.parameter_columns`; units from that module's docstrings).
TARGET_LABELS: dict[str, str] = {
    "log10_m_a": "log10(m_a / eV)",
    "m_a": "m_a (eV)",
    "vortex_half_length": "vortex half-length L (arcsec)",
    "vortex_angle": "vortex angle (rad)",
    "n_subhalos": "number of subhalos",
    "subhalo_mass_total": "total subhalo mass (M_sun)",
    "lens_theta_E": "Einstein radius theta_E (arcsec)",
    "lens_mass": "main-halo mass (M_sun)",
    "lens_center_x": "lens centre x (arcsec)",
    "lens_center_y": "lens centre y (arcsec)",
    "source_x": "source x (arcsec)",
    "source_y": "source y (arcsec)",
    "source_R_sersic": "source Sersic radius (arcsec)",
    "exposure_time": "exposure time (s)",
}


def target_label(name: str) -> str:
    """Axis label (with unit) of a regression target; the bare name when its unit is not known here."""
    return TARGET_LABELS.get(name, name)


def _save(fig: Any, path: str | os.PathLike[str], rect: tuple[float, float, float, float] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def wrap_text(text: str, width: int) -> str:
    """``text`` broken into lines of at most ``width`` characters (long titles would be cut off)."""
    return "\n".join(textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False)) if text else ""


#: A 1-D series of numbers: a sequence or a numpy array.
Values = Sequence[float] | np.ndarray


def log_series(ax: Any, x: Values, y: Values, fmt: str, label: str, **kw: Any) -> bool:
    """Draw ``y`` against ``x`` on the log-scaled ``ax``: positive values as markers joined by a line
    between neighbours (``fmt`` must include a marker, so that points whose neighbours are exact zeros,
    e.g. every 45-degree point between the grid angles, are still drawn), exact zeros as open markers
    on the bottom edge. Returns whether any exact zero was drawn."""
    xv, yv = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    line = ax.plot(xv, np.where(yv > 0, yv, np.nan), fmt, label=label, **kw)
    zero = np.isfinite(yv) & (yv == 0)
    if zero.any():
        color = line[0].get_color() if line else kw.get("color")
        ax.plot(xv[zero], np.full(int(zero.sum()), 0.0), "v", mfc="none", color=color, ms=7, clip_on=False,
                transform=ax.get_xaxis_transform())
    return bool(zero.any())


def _zero_legend_entry(ax: Any) -> None:
    ax.plot([], [], "v", mfc="none", color="0.3", ms=7, label="exactly 0 (on the bottom edge)")


def plot_roc(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str], auc: Mapping[str, float],
             path: str | os.PathLike[str], title: str = "") -> Path:
    """One-vs-rest ROC curve of every class (that class against the other classes pooled), AUC in the
    legend."""
    fig, ax = plt.subplots(figsize=(5.0, 4.6))
    for c, name in enumerate(class_names):
        fpr, tpr = roc_curve(probs[:, c], labels == c)
        ax.plot(fpr, tpr, label=f"{name} vs rest (AUC {auc[name]:.3f})")
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--", label="chance")
    head = title or "ROC"
    ax.set(xlabel="false positive rate (rest called this class)",
           ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
           title=wrap_text(f"{head}, one vs rest", 48))
    ax.legend(loc="lower right", fontsize=MIN_FONT, title="class vs rest", title_fontsize=MIN_FONT)
    return _save(fig, path)


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: str | os.PathLike[str], title: str = "") -> Path:
    """Confusion matrix, normalised by row (true class), with the counts written in each cell."""
    cm = np.asarray(cm)
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    im = ax.imshow(frac, vmin=0, vmax=1, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}\n{frac[i, j]:.2f}", ha="center", va="center", fontsize=MIN_FONT + 0.5,
                    color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set(xlabel="predicted class", ylabel="true class",
           title=wrap_text((title or "confusion matrix") + " (cells: count, fraction of row)", 46))
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    return _save(fig, path)


def plot_pred_vs_true(pred: np.ndarray, truth: np.ndarray, sigma: np.ndarray | None, target: str,
                      path: str | os.PathLike[str], title: str = "") -> Path:
    """Predicted against true target (axis labels with the target's unit, :func:`target_label`), with the
    predicted 1-sigma uncertainty as error bars when a variance is predicted."""
    fig, ax = plt.subplots(figsize=(5.0, 4.6))
    if sigma is not None:
        ax.errorbar(truth, pred, yerr=sigma, fmt="o", ms=2.5, lw=0.6, alpha=0.6, elinewidth=0.5,
                    label="prediction, bar: predicted ±1 sigma")
    else:
        ax.plot(truth, pred, "o", ms=2.5, alpha=0.6, label="prediction")
    lo = float(min(np.min(truth), np.min(pred)))
    hi = float(max(np.max(truth), np.max(pred)))
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, label="prediction = truth")
    label = target_label(target)
    ax.set(xlabel=f"true {label}", ylabel=f"predicted {label}",
           title=wrap_text(f"predicted vs true, {title}" if title else "predicted vs true", 48))
    ax.legend(fontsize=MIN_FONT, loc="upper left")
    return _save(fig, path)


def plot_calibration(pred: np.ndarray, truth: np.ndarray, sigma: np.ndarray, path: str | os.PathLike[str],
                     title: str = "") -> Path:
    """Histogram of z = (pred - truth) / sigma against the standard normal, and coverage vs k sigma."""
    z = (pred - truth) / sigma
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.9))
    a.hist(np.clip(z, -5, 5), bins=30, density=True, alpha=0.7, label="z (clipped to ±5)")
    xs = np.linspace(-5, 5, 200)
    a.plot(xs, np.exp(-0.5 * xs**2) / math.sqrt(2 * math.pi), "k", lw=1, label="N(0, 1)")
    a.set(xlabel="z = (predicted - true) / predicted sigma", ylabel="probability density", title="z-scores")
    a.legend(fontsize=MIN_FONT)
    ks = np.linspace(0, 3, 61)
    b.plot(ks, [(np.abs(z) < k).mean() for k in ks], label="measured")
    b.plot(ks, [math.erf(k / math.sqrt(2)) for k in ks], "k--", lw=1, label="calibrated Gaussian")
    b.plot([1, 2], [GAUSS_WITHIN[1], GAUSS_WITHIN[2]], "k.", ms=5, label="0.683 at 1 sigma, 0.954 at 2")
    b.set(xlabel="k (predicted sigmas)", ylabel="fraction with |z| < k", title="coverage")
    b.legend(fontsize=MIN_FONT)
    fig.suptitle(title or "uncertainty calibration")
    return _save(fig, path)


def plot_symmetry(table: Mapping[str, Any], path: str | os.PathLike[str], metric_name: str, title: str = "") -> Path:
    """The symmetry of a trained model (``table`` from :func:`equilens.evaluation.evaluate.symmetry_table`).

    Left: relative output change against rotation angle (continuous angles, disk-masked subset), beside
    the interpolation floor (rotate forth and back: the change an exactly invariant model would still
    show) and the image's own change from rotating forth and back; the exact grid rotations of the whole
    test set as red triangles. Right: the test metric on the rotated disk-masked images, with the
    headline metric (full, unmasked images, no rotation) as a horizontal line: the two differ at 0
    degrees because masking sets the corners to empty sky.
    """
    cont = table["continuous"]
    angles = np.asarray([row["angle"] for row in cont], dtype=float)
    n_cont, n_grid = table.get("n_continuous"), table.get("n_grid")
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 5.6))
    masked = f"{n_cont} disk-masked images" if n_cont else "disk-masked images"
    zeros = log_series(a, angles, [row["rel_change"] for row in cont], "o-", ms=5,
                       label=f"model, {masked}")
    zeros |= log_series(a, angles, [row["floor"] for row in cont], "s--", ms=5, color="0.45",
                        label="floor: model, rotated forth + back")
    if all("image_floor" in row for row in cont):
        zeros |= log_series(a, angles, [row["image_floor"] for row in cont], "^:", ms=5, color="tab:green",
                            label="images, rotated forth + back")
    grid_rot = [row for row in table["grid"] if row["name"] in ("rot90", "rot180", "rot270")]
    if grid_rot:
        zeros |= log_series(a, [r["angle"] for r in grid_rot], [r["rel_change"] for r in grid_rot], "r^", ms=9,
                            label=f"exact grid rotation, {n_grid or 'all'} images")
    if zeros:
        _zero_legend_entry(a)
    for k in range(0, 361, 90):
        a.axvline(k, color="0.88", lw=0.8, zorder=0)
    a.set_yscale("log")
    a.set(xlabel="rotation angle (degrees)", ylabel="relative output change", xticks=range(0, 361, 45),
          title="output change (1 = as different as another image)")
    a.legend(fontsize=MIN_FONT, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)

    metric = np.asarray([row["metric"] for row in cont], dtype=float)
    b.plot(angles, metric, "o-", ms=5, label=f"rotated, {masked}")
    identity = next((row for row in table["grid"] if row["name"] == "identity"), None)
    if identity is not None and math.isfinite(identity["metric"]):
        b.axhline(identity["metric"], color="k", ls="--", lw=1,
                  label=f"headline {identity['metric']:.3f}: full frames, not rotated\n"
                        "(masking sets the corners to empty sky, so 0 deg differs)")
    b.set(xlabel="rotation angle (degrees)", ylabel=f"test {metric_name}", xticks=range(0, 361, 45),
          title=f"test {metric_name} on rotated images")
    b.legend(fontsize=MIN_FONT, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1)
    fig.suptitle(title)
    return _save(fig, path, rect=(0, 0.0, 1, 1))


def plot_rotation_curve(angles: Values, model_change: Values, floor: Values, image_floor: Values | None,
                        path: str | os.PathLike[str], title: str = "") -> Path:
    """``check-equivariance``: relative output change of a model against rotation angle (degrees), with
    the interpolation floor (rotate forth and back) and, if given, the images' own change from rotating
    forth and back. Exact zeros on the bottom edge (see module docstring); long titles are wrapped."""
    fig, ax = plt.subplots(figsize=(8, 5.2))
    zeros = log_series(ax, angles, model_change, "o-", ms=4, label="model: ||f(Rx) - f(x)|| / spread of f over images")
    zeros |= log_series(ax, angles, floor, "s--", ms=4, color="0.45", label="floor: model, rotate forth and back")
    if image_floor is not None:
        zeros |= log_series(ax, angles, image_floor, "^:", ms=4, color="tab:green",
                            label="image change, rotate forth and back")
    if zeros:
        _zero_legend_entry(ax)
    for k in range(0, 361, 90):
        ax.axvline(k, color="0.88", lw=0.8, zorder=0)
    ax.set_yscale("log")
    ax.set(xlabel="rotation angle (degrees)", ylabel="relative output change", xticks=range(0, 361, 45))
    ax.set_title(wrap_text(title, 80), fontsize=10)
    ax.legend(fontsize=MIN_FONT, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    return _save(fig, path)


def plot_comparison(groups: Sequence[tuple[str, Mapping[str, Sequence[float]]]],
                    panels: Sequence[tuple[str, str, bool]], path: str | os.PathLike[str], title: str = "",
                    references: Mapping[str, tuple[str, str]] | None = None) -> Path:
    """Compare models across runs: one panel per metric, one column per group (model and settings).

    Args:
        groups: (label, {metric key: values over the group's runs (one per seed)}).
        panels: (metric key, axis label, log scale) per panel.
        path: output PNG.
        title: figure title.
        references: metric key -> (key of a reference value per run, legend label), drawn as grey open
            squares beside the metric (e.g. the interpolation floor beside the largest output change).

    Each group shows its single runs as small dots and the mean with an error bar of the sample standard
    deviation over its runs (ddof = 1; no bar for a single run); the number of runs is written under
    the x labels.
    """
    references = dict(references or {})
    n_groups = len(groups)
    panel_width = max(3.4, 1.1 * n_groups + 1.3)
    width = min(11.8, panel_width * len(panels))  # 11.8 in at 110 dpi: 1300 px, the report's content width
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4.9), squeeze=False)
    xs = np.arange(n_groups)
    labels = [f"{label}\n(n={len([v for v in vals.get(panels[0][0], []) if _finite(v)])})"
              for label, vals in groups]
    handles: dict[str, Any] = {}
    for ax, (key, ylabel, log) in zip(axes[0], panels, strict=True):
        for i, (_, vals) in enumerate(groups):
            v = np.asarray([x for x in vals.get(key, []) if _finite(x)], dtype=float)
            if log:
                v = v[v > 0]
            if v.size == 0:
                continue
            (dots,) = ax.plot(np.full(v.size, xs[i]) + np.linspace(-0.1, 0.1, v.size) * (v.size > 1), v, ".",
                              color="0.45", ms=6, zorder=4)
            handles.setdefault("single run (one seed)", dots)
            err = v.std(ddof=1) if v.size > 1 else None
            bar = ax.errorbar(xs[i], v.mean(), yerr=err, fmt="o", color="tab:blue", ms=7, capsize=5, lw=1.5,
                              zorder=3, alpha=0.85)
            handles.setdefault("mean; error bar: sample std over seeds (none for n=1)", bar)
            if key in references:
                ref_key, ref_label = references[key]
                r = np.asarray([x for x in vals.get(ref_key, []) if _finite(x)], dtype=float)
                r = r[r > 0] if log else r
                if r.size:
                    (sq,) = ax.plot(xs[i] + 0.28, r.mean(), "s", mfc="none", color="0.25", ms=8, zorder=3)
                    handles.setdefault(f"{ref_label} (mean)", sq)
        if log:
            ax.set_yscale("log")
        ax.set_xticks(xs, labels, fontsize=MIN_FONT, rotation=0 if n_groups <= 3 else 30,
                      ha="center" if n_groups <= 3 else "right")
        ax.set_xlim(-0.6, n_groups - 0.3)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", color="0.9")
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(3, len(handles)),
               fontsize=MIN_FONT + 0.5, frameon=False)
    fig.suptitle(wrap_text(title, int(width * 11)), fontsize=11)
    return _save(fig, path, rect=(0, 0.07, 1, 1))


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
