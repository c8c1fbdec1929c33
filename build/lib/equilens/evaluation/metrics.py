"""Classification and regression metrics, written out in numpy (tests compare them with scikit-learn).

Classification metrics take softmax probabilities (N, K) and integer labels (N,):
accuracy, one-vs-rest ROC AUC per class (ties counted half, as the Mann-Whitney U statistic), their
unweighted (macro) mean, ROC curves and the confusion matrix (rows: true class, columns: predicted).

Regression metrics take predictions and truths (N,) in the target's units, and optionally predicted
standard deviations (N,): MAE, RMSE, R^2 (1 - SS_res / SS_tot), bias (mean of prediction - truth) and a
calibration check of the predicted uncertainty from the z-scores z = (prediction - truth) / sigma:
the fraction of |z| below 1 and 2 (0.683 and 0.954 for a calibrated Gaussian) and the standard
deviation of z (1 when calibrated; above 1 means over-confident).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from equilens.errors import DataError

#: Fractions of a standard normal within 1 and 2 standard deviations (erf(k / sqrt 2)).
GAUSS_WITHIN = {1: math.erf(1 / math.sqrt(2)), 2: math.erf(2 / math.sqrt(2))}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, K) logits, computed stably."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def roc_auc_binary(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties half.

    Returns NaN when either class is absent.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # average ranks (1-based) handle ties
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], positive[order]
    tp = np.cumsum(p)
    fp = np.cumsum(~p)
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tpr = np.r_[0.0, tp[last_of_tie] / max(int(p.sum()), 1)]
    fpr = np.r_[0.0, fp[last_of_tie] / max(int((~p).sum()), 1)]
    return fpr, tpr


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts; entry [i, j] = images of true class i predicted as j."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return cm


def pairwise_auc(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """One-vs-one AUC of every class pair ``"a/b"`` (Hand & Till 2001), on the images of the two classes only:
    the mean of the AUC of a-against-b ranked by p_a and of b-against-a ranked by p_b. 0.5 is chance.

    One-vs-rest AUCs can hide a pair the model cannot tell apart: with one class perfectly separated, two
    classes at chance still score 0.75 each against the rest. NaN for a pair with an absent class.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    out = {}
    for a in range(len(class_names)):
        for b in range(a + 1, len(class_names)):
            both = (labels == a) | (labels == b)
            auc_a = roc_auc_binary(probs[both, a], labels[both] == a)
            auc_b = roc_auc_binary(probs[both, b], labels[both] == b)
            out[f"{class_names[a]}/{class_names[b]}"] = (auc_a + auc_b) / 2.0
    return out


def classification_metrics(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro and per-class one-vs-rest AUC, one-vs-one AUC per class pair, confusion matrix.

    Args:
        probs: softmax probabilities (N, K).
        labels: int (N,) true classes.
        class_names: K names.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    k = len(class_names)
    if probs.ndim != 2 or probs.shape != (labels.size, k):
        raise DataError(f"probabilities must be (N, {k}) for N={labels.size} labels, got {probs.shape}")
    pred = probs.argmax(axis=1)
    per_class = {name: roc_auc_binary(probs[:, c], labels == c) for c, name in enumerate(class_names)}
    finite = [v for v in per_class.values() if math.isfinite(v)]
    pairs = pairwise_auc(probs, labels, class_names)
    finite_pairs = [v for v in pairs.values() if math.isfinite(v)]
    return {
        "n": int(labels.size),
        "accuracy": float((pred == labels).mean()) if labels.size else float("nan"),
        "auc_macro": float(np.mean(finite)) if finite else float("nan"),
        "auc_per_class": per_class,
        "auc_ovo_macro": float(np.mean(finite_pairs)) if finite_pairs else float("nan"),
        "auc_pairwise": pairs,
        "confusion_matrix": confusion_matrix(labels, pred, k).tolist(),
        "class_names": list(class_names),
    }


def regression_metrics(pred: np.ndarray, truth: np.ndarray, sigma: np.ndarray | None = None) -> dict[str, Any]:
    """MAE, RMSE, R^2, bias (all in target units) and, with ``sigma``, the uncertainty calibration."""
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if pred.shape != truth.shape or pred.ndim != 1:
        raise DataError(f"predictions and truths must both be (N,), got {pred.shape} and {truth.shape}")
    err = pred - truth
    ss_tot = float(((truth - truth.mean()) ** 2).sum())
    out: dict[str, Any] = {
        "n": int(truth.size),
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "r2": float(1.0 - (err**2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
        "bias": float(err.mean()),
    }
    if sigma is not None:
        sigma = np.asarray(sigma, dtype=np.float64)
        if sigma.shape != truth.shape:
            raise DataError(f"sigma must be (N,) like the truths, got {sigma.shape}")
        z = err / sigma
        out["calibration"] = {
            "mean_sigma": float(sigma.mean()),
            "z_std": float(z.std()),
            "z_mean": float(z.mean()),
            "within_1sigma": float((np.abs(z) < 1).mean()),
            "within_2sigma": float((np.abs(z) < 2).mean()),
            "expected_within_1sigma": GAUSS_WITHIN[1],
            "expected_within_2sigma": GAUSS_WITHIN[2],
            "gaussian_nll": float(np.mean(0.5 * np.log(2 * np.pi * sigma**2) + 0.5 * z**2)),
        }
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; NaN for one value) and count of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else float("nan"), int(v.size)
