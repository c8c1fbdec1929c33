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

Group restriction (Weiler and Cesa 2019, Sec. 3.8 and their D8D4D1 models): the name suffix ``_r``
(e.g. ``e2wrn16_4_d8_r``) restricts the group before stage 2 to N/2 and before stage 3 to N = 1:
D8 -> D4 -> D1 (one reflection) or C8 -> C4 -> C1 (nothing). Early layers then share weights over the
full group, while the output is invariant only to the last group: ``e2wrn16_4_d8_r`` is exactly
invariant to the left-right flip only, not to 90-degree rotations; its registry symmetry says
``"D8->D4->D1"``.
"""

from __future__ import annotations

import re
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


def _regular(gspace: Any, channels: int) -> Any:
    size = gspace.fibergroup.order()
    return enn.FieldType(gspace, [gspace.regular_repr] * max(1, round(channels / size)))


class _PreActBlock(nn.Module):
    """Pre-activation residual block on plain tensors of regular fields.

    (B, in_type.size, H, W) -> (B, out_type.size, H', W'), H' = H or the symmetric half of H.
    """

    def __init__(self, in_type: Any, out_type: Any, downsample: bool, dropout: float) -> None:
        super().__init__()
        self.pool = SymmetricPool2d("avg") if downsample else nn.Identity()
        self.bn1 = EscnnModule(enn.InnerBatchNorm(in_type))
        self.conv1 = r2conv(in_type, out_type, 3)
        self.bn2 = EscnnModule(enn.InnerBatchNorm(out_type))
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()  # pointwise: keeps equivariance
        self.conv2 = r2conv(out_type, out_type, 3)
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
        restrict: restrict the group to N/2 before stage 2 and to N = 1 before stage 3.
        stem_pool: number of symmetric 2x pools right after the stem conv.
        dropout: dropout inside blocks (WRN) and before the head.
        channels_scale: multiplies every width (16, 16k, 32k, 64k); 1.0 is the WRN layout.
    """

    def __init__(self, in_channels: int, num_outputs: int, depth: int, widen: int, kind: str, order: int,
                 restrict: bool = False, stem_pool: int = 1, dropout: float = 0.0,
                 channels_scale: float = 1.0) -> None:
        if depth < 10 or (depth - 4) % 6:
            raise ModelError(f"e2wrn depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}")
        if widen < 1:
            raise ModelError(f"e2wrn width factor must be >= 1, got {widen}")
        if stem_pool < 0:
            raise ModelError(f"stem_pool must be >= 0, got {stem_pool}")
        n_blocks = (depth - 4) // 6
        gspace = make_group(kind, order)
        if channels_scale <= 0:
            raise ModelError(f"channels_scale must be > 0, got {channels_scale}")
        widths = tuple(round(c * widen * channels_scale) for c in (16, 32, 64))
        # groups per stage, as escnn subgroup ids relative to the previous stage's group
        orders = [order, order // 2 if order % 2 == 0 else order, 1] if restrict else [order] * 3
        in_type = enn.FieldType(gspace, [gspace.trivial_repr] * in_channels)
        current = _regular(gspace, round(16 * channels_scale))
        stem: list[nn.Module] = [r2conv(in_type, current, 3)]
        stem += [SymmetricPool2d("avg") for _ in range(stem_pool)]
        layers: list[nn.Module] = [nn.Sequential(*stem)]
        for stage, (channels, stage_order) in enumerate(zip(widths, orders, strict=True)):
            group_order = current.gspace.fibergroup.order() // (2 if kind == "d" else 1)
            if stage_order != group_order:
                sub_id = (0, stage_order) if kind == "d" else stage_order
                restriction = enn.RestrictionModule(current, sub_id)
                layers.append(EscnnModule(restriction))
                current = restriction.out_type
            out_type = _regular(current.gspace, channels)
            for b in range(n_blocks):
                layers.append(_PreActBlock(current, out_type, downsample=(stage > 0 and b == 0), dropout=dropout))
                current = out_type
        layers.append(EscnnModule(enn.InnerBatchNorm(current)))
        layers.append(nn.ReLU())
        super().__init__(in_channels, num_outputs, num_features=len(current), min_input_size=2 ** (stem_pool + 2),
                         dropout=dropout)
        self.in_type = in_type
        self.body = nn.Sequential(*layers)
        self.group_pool = GroupMaxPool(current)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_features): max over the (last) group, mean over space."""
        return self.group_pool(self.body(x)).mean(dim=(-2, -1))


_NAME = re.compile(r"e2wrn(\d+)_(\d+)_([cd])(\d+)(_r)?")


def _entry(match: re.Match[str]) -> ModelEntry:
    depth, widen, kind, order = int(match.group(1)), int(match.group(2)), match.group(3), int(match.group(4))
    restrict = match.group(5) is not None
    name = match.group(0)
    if order not in E2WRN_ORDERS:
        raise ModelError(f"{name}: group order N={order} is not supported; supported N are "
                         f"{', '.join(map(str, E2WRN_ORDERS))} (e.g. e2wrn16_4_{kind}8)")
    if depth < 10 or (depth - 4) % 6:
        raise ModelError(f"{name}: depth must be 6n+4 (10, 16, 22, 28, 40, ...), got {depth}")
    if widen < 1:
        raise ModelError(f"{name}: width factor must be >= 1, got {widen}")
    if restrict and order == 1:
        raise ModelError(f"{name}: nothing to restrict for N=1; use N in 2, 4, 8, 12, 16 with _r")
    letter = kind.upper()
    if restrict:
        half = order // 2 if order % 2 == 0 else order
        symmetry = f"{letter}{order}->{letter}{half}->{letter}1"
    else:
        symmetry = f"{letter}{order}"

    def factory(in_channels: int = 1, num_outputs: int = 3, stem_pool: int = 1, dropout: float = 0.0,
                channels_scale: float = 1.0) -> E2WideResNet:
        return E2WideResNet(in_channels, num_outputs, depth, widen, kind, order, restrict, stem_pool, dropout,
                            channels_scale)

    detail = f", restricted {symmetry} (output invariant to the last group only)" if restrict else ""
    return ModelEntry(name=name, symmetry=symmetry, family="e2wrn",
                      description=f"equivariant Wide ResNet-{depth}-{widen} on regular {letter}{order} "
                                  f"fields{detail}", factory=factory)


for _name in STANDARD_E2WRN:
    _match = _NAME.fullmatch(_name)
    assert _match is not None
    add_entry(_entry(_match))

register_family(_NAME.pattern, "e2wrn{depth}_{widen}_{c|d}{N}[_r] (e.g. e2wrn28_10_d8_r)", _entry)
