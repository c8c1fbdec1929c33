"""Splits, statistics from the training split only, lazy loaders, bad data."""

import numpy as np
import pytest
import torch

from equilens.data.datamodule import LensDataModule, stratified_split
from equilens.data.transforms import Normalizer
from equilens.errors import ConfigError, DataError


def test_stratified_split_is_disjoint_balanced_and_seeded():
    labels = np.repeat([0, 1, 2], [40, 40, 20])
    s = stratified_split(labels, ["a", "b", "c"], val_fraction=0.2, test_fraction=0.1, seed=1)
    allpos = np.concatenate([s["train"], s["val"], s["test"]])
    assert np.array_equal(np.sort(allpos), np.arange(100))
    assert [int((labels[s["test"]] == c).sum()) for c in range(3)] == [4, 4, 2]
    assert [int((labels[s["val"]] == c).sum()) for c in range(3)] == [8, 8, 4]
    again = stratified_split(labels, ["a", "b", "c"], val_fraction=0.2, test_fraction=0.1, seed=1)
    other = stratified_split(labels, ["a", "b", "c"], val_fraction=0.2, test_fraction=0.1, seed=2)
    assert np.array_equal(s["test"], again["test"]) and not np.array_equal(s["test"], other["test"])
    lim = stratified_split(labels, ["a", "b", "c"], val_fraction=0.2, test_fraction=0.1, seed=1, limit_per_class=5)
    assert np.array_equal(lim["test"], s["test"]) and lim["train"].size == 15


def test_split_errors():
    labels = np.repeat([0, 2], [30, 30])
    with pytest.raises(DataError, match="class 'b' has no images"):
        stratified_split(labels, ["a", "b", "c"], val_fraction=0.2, test_fraction=0.2, seed=0)
    labels = np.repeat([0, 1, 2], [30, 30, 2])
    with pytest.raises(DataError, match="leaves class 'c' without"):
        stratified_split(labels, ["a", "b", "c"], val_fraction=0.2, test_fraction=0.2, seed=0)
    with pytest.raises(ConfigError):
        stratified_split(labels, ["a", "b", "c"], val_fraction=0.6, test_fraction=0.5, seed=0)


def test_datamodule_statistics_from_train_only(toy_data):
    dm = LensDataModule(toy_data, normalisation="standardise", num_workers=0, batch_size=8)
    train = dm.positions("train")
    expect = Normalizer.fit("standardise", dm.dataset.get_images(train))
    assert dm.normalizer.shift == pytest.approx(expect.shift) and dm.normalizer.scale == pytest.approx(expect.scale)
    whole = Normalizer.fit("standardise", dm.dataset.get_images(np.arange(len(dm.dataset))))
    assert dm.normalizer.shift != pytest.approx(whole.shift, rel=1e-9)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not set(dm.positions(a)) & set(dm.positions(b))
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (8, 1, 24, 24) and x.dtype == torch.float32 and y.dtype == torch.int64
    ref = torch.from_numpy(dm.normalizer(dm.dataset.get_images(dm.positions("val")[:8])))
    assert torch.allclose(x, ref)


def test_datamodule_lazy_loading_with_workers(toy_data):
    dm = LensDataModule(toy_data, num_workers=2, batch_size=10)
    n = sum(x.shape[0] for x, _ in dm.train_dataloader())
    assert n == len(dm.positions("train"))


def test_regression_drops_nan_targets_with_message(toy_data):
    msgs = []
    dm = LensDataModule(toy_data, task="regress", target="log10_m_a", num_workers=0, log=msgs.append)
    assert any("dropping 40 of 60" in m for m in msgs)
    pos = np.concatenate([dm.positions(p) for p in ("train", "val", "test")])
    assert np.all(dm.dataset.labels[pos] == 2)
    t = dm.stats["target"]
    y = dm.dataset.parameters(["log10_m_a"])["log10_m_a"][dm.positions("train")]
    assert t["mean"] == pytest.approx(y.mean()) and t["std"] == pytest.approx(y.std())
    _, target = dm.subset(dm.positions("test"))[0]
    assert target.dtype == torch.float32


def test_unknown_target_lists_recorded(toy_data):
    with pytest.raises(DataError, match="log10_m_a, other"):
        LensDataModule(toy_data, task="regress", target="vortex_mass", num_workers=0)


def test_no_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no manifest.json"):
        LensDataModule(tmp_path, num_workers=0)
