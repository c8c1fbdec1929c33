"""Equivariant Transformer Network (Tai, Bailis and Valiant 2019, "Equivariant Transformers for Neural
Network based Image Recognition", ICML; arXiv:1901.11399), written for equilens.

A chain of pose predictors canonicalises the image before an ordinary CNN sees it. Each predictor works
in the canonical coordinates of its one-parameter transformation, where that transformation is a
translation, so a translation-equivariant network followed by a soft-argmax predicts the parameter
equivariantly by construction:

1. translation (Cartesian coordinates): a heat map from *isotropic* convolutions (radial filters, so the
   map also rotates with the image), soft-argmax over all pixels -> centre ``t`` (pixels), squashed
   radially to at most ``max_shift`` of the half-size;
2. rotation (polar coordinates around ``t``: rotations are circular shifts along the angle axis): a CNN
   with circular padding along the angle, averaged over radius, circular soft-argmax (the direction of
   the probability-weighted mean of ``exp(i phi)``) -> angle ``theta``;
3. scale (log-polar coordinates around ``t``, angles measured from ``theta``: scalings are shifts along
   log-radius): the same kind of CNN averaged over angle, soft-argmax over log-radius -> ``log s``,
   squashed to ``[-log max_scale, log max_scale]``.

The three are composed into ONE affine map ``p -> t + s R(theta) p`` (pixel offsets from the image
centre), applied once to the input with ``affine_grid`` + ``grid_sample``, and a plain CNN backbone (or any
registered model, ``backbone="resnet18"``) maps the canonical image to the feature vector.

Symmetry. If the input is rotated by ``a`` about its centre, the predicted centre rotates with it and the
predicted angle becomes ``theta + a``, so the canonical image, and everything after it, is unchanged:
rotation invariance by canonicalisation. On the pixel grid it holds up to interpolation: the polar grid
has ``n_angles`` angles, so rotations by multiples of ``360 / n_angles`` degrees (90 degrees included) are
circular shifts of the polar image and are reproduced up to float rounding of the sample coordinates,
which the soft-argmaxes and ``grid_sample`` can amplify; other angles are approximate. We therefore claim
"SO(2) approx., by canonicalisation" and not an exact group: the measured 90-degree error is reported by
the tests, not assumed. Translations and scalings are canonicalised approximately (image borders and the
bounded ranges). Mirror images are not covered.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from equilens.errors import ModelError
from equilens.models.base import LensModel
from equilens.models.harmonic import RadialBasis, centre_preserving_pool
from equilens.models.registry import create_model, register_model

#: Small constant in norms (keeps gradients finite at zero).
NORM_EPS = 1e-12


def pixel_half_extent(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(2,) tensor ``(W / 2, H / 2)``: a pixel offset from the image centre (x right, y down) equals the
    ``grid_sample`` normalised coordinate (``align_corners=False``) times this."""
    return like.new_tensor([width / 2.0, height / 2.0])


def sample_points(x: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``x`` at pixel offsets from its centre (zero outside the image).

    Args:
        x: (B, C, H, W) images.
        points: (B, P, Q, 2) offsets ``(x, y)`` in pixels from the image centre (x right, y down).

    Returns:
        (B, C, P, Q).
    """
    grid = points / pixel_half_extent(x.shape[-2], x.shape[-1], points)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotation_matrix(theta: torch.Tensor) -> torch.Tensor:
    """(B,) angles (radians, from +x towards +y) -> (B, 2, 2) rotation matrices."""
    c, s = torch.cos(theta), torch.sin(theta)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def compose_affine(shift: torch.Tensor, theta: torch.Tensor, log_scale: torch.Tensor,
                   height: int, width: int) -> torch.Tensor:
    """The ``affine_grid`` matrix of ``p -> shift + exp(log_scale) R(theta) p`` in pixel offsets.

    The canonical image is ``C(p) = X(shift + s R(theta) p)``: translation, then rotation, then scaling,
    one map.

    Args:
        shift: (B, 2) centre ``t`` in pixels (x, y).
        theta: (B,) angle in radians.
        log_scale: (B,) natural log of the scale ``s``.
        height, width: image size in pixels.

    Returns:
        (B, 2, 3) matrix for ``F.affine_grid(..., align_corners=False)``.
    """
    d = pixel_half_extent(height, width, shift)
    a = rotation_matrix(theta) * torch.exp(log_scale)[:, None, None]
    a = a * d[None, None, :] / d[None, :, None]  # D^-1 A D
    return torch.cat([a, (shift / d)[:, :, None]], dim=2)


def apply_affine(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Resample (B, C, H, W) images with a (B, 2, 3) ``affine_grid`` matrix (bilinear, zeros outside)."""
    grid = F.affine_grid(matrix, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class IsotropicConv(nn.Module):
    """Convolution with radially symmetric filters (learnt ring values, odd centred kernel): its output
    rotates exactly with its input for 90-degree rotations and flips, approximately at other angles."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5) -> None:
        super().__init__()
        self.basis = RadialBasis(kernel_size)
        n = self.basis.n_rings
        self.radial = nn.Parameter(torch.randn(out_channels, in_channels, n)
                                   * math.sqrt(2.0 / (in_channels * kernel_size**2)))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) -> (B, out, H, W)."""
        weight = torch.einsum("oij,jyx->oiyx", self.radial, self.basis.weights)
        return F.conv2d(x, weight, self.bias, padding=self.padding)


class CanonicalCNN(nn.Module):
    """A small CNN on a (radius-like, angle) image: zero padding along the first axis, circular padding
    along the angle axis, so it is equivariant to shifts along both (circular ones along the angle).

    (B, C, n_radii, n_angles) -> (B, 1, n_radii, n_angles) logits.
    """

    def __init__(self, in_channels: int, width: int = 16, depth: int = 3, kernel_size: int = 5) -> None:
        super().__init__()
        self.pad = kernel_size // 2
        chans = [in_channels] + [width] * (depth - 1) + [1]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, kernel_size, padding=(self.pad, 0))
                                   for a, b in zip(chans[:-1], chans[1:], strict=True))
        self.norms = nn.ModuleList(nn.BatchNorm2d(b) for b in chans[1:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = conv(F.pad(x, (self.pad, self.pad, 0, 0), mode="circular"))
            if i < len(self.norms):
                x = F.relu(self.norms[i](x))
        return x


class TranslationPose(nn.Module):
    """Centre ``t`` (pixels) by soft-argmax of an isotropic-convolution heat map over all pixels.

    Images whose smaller side is at least ``pool_above`` pixels are first average-pooled by 2 (keeping
    the grid centre fixed, see :func:`~equilens.models.harmonic.centre_preserving_pool`) until it is
    not; a pooled pixel's offset from the centre is exactly half that of the pixels it averages, so
    the soft-argmax is scaled back by 2 per pool.
    """

    def __init__(self, in_channels: int, width: int = 8, kernel_size: int = 5, max_shift: float = 0.25,
                 pool_above: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(IsotropicConv(in_channels, width, kernel_size), nn.ReLU(),
                                 IsotropicConv(width, width, kernel_size), nn.ReLU(),
                                 IsotropicConv(width, 1, kernel_size))
        self.max_shift, self.pool_above = max_shift, pool_above

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 2) offset ``(x, y)`` in pixels from the centre, radius at most
        ``max_shift * min(H, W) / 2``."""
        limit = self.max_shift * min(x.shape[-2:]) / 2.0
        factor = 1.0
        while min(x.shape[-2:]) >= self.pool_above:
            x, factor = centre_preserving_pool(x), 2.0 * factor
        b, _, h, w = x.shape
        prob = torch.softmax(self.net(x).reshape(b, h * w), dim=1).reshape(b, h, w)
        ys = (torch.arange(h, dtype=x.dtype, device=x.device) - (h - 1) / 2.0) * factor
        xs = (torch.arange(w, dtype=x.dtype, device=x.device) - (w - 1) / 2.0) * factor
        raw = torch.stack([(prob.sum(1) * xs).sum(1), (prob.sum(2) * ys).sum(1)], dim=1)
        norm = torch.sqrt((raw * raw).sum(1, keepdim=True) + NORM_EPS)
        return raw * (limit * torch.tanh(norm / limit) / norm)


def _angle_table(n_angles: int) -> torch.Tensor:
    """(n_angles, 2) unit vectors at 2 pi j / n; computed in float64 so that the table is exactly
    symmetric under the quarter turn after rounding to float32 whenever 4 divides n_angles."""
    phi = torch.arange(n_angles, dtype=torch.float64) * (2.0 * math.pi / n_angles)
    return torch.stack([torch.cos(phi), torch.sin(phi)], dim=1).float()


class RotationPose(nn.Module):
    """Angle by circular soft-argmax over a polar resampling around the centre."""

    def __init__(self, in_channels: int, n_radii: int = 24, n_angles: int = 64, width: int = 16,
                 radius_fraction: float = 0.9) -> None:
        super().__init__()
        self.n_radii, self.radius_fraction = n_radii, radius_fraction
        self.unit: torch.Tensor
        self.register_buffer("unit", _angle_table(n_angles), persistent=False)
        self.net = CanonicalCNN(in_channels, width)

    def polar(self, x: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W), centre (B, 2) pixels -> polar image (B, C, n_radii, n_angles); radii evenly
        spaced up to ``radius_fraction * min(H, W) / 2``, angles ``2 pi j / n_angles``."""
        r_max = self.radius_fraction * min(x.shape[-2:]) / 2.0
        radii = torch.linspace(r_max / self.n_radii, r_max, self.n_radii, dtype=x.dtype, device=x.device)
        pts = centre[:, None, None, :] + radii[None, :, None, None] * self.unit[None, None, :, :]
        return sample_points(x, pts)

    def forward(self, x: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        """-> (B,) angle in radians (from +x towards +y, pixel coordinates)."""
        logits = self.net(self.polar(x, centre)).mean(dim=(1, 2))  # (B, n_angles)
        v = torch.softmax(logits, dim=1) @ self.unit  # (B, 2) mean of exp(i phi)
        return torch.atan2(v[:, 1], v[:, 0])


class ScalePose(nn.Module):
    """Log-scale by soft-argmax over log-radius of a log-polar resampling around the centre."""

    def __init__(self, in_channels: int, n_radii: int = 24, n_angles: int = 32, width: int = 16,
                 radius_fraction: float = 0.9, min_radius: float = 1.0, max_scale: float = 2.0) -> None:
        super().__init__()
        if max_scale <= 1.0:
            raise ModelError(f"max_scale must be > 1 (the scale is bounded to [1/max_scale, max_scale]), "
                             f"got {max_scale}")
        self.n_radii, self.radius_fraction, self.min_radius = n_radii, radius_fraction, min_radius
        self.log_max = math.log(max_scale)
        self.unit: torch.Tensor
        self.register_buffer("unit", _angle_table(n_angles), persistent=False)
        self.net = CanonicalCNN(in_channels, width)

    def forward(self, x: torch.Tensor, centre: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """-> (B,) natural log of the scale, in ``[-log max_scale, log max_scale]``."""
        r_max = self.radius_fraction * min(x.shape[-2:]) / 2.0
        log_r = torch.linspace(math.log(self.min_radius), math.log(r_max), self.n_radii,
                               dtype=x.dtype, device=x.device)
        dirs = torch.einsum("bij,aj->bai", rotation_matrix(theta), self.unit)  # (B, n_angles, 2)
        pts = centre[:, None, None, :] + torch.exp(log_r)[None, :, None, None] * dirs[:, None, :, :]
        logits = self.net(sample_points(x, pts)).mean(dim=(1, 3))  # (B, n_radii)
        raw = torch.softmax(logits, dim=1) @ (log_r - log_r.mean())
        return self.log_max * torch.tanh(raw / self.log_max)


class SmallBackbone(nn.Module):
    """Plain CNN: strided 3x3 conv stages with batch norm and ReLU, global average pool.
    (B, C, H, W) -> (B, widths[-1])."""

    def __init__(self, in_channels: int, widths: tuple[int, ...] = (24, 32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(prev, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            if i > 0:
                layers += [nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            prev = w
        self.body = nn.Sequential(*layers)
        self.out_features = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(-2, -1))


class EquivariantTransformerNet(LensModel):
    """Pose predictors (translation, rotation, scale) -> one affine resampling -> CNN backbone.

    Args:
        in_channels, num_outputs: as for every model.
        backbone: ``"small"`` (a plain 7-conv CNN, 128 features) or any registered model name (its
            ``forward_features`` is used, e.g. ``"resnet18"``).
        pose: which predictors to use, a subset of ``("translation", "rotation", "scale")``.
        n_angles: angles of the polar grid (a multiple of 4 so that 90-degree rotations are circular
            shifts).
        max_shift: largest centre offset, as a fraction of the half-size.
        max_scale: scales are bounded to ``[1/max_scale, max_scale]``.
        dropout: before the head.
    """

    POSES = ("translation", "rotation", "scale")

    def __init__(self, in_channels: int = 1, num_outputs: int = 3, backbone: str = "small",
                 pose: tuple[str, ...] = POSES, n_angles: int = 64, max_shift: float = 0.25,
                 max_scale: float = 2.0, dropout: float = 0.0) -> None:
        pose = tuple(pose)
        bad = [p for p in pose if p not in self.POSES]
        if bad or not pose:
            raise ModelError(f"unknown pose predictor(s) {bad or pose!r}; valid: a non-empty subset of "
                             f"{list(self.POSES)}")
        if n_angles < 8 or n_angles % 4:
            raise ModelError(f"n_angles must be a multiple of 4 and >= 8, got {n_angles}")
        body: nn.Module
        if backbone == "small":
            small = SmallBackbone(in_channels)
            body, n_feat, min_size = small, small.out_features, 16
        else:
            inner = create_model(backbone, in_channels=in_channels, num_outputs=1)
            inner.head = nn.Sequential()  # only its features are used; an unused head would get no gradient
            body, n_feat, min_size = inner, inner.num_features, max(16, inner.min_input_size)
        super().__init__(in_channels, num_outputs, num_features=n_feat, min_input_size=min_size,
                         dropout=dropout)
        self.pose = pose
        self.backbone_name = backbone
        self.backbone = body
        self.translation = TranslationPose(in_channels, max_shift=max_shift) if "translation" in pose else None
        self.rotation = RotationPose(in_channels, n_angles=n_angles) if "rotation" in pose else None
        self.scale = ScalePose(in_channels, max_scale=max_scale) if "scale" in pose else None

    def predict_pose(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Chained pose predictions for (B, C, H, W) images: ``shift`` (B, 2) pixels (x, y), ``theta``
        (B,) radians, ``log_scale`` (B,); a predictor that is switched off gives the identity."""
        b = x.shape[0]
        shift = self.translation(x) if self.translation is not None else x.new_zeros(b, 2)
        theta = self.rotation(x, shift) if self.rotation is not None else x.new_zeros(b)
        log_scale = self.scale(x, shift, theta) if self.scale is not None else x.new_zeros(b)
        return {"shift": shift, "theta": theta, "log_scale": log_scale}

    def canonicalize(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(B, C, H, W) -> canonical images (B, C, H, W) and the pose used (see :meth:`predict_pose`)."""
        pose = self.predict_pose(x)
        matrix = compose_affine(pose["shift"], pose["theta"], pose["log_scale"], x.shape[-2], x.shape[-1])
        return apply_affine(x, matrix), pose

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_features), rotation-invariant by canonicalisation (approximately)."""
        canonical, _ = self.canonicalize(x)
        if isinstance(self.backbone, LensModel):
            return self.backbone.forward_features(canonical)
        return self.backbone(canonical)


@register_model(
    "etn",
    symmetry="SO(2) approx., by canonicalisation",
    family="etn",
    description="Equivariant Transformer Network (Tai et al. 2019): translation/rotation/scale pose "
                "predictors in canonical coordinates, one affine resampling, small CNN",
)
def etn(in_channels: int = 1, num_outputs: int = 3, **kwargs: object) -> EquivariantTransformerNet:
    """Build the default ETN (translation -> rotation -> scale, small CNN backbone)."""
    return EquivariantTransformerNet(in_channels, num_outputs, **kwargs)  # type: ignore[arg-type]
