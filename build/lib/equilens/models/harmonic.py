"""Harmonic Network (Worrall, Garbin, Turmukhambetov and Brostow 2017, "Harmonic Networks: Deep
Translation and Rotation Equivariance", CVPR; arXiv:1612.04642), written for equilens.

Filters are circular harmonics ``W_m(r, phi) = R(r) exp(i (m phi + beta))`` with a learnt radial profile
``R`` (one value per ring of radius 0, 1, ..., k // 2 pixels, spread onto the pixel grid by Gaussian
interpolation) and a learnt phase offset ``beta``. Features are complex and come in two rotation-order
streams, m = 0 and m = 1. Cross-correlating a feature of order ``m_in`` with a filter of order ``m_f``
gives order ``m_in + m_f``, so a layer uses filter orders 0 (0 -> 0, 1 -> 1), +1 (0 -> 1) and -1
(1 -> 0) and sums the contributions into each output stream.

Batch norm and the nonlinearity act on magnitudes only and keep the phase:
``f -> f * relu(BN(|f|)) / |f|``. (The public DeepLense harmonic net normalised the real and imaginary
parts separately, which mixes phases and breaks equivariance.) The invariant feature vector is the
spatial mean of ``|f|`` over the last stage, for both streams.

Symmetry, and what holds exactly. Under a rotation of the input by angle ``a`` about the image centre, an
order-m feature map rotates and its phase turns by ``-m a`` (with torch's ``rot90`` direction; see
:func:`harmonic_filters`), so magnitudes are invariant. On the pixel grid this is exact for multiples of
90 degrees because (i) kernels are odd-sized and centred, and sampled so that ``rot90`` of an order-m
filter is exactly ``i**m`` times the filter (the angular factor is ``(x + i y) / r``, with no
trigonometric rounding); (ii) convolutions have stride 1 and symmetric zero padding; (iii) every
down-sampling is an average pool that keeps the grid centre fixed for any size (kernel 3, padding 1 on
odd sizes, kernel 2 on even sizes, chosen per axis); (iv) the head pools magnitudes over all of space.
At other angles it is approximate (filters and images are sampled on a square grid). The registry names
the group ``"SO(2)"``, which :mod:`equilens.models.symmetry` reads as exactly that: exact invariance to the
grid rotations, approximate at 15-45 degrees. Mirror images are NOT covered: a reflection turns an
order-m filter into order -m with the conjugate phase offset, which is not in the filter bank, so the
net is not flip-invariant.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from equilens.errors import ModelError
from equilens.models.base import LensModel
from equilens.models.registry import register_model

#: Small constant inside the square root of a magnitude (keeps the gradient finite at f = 0).
MAGNITUDE_EPS = 1e-8


def centre_preserving_pool(x: torch.Tensor) -> torch.Tensor:
    """Average-pool by 2 keeping the grid centre fixed, for any height and width.

    A pool of kernel ``k``, stride 2 and padding ``p`` maps the centre of an ``n``-pixel axis onto the
    centre of the output exactly when ``n + 2 p - k`` is even; we use ``k = 3, p = 1`` on odd axes and
    ``k = 2, p = 0`` on even ones, so the pool commutes with ``rot90`` (and flips) about the centre.

    Args:
        x: (B, C, H, W).

    Returns:
        (B, C, ceil(H / 2), ceil(W / 2)) for odd axes, (H / 2, W / 2) for even ones.
    """
    kh, ph = (3, 1) if x.shape[-2] % 2 else (2, 0)
    kw, pw = (3, 1) if x.shape[-1] % 2 else (2, 0)
    return F.avg_pool2d(x, (kh, kw), stride=2, padding=(ph, pw))


class RadialBasis(nn.Module):
    """Gaussian interpolation of ring values onto a centred, odd ``k x k`` pixel grid.

    Buffers:
        weights: (n_rings, k, k): weight of ring ``j`` (radius ``j`` pixels) at each pixel, zero outside
            the disk of radius ``k // 2 + 0.5``; the rows are the offset ``y`` (down) and the columns the
            offset ``x`` (right) from the centre.
        angular: (2, k, k): real and imaginary part of ``(x + i y) / r`` (zero at the centre), the
            order-1 angular factor ``exp(i phi)``.
    """

    weights: torch.Tensor
    angular: torch.Tensor

    def __init__(self, kernel_size: int, sigma: float = 0.5) -> None:
        super().__init__()
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ModelError(f"harmonic kernels must have an odd size >= 3 (centred grid), got {kernel_size}")
        self.kernel_size = kernel_size
        half = kernel_size // 2
        offsets = torch.arange(-half, half + 1, dtype=torch.float64)
        y, x = torch.meshgrid(offsets, offsets, indexing="ij")
        r = torch.sqrt(x * x + y * y)
        rings = torch.arange(0, half + 1, dtype=torch.float64)
        w = torch.exp(-((r[None] - rings[:, None, None]) ** 2) / (2.0 * sigma**2))
        w = w * (r <= half + 0.5)[None]
        safe_r = torch.where(r > 0, r, torch.ones_like(r))
        ang = torch.stack([x / safe_r, y / safe_r]) * (r > 0)[None]
        self.register_buffer("weights", w.float(), persistent=False)
        self.register_buffer("angular", ang.float(), persistent=False)

    @property
    def n_rings(self) -> int:
        return int(self.weights.shape[0])

    def filters(self, radial: torch.Tensor, phase: torch.Tensor, order: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``R(r) exp(i (order * phi + beta))`` for a bank of radial profiles.

        Args:
            radial: (O, I, n_rings) ring values (for ``order != 0`` the ring at r = 0 is ignored: the
                angular factor is undefined there and the filter is zero at the centre).
            phase: (O, I) phase offsets beta in radians.
            order: rotation order m in {-1, 0, 1}.

        Returns:
            real and imaginary parts, each (O, I, k, k).
        """
        profile = torch.einsum("oij,jyx->oiyx", radial, self.weights)
        cos_b, sin_b = torch.cos(phase)[..., None, None], torch.sin(phase)[..., None, None]
        if order == 0:
            return profile * cos_b, profile * sin_b
        if order not in (1, -1):
            raise ModelError(f"rotation order must be -1, 0 or 1, got {order}")
        ca, sa = self.angular[0], self.angular[1] * order  # exp(i m phi) for m = +-1
        # (ca + i sa) * (cos b + i sin b)
        return profile * (ca * cos_b - sa * sin_b), profile * (ca * sin_b + sa * cos_b)


def harmonic_filters(kernel_size: int, radial: torch.Tensor, phase: torch.Tensor, order: int) -> torch.Tensor:
    """Complex filter bank ``R(r) exp(i (m phi + beta))`` as a complex tensor (O, I, k, k).

    ``phi`` is measured from the +x axis (columns, right) towards +y (rows, down). With this convention
    ``torch.rot90(W, 1, dims=(-2, -1)) == exp(i m pi / 2) * W`` exactly, and cross-correlating a map
    rotated by ``torch.rot90(., 1)`` gives the rotated response times ``exp(-i m pi / 2)``.
    """
    re, im = RadialBasis(kernel_size).filters(radial, phase, order)
    return torch.complex(re, im)


class HarmonicConv(nn.Module):
    """A harmonic cross-correlation between order-0/1 complex streams.

    Feature layout (real tensor): channels ``[Re(stream 0), Re(stream 1), Im(stream 0), Im(stream 1)]``,
    i.e. (B, 2 * (c0 + c1), H, W). A real-valued input (the image) is declared with ``real_input=True``
    and has layout (B, c0, H, W) of order 0.

    Args:
        in_orders: (c0, c1) input channels of order 0 and 1 (c1 must be 0 for a real input).
        out_orders: (d0, d1) output channels of order 0 and 1.
        kernel_size: odd filter size in pixels.
        real_input: the input is a real order-0 image.
    """

    def __init__(self, in_orders: tuple[int, int], out_orders: tuple[int, int], kernel_size: int = 5,
                 real_input: bool = False) -> None:
        super().__init__()
        c0, c1 = in_orders
        d0, d1 = out_orders
        if real_input and c1:
            raise ModelError("a real input has only rotation order 0 (c1 must be 0)")
        self.in_orders, self.out_orders, self.real_input = (c0, c1), (d0, d1), real_input
        self.basis = RadialBasis(kernel_size)
        self.padding = kernel_size // 2
        n = self.basis.n_rings
        # one (radial, phase) pair of parameters per (out stream, in stream) block with non-empty size
        self.blocks = nn.ParameterDict()
        for mo, d in ((0, d0), (1, d1)):
            for mi, c in ((0, c0), (1, c1)):
                if d and c:
                    self.blocks[f"r{mo}{mi}"] = nn.Parameter(torch.empty(d, c, n))
                    self.blocks[f"b{mo}{mi}"] = nn.Parameter(torch.empty(d, c))
        self.bias = None  # no bias: a constant added to an order-1 field would break equivariance
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-style initialisation of ring values (fan-in = input channels x filter area), uniform phases."""
        k = self.basis.kernel_size
        fan_in = max(1, sum(self.in_orders)) * k * k * 0.5
        for name, p in self.blocks.items():
            with torch.no_grad():
                if name.startswith("r"):
                    p.normal_(0.0, math.sqrt(2.0 / fan_in))
                else:
                    p.uniform_(-math.pi, math.pi)

    def complex_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary parts of the whole layer's filter bank, each (d0 + d1, c0 + c1, k, k)."""
        (c0, c1), (d0, d1) = self.in_orders, self.out_orders
        k = self.basis.kernel_size
        ref = next(iter(self.blocks.values()))
        wr = ref.new_zeros(d0 + d1, c0 + c1, k, k)
        wi = ref.new_zeros(d0 + d1, c0 + c1, k, k)
        out_slices = {0: slice(0, d0), 1: slice(d0, d0 + d1)}
        in_slices = {0: slice(0, c0), 1: slice(c0, c0 + c1)}
        for mo in (0, 1):
            for mi in (0, 1):
                key = f"{mo}{mi}"
                if f"r{key}" not in self.blocks:
                    continue
                re, im = self.basis.filters(self.blocks[f"r{key}"], self.blocks[f"b{key}"], mo - mi)
                wr[out_slices[mo], in_slices[mi]] = re
                wi[out_slices[mo], in_slices[mi]] = im
        return wr, wi

    def real_weight(self) -> torch.Tensor:
        """The equivalent real convolution weight on the packed layout."""
        wr, wi = self.complex_weight()
        if self.real_input:
            return torch.cat([wr, wi], dim=0)  # (2D, C): Re out = Wr x, Im out = Wi x
        return torch.cat([torch.cat([wr, -wi], dim=1), torch.cat([wi, wr], dim=1)], dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2 (c0 + c1), H, W) (or (B, c0, H, W) for a real input) -> (B, 2 (d0 + d1), H, W)."""
        return F.conv2d(x, self.real_weight(), padding=self.padding)


def magnitude(x: torch.Tensor) -> torch.Tensor:
    """|f| of a packed complex tensor (B, 2C, H, W) -> (B, C, H, W)."""
    parts = x.unflatten(1, (2, -1))  # (B, 2, C, H, W): real, imaginary
    return torch.sqrt(parts.square().sum(dim=1) + MAGNITUDE_EPS)


class MagnitudeBNReLU(nn.Module):
    """Batch norm and ReLU on magnitudes, phase kept: ``f -> f * relu(BN(|f|)) / |f|``.

    The batch norm (with its learnt scale and shift, which plays the role of the paper's learnt bias in
    ``relu(|f| + b)``) sees only the rotation-invariant magnitudes, so the layer maps an order-m field to
    an order-m field with the same phase at every pixel.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2C, H, W) -> (B, 2C, H, W)."""
        mag = magnitude(x)
        gain = F.relu(self.bn(mag)) / mag
        return (x.unflatten(1, (2, -1)) * gain[:, None]).flatten(1, 2)


class HarmonicNet(LensModel):
    """Harmonic network: a stem, stages of harmonic convolutions with centre-preserving pooling, and an
    invariant head pooling magnitudes.

    Args:
        in_channels: image channels.
        num_outputs: output width.
        widths: complex channels per rotation order in each stage (the same for m = 0 and m = 1).
        blocks: harmonic convolutions per stage after the first (stage 0 is the stem: one layer).
        kernel_size: odd filter size (pixels).
        dropout: dropout before the head.

    The first stage runs at full resolution; each later stage starts with a centre-preserving 2x average
    pool. ``num_features = 2 * widths[-1]`` (magnitudes of both orders).
    """

    def __init__(self, in_channels: int = 1, num_outputs: int = 3, widths: tuple[int, ...] = (8, 8, 16, 32),
                 blocks: tuple[int, ...] = (1, 1, 2, 2), kernel_size: int = 5, dropout: float = 0.0) -> None:
        widths, blocks = tuple(int(w) for w in widths), tuple(int(b) for b in blocks)
        if len(widths) != len(blocks) or not widths or min(widths) < 1 or min(blocks) < 1:
            raise ModelError(f"widths and blocks must be equally long lists of positive ints, got "
                             f"widths={widths}, blocks={blocks}")
        n_pools = len(widths) - 1
        super().__init__(in_channels, num_outputs, num_features=2 * widths[-1],
                         min_input_size=max(8, 2 ** (n_pools + 1)), dropout=dropout)
        self.widths, self.blocks_per_stage, self.kernel_size = widths, blocks, kernel_size
        stages = []
        prev: tuple[int, int] = (in_channels, 0)
        real = True
        for w, nb in zip(widths, blocks, strict=True):
            layers: list[nn.Module] = []
            for _ in range(nb):
                layers.append(HarmonicConv(prev, (w, w), kernel_size, real_input=real))
                layers.append(MagnitudeBNReLU(2 * w))
                prev, real = (w, w), False
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)

    def forward_complex(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) image -> packed complex features of the last stage (B, 2 * 2 * widths[-1], h, w)."""
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = centre_preserving_pool(x)
            x = stage(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_features): spatial means of |f| for every channel of both orders,
        invariant under 90-degree rotations exactly (approximately at other angles)."""
        return magnitude(self.forward_complex(x)).mean(dim=(-2, -1))


@register_model(
    "harmonic_net",
    symmetry="SO(2)",
    family="harmonic",
    description="Harmonic Network (Worrall et al. 2017): circular-harmonic filters, orders m=0,1, "
                "magnitude BN/ReLU, magnitude pooling; exact for 90 deg, approximate between, no flips",
)
def harmonic_net(in_channels: int = 1, num_outputs: int = 3, **kwargs: object) -> HarmonicNet:
    """Build the default harmonic network (widths 8-8-16-32 per order, 5x5 filters)."""
    return HarmonicNet(in_channels, num_outputs, **kwargs)  # type: ignore[arg-type]
