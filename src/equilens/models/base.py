"""The interface every equilens model shares.

A model maps float images (B, C, H, W) to (B, num_outputs) as
``forward_head(forward_features(x))``: ``forward_features`` gives a (B, num_features) vector that is
invariant under the model's symmetry group, and ``forward_head`` is a linear layer (or a small MLP) on
it. The same backbone is a classifier or a regressor through its head alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from equilens.errors import ModelError


@dataclass(frozen=True)
class FeatureFields:
    """Intermediate features of a model read out as scalar and vector fields on the pixel grid.

    Vector components are (right, up) as displayed with row 0 at the top (``imshow``'s default), the
    frame in which :func:`torch.rot90` ``(x, 1, (-2, -1))`` is a counter-clockwise rotation by 90
    degrees and turns a vector (u, v) into (-v, u).

    Attributes:
        scalar: (B, S, H', W') scalar fields.
        vector: (B, V, 2, H', W') vector fields, components (right, up).
        equivariant: True when the fields obey a transformation law under the model's group: rotating the
            input by a group element g rotates every field's grid by g, leaves scalars unchanged and turns
            vectors by g (exactly for the grid's own rotations). False for plain CNN channels, which merely
            have the same shapes.
        description: one line saying what the fields are (e.g. "frequency 0 and 1 of 8 regular C8 fields").
    """

    scalar: torch.Tensor
    vector: torch.Tensor
    equivariant: bool
    description: str


#: Plain (non-equivariant) models whose ``feature_fields`` give :func:`plain_feature_fields`.
PLAIN_FIELD_MODELS: tuple[str, ...] = ("resnet18", "cnn_small")


def plain_feature_fields(features: torch.Tensor, description: str) -> FeatureFields:
    """Channels of a network without a transformation law, in the shapes of :class:`FeatureFields`:
    every channel as a scalar field and consecutive channel pairs (2k, 2k+1) as the (right, up)
    components of a vector field (an odd last channel is left out of the vectors). Nothing makes these
    turn with the input; they give a conventional CNN the same view as an equivariant one.

    Args:
        features: (B, C, H', W').
    """
    b, c, h, w = features.shape
    pairs = features[:, : 2 * (c // 2)].reshape(b, c // 2, 2, h, w)
    return FeatureFields(scalar=features, vector=pairs, equivariant=False, description=description)


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

    #: Number of layers (blocks) whose output :meth:`feature_fields` can read; 0: not supported.
    feature_depths: int = 0

    def feature_fields(self, x: torch.Tensor, depth: int) -> FeatureFields:
        """The features after the first ``depth`` layers (1 .. :attr:`feature_depths`) as scalar and vector
        fields (see :class:`FeatureFields`); families without such a read-out raise :class:`ModelError`."""
        raise ModelError(f"{self.model_name or type(self).__name__} does not expose its feature fields; "
                         "models that do: steerable_c{N}, steerable_d{N} and steerable_*_fourier (equivariant), "
                         "resnet18 and cnn_small (plain)")

    def _check_depth(self, depth: int) -> None:
        if not 1 <= depth <= self.feature_depths:
            raise ModelError(f"{self.model_name or type(self).__name__}: feature depth must be in "
                             f"1..{self.feature_depths}, got {depth}")

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(B, num_features) -> (B, num_outputs)."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))
