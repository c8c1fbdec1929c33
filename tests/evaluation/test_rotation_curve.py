"""The rotation curve's test images: rotated about the grid centre, empty sky outside the inscribed disk."""

from __future__ import annotations

import numpy as np
import torch

from equilens.data.transforms import Normalizer
from equilens.evaluation.equivariance import disk_mask
from equilens.evaluation.rotation import masked_rotation, sky_fill


def test_sky_fill_is_the_normalised_zero_flux():
    norm = Normalizer("standardise", 3.0, 2.0)
    assert sky_fill(norm) == -1.5
    assert sky_fill(Normalizer("none", 0.0, 1.0)) == 0.0


def test_outside_the_disk_is_sky_at_every_angle_and_inside_turns():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.normal(size=(2, 1, 17, 17)).astype(np.float32))
    sky = -0.7
    outside = disk_mask(17, 17) == 0
    for angle in (0.0, 30.0, 45.0, 90.0):
        out = masked_rotation(images, angle, sky)
        assert out.shape == images.shape
        # the corners are empty sky (not 0, the training set's mean pixel in normalised units)
        assert torch.allclose(out[..., outside], torch.full_like(out[..., outside], sky))
    inside = ~outside
    assert torch.allclose(masked_rotation(images, 0.0, sky)[..., inside], images[..., inside], atol=1e-6)
    turned = masked_rotation(images, 90.0, sky)
    assert torch.allclose(turned[..., inside], torch.rot90(images, 1, (-2, -1))[..., inside])
