"""A small plain CNN baseline: four conv-BN-ReLU blocks with 2x2 max pooling, global average pooling.

No built-in symmetry. It is the cheap non-equivariant baseline beside ResNet-18.
"""

from __future__ import annotations

import torch
from torch import nn

from equilens.errors import ModelError
from equilens.models.base import FeatureFields, LensModel, plain_feature_fields
from equilens.models.registry import register_model

#: Channels of the four blocks of ``cnn_small``.
CNN_SMALL_WIDTHS: tuple[int, ...] = (16, 32, 64, 128)


class SmallCNN(LensModel):
    """Blocks of 3x3 conv, BN, ReLU, each followed by a 2x2 max pool except the last.

    Input (B, in_channels, H, W) with H, W >= 2**(len(widths) - 1) px; features (B, widths[-1]).
    """

    def __init__(self, in_channels: int, num_outputs: int, widths: tuple[int, ...] = CNN_SMALL_WIDTHS,
                 dropout: float = 0.0) -> None:
        super().__init__(in_channels, num_outputs, num_features=widths[-1],
                         min_input_size=2 ** (len(widths) - 1), dropout=dropout)
        layers: list[nn.Module] = []
        block_ends: list[int] = []
        c_in = in_channels
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = width
            block_ends.append(len(layers))
        self.body = nn.Sequential(*layers)
        self.block_ends = tuple(block_ends)
        self.feature_depths = len(widths)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, widths[-1]) by global average pooling."""
        return self.body(x).mean(dim=(-2, -1))

    def feature_fields(self, x: torch.Tensor, depth: int) -> FeatureFields:
        """The channels after the first ``depth`` blocks (1 .. len(widths), each with its max pool) as
        :func:`~equilens.models.base.plain_feature_fields`: no transformation law."""
        self.check_input(x)
        self._check_depth(depth)
        features = self.body[: self.block_ends[depth - 1]](x)
        return plain_feature_fields(features, f"{features.shape[1]} plain channels after {depth} block(s)")


@register_model("cnn_small", symmetry="none", family="cnn",
                description="small plain CNN, 4 conv blocks 16-128 channels; non-equivariant baseline")
def cnn_small(in_channels: int = 1, num_outputs: int = 3, widths: tuple[int, ...] = CNN_SMALL_WIDTHS,
              dropout: float = 0.0, width: float = 1.0) -> SmallCNN:
    """The small CNN; ``widths`` sets the channels of each block, ``width`` multiplies them all."""
    if width <= 0:
        raise ModelError(f"width must be > 0 (a multiplier of every layer's channels), got {width}")
    return SmallCNN(in_channels, num_outputs, widths=tuple(max(1, round(w * width)) for w in widths),
                    dropout=dropout)
