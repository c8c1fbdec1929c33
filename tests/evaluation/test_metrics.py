"""Our metrics against scikit-learn."""

import numpy as np
import pytest
from sklearn import metrics as skm

from equilens.evaluation.metrics import (
    classification_metrics,
    confusion_matrix,
    mean_std,
    regression_metrics,
    roc_auc_binary,
    roc_curve,
    softmax,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200).astype(bool)
    scores = np.round(rng.normal(size=200) + y, 1)  # rounding makes many ties
    assert roc_auc_binary(scores, y) == pytest.approx(skm.roc_auc_score(y, scores), abs=1e-12)
    fpr, tpr = roc_curve(scores, y)
    sk_fpr, sk_tpr, _ = skm.roc_curve(y, scores, drop_intermediate=False)
    assert np.allclose(fpr, sk_fpr) and np.allclose(tpr, sk_tpr)
    assert np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2) == pytest.approx(skm.roc_auc_score(y, scores))


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + 1.5 * np.eye(3)[labels]
    probs = softmax(logits)
    assert np.allclose(probs.sum(1), 1) and np.allclose(probs, np.exp(logits) / np.exp(logits).sum(1, keepdims=True))
    m = classification_metrics(probs, labels, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, probs.argmax(1)))
    assert m["auc_macro"] == pytest.approx(skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    per = skm.roc_auc_score(labels, probs, multi_class="ovr", average=None)
    assert [m["auc_per_class"][k] for k in "abc"] == pytest.approx(list(per))
    assert m["auc_ovo_macro"] == pytest.approx(skm.roc_auc_score(labels, probs, multi_class="ovo", average="macro"))
    assert list(m["auc_pairwise"]) == ["a/b", "a/c", "b/c"]
    # one class perfectly separated, the other two indistinguishable: one-vs-rest says 0.75, the pair says 0.5
    lab = np.repeat([0, 1, 2], 200)
    p_easy = np.where(lab[:, None] == 2, [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]) + rng.uniform(0, 1e-3, (600, 3))
    easy = classification_metrics(p_easy / p_easy.sum(1, keepdims=True), lab, ["a", "b", "c"])
    assert easy["auc_per_class"]["a"] == pytest.approx(0.75, abs=0.05)
    assert easy["auc_pairwise"]["a/b"] == pytest.approx(0.5, abs=0.08) and easy["auc_pairwise"]["a/c"] == 1.0
    assert np.array_equal(m["confusion_matrix"], skm.confusion_matrix(labels, probs.argmax(1)))
    assert np.array_equal(confusion_matrix([0, 0, 1], [1, 0, 1], 3), [[1, 1, 0], [0, 1, 0], [0, 0, 0]])


def test_regression_metrics_match_sklearn_and_calibration():
    rng = np.random.default_rng(1)
    truth = rng.uniform(-24, -22, 5000)
    sigma = np.full_like(truth, 0.1)
    pred = truth + rng.normal(0, 0.1, truth.size) + 0.02
    m = regression_metrics(pred, truth, sigma)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(truth, pred))
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(truth, pred)))
    assert m["r2"] == pytest.approx(skm.r2_score(truth, pred))
    assert m["bias"] == pytest.approx(0.02, abs=0.005)
    c = m["calibration"]
    assert c["within_1sigma"] == pytest.approx(0.683, abs=0.03) and c["z_std"] == pytest.approx(1.0, abs=0.05)
    over = regression_metrics(pred, truth, sigma / 3)["calibration"]  # over-confident: z spread ~3
    assert over["z_std"] > 2.5 and over["within_1sigma"] < 0.4


def test_mean_std():
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(np.sqrt(2)), 2)
    m, s, n = mean_std([0.5])
    assert m == 0.5 and np.isnan(s) and n == 1
