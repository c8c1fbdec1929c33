"""The interface every equilens model shares.

A model maps float images (B, C, H, W) to (B, num_outputs) as
``forward_head(forward_features(x))``: ``forward_features`` gives a (B, num_features) vector that is
invariant under the model's symmetry group, and ``forward_head`` is a linear layer (or a small MLP) on
it. The same backbone is a classifier or a regressor through its head alone.
"""

from __future__ import annotations

import torch
from torch import nn

from equilens.errors import ModelError


class LensModel(nn.Module):
    """Base class: input checking, the head, and the shared forward.

    Subclasses build their backbone, set ``self.num_features`` and implement ``forward_features``.

    Attributes:
        in_channels: expected C.
        num_outputs: output width.
        num_features: width of the invariant feature vector.
        min_input_size: smallest H and W (pixels) the model accepts.
        model_name, symmetry: filled in by :func:`equilens.models.create_model`.
    """

    model_name: str = ""
    symmetry: str = "none"

    def __init__(self, in_channels: int, num_outputs: int, num_features: int, min_input_size: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_outputs = num_outputs
        self.num_features = num_features
        self.min_input_size = min_input_size
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(num_features, num_outputs))

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`ModelError` unless ``x`` is float (B, in_channels, H, W) with H, W >= minimum."""
        if x.ndim != 4:
            raise ModelError(f"{self.model_name or type(self).__name__} expects (B, C, H, W) images, "
                             f"got a tensor of shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ModelError(f"{self.model_name or type(self).__name__} was built for {self.in_channels} "
                             f"input channel(s), got {x.shape[1]}")
        if min(x.shape[-2:]) < self.min_input_size:
            raise ModelError(f"{self.model_name or type(self).__name__} needs images of at least "
                             f"{self.min_input_size}x{self.min_input_size} px, got "
                             f"{x.shape[-2]}x{x.shape[-1]}")
        if not torch.is_floating_point(x):
            raise ModelError(f"expected floating-point images, got dtype {x.dtype}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """(B, C, H, W) -> (B, num_features), invariant under ``self.symmetry``."""
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(B, num_features) -> (B, num_outputs)."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))
