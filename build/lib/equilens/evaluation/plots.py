"""Evaluation figures (matplotlib, Agg backend): ROC curves, confusion matrix, predicted versus true,
uncertainty calibration and the symmetry of a trained model. Each function writes one PNG and returns
its path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from equilens.evaluation.metrics import GAUSS_WITHIN, roc_curve  # noqa: E402

DPI = 110


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_roc(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str], auc: Mapping[str, float],
             path: str | os.PathLike[str], title: str = "") -> Path:
    """One-vs-rest ROC curve of every class, AUC in the legend."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for c, name in enumerate(class_names):
        fpr, tpr = roc_curve(probs[:, c], labels == c)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc[name]:.4f})")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
           title=title or "ROC (one vs rest)")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: str | os.PathLike[str], title: str = "") -> Path:
    """Confusion matrix, normalised by row (true class), with the counts written in each cell."""
    cm = np.asarray(cm)
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.4, 3.9))
    im = ax.imshow(frac, vmin=0, vmax=1, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}\n{frac[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    return _save(fig, path)


def plot_pred_vs_true(pred: np.ndarray, truth: np.ndarray, sigma: np.ndarray | None, target: str,
                      path: str | os.PathLike[str], title: str = "") -> Path:
    """Predicted against true target, with 1-sigma error bars when a variance is predicted."""
    fig, ax = plt.subplots(figsize=(4.4, 4.2))
    if sigma is not None:
        ax.errorbar(truth, pred, yerr=sigma, fmt="o", ms=2.5, lw=0.6, alpha=0.6, elinewidth=0.5)
    else:
        ax.plot(truth, pred, "o", ms=2.5, alpha=0.6)
    lo = float(min(np.min(truth), np.min(pred)))
    hi = float(max(np.max(truth), np.max(pred)))
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
    ax.set(xlabel=f"true {target}", ylabel=f"predicted {target}", title=title or "predicted vs true")
    return _save(fig, path)


def plot_calibration(pred: np.ndarray, truth: np.ndarray, sigma: np.ndarray, path: str | os.PathLike[str],
                     title: str = "") -> Path:
    """Histogram of z = (pred - truth) / sigma against the standard normal, and coverage vs k sigma."""
    z = (pred - truth) / sigma
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.6))
    a.hist(np.clip(z, -5, 5), bins=30, density=True, alpha=0.7, label="z")
    xs = np.linspace(-5, 5, 200)
    a.plot(xs, np.exp(-0.5 * xs**2) / math.sqrt(2 * math.pi), "k", lw=1, label="N(0, 1)")
    a.set(xlabel="z = (pred - true) / sigma", ylabel="density", title="z-scores")
    a.legend(fontsize=8)
    ks = np.linspace(0, 3, 61)
    b.plot(ks, [(np.abs(z) < k).mean() for k in ks], label="measured")
    b.plot(ks, [math.erf(k / math.sqrt(2)) for k in ks], "k--", lw=1, label="calibrated Gaussian")
    b.plot([1, 2], [GAUSS_WITHIN[1], GAUSS_WITHIN[2]], "k.", ms=4)
    b.set(xlabel="k", ylabel="fraction with |z| < k", title="coverage")
    b.legend(fontsize=8)
    fig.suptitle(title or "uncertainty calibration")
    return _save(fig, path)


def plot_symmetry(table: Mapping[str, Any], path: str | os.PathLike[str], metric_name: str, title: str = "") -> Path:
    """Relative output change and test metric against rotation angle (continuous angles), with the
    interpolation floor (rotate forth and back), and the exact grid transforms as markers."""
    cont = table["continuous"]
    angles = np.asarray([row["angle"] for row in cont])
    def positive(values: Any) -> np.ndarray:  # exact zeros (0 and 360 degrees) cannot be drawn on a log axis
        v = np.asarray(values, dtype=float)
        return np.where(v > 0, v, np.nan)

    change = positive([row["rel_change"] for row in cont])
    floor = positive([row["floor"] for row in cont])
    metric = np.asarray([row["metric"] for row in cont])
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    a.plot(angles, change, "o-", ms=3, label="model output change")
    a.plot(angles, floor, "s--", ms=3, color="0.5", label="interpolation floor (rotate forth+back)")
    if all("image_floor" in row for row in cont):
        a.plot(angles, positive([row["image_floor"] for row in cont]), ":", color="0.3",
               label="image change (forth+back)")
    for row in table["grid"]:
        if row["name"] != "identity" and row["name"].startswith("rot"):
            a.plot([row["angle"]], [max(row["rel_change"], 1e-9)], "r^", ms=6)
    a.set(xlabel="rotation angle (deg)", ylabel="relative change", yscale="log",
          title="invariance (red: exact rot90 transforms)")
    a.legend(fontsize=7)
    b.plot(angles, metric, "o-", ms=3)
    b.set(xlabel="rotation angle (deg)", ylabel=metric_name, title=f"test {metric_name}, rotated disk-masked images")
    fig.suptitle(title)
    return _save(fig, path)
