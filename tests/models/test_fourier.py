"""The Fourier-nonlinearity steerable nets (``steerable_so2_fourier``, ``steerable_o2_fourier``)."""

from __future__ import annotations

import math

import pytest
import torch

from equilens.errors import ModelError
from equilens.models import create_model
from equilens.models._escnn_compat import enn, gspaces
from equilens.models.batchnorm import batch_norm_layers, recompute_batch_norm
from equilens.models.fourier import FourierReLU

SMALL = {"layout": [[8, 5, True], [16, 3, False], [16, 3, True], [32, 3, False]], "fine_nonlinearity": [2]}


@pytest.mark.parametrize("kind", ["c", "d"])
@pytest.mark.parametrize("out_trivial", [False, True])
def test_fourier_relu_equals_escnn(kind: str, out_trivial: bool) -> None:
    """Our channels-last products give escnn's FourierPointwise output, on a non-contiguous input too."""
    gspace = (gspaces.rot2dOnR2 if kind == "c" else gspaces.flipRot2dOnR2)(N=-1, maximum_frequency=8)
    group = gspace.fibergroup
    irreps = group.bl_irreps(3)
    ref = enn.FourierPointwise(gspace, 3, irreps, function="p_relu", inplace=False, type="regular", N=16,
                               out_irreps=[group.trivial_representation.id] if out_trivial else None)
    ours = FourierReLU(ref)
    x = torch.randn(2, ref.in_type.size, 5, 7, generator=torch.Generator().manual_seed(0))
    want = ref(enn.GeometricTensor(x, ref.in_type)).tensor
    assert torch.allclose(ours(x), want, atol=1e-5)
    assert torch.allclose(ours(x.contiguous(memory_format=torch.channels_last)), want, atol=1e-5)


@pytest.mark.parametrize("name", ["steerable_so2_fourier", "steerable_o2_fourier"])
@pytest.mark.parametrize("size", [(32, 32), (33, 33), (32, 26)])
@pytest.mark.parametrize("norm", ["samples", "iid"])
def test_grid_symmetries_are_exact(name: str, size: tuple[int, int], norm: str) -> None:
    """90-degree rotations (square inputs) and, for O(2), flips leave the output unchanged to float
    rounding; a 45-degree grid turn of the same content is only approximate (the control that the test
    can fail: the output does move). The samples-norm nets also carry an input blur (exact on the grid)."""
    torch.manual_seed(0)
    model = create_model(name, num_outputs=3, norm=norm, input_blur=0.8 if norm == "samples" else 0.0, **SMALL)
    model.train()
    model(torch.randn(4, 1, *size))  # moves the batch-norm statistics off their initial values
    model.eval()
    x = torch.randn(3, 1, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
        scale = float(ref.abs().max())
        moved = [torch.flip(x, (-1,)), torch.flip(x, (-2,))] if name == "steerable_o2_fourier" else []
        if size[0] == size[1]:
            moved += [torch.rot90(x, k, (-2, -1)) for k in (1, 2, 3)]
        else:
            moved += [torch.rot90(x, 2, (-2, -1))]
        for y in moved:
            assert float((model(y) - ref).abs().max()) <= 1e-5 * scale
        other = model(torch.randn(3, 1, *size, generator=torch.Generator().manual_seed(2)))
        assert float((other - ref).abs().max()) > 1e-3 * scale


def test_so2_is_not_flip_invariant() -> None:
    """SO(2) claims rotations only: a mirror image changes its output (O(2)'s is exact above)."""
    torch.manual_seed(0)
    model = create_model("steerable_so2_fourier", num_outputs=3, **SMALL).eval()
    x = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
        assert float((model(torch.flip(x, (-1,))) - ref).abs().max()) > 1e-3 * float(ref.abs().max())


def test_fields_follow_the_layout_and_width() -> None:
    """fields = round(width * channels / sqrt(128)) per layer, as for D8; the head has one feature per
    last field."""
    model = create_model("steerable_o2_fourier", num_outputs=3, width=2.0, **SMALL)
    assert model.num_features == round(2.0 * 32 / math.sqrt(128))
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize(("options", "message"), [
    ({"group_samples": 6}, "multiple of 4"),
    ({"group_samples": 4}, r"above 2 \* max_frequency = 6, got 4"),
    ({"max_frequency": 0}, "max_frequency must be >= 1"),
    ({"pool": "max"}, "pool must be one of avg, blur, blur5"),
    ({"head_pool": "ring"}, "head_pool must be one of"),
    ({"norm": "layer"}, "norm must be 'iid' or 'samples', got 'layer'"),
    ({"input_blur": -1.0}, "input_blur must be a Gaussian sigma > 0 in pixels"),
    ({"fine_nonlinearity": [9]}, "fine_nonlinearity must be a list of conv layer numbers 1..7"),
])
def test_bad_options_say_what_is_valid(options: dict[str, object], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        create_model("steerable_o2_fourier", num_outputs=3, **options)


def test_sample_norm_is_a_batch_norm_that_recompute_finds() -> None:
    """norm="samples" puts one batch norm per layer inside the Fourier ReLU (no escnn batch norm left);
    recomputing the statistics (as every training run does) reaches them and changes the eval output."""
    model = create_model("steerable_so2_fourier", num_outputs=3, **SMALL)
    layers = batch_norm_layers(model)
    assert len(layers) == 4 and all(isinstance(m, torch.nn.BatchNorm1d) for m in layers)
    x = torch.randn(8, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = model.eval()(x)
    recompute_batch_norm(model, [x])
    with torch.no_grad():
        assert not torch.allclose(model.eval()(x), before, atol=1e-4)


@pytest.mark.parametrize("kind", ["c", "d"])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_sample_norm_on_the_coefficients_equals_batch_norm_of_the_samples(kind: str, momentum: float | None) -> None:
    """The sample batch norm is computed on the coefficients (statistics via Parseval, the shift on the
    frequency-0 coefficient); it equals ``nn.BatchNorm1d`` over (images * pixels, fields, samples) of the
    sampled values: outputs, input gradients and running statistics in training, outputs in eval."""
    import copy

    gspace = (gspaces.rot2dOnR2 if kind == "c" else gspaces.flipRot2dOnR2)(N=-1, maximum_frequency=8)
    irreps = gspace.fibergroup.bl_irreps(3)
    fields = 3
    relu = FourierReLU(enn.FourierPointwise(gspace, fields, irreps, function="p_relu", type="regular", N=32),
                       sample_norm=True)
    assert relu.norm is not None
    relu.norm.momentum = momentum
    with torch.no_grad():
        relu.norm.weight.uniform_(0.5, 1.5)
        relu.norm.bias.uniform_(-0.5, 0.5)
    reference = copy.deepcopy(relu.norm)

    def by_samples(x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        coeff = x.permute(0, 2, 3, 1).reshape(b, h, w, fields, relu.in_size)
        values = coeff @ relu.A.t()
        values = reference(values.reshape(-1, fields, values.shape[-1])).view_as(values)
        return (torch.relu(values) @ relu.A_inv.t()).reshape(b, h, w, -1).permute(0, 3, 1, 2)

    gen = torch.Generator().manual_seed(0)
    for step in range(3):
        x = (torch.randn(4, fields * relu.in_size, 6, 5, generator=gen) + 0.7 * step).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        out, out_ref = relu(x), by_samples(x_ref)
        assert torch.allclose(out, out_ref, atol=2e-5, rtol=1e-4)
        weight = torch.randn(out.shape, generator=gen)
        (out * weight).sum().backward()
        (out_ref * weight).sum().backward()
        assert x.grad is not None and x_ref.grad is not None
        assert torch.allclose(x.grad, x_ref.grad, atol=2e-5, rtol=1e-4)
    assert torch.allclose(relu.norm.running_mean, reference.running_mean, atol=1e-5, rtol=1e-4)
    assert torch.allclose(relu.norm.running_var, reference.running_var, atol=1e-5, rtol=1e-4)
    assert int(relu.norm.num_batches_tracked) == int(reference.num_batches_tracked) == 3
    relu.eval()
    reference.eval()
    x = torch.randn(2, fields * relu.in_size, 4, 4, generator=gen)
    with torch.no_grad():
        assert torch.allclose(relu(x), by_samples(x), atol=2e-5, rtol=1e-4)
