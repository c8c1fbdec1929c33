"""Harmonic network: filters, layer equivariance, magnitude batch norm, invariance of the whole net."""

import math

import pytest
import torch

from equilens.errors import ModelError
from equilens.models import create_model
from equilens.models.harmonic import (
    HarmonicConv,
    MagnitudeBNReLU,
    centre_preserving_pool,
    harmonic_filters,
    magnitude,
)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _rot(x: torch.Tensor, k: int = 1) -> torch.Tensor:
    return torch.rot90(x, k, dims=(-2, -1))


def _pack(streams: list[torch.Tensor]) -> torch.Tensor:
    """Complex (B, c_m, H, W) streams, order 0 first -> packed real layout [Re..., Im...]."""
    z = torch.cat(streams, dim=1)
    return torch.cat([z.real, z.imag], dim=1)


def _unpack(x: torch.Tensor) -> torch.Tensor:
    re, im = x.chunk(2, dim=1)
    return torch.complex(re, im)


@pytest.mark.parametrize("order", [-1, 0, 1])
@pytest.mark.parametrize("size", [3, 5, 7])
def test_filter_rot90_multiplies_by_phase(order, size):
    gen = torch.Generator().manual_seed(order + 10 * size)
    n_rings = size // 2 + 1
    w = harmonic_filters(size, torch.randn(4, 3, n_rings, generator=gen), torch.randn(4, 3, generator=gen), order)
    phase = complex(math.cos(order * math.pi / 2), math.sin(order * math.pi / 2))
    for k in range(1, 4):
        assert torch.allclose(_rot(w, k), phase**k * w, atol=1e-6)
    if order != 0:
        assert torch.all(w[..., size // 2, size // 2] == 0)  # undefined angle at r = 0
        # a non-zero order really rotates: the filter is not rot90-invariant
        assert (_rot(w) - w).abs().max() > 1e-3


def test_filter_has_learnt_phase_offset():
    radial = torch.ones(1, 1, 3)
    w0 = harmonic_filters(5, radial, torch.zeros(1, 1), 1)
    w1 = harmonic_filters(5, radial, torch.full((1, 1), 0.7), 1)
    assert torch.allclose(w1, w0 * complex(math.cos(0.7), math.sin(0.7)), atol=1e-6)


@pytest.mark.parametrize("size", [9, 10])
def test_harmonic_conv_equivariance(size):
    """Rotating the input by rot90 rotates each output stream and turns its phase by -m * 90 degrees."""
    gen = torch.Generator().manual_seed(size)
    layer = HarmonicConv((3, 2), (4, 5), kernel_size=5)
    z0 = torch.randn(2, 3, size, size, dtype=torch.complex64, generator=gen)
    z1 = torch.randn(2, 2, size, size, dtype=torch.complex64, generator=gen)
    out = _unpack(layer(_pack([z0, z1])))
    rot_in = _pack([_rot(z0), _rot(z1) * (-1j)])  # an order-1 field picks up exp(-i pi/2) = -i
    out_r = _unpack(layer(rot_in))
    expect = torch.cat([_rot(out[:, :4]), _rot(out[:, 4:]) * (-1j)], dim=1)
    assert torch.allclose(out_r, expect, atol=1e-5)
    # control: without the phase the order-1 stream does NOT match
    assert (out_r[:, 4:] - _rot(out[:, 4:])).abs().max() > 1e-2


def _rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Bilinear resampling at R(degrees) p about the centre: the content turns by -degrees, the same
    direction as torch.rot90(x, 1) for 90."""
    a = math.radians(degrees)
    m = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])
    grid = torch.nn.functional.affine_grid(m.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, align_corners=False)


def test_harmonic_conv_phase_follows_continuous_angle():
    """At 45 degrees (not a grid symmetry) the order-1 response rotates and its phase turns by -45 degrees,
    up to interpolation error; without the phase factor it does not match at all."""
    size = 41
    c = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    # smooth, anisotropic, off-centre blobs (interpolation of a smooth image is accurate)
    x = (torch.exp(-((xx - 5) ** 2 / 18 + (yy + 3) ** 2 / 8)) + 0.7 * torch.exp(-((xx + 4) ** 2 + (yy - 6) ** 2) / 12))
    x = x[None, None]
    torch.manual_seed(0)
    layer = HarmonicConv((1, 0), (2, 2), kernel_size=5, real_input=True)
    with torch.no_grad():
        out, out_r = _unpack(layer(x)), _unpack(layer(_rotate(x, 45.0)))
    rot_out = torch.complex(_rotate(out.real, 45.0), _rotate(out.imag, 45.0))
    inner = (xx**2 + yy**2 < 12**2)[None, None].expand_as(out_r)
    z, z_expect = out_r[:, 2:][inner[:, 2:]], (rot_out[:, 2:] * complex(math.cos(math.pi / 4), -math.sin(math.pi / 4)))
    err = float((z - z_expect[inner[:, 2:]]).abs().norm() / z.abs().norm())
    err_no_phase = float((z - rot_out[:, 2:][inner[:, 2:]]).abs().norm() / z.abs().norm())
    assert err < 0.05 and err_no_phase > 0.5
    z0 = out_r[:, :2][inner[:, :2]]
    assert float((z0 - rot_out[:, :2][inner[:, :2]]).abs().norm() / z0.abs().norm()) < 0.05  # order 0: no phase


def test_real_input_conv_equivariance():
    gen = torch.Generator().manual_seed(3)
    layer = HarmonicConv((2, 0), (3, 3), kernel_size=5, real_input=True)
    x = torch.randn(2, 2, 11, 11, generator=gen)
    out, out_r = _unpack(layer(x)), _unpack(layer(_rot(x)))
    assert torch.allclose(out_r[:, :3], _rot(out[:, :3]), atol=1e-5)
    assert torch.allclose(out_r[:, 3:], _rot(out[:, 3:]) * (-1j), atol=1e-5)


def test_magnitude_bn_relu_keeps_phase():
    gen = torch.Generator().manual_seed(4)
    layer = MagnitudeBNReLU(6).train()
    x = torch.randn(4, 12, 7, 7, generator=gen)
    y = layer(x)
    zx, zy = _unpack(x), _unpack(y)
    alive = zy.abs() > 1e-3
    assert alive.float().mean() > 0.2  # the ReLU keeps a sizeable part
    assert torch.allclose((zy / zy.abs())[alive], (zx / zx.abs())[alive], atol=1e-5)
    expect_mag = torch.relu(torch.nn.functional.batch_norm(magnitude(x), None, None, training=True))
    assert torch.allclose(zy.abs(), expect_mag, atol=1e-4)


@pytest.mark.parametrize("size", [5, 6, 7, 8, 11, 12])
def test_centre_preserving_pool_commutes_with_rot90_and_flips(size):
    x = torch.randn(2, 3, size, size + 2, generator=torch.Generator().manual_seed(size))
    assert torch.allclose(centre_preserving_pool(_rot(x)), _rot(centre_preserving_pool(x)), atol=1e-6)
    assert torch.allclose(centre_preserving_pool(x.flip(-1)), centre_preserving_pool(x).flip(-1), atol=1e-6)


@pytest.mark.parametrize("shape", [(33, 33), (34, 34), (32, 37)])
def test_net_exactly_invariant_to_rot90(shape):
    torch.manual_seed(0)
    model = create_model("harmonic_net", in_channels=2, num_outputs=4)
    # one training step so batch-norm running statistics are not the trivial initial ones
    x = torch.randn(6, 2, *shape, generator=torch.Generator().manual_seed(1)).abs()
    model.train()
    model(x).sum().backward()
    model.eval()
    with torch.no_grad():
        out = model(x)
        for k in (1, 2, 3):
            assert _rel(model(_rot(x, k)), out) <= 1e-5
        # honest control: the harmonic net is NOT mirror-invariant (see the module docstring)
        assert _rel(model(x.flip(-1)), out) > 1e-4


def test_shape_grad_and_bad_input():
    model = create_model("harmonic_net", in_channels=1, num_outputs=3)
    x = torch.randn(2, 1, 20, 20, generator=torch.Generator().manual_seed(2))
    out = model(x)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    assert model.forward_features(x).shape == (2, model.num_features)
    out.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing
    with pytest.raises(ModelError, match=f"at least {model.min_input_size}x{model.min_input_size}"):
        model(torch.zeros(1, 1, model.min_input_size - 1, 30))
    with pytest.raises(ModelError, match="odd size"):
        create_model("harmonic_net", kernel_size=4)
    with pytest.raises(ModelError, match="harmonic_net"):
        create_model("harmonic_net", depth=3)
