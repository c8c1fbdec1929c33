"""Normalisations and augmentations (plain torch)."""

import numpy as np
import pytest
import torch

from equilens.data.transforms import Normalizer, augment_batch, hflip, rot90, rotate, vflip
from equilens.errors import ConfigError


@pytest.mark.parametrize("size", [9, 12])
def test_rotate_multiples_of_90_equal_rot90(size):
    x = torch.randn(3, 1, size, size)
    for k in range(4):
        assert torch.allclose(rotate(x, 90.0 * k), rot90(x, k), atol=1e-5)


def test_rotate_composes_and_inverts_inside_disk():
    size = 33
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c = (size - 1) / 2
    smooth = torch.exp(-((yy - c - 3.0) ** 2 + (xx - c + 2.0) ** 2) / 40.0)[None, None].float()
    two = rotate(rotate(smooth, 45.0), 45.0)
    inner = ((yy - c) ** 2 + (xx - c) ** 2) < (size / 2 - 2) ** 2
    err = (two - rot90(smooth, 1))[0, 0][inner].abs().max()
    assert err < 0.02  # two bilinear interpolations of a smooth image
    assert (rotate(smooth, 30.0) - smooth).abs().max() > 0.05  # it does move the image


def test_flips():
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    assert torch.equal(hflip(x)[0, 0, 0], torch.tensor([2.0, 1.0, 0.0]))
    assert torch.equal(vflip(x)[0, 0, :, 0], torch.tensor([3.0, 0.0]))


def test_rot90_augmentation_gives_exact_rotations_and_is_seeded():
    x = torch.randn(16, 1, 8, 8)
    a = augment_batch(x, "rot90", torch.Generator().manual_seed(3))
    b = augment_batch(x, "rot90", torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    ks = []
    for i in range(16):
        match = [k for k in range(4) if torch.equal(a[i], rot90(x[i:i + 1], k)[0])]
        assert len(match) == 1
        ks.append(match[0])
    assert len(set(ks)) > 1  # not all the same rotation


@pytest.mark.parametrize("mode", ["flip", "rotate", "rotate+flip"])
def test_other_augmentations_change_some_images(mode):
    x = torch.randn(8, 1, 12, 12)
    y = augment_batch(x, mode, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert not torch.allclose(x, y)


def test_unknown_augmentation_lists_valid():
    with pytest.raises(ConfigError, match="rotate\\+flip"):
        augment_batch(torch.zeros(1, 1, 4, 4), "shear", torch.Generator())


def test_normalisations():
    rng = np.random.default_rng(0)
    train = rng.gamma(2.0, 3.0, size=(50, 1, 8, 8)).astype(np.float32)
    std = Normalizer.fit("standardise", train)
    y = std(train)
    assert abs(float(y.mean())) < 1e-5 and abs(float(y.std()) - 1) < 1e-4
    mm = Normalizer.fit("minmax", train)
    z = mm(train)
    assert np.percentile(z, 0.1) == pytest.approx(0.0, abs=1e-5)
    assert np.percentile(z, 99.9) == pytest.approx(1.0, abs=1e-5)
    ash = Normalizer.fit("asinh", train)
    w = ash(train)
    assert abs(float(w.mean())) < 1e-4
    assert np.allclose(w, (np.arcsinh(train / train.std()) - ash.shift) / ash.scale, atol=1e-5)
    # torch and numpy agree; dict round trip
    t = ash(torch.from_numpy(train))
    assert np.allclose(t.numpy(), w, atol=1e-5)
    assert Normalizer.from_dict(ash.to_dict()) == ash
    assert Normalizer.fit("none", train)(train) is train
    with pytest.raises(ConfigError, match="standardise"):
        Normalizer.fit("zscore", train)
