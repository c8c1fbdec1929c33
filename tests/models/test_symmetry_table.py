"""The one table of exact grid transforms (equilens.models.symmetry): each entry's angle is the rotation it is."""

import math

import torch

from equilens.evaluation.equivariance import rotate_images
from equilens.models.symmetry import GRID_IDENTITY, GRID_TRANSFORMS


def test_each_grid_rotation_is_the_rotation_by_its_angle_and_reflections_have_none():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 9, 9, dtype=torch.float64)
    assert torch.equal(GRID_IDENTITY(x), x) and GRID_IDENTITY.angle == 0.0
    rotations = {name: t for name, t in GRID_TRANSFORMS.items() if not math.isnan(t.angle)}
    assert sorted(rotations) == ["rot180", "rot270", "rot90"]
    for name, t in rotations.items():
        # bilinear rotation just short of the angle: not the rot90 shortcut, the same pixels to ~1e-4
        near = rotate_images(x, t.angle - 1e-3)
        assert torch.allclose(near, t(x), atol=1e-3), name
        assert not torch.allclose(rotate_images(x, t.angle + 90.0 - 1e-3), t(x), atol=1e-2), name
    for name in ("flip_lr", "flip_ud", "transpose", "antitranspose"):
        t = GRID_TRANSFORMS[name]
        assert math.isnan(t.angle), name
        assert torch.equal(t(t(x)), x), name  # a reflection undoes itself
        assert not any(torch.equal(t(x), r(x)) for r in rotations.values()), name
