"""ResNet-18 baseline in plain torch (He et al. 2016, "Deep Residual Learning for Image Recognition").

Trained from scratch (no torchvision, no pretrained weights). Architecture as in the paper's Table 1 for
18 layers: a 7x7 stride-2 stem convolution and 3x3 stride-2 max pool, four stages of two BasicBlocks
with 64, 128, 256, 512 channels (stages 2-4 start with stride 2 and a 1x1 projection shortcut), global
average pooling, and the shared linear head. It has no built-in symmetry: it is the control that fails
the exact rotation test.
"""

from __future__ import annotations

import torch
from torch import nn

from equilens.errors import ModelError
from equilens.models.base import FeatureFields, LensModel, plain_feature_fields
from equilens.models.registry import register_model

#: Channels of the four stages and BasicBlocks per stage of ResNet-18 (He et al. 2016, Table 1).
RESNET18_WIDTHS: tuple[int, int, int, int] = (64, 128, 256, 512)
RESNET18_BLOCKS: tuple[int, int, int, int] = (2, 2, 2, 2)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers + identity or 1x1 projection shortcut: (B, c_in, H, W) -> (B, c_out, H', W')."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(LensModel):
    """A ResNet of BasicBlocks on (B, in_channels, H, W) images, H, W >= 16 px.

    Args:
        in_channels: image channels.
        num_outputs: output width.
        widths: channels of each stage.
        blocks: BasicBlocks per stage.
        dropout: dropout before the linear head.
    """

    def __init__(self, in_channels: int, num_outputs: int,
                 widths: tuple[int, ...] = RESNET18_WIDTHS, blocks: tuple[int, ...] = RESNET18_BLOCKS,
                 dropout: float = 0.0) -> None:
        # 16 px: stem and max pool leave 4x4, the last two stages then work on 1x1 maps.
        super().__init__(in_channels, num_outputs, num_features=widths[-1], min_input_size=16,
                         dropout=dropout)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages = []
        c_in = widths[0]
        for i, (width, n) in enumerate(zip(widths, blocks, strict=True)):
            layers = [BasicBlock(c_in, width, stride=1 if i == 0 else 2)]
            layers += [BasicBlock(width, width, stride=1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            c_in = width
        self.stages = nn.Sequential(*stages)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.feature_depths = 1 + len(widths)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, widths[-1]) by global average pooling."""
        return self.stages(self.stem(x)).mean(dim=(-2, -1))

    def feature_fields(self, x: torch.Tensor, depth: int) -> FeatureFields:
        """The channels after the stem (``depth`` 1: 7x7 stride-2 conv, max pool; H/4) or after the stem
        and ``depth - 1`` stages, as :func:`~equilens.models.base.plain_feature_fields`: no transformation
        law."""
        self.check_input(x)
        self._check_depth(depth)
        features = self.stages[: depth - 1](self.stem(x))
        what = "the stem" if depth == 1 else f"the stem and {depth - 1} stage(s)"
        return plain_feature_fields(features, f"{features.shape[1]} plain channels after {what}")


@register_model("resnet18", symmetry="none", family="resnet",
                description="ResNet-18 (He et al. 2016), plain torch, from scratch; non-equivariant control")
def resnet18(in_channels: int = 1, num_outputs: int = 3, width: float = 1.0,
             dropout: float = 0.0) -> ResNet:
    """ResNet-18. ``width`` multiplies every stage width (1.0 = the paper's 64..512; tests use less)."""
    if width <= 0:
        raise ModelError(f"width must be > 0 (a multiplier of every layer's channels), got {width}")
    widths = tuple(max(1, round(w * width)) for w in RESNET18_WIDTHS)
    return ResNet(in_channels, num_outputs, widths=widths, blocks=RESNET18_BLOCKS, dropout=dropout)
