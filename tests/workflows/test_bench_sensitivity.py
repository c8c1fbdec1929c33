"""The detection-sensitivity benchmark's own arithmetic: f_sub per Sigma_sub and the source-brightness AUC."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from equilens.data.store import LensDataset
from equilens.simulation.config import resolve_config
from equilens.simulation.generate import generate_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_sensitivity  # noqa: E402


def test_substructure_fraction_is_linear_in_sigma_sub_and_matches_the_measured_table() -> None:
    cfg = resolve_config("euclid_dm")
    f = bench_sensitivity.substructure_fraction
    assert f(cfg, 0.0) == 0.0
    assert f(cfg, 0.2) == pytest.approx(2 * f(cfg, 0.1), rel=1e-12)
    # the README's table: Sigma_sub 0.0125 kpc^-2 is f_sub 0.77%, pyHalo's 0.025 is 1.55%
    assert f(cfg, 0.0125) == pytest.approx(0.0077, abs=5e-5)
    assert f(cfg, 0.025) == pytest.approx(0.0155, abs=5e-5)


def _fake_run(run: Path, positions: np.ndarray, truth: np.ndarray) -> Path:
    (run / "eval").mkdir(parents=True)
    np.savez(run / "eval" / "predictions.npz", positions=positions, truth=truth)
    return run


def _pair_fraction(brightness: np.ndarray, truth: np.ndarray) -> float:
    """P(a cdm_tnfw image's source is brighter than a no_sub image's), ties counted half, by brute force."""
    pos, neg = brightness[truth == 1], brightness[truth == 0]
    wins = sum(float(p > n) + 0.5 * float(p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_brightness_auc_scores_the_test_split_by_source_brightness(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate_dataset(resolve_config("euclid_dm", {"image_size": 24}), ["no_sub", "cdm_tnfw"], 8, 3, data,
                     progress=False)
    ds = LensDataset(data)
    labels = np.asarray(ds.labels)
    magnitude = ds.parameters(["source_magnitude"])["source_magnitude"]
    test = np.array([0, 1, 3, 4, 7, 10, 13])  # a subset of both classes, as a test split is
    truth = labels[test]
    assert 0 < truth.sum() < len(truth)
    run = _fake_run(tmp_path / "run", test, truth)
    got = bench_sensitivity.brightness_auc(data, run)
    assert got == pytest.approx(_pair_fraction(-magnitude[test], truth), abs=1e-12)
    # brighter = smaller magnitude: the reversed labels give the complement
    flipped = _fake_run(tmp_path / "flipped", test, 1 - truth)
    assert bench_sensitivity.brightness_auc(data, flipped) == pytest.approx(1 - got, abs=1e-12)


def test_brightness_auc_is_one_half_when_the_source_is_fixed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = resolve_config("euclid_dm", {"image_size": 24, "source_magnitude_range": [22.0, 22.0]})
    generate_dataset(cfg, ["no_sub", "cdm_tnfw"], 4, 3, data, progress=False)
    labels = np.asarray(LensDataset(data).labels)
    run = _fake_run(tmp_path / "run", np.arange(len(labels)), labels)
    assert bench_sensitivity.brightness_auc(data, run) == pytest.approx(0.5, abs=1e-12)
