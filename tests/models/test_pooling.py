"""The anti-aliased downsampling of the steerable nets: values and grid symmetry."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from equilens.models.steerable import (
    SymmetricPool2d,
    binomial5_blur,
    binomial_blur,
    blur5_downsample_even,
    blur_downsample_even,
)


def _blur_reference(x: torch.Tensor) -> torch.Tensor:
    """[1, 2, 1] / 4 blur per channel with zero padding, written as explicit shifted sums."""
    p = F.pad(x, (1, 1, 1, 1))
    y = 0.25 * p[..., :, :-2] + 0.5 * p[..., :, 1:-1] + 0.25 * p[..., :, 2:]
    return 0.25 * y[..., :-2, :] + 0.5 * y[..., 1:-1, :] + 0.25 * y[..., 2:, :]


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 5, 9, 6), (3, 2, 7, 7)])
def test_blur_matches_the_shifted_sums(shape: tuple[int, int, int, int]) -> None:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(binomial_blur(x), _blur_reference(x), atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 4, 16, 6)])
def test_fused_even_downsample_equals_blur_then_average(shape: tuple[int, int, int, int]) -> None:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    two_step = F.avg_pool2d(_blur_reference(x), 2, stride=2)
    assert torch.allclose(blur_downsample_even(x), two_step, atol=1e-6)


def _blur5_reference(x: torch.Tensor) -> torch.Tensor:
    """[1, 4, 6, 4, 1] / 16 blur per channel with zero padding, as explicit shifted sums."""
    w = [1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16]
    p = F.pad(x, (2, 2, 2, 2))
    n, m = x.shape[-2:]
    y = sum(w[i] * p[..., :, i:i + m] for i in range(5))
    return sum(w[i] * y[..., i:i + n, :] for i in range(5))


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 4, 16, 6)])
def test_blur5_and_its_fused_downsample(shape: tuple[int, int, int, int]) -> None:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(binomial5_blur(x), _blur5_reference(x), atol=1e-6)
    two_step = F.avg_pool2d(_blur5_reference(x), 2, stride=2)
    assert torch.allclose(blur5_downsample_even(x), two_step, atol=1e-6)
    assert torch.allclose(SymmetricPool2d("blur5")(x), two_step, atol=1e-6)


@pytest.mark.parametrize("n", [3, 5, 7])
def test_binomial_blur_of_any_width_and_its_fused_downsample(n: int) -> None:
    """The n-tap binomial blur equals explicit shifted sums with Pascal's weights, and the fused stride-2
    pass equals the blur then the 2x2 average (7 taps: the ``blur7`` pool mode)."""
    x = torch.randn(2, 3, 12, 10, generator=torch.Generator().manual_seed(4))
    w = [math.comb(n - 1, k) / 2 ** (n - 1) for k in range(n)]
    p, (h, m) = F.pad(x, (n // 2,) * 4), x.shape[-2:]
    y = sum(w[i] * p[..., :, i:i + m] for i in range(n))
    ref = sum(w[i] * y[..., i:i + h, :] for i in range(n))
    assert torch.allclose(binomial_blur(x, n), ref, atol=1e-6)
    two_step = F.avg_pool2d(ref, 2, stride=2)
    assert torch.allclose(blur_downsample_even(x, n), two_step, atol=1e-6)
    assert torch.allclose(SymmetricPool2d({3: "blur", 5: "blur5", 7: "blur7"}[n])(x), two_step, atol=1e-6)


@pytest.mark.parametrize("mode", ["blur", "blur5", "blur7", "maxblur", "avg", "max"])
@pytest.mark.parametrize("size", [(8, 8), (9, 9), (10, 7)])
def test_pool_commutes_with_the_grid_symmetries(mode: str, size: tuple[int, int]) -> None:
    pool = SymmetricPool2d(mode)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(pool(x.flip(-1)), pool(x).flip(-1), atol=1e-6)
    assert torch.allclose(pool(x.flip(-2)), pool(x).flip(-2), atol=1e-6)
    if size[0] == size[1]:
        assert torch.allclose(pool(torch.rot90(x, 1, (-2, -1))), torch.rot90(pool(x), 1, (-2, -1)), atol=1e-6)


def test_input_blur_is_a_normalised_gaussian_that_keeps_the_grid_symmetries() -> None:
    from equilens.errors import ModelError
    from equilens.models import create_model
    from equilens.models.steerable import GaussianBlur

    blur = GaussianBlur(1.0)
    point = torch.zeros(1, 1, 15, 15)
    point[0, 0, 7, 7] = 1.0
    out = blur(point)[0, 0]
    assert out.sum().item() == pytest.approx(1.0, abs=1e-6)  # the kernel's reach (3 px) stays in the frame
    yy, xx = torch.meshgrid(torch.arange(15.0) - 7, torch.arange(15.0) - 7, indexing="ij")
    assert (out * (xx**2 + yy**2)).sum().item() == pytest.approx(2.0, rel=0.01)  # variance 1 px^2 per axis
    x = torch.randn(2, 1, 33, 33, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(blur(torch.rot90(x, 1, (2, 3))), torch.rot90(blur(x), 1, (2, 3)), atol=1e-6)
    assert torch.allclose(blur(torch.flip(x, (3,))), torch.flip(blur(x), (3,)), atol=1e-6)
    model = create_model("steerable_d4", width=0.5, input_blur=0.8).eval()
    ref = model(x)
    for t in (torch.rot90(x, 1, (2, 3)), torch.flip(x, (2,))):
        assert torch.allclose(model(t), ref, atol=1e-5 * ref.abs().max().item())
    # it acts: a blurred model differs from the same weights without the blur
    torch.manual_seed(0)
    plain = create_model("steerable_d4", width=0.5).eval()
    torch.manual_seed(0)
    blurred = create_model("steerable_d4", width=0.5, input_blur=0.8).eval()
    assert not torch.allclose(plain(x), blurred(x))
    for bad in (-1.0, float("nan")):
        with pytest.raises(ModelError, match="input_blur"):
            create_model("steerable_c8", input_blur=bad)


@pytest.mark.parametrize("nonlinearity", ["elu", "gelu", "softplus"])
def test_smooth_nonlinearities_keep_the_grid_symmetries_and_act(nonlinearity: str) -> None:
    from equilens.models import create_model

    x = torch.randn(2, 1, 33, 33, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    model = create_model("steerable_d4", width=0.5, nonlinearity=nonlinearity).eval()
    ref = model(x)
    for t in (torch.rot90(x, 1, (2, 3)), torch.flip(x, (3,))):
        assert torch.allclose(model(t), ref, atol=1e-5 * ref.abs().max().item())
    torch.manual_seed(0)
    relu = create_model("steerable_d4", width=0.5).eval()  # same weights, the default ReLU
    assert not torch.allclose(relu(x), ref)


def test_unknown_nonlinearity_names_the_valid_ones() -> None:
    from equilens.errors import ModelError
    from equilens.models import create_model

    with pytest.raises(ModelError, match="relu, elu, gelu, softplus"):
        create_model("steerable_c8", nonlinearity="tanh")


@pytest.mark.parametrize("name", ["steerable_d8", "steerable_c8"])
@pytest.mark.parametrize("group_pool", ["mean", "fourier"])
def test_group_pools_keep_the_grid_symmetries_and_act(name: str, group_pool: str) -> None:
    from equilens.models import create_model

    x = torch.randn(2, 1, 33, 33, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    model = create_model(name, width=0.5, group_pool=group_pool).eval()
    with torch.no_grad():
        ref = model(x)
        for t in (torch.rot90(x, 1, (2, 3)), torch.rot90(x, 2, (2, 3)), *([torch.flip(x, (3,))] * (name[-2] == "d"))):
            assert torch.allclose(model(t), ref, atol=1e-5 * ref.abs().max().item())
        torch.manual_seed(0)
        default = create_model(name, width=0.5).eval()  # same body weights, the max over the group
        assert not torch.allclose(default.forward_features(x), model.forward_features(x)[:, :default.num_features])


def test_fourier_group_pool_is_the_dft_magnitude_over_the_rotations() -> None:
    """For C_N the invariants are |DFT| of each field over its N channels, frequencies 0..N/2, scaled so that
    their squares sum to the field's (Parseval); a fractional cyclic shift of a band-limited field (what a
    rotation by a fraction of 360/N does to it) leaves them unchanged and changes the max over the channels."""
    from equilens.models import create_model

    pool = create_model("steerable_c8", width=0.5, group_pool="fourier").group_pool
    n = 8
    k = torch.arange(n, dtype=torch.float64)

    def field(s: float) -> torch.Tensor:  # frequencies 0, 1 and 3, shifted by s channels
        return 1.0 + 0.7 * torch.cos(2 * torch.pi * (k - s) / n) + 0.4 * torch.sin(2 * torch.pi * 3 * (k - s) / n + 0.3)

    def invariants(f: torch.Tensor) -> torch.Tensor:
        return pool(f.float().view(1, n, 1, 1).repeat(1, pool.n_fields, 1, 1)).view(pool.n_fields, -1)[0].double()

    f = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    weight = torch.tensor([1.0, 2.0, 2.0, 2.0, 1.0], dtype=torch.float64) / n
    torch.testing.assert_close(invariants(f), torch.fft.rfft(f).abs() * weight.sqrt(), atol=1e-5, rtol=1e-5)
    for s in (0.37, 0.5):
        torch.testing.assert_close(invariants(field(s)), invariants(field(0.0)), atol=1e-5, rtol=1e-5)
    maxes = [float(field(s).max()) for s in (0.0, 0.37, 0.5)]
    assert max(maxes) - min(maxes) > 0.05


def test_unknown_group_pool_names_the_valid_ones() -> None:
    from equilens.errors import ModelError
    from equilens.models import create_model

    with pytest.raises(ModelError, match="max, mean, fourier"):
        create_model("steerable_d8", group_pool="norm")


@pytest.mark.parametrize("size", [(8, 8), (9, 9), (10, 7)])
def test_fine_grid_nonlinearity_keeps_the_shape_and_the_grid_symmetries(size: tuple[int, int]) -> None:
    from equilens.models.steerable import FineGridNonlinearity

    act = FineGridNonlinearity(torch.nn.ReLU())
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(4))
    assert act(x).shape == x.shape
    assert torch.allclose(act(x.flip(-1)), act(x).flip(-1), atol=1e-6)
    assert torch.allclose(act(x.flip(-2)), act(x).flip(-2), atol=1e-6)
    if size[0] == size[1]:
        assert torch.allclose(act(torch.rot90(x, 1, (-2, -1))), torch.rot90(act(x), 1, (-2, -1)), atol=1e-6)


@pytest.mark.parametrize("frequency", [(0.25, 0.0), (0.2, 0.1)])
def test_fine_grid_relu_depends_less_on_where_a_wave_falls_on_the_pixels(frequency: tuple[float, float]) -> None:
    """ReLU of a sampled cosine (cycles per pixel ``frequency``) has harmonics that the grid aliases onto
    zero frequency, so the mean of the plain ReLU's samples depends on the wave's phase against the pixels
    (as it does on a sub-pixel shift of the scene). On the 2x finer grid, then low-passed back, that
    dependence is at least 4x smaller (measured: 4.7x and 5.6x)."""
    import math

    from equilens.models.steerable import FineGridNonlinearity

    fine = FineGridNonlinearity(torch.nn.ReLU())
    yy, xx = torch.meshgrid(torch.arange(48.0, dtype=torch.float64), torch.arange(48.0, dtype=torch.float64),
                            indexing="ij")
    plain_means, fine_means = [], []
    for phase in torch.linspace(0, 2 * math.pi, 17, dtype=torch.float64)[:-1]:
        wave = torch.cos(2 * math.pi * (frequency[0] * xx + frequency[1] * yy) + phase)[None, None]
        plain_means.append(F.relu(wave)[..., 8:-8, 8:-8].mean())  # inside, away from the zero padding
        fine_means.append(fine(wave)[..., 8:-8, 8:-8].mean())
    plain_spread, fine_spread = torch.stack(plain_means).std(), torch.stack(fine_means).std()
    assert plain_spread > 1e-3  # the control: the plain ReLU's mean does move with the phase
    assert fine_spread < plain_spread / 4


def test_fine_nonlinearity_option_keeps_the_model_exact_and_acts() -> None:
    from equilens.errors import ModelError
    from equilens.models import create_model
    from equilens.models.steerable import FineGridNonlinearity

    x = torch.randn(2, 1, 33, 33, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(0)
    model = create_model("steerable_d8_smooth", width=0.5, fine_nonlinearity=[3, 4, 5, 6, 7]).eval()
    fine_layers = [m for m in model.modules() if isinstance(m, FineGridNonlinearity)]
    assert len(fine_layers) == 5  # conv layers 3..7 of the 7
    ref = model(x)
    for t in (torch.rot90(x, 1, (2, 3)), torch.flip(x, (3,)), torch.flip(x, (2,))):
        assert torch.allclose(model(t), ref, atol=1e-5 * ref.abs().max().item())
    assert model.feature_fields(x, 4).scalar.shape[-1] == 5  # depth bookkeeping unchanged: 33 -> 17 -> 9 -> 5
    torch.manual_seed(0)
    plain = create_model("steerable_d8_smooth", width=0.5).eval()  # same weights, plain ReLU
    assert not torch.allclose(plain(x), ref)
    for bad in ([0], [3, 8], 3, [2.0]):
        with pytest.raises(ModelError, match=r"fine_nonlinearity must be a list of conv layer numbers 1\.\.7"):
            create_model("steerable_d8_smooth", fine_nonlinearity=bad)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 4, 7, 10), (1, 1, 1, 3)])
def test_bilinear_upsample2_equals_interpolate(shape: tuple[int, int, int, int]) -> None:
    from equilens.models.steerable import bilinear_upsample2

    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    expected = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(bilinear_upsample2(x), expected, atol=1e-12)
