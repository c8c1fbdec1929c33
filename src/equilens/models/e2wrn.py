"""Equivariant Wide ResNets ``e2wrn{depth}_{widen}_{group}`` (Zagoruyko and Komodakis 2016, "Wide Residual
Networks"; the E(2)-equivariant version of Weiler and Cesa 2019, "General E(2)-Equivariant Steerable CNNs").

Layout of WRN-depth-k: a 3x3 stem conv to 16 channels, three stages of n = (depth - 4) / 6 pre-activation
blocks (BN, ReLU, 3x3 conv, BN, ReLU, dropout, 3x3 conv, plus a 1x1-conv shortcut where the width
changes) with 16k, 32k, 64k channels, stages 2 and 3 halving the resolution, then BN, ReLU and the
invariant head (group pooling, global spatial mean). Here every layer is an escnn R2Conv on regular
fields of C_N or D_N; the number of fields is ``channels / |G|`` (at least 1), so the feature maps have
the plain WRN's channel count and compute, and fewer parameters.

Adaptations, so every size keeps exact grid symmetry and 150 px images are affordable on a CPU:
- downsampling is :class:`~equilens.models.steerable.SymmetricPool2d` (average) at the start of the
  block, never a stride-2 conv (which would shift the grid centre on even sizes);
- the stem conv is followed by one such 2x pool (``stem_pool=1``; 0 gives the CIFAR layout).

Group restriction (Weiler and Cesa 2019, Sec. 3.8 and their D8D4D1 models) is the option
``restrict=(N1, N2, N3)``: the group order of each stage, each dividing the one before (e.g. ``(8, 4, 1)``
for D8 -> D4 -> D1). Early layers then share weights over the full group, while the output is invariant
only to the last group (D1: the left-right flip only); the model's ``symmetry`` then reads
``"D8->D4->D1"``. The name suffix ``_r`` (e.g. ``e2wrn16_4_d8_r``) is kept as shorthand for
``restrict=(N, N/2, 1)``.

Field scaling (option ``fields``): ``"channels"`` gives each layer ``channels / |G|`` regular fields (the
plain WRN's channel count and compute, fewer parameters); ``"params"`` is Weiler and Cesa's
parameter-preserving scaling, ``channels / sqrt(|G|)`` fields (sqrt(|G|) times the plain WRN's channels,
about its parameter count), applied to every layer including the stem, each stage with its own group.

The paper configuration (their CIFAR models): ``e2wrn16_8_d8_paper`` and ``e2wrn28_10_d8_paper`` =
WRN-16-8 / WRN-28-10, D8 -> D4 -> D1, ``fields="params"``, 5x5 kernels in the D8 stage (stem and stage 1)
and 3x3 after, dropout 0.3, no stem pool (``stem_pool=0``, the CIFAR layout). Their downsampling is a
strided convolution; ours stays the centre-preserving average pool (so exact grid symmetry holds on every
size), and their 1x1 shortcuts are ours too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from equilens.errors import ModelError
from equilens.models._escnn_compat import enn
from equilens.models.base import LensModel
from equilens.models.registry import ModelEntry, add_entry, register_family
from equilens.models.steerable import EscnnModule, GroupMaxPool, SymmetricPool2d, make_group, r2conv

#: Group orders N accepted in ``e2wrn..._c{N}`` / ``_d{N}``.
E2WRN_ORDERS: tuple[int, ...] = (1, 2, 4, 8, 12, 16)
#: Names listed by ``equilens models``; any other valid ``e2wrn{depth}_{widen}_{group}[_r]`` is built on demand.
STANDARD_E2WRN: tuple[str, ...] = ("e2wrn10_2_d4", "e2wrn10_2_c8", "e2wrn16_4_d8", "e2wrn16_4_d8_r")
#: Field scalings: fields = channels / |G| (``"channels"``) or channels / sqrt(|G|) (``"params"``).
FIELD_SCALINGS: tuple[str, ...] = ("channels", "params")
#: Options of Weiler and Cesa 2019's CIFAR configuration ``e2wrn{depth}_{widen}_d8_paper``.
PAPER_OPTIONS: dict[str, Any] = {"restrict": (8, 4, 1), "fields": "params", "kernel_size": (5, 5, 3, 3),
                                 "dropout": 0.3, "stem_pool": 0}
#: The paper's two sizes (built on demand: 8.7M and 26.9M parameters, too big to list with the small ones).
PAPER_E2WRN: tuple[str, ...] = ("e2wrn16_8_d8_paper", "e2wrn28_10_d8_paper")


def _regular(gspace: Any, channels: float, fields: str = "channels") -> Any:
    size = gspace.fibergroup.order()
    n = channels / size if fields == "channels" else channels / math.sqrt(size)
    return enn.FieldType(gspace, [gspace.regular_repr] * max(1, round(n)))


class _PreActBlock(nn.Module):
    """Pre-activation residual block on plain tensors of regular fields.

    (B, in_type.size, H, W) -> (B, out_type.size, H', W'), H' = H or the symmetric half of H.
    """

    def __init__(self, in_type: Any, out_type: Any, downsample: bool, dropout: float, kernel: int = 3,
                 pool: str = "avg") -> None:
        super().__init__()
        self.pool = SymmetricPool2d(pool) if downsample else nn.Identity()
        self.bn1 = EscnnModule(enn.InnerBatchNorm(in_type))
        self.conv1 = r2conv(in_type, out_type, kernel)
        self.bn2 = EscnnModule(enn.InnerBatchNorm(out_type))
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()  # pointwise: keeps equivariance
        self.conv2 = r2conv(out_type, out_type, kernel)
        self.shortcut = (r2conv(in_type, out_type, 1)
                         if in_type != out_type else nn.Identity())
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        h = self.conv1(self.relu(self.bn1(x)))
        h = self.conv2(self.drop(self.relu(self.bn2(h))))
        return h + self.shortcut(x)


class E2WideResNet(LensModel):
    """Equivariant WRN-``depth``-``widen`` on regular fields of C_N / D_N (optionally restricted per stage).

    Input (B, in_channels, H, W), H, W >= 2**(stem_pool + 2); features (B, fields of the last stage).

    Args:
        depth: 6n + 4 (10, 16, 22, 28, 40, ...).
        widen: width factor k.
        kind, order: ``"c"`` / ``"d"`` and N.
        restrict: group order of each of the 3 stages, each dividing the previous and the first dividing
            N, e.g. ``(8, 4, 1)``; None: N throughout.
        stem_pool: number of symmetric 2x pools right after the stem conv.
        dropout: dropout inside blocks (WRN) and before the head.
        width: multiplies every width (16, 16k, 32k, 64k); 1.0 is the WRN layout.
        kernel_size: odd kernel size of every conv (int), or of the stem and each stage (4 ints).
        fields: :data:`FIELD_SCALINGS` (see the module docstring).
        pool: downsampling mode (:data:`~equilens.models.steerable.POOL_MODES`).
    """

    def __init__(self, in_channels: int, num_outputs: int, depth: int, widen: int, kind: str, order: int,
                 restrict: Sequence[int] | None = None, stem_pool: int = 1, dropout: float = 0.0,
                 width: float = 1.0, kernel_size: int | Sequence[int] = 3, fields: str = "channels",
                 pool: str = "avg") -> None:
        if depth < 10 or (depth - 4) % 6:
            raise ModelError(f"e2wrn depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}")
        if widen < 1:
            raise ModelError(f"e2wrn width factor must be >= 1, got {widen}")
        if stem_pool < 0:
            raise ModelError(f"stem_pool must be >= 0, got {stem_pool}")
        if width <= 0:
            raise ModelError(f"width must be > 0, got {width}")
        if fields not in FIELD_SCALINGS:
            raise ModelError(f"fields must be one of {', '.join(FIELD_SCALINGS)}, got {fields!r}")
        orders = restriction_schedule(order, restrict)
        kernels = (kernel_size,) * 4 if isinstance(kernel_size, int) else tuple(int(k) for k in kernel_size)
        if len(kernels) != 4:
            raise ModelError(f"kernel_size must be one int or 4 (stem and 3 stages), got {kernel_size}")
        n_blocks = (depth - 4) // 6
        gspace = make_group(kind, order)
        widths = tuple(c * widen * width for c in (16, 32, 64))
        in_type = enn.FieldType(gspace, [gspace.trivial_repr] * in_channels)
        current = _regular(gspace, 16 * width, fields)
        stem: list[nn.Module] = [r2conv(in_type, current, kernels[0])]
        stem += [SymmetricPool2d(pool) for _ in range(stem_pool)]
        layers: list[nn.Module] = [nn.Sequential(*stem)]
        for stage, (channels, stage_order) in enumerate(zip(widths, orders, strict=True)):
            group_order = current.gspace.fibergroup.order() // (2 if kind == "d" else 1)
            if stage_order != group_order:
                sub_id = (0, stage_order) if kind == "d" else stage_order
                restriction = enn.RestrictionModule(current, sub_id)
                layers.append(EscnnModule(restriction))
                current = restriction.out_type
            out_type = _regular(current.gspace, channels, fields)
            for b in range(n_blocks):
                layers.append(_PreActBlock(current, out_type, downsample=(stage > 0 and b == 0), dropout=dropout,
                                           kernel=kernels[stage + 1], pool=pool))
                current = out_type
        layers.append(EscnnModule(enn.InnerBatchNorm(current)))
        layers.append(nn.ReLU())
        super().__init__(in_channels, num_outputs, num_features=len(current), min_input_size=2 ** (stem_pool + 2),
                         dropout=dropout)
        letter = kind.upper()
        if len(set(orders)) > 1:  # the instance's own group chain (read by create_model)
            self.symmetry = "->".join(f"{letter}{n}" for n in dict.fromkeys((order, *orders)))
        self.in_type = in_type
        self.body = nn.Sequential(*layers)
        self.group_pool = GroupMaxPool(current)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_features): max over the (last) group, mean over space."""
        return self.group_pool(self.body(x)).mean(dim=(-2, -1))


def restriction_schedule(order: int, restrict: Sequence[int] | None) -> tuple[int, int, int]:
    """Validated per-stage group orders: ``restrict`` (3 ints, each dividing the previous, the first
    dividing ``order``) or ``(order,) * 3``."""
    if restrict is None:
        return (order, order, order)
    orders = tuple(int(n) for n in restrict)
    chain = (order, *orders)
    if len(orders) != 3 or min(orders) < 1 or any(a % b for a, b in zip(chain[:-1], chain[1:], strict=True)):
        raise ModelError(f"restrict must give 3 group orders, one per stage, each dividing the one before and "
                         f"the first dividing N={order} (e.g. ({order}, {max(order // 2, 1)}, 1)), got {restrict}")
    return (orders[0], orders[1], orders[2])


_NAME = re.compile(r"e2wrn(\d+)_(\d+)_([cd])(\d+)(_r)?")


def _entry(match: re.Match[str]) -> ModelEntry:
    depth, widen, kind, order = int(match.group(1)), int(match.group(2)), match.group(3), int(match.group(4))
    suffix_r = match.group(5) is not None
    name = match.group(0)
    if order not in E2WRN_ORDERS:
        raise ModelError(f"{name}: group order N={order} is not supported; supported N are "
                         f"{', '.join(map(str, E2WRN_ORDERS))} (e.g. e2wrn16_4_{kind}8)")
    if depth < 10 or (depth - 4) % 6:
        raise ModelError(f"{name}: depth must be 6n+4 (10, 16, 22, 28, 40, ...), got {depth}")
    if widen < 1:
        raise ModelError(f"{name}: width factor must be >= 1, got {widen}")
    if suffix_r and order == 1:
        raise ModelError(f"{name}: nothing to restrict for N=1; use N in 2, 4, 8, 12, 16 with _r")
    letter = kind.upper()
    defaults: dict[str, Any] = {}
    if suffix_r:
        half = order // 2 if order % 2 == 0 else order
        defaults["restrict"] = (order, half, 1)
        symmetry = f"{letter}{order}->{letter}{half}->{letter}1"
    else:
        symmetry = f"{letter}{order}"
    return _make_entry(name, depth, widen, kind, order, symmetry, defaults,
                       f", restricted {symmetry} (output invariant to the last group only)" if suffix_r else "")


def _make_entry(name: str, depth: int, widen: int, kind: str, order: int, symmetry: str,
                defaults: dict[str, Any], detail: str) -> ModelEntry:
    def factory(in_channels: int = 1, num_outputs: int = 3, **options: Any) -> E2WideResNet:
        allowed = {"restrict", "stem_pool", "dropout", "width", "kernel_size", "fields", "pool"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ModelError(f"{name}: unknown option(s) {unknown}; valid: {sorted(allowed)}")
        return E2WideResNet(in_channels, num_outputs, depth, widen, kind, order, **{**defaults, **options})

    return ModelEntry(name=name, symmetry=symmetry, family="e2wrn",
                      description=f"equivariant Wide ResNet-{depth}-{widen} on regular {kind.upper()}{order} "
                                  f"fields{detail}", factory=factory)


for _name in STANDARD_E2WRN:
    _match = _NAME.fullmatch(_name)
    assert _match is not None
    add_entry(_entry(_match))



def _paper_entry(match: re.Match[str]) -> ModelEntry:
    depth, widen = int(match.group(1)), int(match.group(2))
    if depth < 10 or (depth - 4) % 6 or widen < 1:
        raise ModelError(f"{match.group(0)}: depth must be 6n+4 and the width factor >= 1 (the paper's are "
                         f"{' and '.join(PAPER_E2WRN)})")
    return _make_entry(match.group(0), depth, widen, "d", 8, "D8->D4->D1", PAPER_OPTIONS,
                       ", Weiler & Cesa 2019 configuration: D8->D4->D1, parameter-preserving fields, 5x5 "
                       "kernels in the D8 stage, dropout 0.3")


register_family(_NAME.pattern, "e2wrn{depth}_{widen}_{c|d}{N}[_r] (e.g. e2wrn28_10_d8_r)", _entry)
register_family(r"e2wrn(\d+)_(\d+)_d8_paper", "e2wrn{16_8|28_10}_d8_paper (Weiler & Cesa 2019)", _paper_entry)
