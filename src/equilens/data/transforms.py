"""Image normalisations and symmetry augmentations, in plain torch (no torchvision).

Normalisations (:class:`Normalizer`) map raw image counts to network inputs. Their statistics are
computed on the TRAINING split only (:meth:`Normalizer.fit`) and saved with a run
(:meth:`Normalizer.to_dict`), so validation, test and any other data set are normalised exactly like the
training images.

``none``
    x unchanged.
``standardise``
    (x - mu) / sigma, with mu and sigma the mean and standard deviation of all training pixels.
``minmax``
    (x - lo) / (hi - lo), with lo and hi the 0.1 and 99.9 percentiles of the training pixels (robust
    to a few hot pixels); values outside [lo, hi] are not clipped.
``asinh``
    an asinh stretch for images with a bright core and faint arcs: y = asinh(x / s), with the softening
    s = the standard deviation of the training pixels, then y is standardised with the mean and standard
    deviation of y over the training pixels.

Augmentations (:func:`augment_batch`) act on a batch (B, C, H, W) with a seeded ``torch.Generator``:

``none``        identity;
``rot90``       a random multiple of 90 degrees per image (exact, no interpolation);
``rotate``      a uniformly random angle in [0, 360) per image (bilinear ``grid_sample``, zero padding
                outside the original field of view);
``flip``        a random horizontal flip per image (with rot90 / rotate this generates every reflection);
``rotate+flip`` a random flip then a random continuous rotation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from equilens.data.choices import AUGMENTATIONS, NORMALISATIONS, check_choice
from equilens.errors import ConfigError

#: Percentiles (in percent) of the training pixels used as the ``minmax`` range.
MINMAX_PERCENTILES: tuple[float, float] = (0.1, 99.9)


@dataclass
class Normalizer:
    """A pixel normalisation with statistics from the training split.

    Attributes:
        method: one of :data:`NORMALISATIONS`.
        shift, scale: the affine map applied last, ``(y - shift) / scale``.
        softening: the asinh softening ``s`` (only for ``asinh``), in image units.
    """

    method: str = "standardise"
    shift: float = 0.0
    scale: float = 1.0
    softening: float = 1.0

    def __post_init__(self) -> None:
        check_choice("normalisation", self.method, NORMALISATIONS)

    @classmethod
    def fit(cls, method: str, pixels: np.ndarray) -> Normalizer:
        """Compute the statistics of ``method`` from training pixels (any shape, image units)."""
        check_choice("normalisation", method, NORMALISATIONS)
        x = np.asarray(pixels, dtype=np.float64).ravel()
        if method == "none":
            return cls("none")
        if not np.all(np.isfinite(x)):
            raise ConfigError("the training images contain NaN or inf; cannot compute normalisation statistics")
        if method == "standardise":
            return cls(method, float(x.mean()), _positive(float(x.std())))
        if method == "minmax":
            lo, hi = np.percentile(x, MINMAX_PERCENTILES)
            return cls(method, float(lo), _positive(float(hi - lo)))
        soft = _positive(float(x.std()))
        y = np.arcsinh(x / soft)
        return cls(method, float(y.mean()), _positive(float(y.std())), soft)

    def __call__(self, x: np.ndarray | torch.Tensor) -> Any:
        """Normalise images (numpy or torch, any shape); returns the same type, float32."""
        if self.method == "none":
            return x
        if self.method == "asinh":
            x = torch.asinh(x / self.softening) if isinstance(x, torch.Tensor) else np.arcsinh(x / self.softening)
        out = (x - self.shift) / self.scale
        return out.float() if isinstance(out, torch.Tensor) else out.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "shift": self.shift, "scale": self.scale, "softening": self.softening}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalizer:
        return cls(str(d["method"]), float(d["shift"]), float(d["scale"]), float(d.get("softening", 1.0)))


def _positive(v: float) -> float:
    return v if v > 0 and math.isfinite(v) else 1.0


# -- geometric transforms ----------------------------------------------------------------------------

def rotate(x: torch.Tensor, angle_deg: float | torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Rotate images counter-clockwise (as displayed with the origin at the bottom) about their centre.

    Args:
        x: (B, C, H, W) float images.
        angle_deg: one angle or a (B,) tensor of angles, in degrees.
        padding_mode: ``grid_sample`` padding for pixels coming from outside the image.

    Returns:
        (B, C, H, W) rotated by bilinear interpolation. Multiples of 90 degrees agree with
        :func:`torch.rot90` on ``dims=(-2, -1)`` up to float rounding for square images.
    """
    b = x.shape[0]
    theta = torch.as_tensor(angle_deg, dtype=torch.float64).reshape(-1).expand(b) * (math.pi / 180.0)
    cos, sin = torch.cos(theta), torch.sin(theta)
    # affine_grid maps output coords to input coords. With align_corners=False and square images the
    # normalised grid is isotropic, so a plain rotation matrix rotates about the pixel-grid centre.
    # Row index grows downward; this matrix gives the same sense as torch.rot90(k=1, dims=(-2, -1)).
    mat = torch.zeros(b, 2, 3, dtype=torch.float64)
    mat[:, 0, 0] = cos
    mat[:, 0, 1] = -sin
    mat[:, 1, 0] = sin
    mat[:, 1, 1] = cos
    grid = F.affine_grid(mat.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def rot90(x: torch.Tensor, k: int) -> torch.Tensor:
    """Exact rotation by k * 90 degrees (same sense as :func:`rotate`)."""
    return torch.rot90(x, k, dims=(-2, -1))


def hflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror left-right (reverse the last axis)."""
    return torch.flip(x, dims=(-1,))


def vflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror up-down (reverse the row axis)."""
    return torch.flip(x, dims=(-2,))


def augment_batch(x: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Apply a random symmetry transform of kind ``mode`` to every image of a (B, C, H, W) batch.

    Randomness comes only from ``generator`` (a CPU ``torch.Generator``), so a run is reproducible
    and a resumed run draws the same transforms.
    """
    check_choice("augmentation", mode, AUGMENTATIONS)
    if mode == "none" or x.shape[0] == 0:
        return x
    b = x.shape[0]
    if mode in ("flip", "rotate+flip"):
        flip = torch.rand(b, generator=generator) < 0.5
        x = torch.where(flip.to(x.device).view(b, 1, 1, 1), hflip(x), x)
    if mode == "rot90":
        k = torch.randint(0, 4, (b,), generator=generator).to(x.device)
        out = x.clone()
        for q in range(1, 4):
            sel = k == q
            if bool(sel.any()):
                out[sel] = rot90(x[sel], q)
        return out
    if mode in ("rotate", "rotate+flip"):
        angles = torch.rand(b, generator=generator, dtype=torch.float64) * 360.0
        x = rotate(x, angles.to(x.device))
    return x
