"""E(2)-steerable CNNs (Weiler and Cesa 2019, "General E(2)-Equivariant Steerable CNNs") built with escnn.

Two families share one layout (a list of conv layers, each optionally followed by a 2x downsampling):

- ``steerable_c{N}`` / ``steerable_d{N}``: regular feature fields of the cyclic group C_N or dihedral
  group D_N, escnn ``InnerBatchNorm``, pointwise ReLU, anti-aliased 2x downsampling after the ReLU
  (option ``pool``, default ``"blur"``), and an invariant head: max over the group (``GroupPooling``)
  then a global spatial mean. The layout is tuned for CPU speed: one cheap 5x5 layer at full resolution,
  then 2x downsampling.

  Why the pooling matters: with max pooling before the nonlinearity (``pool="max"``, the former
  layout) the nets were exactly invariant on the grid but, after a short training on a rotation-invariant
  task, changed at 30-45 degrees nearly as much as ResNet-18 (their invariance there only came from
  smooth untrained filters); a 2x max pool and a ReLU both create frequencies that the following
  subsampling aliases, differently for every rotation. Averaging after the ReLU, with a [1, 2, 1] blur
  first, halves that change; 5x5 kernels, a frequency cut-off or a disk-shaped head pool did not help
  measurably (README, "Symmetry of the models").
- ``steerable_d8_smooth`` and ``steerable_d8_fine`` (the default equivariant model): the same D8 net with
  other option defaults (:data:`VARIANTS`), chosen by measuring the off-grid change after training on lens
  data: one pool fewer, a wider blur, the group mean in the head, and (``_fine``) the ReLU of conv layers 3
  and 4 evaluated on a 2x finer grid (:class:`FineGridNonlinearity`).
- ``steerable_so2`` / ``steerable_o2``: irreducible fields of SO(2) / O(2) with frequencies 0..L
  (band-limited), gated nonlinearities (Weiler et al. 2018, "3D Steerable CNNs"), ``IIDBatchNorm2d``,
  and an invariant head: the norm of every field then a global spatial mean.

Exactness on the pixel grid. A layer maps the rotated grid to the rotated grid only if its sampling
windows are symmetric about the grid centre. Convolutions use stride 1, odd kernels and padding k//2.
Downsampling (:class:`SymmetricPool2d`) picks, per axis and at run time, a 2-pixel window for an even
size (n -> n/2) and a 3-pixel window with padding 1 for an odd size (n -> (n+1)/2): in both cases the
windows tile the axis symmetrically, so every input size above the minimum, even or odd, keeps exact
invariance to the grid transforms in the group (90-degree rotations, and flips for D_N / O(2)).
Other angles are only approximately invariant (the pixel grid and the filters' sampling break it).

Widths are given in channels for a group of 8 elements and scaled with the group order |G| as in
Weiler and Cesa (fields ~ 1/sqrt(|G|), which keeps the parameter count roughly constant):
``fields = max(1, round(width * channels / sqrt(8 |G|)))``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from equilens.errors import ModelError
from equilens.models._escnn_compat import enn, gspaces
from equilens.models.base import FeatureFields, LensModel
from equilens.models.registry import ModelEntry, add_entry, register_family

#: Group orders N supported by ``steerable_c{N}`` and ``steerable_d{N}``.
SUPPORTED_ORDERS: tuple[int, ...] = (1, 2, 4, 8, 12, 16)


@dataclass(frozen=True)
class ConvSpec:
    """One steerable conv layer: ``channels`` (for |G| = 8; scaled with the group), square ``kernel``
    (odd, pixels), and whether a :class:`SymmetricPool2d` (2x downsampling) follows it."""

    channels: int
    kernel: int = 3
    pool: bool = False


#: Layout of ``steerable_*`` (of the former default model ``steerable_d8`` too): 150 px -> 75 -> 38 -> 19 -> 10.
#: Designed for CPU training speed: only the first layer (16 channels = 2 D4 fields, 5x5) runs at full
#: resolution and only the second (32 channels) at half; the width goes to the small late maps.
DEFAULT_LAYOUT: tuple[ConvSpec, ...] = (
    ConvSpec(16, 5, pool=True),
    ConvSpec(32, 3, pool=True),
    ConvSpec(64, 3),
    ConvSpec(64, 3, pool=True),
    ConvSpec(128, 3),
    ConvSpec(128, 3, pool=True),
    ConvSpec(256, 3),
)

#: :data:`DEFAULT_LAYOUT` without its last pool (a final map of 1/8 of the input's side instead of 1/16):
#: the layout of ``steerable_d8_smooth`` (150 px -> 75 -> 38 -> 19). Same filters and parameter count.
SMOOTH_LAYOUT: tuple[ConvSpec, ...] = (*DEFAULT_LAYOUT[:5], ConvSpec(128, 3), DEFAULT_LAYOUT[6])


#: Downsampling modes of :class:`SymmetricPool2d` (the ``pool`` option of every steerable family).
POOL_MODES: tuple[str, ...] = ("max", "avg", "blur", "blur5", "blur7", "maxblur")

#: The pool modes that are linear maps (valid for any field type, not only permutation / regular fields).
LINEAR_POOL_MODES: tuple[str, ...] = tuple(m for m in POOL_MODES if m not in ("max", "maxblur"))

#: Taps of the binomial blur before the 2x average of each anti-aliased pool mode.
BLUR_TAPS: dict[str, int] = {"blur": 3, "maxblur": 3, "blur5": 5, "blur7": 7}

#: Pointwise nonlinearities of the regular-field nets (the ``nonlinearity`` option). Any pointwise map
#: commutes with the permutation of a regular field's channels, so each keeps the group exact; the smooth
#: ones create weaker high harmonics than ReLU's kink, which the downsampling would alias.
#: ReLU runs in place, as it did before the option existed (same memory and speed for the default).
NONLINEARITIES: dict[str, Callable[[], nn.Module]] = {"relu": functools.partial(nn.ReLU, inplace=True),
                                                      "elu": nn.ELU, "gelu": nn.GELU, "softplus": nn.Softplus}


def separable_filter(x: torch.Tensor, taps: Sequence[float], stride: int = 1, padding: int = 0) -> torch.Tensor:
    """The 1-D kernel ``taps`` along both axes of every channel, with zero padding and stride:
    (B, C, H, W) -> (B, C, H', W'). Depthwise (groups=C) rather than a batch of B*C one-channel images:
    the same sums, 5x faster on CPU."""
    c, n = x.shape[1], len(taps)
    k = x.new_tensor(list(taps))
    y = F.conv2d(x, k.view(1, 1, 1, n).expand(c, 1, 1, n), stride=(1, stride), padding=(0, padding), groups=c)
    return F.conv2d(y, k.view(1, 1, n, 1).expand(c, 1, n, 1), stride=(stride, 1), padding=(padding, 0), groups=c)


def binomial_taps(n: int) -> tuple[float, ...]:
    """The ``n`` binomial coefficients C(n - 1, k) / 2**(n - 1): [1, 2, 1] / 4 for n = 3. Those of n + 1 are
    the n-tap blur followed by the 2-tap average [1, 1] / 2 (Pascal's rule), which fuses a blur with a 2x
    average pool."""
    return tuple(math.comb(n - 1, k) / 2 ** (n - 1) for k in range(n))


def binomial_blur(x: torch.Tensor, n: int = 3) -> torch.Tensor:
    """Separable ``n``-tap binomial blur (default [1, 2, 1] / 4), zero padding n // 2, stride 1:
    (B, C, H, W) -> (B, C, H, W) for odd n.

    Symmetric about every pixel, so it commutes with the grid transforms; it removes most of the
    content above half the Nyquist frequency that a 2x downsampling would alias (more, the wider it is).
    """
    return separable_filter(x, binomial_taps(n), padding=n // 2)


def blur_downsample_even(x: torch.Tensor, n: int = 3) -> torch.Tensor:
    """:func:`binomial_blur` (``n`` taps) then the 2x2 stride-2 average, in one pass: (B, C, H, W) ->
    (B, C, H/2, W/2), H and W even.

    The two compose to the (n + 1)-tap binomial kernel at stride 2 with zero padding n // 2 ([1, 3, 3, 1] / 8
    for n = 3; equal to the two-step result up to float rounding), computing a quarter of the blurred
    pixels. Output pixel j is centred on input position 2j + 1/2, as for the 2x2 average, so the grid centre
    stays where it is.
    """
    return separable_filter(x, binomial_taps(n + 1), stride=2, padding=n // 2)


def blur5_downsample_even(x: torch.Tensor) -> torch.Tensor:
    """[1, 4, 6, 4, 1] / 16 blur then the 2x2 average in one pass (:func:`blur_downsample_even` with n = 5:
    [1, 5, 10, 10, 5, 1] / 32 at stride 2, zero padding 2)."""
    return blur_downsample_even(x, 5)


def binomial5_blur(x: torch.Tensor) -> torch.Tensor:
    """Separable [1, 4, 6, 4, 1] / 16 blur with zero padding 2, stride 1: (B, C, H, W) -> (B, C, H, W)."""
    return binomial_blur(x, 5)


def bilinear_upsample2(x: torch.Tensor) -> torch.Tensor:
    """2x bilinear upsampling, equal to ``F.interpolate(x, scale_factor=2, mode="bilinear",
    align_corners=False)`` (edges clamped): (B, C, H, W) -> (B, C, 2H, 2W). Written as a separable
    depthwise transposed convolution with taps [1, 3, 3, 1] / 4 on the edge-replicated input, whose
    backward pass is a plain strided convolution, faster on CPU than ``interpolate``'s."""
    c = x.shape[1]
    k = x.new_tensor([0.25, 0.75, 0.75, 0.25])
    x = F.pad(x, (1, 1, 1, 1), mode="replicate")
    y = F.conv_transpose2d(x, k.view(1, 1, 1, 4).expand(c, 1, 1, 4), stride=(1, 2), padding=(0, 3), groups=c)
    return F.conv_transpose2d(y, k.view(1, 1, 4, 1).expand(c, 1, 4, 1), stride=(2, 1), padding=(3, 0), groups=c)


class FineGridNonlinearity(nn.Module):
    """A pointwise nonlinearity evaluated on a 2x finer grid: bilinear 2x upsampling
    (:func:`bilinear_upsample2`), the nonlinearity, then :func:`blur5_downsample_even` back to the input's
    grid; (B, C, H, W) -> (B, C, H, W), any H, W.

    A kink such as ReLU's creates harmonics above the grid's Nyquist frequency, which the grid itself
    aliases: the feature map then depends on where the scene falls on the pixels, and a rotation off the
    grid (or a sub-pixel shift) moves it. On the finer grid the new harmonics up to twice the Nyquist
    frequency are represented, and the low-pass removes them before the samples return to the coarse grid
    (the alias suppression of Karras et al. 2021, "Alias-free generative adversarial networks", with
    simple separable filters). Both resamplings are symmetric about the grid centre (the upsampled grid's
    2 x 2 blocks are the input's pixels), so the grid's rotations and flips stay exact; being per channel,
    the map keeps a regular field's channel permutation. It also low-passes a linear input slightly: with
    the identity as nonlinearity it is a fixed blur, not the identity.
    """

    def __init__(self, nonlinearity: nn.Module) -> None:
        super().__init__()
        self.nonlinearity = nonlinearity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the depthwise filters run about twice as fast on CPU in the channels-last layout (same values)
        fine = bilinear_upsample2(x.contiguous(memory_format=torch.channels_last))
        return blur5_downsample_even(self.nonlinearity(fine)).contiguous()


class GaussianBlur(nn.Module):
    """Fixed isotropic Gaussian low-pass of every channel: (B, C, H, W) -> (B, C, H, W), zero padding.

    The sampled kernel is symmetric under the grid's rotations and flips, so the blur commutes with them
    exactly; off the grid it removes the content near the Nyquist frequency that sampling aliases (the
    part of an image that changes when the same scene is sampled at other points, e.g. turned by 45
    degrees).

    Args:
        sigma: standard deviation in pixels (> 0); the kernel reaches ceil(3 sigma) pixels each side and is
            normalised to sum 1.
    """

    kernel: torch.Tensor

    def __init__(self, sigma: float) -> None:
        super().__init__()
        if not (math.isfinite(sigma) and sigma > 0):
            raise ModelError(f"input_blur must be a Gaussian sigma > 0 in pixels (or 0 for none), got {sigma}")
        self.sigma = float(sigma)
        radius = math.ceil(3 * sigma)
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)
        k = torch.exp(-0.5 * (t / sigma) ** 2)
        self.register_buffer("kernel", k / k.sum(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, r = x.shape[1], self.kernel.numel() // 2
        k = self.kernel.to(x)
        y = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, r), groups=c)
        return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(r, 0), groups=c)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:g}"


class SymmetricPool2d(nn.Module):
    """2x downsampling whose windows are symmetric about the grid centre, for any H, W.

    Per axis: size n even -> window 2, padding 0 (n/2 outputs); n odd -> window 3, padding 1
    ((n + 1)/2 outputs). (B, C, H, W) -> (B, C, H', W').

    Args:
        mode: ``"max"`` (valid for regular / permutation fields, applied per channel), ``"avg"``
            (linear, valid for every field type), ``"blur"`` (anti-aliased average: a
            :func:`binomial_blur` first), ``"blur5"`` / ``"blur7"`` (the same with a 5- / 7-tap binomial) or
            ``"maxblur"`` (anti-aliased max, Zhang 2019 "Making
            convolutional networks shift-invariant again": a 3x3 stride-1 max, the blur, then the average
            window; for regular fields). Every mode keeps the grid centre fixed.
    """

    def __init__(self, mode: str = "max") -> None:
        super().__init__()
        if mode not in POOL_MODES:
            raise ModelError(f"pool mode must be one of {', '.join(POOL_MODES)}, got {mode!r}")
        self.mode = mode

    @staticmethod
    def window(n: int) -> tuple[int, int]:
        """(kernel, padding) along an axis of ``n`` pixels."""
        return (2, 0) if n % 2 == 0 else (3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, ph = self.window(x.shape[-2])
        kw, pw = self.window(x.shape[-1])
        if self.mode == "max":
            return F.max_pool2d(x, (kh, kw), stride=2, padding=(ph, pw))
        if self.mode == "maxblur":
            x = F.max_pool2d(x, 3, stride=1, padding=1)
        taps = BLUR_TAPS.get(self.mode)
        if taps:
            if kh == 2 and kw == 2:
                return blur_downsample_even(x, taps)
            x = binomial_blur(x, taps)
        return F.avg_pool2d(x, (kh, kw), stride=2, padding=(ph, pw), count_include_pad=False)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


def disk_weights(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(H, W) weights summing to 1: uniform over the pixels whose centres lie in the inscribed disk
    (radius min(H, W) / 2 about the grid centre), zero outside. A mean over them is a spatial pooling
    that a rotation about the centre maps onto itself (up to the disk's pixelation)."""
    yy = torch.arange(height, dtype=like.dtype, device=like.device) - (height - 1) / 2
    xx = torch.arange(width, dtype=like.dtype, device=like.device) - (width - 1) / 2
    inside = (yy[:, None] ** 2 + xx[None, :] ** 2 <= (min(height, width) / 2) ** 2).to(like.dtype)
    return inside / inside.sum()


#: Spatial pooling of the invariant head: ``"mean"`` over the whole map, ``"disk"`` over its inscribed disk.
HEAD_POOLS: tuple[str, ...] = ("mean", "disk")


def spatial_pool(x: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, C, H, W) -> (B, C): mean over all pixels (``"mean"``) or over the inscribed disk (``"disk"``)."""
    if mode == "disk":
        return (x * disk_weights(x.shape[-2], x.shape[-1], x)).sum(dim=(-2, -1))
    return x.mean(dim=(-2, -1))


class EscnnModule(nn.Module):
    """Runs an escnn ``EquivariantModule`` on plain tensors: (B, in_type.size, H, W) -> (B, out_type.size, H', W').

    Keeping plain tensors between layers lets escnn layers mix with plain-torch pooling and gating, and
    lets :func:`equilens.models.export_model` swap each escnn module for its ``export()``.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    @property
    def exported(self) -> bool:
        return not isinstance(self.module, enn.EquivariantModule)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.module, enn.EquivariantModule):
            return self.module(enn.GeometricTensor(x, self.module.in_type)).tensor
        return self.module(x)

    def export_(self) -> None:
        """Replace the escnn module by its plain-torch equivalent (module must be in eval mode)."""
        if isinstance(self.module, enn.EquivariantModule):
            self.module = self.module.export()


_INIT_WEIGHTS = True


@contextlib.contextmanager
def skip_weight_init() -> Iterator[None]:
    """Within this context escnn convolutions skip their (slow, for wide layers) He initialisation.

    For building a model only to count its parameters or to load saved weights into it.
    """
    global _INIT_WEIGHTS
    previous, _INIT_WEIGHTS = _INIT_WEIGHTS, False
    try:
        yield
    finally:
        _INIT_WEIGHTS = previous


def r2conv(in_type: Any, out_type: Any, kernel: int, bias: bool = False,
           frequency_cutoff: float | None = None) -> EscnnModule:
    """escnn ``R2Conv`` with stride 1 and padding kernel // 2 (keeps the grid centre), wrapped for tensors.

    Args:
        kernel: odd kernel size in pixels.
        frequency_cutoff: band limit of the filter basis, as the highest angular frequency per pixel of
            ring radius (escnn's ``frequencies_cutoff`` as a number: a ring of radius r keeps harmonics up
            to ``frequency_cutoff * r``). None keeps escnn's default (up to 2 on the outer ring).
    """
    if kernel % 2 != 1:
        raise ModelError(f"steerable kernels must be odd to keep the grid centre fixed, got {kernel}")
    if frequency_cutoff is not None and frequency_cutoff <= 0:
        raise ModelError(f"frequency_cutoff must be > 0 (frequencies per pixel of radius), got {frequency_cutoff}")
    return EscnnModule(enn.R2Conv(in_type, out_type, kernel, padding=kernel // 2, bias=bias,
                                  frequencies_cutoff=None if frequency_cutoff is None else float(frequency_cutoff),
                                  initialize=_INIT_WEIGHTS))


def make_group(kind: str, order: int) -> Any:
    """The escnn gspace: ``kind`` ``"c"`` -> rotations C_N (N = -1: SO(2)), ``"d"`` -> D_N (-1: O(2))."""
    if kind == "c":
        return gspaces.rot2dOnR2(N=order)
    if kind == "d":
        return gspaces.flipRot2dOnR2(N=order)
    raise ModelError(f"group kind must be 'c' (rotations) or 'd' (rotations and flips), got {kind!r}")


def layer_fields(width: float, channels: int, group_order: int) -> int:
    """Fields of a layer given in ``channels`` for a group of 8 elements, for fields of ``group_order``
    channels each: ``max(1, round(width * channels / sqrt(8 * group_order)))`` (Weiler and Cesa's
    parameter-preserving scaling)."""
    return max(1, round(width * channels / math.sqrt(8 * group_order)))


class RegularSteerableCNN(LensModel):
    """Steerable CNN with regular fields of C_N or D_N and a group- and space-pooled invariant head.

    Input (B, in_channels, H, W) with H, W >= 2**(number of pools); features (B, fields of last layer).

    Args:
        in_channels: image channels (each a scalar field).
        num_outputs: output width.
        kind: ``"c"`` or ``"d"``.
        order: N.
        layout: the conv layers.
        width: multiplier on every layer's channels.
        dropout: dropout before the linear head.
        kernel_size: if given, every layer's kernel (odd, pixels) instead of the layout's.
        pool: downsampling mode (:data:`POOL_MODES`). ``"max"``: conv, pool, batch norm, ReLU; the others
            (anti-aliased) pool after the ReLU: conv, batch norm, ReLU, pool, so that the pool also
            low-passes what the nonlinearity creates.
        frequency_cutoff: band limit of every filter basis (see :func:`r2conv`); None: escnn's default.
        head_pool: spatial pooling of the invariant head (:data:`HEAD_POOLS`).
        input_blur: if > 0, a fixed :class:`GaussianBlur` of this sigma (pixels) before the first layer.
        nonlinearity: pointwise nonlinearity after every batch norm (:data:`NONLINEARITIES`).
        group_pool: invariant map of the last fields (:data:`GROUP_POOLS`): ``"max"`` over the group,
            ``"mean"``, or ``"fourier"`` (:class:`GroupFourierPool`, one norm per irrep of G).
        fine_nonlinearity: the conv layers (1-based indices into ``layout``) whose nonlinearity is
            evaluated on a 2x finer grid (:class:`FineGridNonlinearity`); empty: none.
    """

    def __init__(self, in_channels: int, num_outputs: int, kind: str, order: int,
                 layout: Sequence[ConvSpec] = DEFAULT_LAYOUT, width: float = 1.0, dropout: float = 0.0,
                 kernel_size: int | None = None, pool: str = "blur", frequency_cutoff: float | None = None,
                 head_pool: str = "mean", input_blur: float = 0.0, nonlinearity: str = "relu",
                 group_pool: str = "max", fine_nonlinearity: Sequence[int] = ()) -> None:
        fine_layers = _conv_layer_indices(fine_nonlinearity, len(layout), "fine_nonlinearity")
        if group_pool not in GROUP_POOLS:
            raise ModelError(f"group_pool must be one of {', '.join(GROUP_POOLS)}, got {group_pool!r}")
        if pool not in POOL_MODES:
            raise ModelError(f"pool must be one of {', '.join(POOL_MODES)}, got {pool!r}")
        if nonlinearity not in NONLINEARITIES:
            raise ModelError(f"nonlinearity must be one of {', '.join(NONLINEARITIES)}, got {nonlinearity!r}")
        if head_pool not in HEAD_POOLS:
            raise ModelError(f"head_pool must be one of {', '.join(HEAD_POOLS)}, got {head_pool!r}")
        gspace = make_group(kind, order)
        group_size = gspace.fibergroup.order()
        fields = [layer_fields(width, spec.channels, group_size) for spec in layout]
        n_pools = sum(spec.pool for spec in layout)
        head = GROUP_POOLS[group_pool](enn.FieldType(gspace, [gspace.regular_repr] * fields[-1]))
        super().__init__(in_channels, num_outputs, num_features=head.n_fields * head.per_field,
                         min_input_size=2**n_pools, dropout=dropout)
        self.gspace = gspace
        self.head_pool = head_pool
        self.in_type = enn.FieldType(gspace, [gspace.trivial_repr] * in_channels)
        layers: list[nn.Module] = [GaussianBlur(input_blur)] if input_blur else []
        block_ends: list[int] = []
        current = self.in_type
        for depth, (spec, n_fields) in enumerate(zip(layout, fields, strict=True), start=1):
            out_type = enn.FieldType(gspace, [gspace.regular_repr] * n_fields)
            layers.append(r2conv(current, out_type, kernel_size or spec.kernel, frequency_cutoff=frequency_cutoff))
            if spec.pool and pool == "max":
                layers.append(SymmetricPool2d("max"))
            layers.append(EscnnModule(enn.InnerBatchNorm(out_type)))
            act = NONLINEARITIES[nonlinearity]()
            layers.append(FineGridNonlinearity(act) if depth in fine_layers else act)
            if spec.pool and pool != "max":
                layers.append(SymmetricPool2d(pool))
            current = out_type
            block_ends.append(len(layers))
        self.body = nn.Sequential(*layers)
        self.group_pool = head  # built on the last layer's field type before nn.Module's set-up
        self.block_ends = tuple(block_ends)
        self.feature_depths = len(layout)
        self.group_name = f"{kind.upper()}{order}"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_features): the group pool (max by default), then the mean over space
        (or its disk)."""
        return spatial_pool(self.group_pool(self.body(x)), self.head_pool)

    def feature_fields(self, x: torch.Tensor, depth: int) -> FeatureFields:
        """The regular fields after the first ``depth`` conv layers (each with its batch norm, ReLU and
        downsampling), read out as their frequency-0 and frequency-1 parts.

        Every regular field has one channel per group element; its scalar is the mean over them (invariant
        under the group's permutation of the channels) and its vector the frequency-1 component
        ``(1/|G|) sum_g f_g rho_1(g) e`` (:func:`regular_field_readout`), which turns with the input.

        Args:
            x: (B, in_channels, H, W) images.
            depth: 1 .. ``len(layout)``.

        Returns:
            scalar (B, fields, H', W') and vector (B, fields, 2, H', W') fields.
        """
        self.check_input(x)
        self._check_depth(depth)
        features = self.body[: self.block_ends[depth - 1]](x)
        scalar_w, vector_w = regular_field_readout(self.gspace)
        b, c, h, w = features.shape
        fields = features.view(b, c // scalar_w.numel(), scalar_w.numel(), h, w)
        return FeatureFields(
            scalar=torch.einsum("g,bfghw->bfhw", scalar_w.to(features), fields),
            vector=torch.einsum("kg,bfghw->bfkhw", vector_w.to(features), fields),
            equivariant=True,
            description=f"frequency 0 and 1 of {fields.shape[1]} regular {self.group_name} fields "
                        f"after {depth} conv layer(s)")


#: A frequency-1 pair of escnn's irreps is a vector in escnn's frame (first axis up, second left, with row 0
#: of the image at the top); this 2 x 2 matrix turns it into the display frame (right, up) of
#: :class:`~equilens.models.base.FeatureFields`.
ESCNN_TO_DISPLAY: tuple[tuple[float, float], tuple[float, float]] = ((0.0, -1.0), (1.0, 0.0))


def regular_field_readout(gspace: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights reading a scalar and a vector out of a regular field of the gspace's group G (C_N or D_N).

    With channel ``c`` of the field f and the frequency-1 representation rho_1 of G (escnn's ``irrep(1)``
    of C_N, ``irrep(1, 1)`` of D_N), the vector ``v = W f`` uses the intertwiner
    ``W = (1/|G|) sum_g rho_1(g) P rho_reg(g)^-1`` with ``P = e_0 e_identity^T``, so that
    ``W rho_reg(g) = rho_1(g) W``: rotating the input by g turns v by g. The result is then expressed in
    the display frame (right, up with row 0 at the top; escnn's first axis points up there, its second
    left), checked in the tests against :func:`torch.rot90` and, for D_N, the left-right flip.

    Returns:
        scalar weights (|G|,) (all 1/|G|) and vector weights (2, |G|), float32.
    """
    import numpy as np

    group = gspace.fibergroup
    rotations = group.order() // (2 if type(group).__name__ == "DihedralGroup" else 1)
    if rotations < 3:
        raise ModelError(f"a vector field needs at least 3 rotations in the group, got {rotations} "
                         f"({group.name}); use an order N >= 4")
    regular = group.regular_representation
    rho_1 = group.irrep(1, 1) if type(group).__name__ == "DihedralGroup" else group.irrep(1)
    size = regular.size
    project = np.zeros((2, size))
    # any P gives an intertwiner; e_0 from the identity's channel (escnn's regular basis starts with it)
    # makes channel g contribute rho_1(g) e_0 / |G|: the field's discrete Fourier component
    project[0, 0] = 1.0
    w = sum(rho_1(g) @ project @ np.linalg.inv(regular(g)) for g in group.elements) / group.order()
    to_display = np.asarray(ESCNN_TO_DISPLAY)
    return (torch.full((size,), 1.0 / size, dtype=torch.float32),
            torch.as_tensor(to_display @ w, dtype=torch.float32))


class _GroupPool(nn.Module):
    """Invariant map on regular fields (:data:`GROUP_POOLS`), in plain torch so it keeps the input dtype
    and needs no export: ``per_field`` invariants from each of ``n_fields`` fields of ``group_size``
    channels."""

    per_field = 1

    def __init__(self, field_type: Any) -> None:
        super().__init__()
        self.n_fields, self.group_size = _regular_shape(field_type)


class _GroupReducePool(_GroupPool):
    """One reduction over each field's |G| channels: (B, n_fields * group_size, H, W) -> (B, n_fields, H, W)."""

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return self.reduce(x.view(b, self.n_fields, self.group_size, h, w))


class GroupMaxPool(_GroupReducePool):
    """The max over each regular field's |G| channels (escnn's ``GroupPooling``)."""

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=2)


class GroupMeanPool(_GroupReducePool):
    """The mean over each regular field's |G| channels (its frequency-0 part)."""

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=2)


class GroupFourierPool(_GroupPool):
    """Invariant map on regular fields: at every pixel, the norm of each field's part in every irrep of G
    (all copies of one irrep together), so ``n_irreps`` invariants per field instead of the max's one.

    With the regular representation ``rho_reg(g) = Q (+)_i psi_i(g) Q^-1`` (escnn's change of basis, the
    psi_i orthogonal), ``Q^-1 f`` splits the field into irrep blocks that a group element only rotates, so
    their norms are invariant. For C_N these are the magnitudes of the field's discrete Fourier transform
    over the rotations, which a rotation by a fraction of 360/N (a fractional cyclic shift of a band-limited
    field) leaves unchanged as well, while the max over the N samples changes with the fraction. Computed in
    plain torch (no escnn at run time).

    (B, n_fields * group_size, H, W) -> (B, n_fields * n_irreps, H, W), irreps in escnn's order.
    """

    def __init__(self, field_type: Any, eps: float = 1e-12) -> None:
        super().__init__(field_type)
        regular = field_type.representations[0]
        ids: list[Any] = []
        member: list[int] = []
        for irrep_id in regular.irreps:
            if irrep_id not in ids:
                ids.append(irrep_id)
            member += [ids.index(irrep_id)] * field_type.gspace.fibergroup.irrep(*irrep_id).size
        self.n_irreps = self.per_field = len(ids)
        self.irrep_ids = tuple(ids)
        blocks = torch.zeros(self.group_size, self.n_irreps, dtype=torch.float64)
        blocks[torch.arange(self.group_size), torch.tensor(member)] = 1.0
        self.eps = eps
        self.register_buffer("to_irreps", torch.as_tensor(regular.change_of_basis_inv, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("blocks", blocks.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        f = x.view(b, self.n_fields, self.group_size, h, w)
        coeff = torch.einsum("ig,bfghw->bfihw", self.to_irreps.to(x.dtype), f)
        energy = torch.einsum("bfihw,ik->bfkhw", coeff * coeff, self.blocks.to(x.dtype))
        return torch.sqrt(energy + self.eps).reshape(b, self.n_fields * self.n_irreps, h, w)


def _regular_shape(field_type: Any) -> tuple[int, int]:
    """(number of fields, group order) of a field type made of regular fields only."""
    sizes = {r.size for r in field_type.representations}
    if len(sizes) != 1 or not all("regular" in r.name for r in field_type.representations):
        raise ModelError(f"group pooling needs regular fields, got {field_type}")
    return len(field_type), sizes.pop()


#: Invariant maps from the last regular fields to the head (``group_pool`` option of C_N / D_N models).
GROUP_POOLS: dict[str, type[_GroupPool]] = {"max": GroupMaxPool, "mean": GroupMeanPool, "fourier": GroupFourierPool}


class FieldGate(nn.Module):
    """Gated nonlinearity on plain tensors: the first ``n_gates`` channels are scalar gates, one per
    gated field; every channel of gated field j is multiplied by sigmoid(gate j), and the gates are dropped.

    (B, n_gates + sum(field sizes), H, W) -> (B, sum(field sizes), H, W). Equivariant because the gates
    are invariant scalars and each field is scaled as a whole.
    """

    def __init__(self, field_sizes: Sequence[int]) -> None:
        super().__init__()
        self.n_gates = len(field_sizes)
        index = torch.repeat_interleave(torch.arange(self.n_gates), torch.tensor(list(field_sizes)))
        self.gate_index: torch.Tensor
        self.register_buffer("gate_index", index, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = torch.sigmoid(x[:, : self.n_gates]).index_select(1, self.gate_index)
        return x[:, self.n_gates:] * gates


class FieldNorm(nn.Module):
    """Invariant map: the Euclidean norm of every field. (B, sum(field sizes), H, W) -> (B, n_fields, H, W)."""

    def __init__(self, field_sizes: Sequence[int], eps: float = 1e-8) -> None:
        super().__init__()
        self.n_fields = len(field_sizes)
        self.eps = eps
        index = torch.repeat_interleave(torch.arange(self.n_fields), torch.tensor(list(field_sizes)))
        self.field_index: torch.Tensor
        self.register_buffer("field_index", index, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sq = x.new_zeros(x.shape[0], self.n_fields, *x.shape[2:]).index_add(1, self.field_index, x * x)
        return torch.sqrt(sq + self.eps)


def irrep_fields(gspace: Any, kind: str, max_frequency: int, multiplicity: int) -> list[Any]:
    """``multiplicity`` copies of every irrep with frequency 0..max_frequency (for O(2) also the sign irrep).

    Copies of one irrep are adjacent (escnn's exported batch norm needs each field type contiguous).
    """
    if kind == "c":
        irreps = [gspace.irrep(k) for k in range(max_frequency + 1)]
    else:
        irreps = [gspace.irrep(0, 0), gspace.irrep(1, 0)] + [gspace.irrep(1, k)
                                                              for k in range(1, max_frequency + 1)]
    return [irrep for irrep in irreps for _ in range(multiplicity)]


class IrrepSteerableCNN(LensModel):
    """SO(2)- or O(2)-steerable CNN with band-limited irreducible fields and gated nonlinearities.

    Each layer: R2Conv to (gates + fields), optional symmetric average pooling, ``IIDBatchNorm2d``,
    :class:`FieldGate`. Head: :class:`FieldNorm` (one invariant per field), global spatial mean.

    Args:
        kind: ``"c"`` -> SO(2), ``"d"`` -> O(2).
        max_frequency: highest angular frequency L of the fields (the filters are band-limited to match).
        layout, width, dropout, kernel_size, frequency_cutoff: as in :class:`RegularSteerableCNN`; a
            layer's ``channels * width`` is the target number of field channels (gates not counted).
    """

    def __init__(self, in_channels: int, num_outputs: int, kind: str, layout: Sequence[ConvSpec] = DEFAULT_LAYOUT,
                 width: float = 1.0, max_frequency: int = 3, dropout: float = 0.0, kernel_size: int | None = None,
                 frequency_cutoff: float | None = None) -> None:
        if max_frequency < 1:
            raise ModelError(f"max_frequency must be >= 1, got {max_frequency}")
        gspace = gspaces.rot2dOnR2(N=-1, maximum_frequency=max_frequency) if kind == "c" else \
            gspaces.flipRot2dOnR2(N=-1, maximum_frequency=max_frequency)
        unit = irrep_fields(gspace, kind, max_frequency, 1)
        unit_size = sum(r.size for r in unit)
        mults = [max(1, round(width * spec.channels / unit_size)) for spec in layout]
        n_pools = sum(spec.pool for spec in layout)
        n_last = len(unit) * mults[-1]
        super().__init__(in_channels, num_outputs, num_features=n_last, min_input_size=2**n_pools,
                         dropout=dropout)
        self.gspace = gspace
        self.in_type = enn.FieldType(gspace, [gspace.trivial_repr] * in_channels)
        layers: list[nn.Module] = []
        current = self.in_type
        for spec, mult in zip(layout, mults, strict=True):
            reps = irrep_fields(gspace, kind, max_frequency, mult)
            gated_type = enn.FieldType(gspace, reps)
            conv_type = enn.FieldType(gspace, [gspace.trivial_repr] * len(reps) + reps)
            layers.append(r2conv(current, conv_type, kernel_size or spec.kernel, frequency_cutoff=frequency_cutoff))
            if spec.pool:
                layers.append(SymmetricPool2d("avg"))
            layers.append(EscnnModule(enn.IIDBatchNorm2d(conv_type)))
            layers.append(FieldGate([r.size for r in reps]))
            current = gated_type
        self.body = nn.Sequential(*layers)
        self.norm_pool = FieldNorm([r.size for r in current.representations])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_features): norm of every field, mean over space."""
        return self.norm_pool(self.body(x)).mean(dim=(-2, -1))


def _conv_layer_indices(indices: Sequence[int], n_layers: int, option: str) -> frozenset[int]:
    """Validated 1-based conv layer numbers of an option that selects layers."""
    valid = isinstance(indices, (list, tuple)) and all(
        isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= n_layers for i in indices)
    if not valid:
        raise ModelError(f"{option} must be a list of conv layer numbers 1..{n_layers} of the layout, "
                         f"got {indices!r}")
    return frozenset(indices)


def _layout_arg(layout: Sequence[ConvSpec | Sequence[Any]] | None) -> tuple[ConvSpec, ...]:
    if layout is None:
        return DEFAULT_LAYOUT
    specs = tuple(s if isinstance(s, ConvSpec) else ConvSpec(*s) for s in layout)
    if not specs:
        raise ModelError("layout must have at least one conv layer")
    return specs


@dataclass(frozen=True)
class _Variant:
    """Option defaults of a registered regular-field net, named ``steerable_{kind}{N}{suffix}``."""

    layout: tuple[ConvSpec, ...]
    pool: str
    group_pool: str
    fine_nonlinearity: tuple[int, ...]
    head: str


#: The registered variants of the C_N / D_N nets by name suffix. ``_smooth``: :data:`SMOOTH_LAYOUT`, the wider
#: blur, the group-mean head; ``_fine``: that, with the nonlinearity of conv layers 3 and 4 (the first on the
#: quarter-resolution map) on a 2x finer grid. Every option can still be given; these are only defaults.
VARIANTS: dict[str, _Variant] = {
    "": _Variant(DEFAULT_LAYOUT, "blur", "max", (), "group+space pooled head"),
    "_smooth": _Variant(SMOOTH_LAYOUT, "blur5", "mean", (), "group-mean + space pooled head, 3 blur5 pools"),
    "_fine": _Variant(SMOOTH_LAYOUT, "blur5", "mean", (3, 4),
                      "as _smooth, with the ReLU of conv layers 3-4 on a 2x finer grid"),
}


def _finite_entry(kind: str, order: int, suffix: str = "") -> ModelEntry:
    """``steerable_{kind}{order}{suffix}``: the regular-field net with the option defaults of
    ``VARIANTS[suffix]``."""
    group = f"{kind.upper()}{order}"
    name = f"steerable_{kind}{order}{suffix}"
    base = VARIANTS[suffix]

    def factory(in_channels: int = 1, num_outputs: int = 3, width: float = 1.0,
                layout: Sequence[ConvSpec | Sequence[Any]] | None = None, dropout: float = 0.0,
                kernel_size: int | None = None, pool: str = base.pool, frequency_cutoff: float | None = None,
                head_pool: str = "mean", input_blur: float = 0.0, nonlinearity: str = "relu",
                group_pool: str = base.group_pool,
                fine_nonlinearity: Sequence[int] = base.fine_nonlinearity) -> RegularSteerableCNN:
        return RegularSteerableCNN(in_channels, num_outputs, kind, order,
                                   base.layout if layout is None else _layout_arg(layout), width, dropout,
                                   kernel_size=kernel_size, pool=pool, frequency_cutoff=frequency_cutoff,
                                   head_pool=head_pool, input_blur=input_blur, nonlinearity=nonlinearity,
                                   group_pool=group_pool, fine_nonlinearity=fine_nonlinearity)

    what = "rotations by 360/N" if kind == "c" else "rotations by 360/N and reflections"
    default = " (default equivariant model)" if name == DEFAULT_EQUIVARIANT_MODEL else ""
    return ModelEntry(name=name, symmetry=group, family="steerable",
                      description=f"escnn steerable CNN, regular {group} fields ({what}), {base.head}{default}",
                      factory=factory)


def _irrep_entry(kind: str) -> ModelEntry:
    group = "SO(2)" if kind == "c" else "O(2)"

    def factory(in_channels: int = 1, num_outputs: int = 3, width: float = 1.0,
                layout: Sequence[ConvSpec | Sequence[Any]] | None = None, max_frequency: int = 3,
                dropout: float = 0.0, kernel_size: int | None = None,
                frequency_cutoff: float | None = None) -> IrrepSteerableCNN:
        return IrrepSteerableCNN(in_channels, num_outputs, kind, _layout_arg(layout), width, max_frequency,
                                 dropout, kernel_size=kernel_size, frequency_cutoff=frequency_cutoff)

    return ModelEntry(name=f"steerable_{'so2' if kind == 'c' else 'o2'}", symmetry=group, family="steerable",
                      description=f"escnn steerable CNN, {group} irreducible fields (frequencies <= 3), "
                                  "gated nonlinearity, norm-pooled head", factory=factory)


#: Models whose :meth:`~RegularSteerableCNN.feature_fields` read out equivariant scalar and vector fields
#: (a frequency-1 vector needs at least 3 rotations in the group).
EQUIVARIANT_FIELD_MODELS: tuple[str, ...] = (*(f"steerable_{kind}{n}" for kind in ("c", "d")
                                               for n in SUPPORTED_ORDERS if n >= 4),
                                             "steerable_d8_smooth", "steerable_d8_fine", "steerable_so2_fourier",
                                             "steerable_o2_fourier")

#: The model the README's main job uses, chosen by measurement (README, "Default equivariant model"): with
#: its registered defaults (32 sampled rotations, the ReLU of every conv layer on a 2x finer grid:
#: :data:`~equilens.models.fourier.FOURIER_DEFAULTS`) its change at 15, 30 and 45 degrees after training on
#: lens data is below a quarter of ResNet-18's on each of three seeds, with ResNet-18's test accuracy, 1.3x
#: its training speed at 150 px (the ReLU runs in compiled kernels: :mod:`equilens.models.sampled_relu`),
#: and exact 90-degree rotation invariance (no flips: SO(2)). Defined in :mod:`equilens.models.fourier`.
#: Before: the same net with 16 samples and the fine grid in layers 3-4 (stops 25-26), steerable_d8_fine
#: (2026-12-04, stop 24), steerable_d8_smooth and steerable_d8 (2026-12-04), steerable_d4.
DEFAULT_EQUIVARIANT_MODEL = "steerable_so2_fourier"

for _kind in ("c", "d"):
    for _order in SUPPORTED_ORDERS:
        add_entry(_finite_entry(_kind, _order))
    add_entry(_irrep_entry(_kind))
add_entry(_finite_entry("d", 8, "_smooth"))
add_entry(_finite_entry("d", 8, "_fine"))


def _resolve(match: re.Match[str]) -> ModelEntry:
    raise ModelError(
        f"steerable_{match.group(1)}{match.group(2)}: N={match.group(2)} is not supported; supported N are "
        f"{', '.join(map(str, SUPPORTED_ORDERS))} (e.g. steerable_{match.group(1)}8), or use "
        "steerable_so2 / steerable_o2 for continuous rotations"
    )


register_family(r"steerable_([cd])(\d+)", "steerable_c{N}", _resolve)
