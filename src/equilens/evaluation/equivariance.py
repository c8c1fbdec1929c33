"""Measure how invariant a model is to rotations (and flips) of its input, trained or not.

The quantity is the relative output change ``||f(R x) - f(x)|| / ||f(x) - mean(f(x))||`` (Frobenius
norms over the batch of outputs (B, K); the denominator is the outputs' spread over the batch's
images, see :func:`relative_change`) for a rotation R of the images about the grid centre. Multiples
of 90 degrees are exact grid permutations (``torch.rot90``); other angles need interpolation (bilinear
``grid_sample``), which changes the image itself. The *interpolation floor* at angle t is the same
output change for rotating forth by t and back by -t, ``f(R_-t R_t x)`` against ``f(x)``: the change
an exactly invariant model would still show from resampling alone (two resamplings, so an upper
reference for one). ``image_floor`` is that resampling change of the images themselves,
``||R_-t R_t x - x|| / ||x||``. Images are masked to the inscribed disk so that rotation moves no
content in or out of the frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from equilens.errors import ConfigError
from equilens.models.symmetry import GRID_TRANSFORMS

ModelT = TypeVar("ModelT", bound=nn.Module)


def disk_mask(height: int, width: int) -> torch.Tensor:
    """(H, W) float mask: 1 inside the largest disk centred on the grid centre, 0 outside."""
    yy = torch.arange(height, dtype=torch.float64) - (height - 1) / 2
    xx = torch.arange(width, dtype=torch.float64) - (width - 1) / 2
    r2 = yy[:, None] ** 2 + xx[None, :] ** 2
    return (r2 <= ((min(height, width) - 1) / 2) ** 2).to(torch.float32)


def rotate_images(x: torch.Tensor, angle_deg: float) -> torch.Tensor:
    """Rotate (B, C, H, W) images counter-clockwise (as displayed with row 0 at the top, like
    ``torch.rot90(x, 1, (-2, -1))``) by ``angle_deg`` degrees about the grid centre.

    Multiples of 90 degrees use ``torch.rot90`` (exact, needs H == W for 90/270); other angles bilinear
    interpolation with zeros outside the image.
    """
    quarter = angle_deg / 90.0
    if abs(quarter - round(quarter)) < 1e-12:
        return torch.rot90(x, int(round(quarter)) % 4, (-2, -1))
    h, w = x.shape[-2:]
    if h != w:
        raise ConfigError(f"rotation by {angle_deg} degrees needs square images, got {h}x{w}")
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    # output pixel (x_out, y_out) in normalised coords (x right, y down) samples the input at R^-1 p;
    # a counter-clockwise display rotation by t is a clockwise one in (x right, y down) coordinates.
    theta = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=x.dtype).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def gaussian_blur(images: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Convolve (B, C, H, W) images with a circular Gaussian PSF of standard deviation ``sigma_px``
    pixels (separable, truncated at 3 sigma, zero padding); ``sigma_px <= 0`` returns the input."""
    if sigma_px <= 0:
        return images
    half = int(math.ceil(3 * sigma_px))
    t = torch.arange(-half, half + 1, dtype=images.dtype)
    g = torch.exp(-(t**2) / (2 * sigma_px**2))
    g = g / g.sum()
    b, c, h, w = images.shape
    x = images.reshape(b * c, 1, h, w)
    x = F.conv2d(F.pad(x, (half, half, 0, 0)), g.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, half, half)), g.view(1, 1, -1, 1))
    return x.reshape(b, c, h, w)


def synthetic_lens_images(n: int, size: int, generator: torch.Generator, channels: int = 1,
                          psf_sigma: float = 0.0) -> torch.Tensor:
    """Random smooth lens-like test images (n, channels, size, size), masked to the inscribed disk.

    Each image is an elliptical Gaussian lens galaxy at a random offset plus a partial ring (an arc of an
    Einstein ring at random radius, width, angular extent and orientation) and a compact clump on it,
    with values of order 1. Not physical: a smooth, structured input for symmetry tests, unlike white
    noise (whose rotation by a non-grid angle is dominated by interpolation). ``psf_sigma`` > 0 (pixels)
    blurs the images with a Gaussian PSF before masking (band-limits them further, so that bilinear
    rotation changes them less).
    """
    def u(lo: float, hi: float, shape: tuple[int, ...] = (n,)) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=generator)

    c = (size - 1) / 2
    yy = (torch.arange(size, dtype=torch.float32) - c)[None, :, None] / size
    xx = (torch.arange(size, dtype=torch.float32) - c)[None, None, :] / size
    cx, cy = u(-0.05, 0.05)[:, None, None], u(-0.05, 0.05)[:, None, None]
    q, phi = u(0.6, 1.0)[:, None, None], u(0, math.pi)[:, None, None]
    dx, dy = xx - cx, yy - cy
    xr = dx * torch.cos(phi) + dy * torch.sin(phi)
    yr = -dx * torch.sin(phi) + dy * torch.cos(phi)
    galaxy = torch.exp(-(xr**2 + (yr / q) ** 2) / (2 * u(0.05, 0.12)[:, None, None] ** 2))
    r = torch.sqrt(xx**2 + yy**2)
    ang = torch.atan2(yy, xx)
    r_ring, w_ring = u(0.15, 0.3)[:, None, None], u(0.025, 0.05)[:, None, None]
    a0, extent = u(-math.pi, math.pi)[:, None, None], u(0.6, 2.5)[:, None, None]
    dang = torch.remainder(ang - a0 + math.pi, 2 * math.pi) - math.pi
    arc = torch.exp(-((r - r_ring) ** 2) / (2 * w_ring**2)) * torch.exp(-(dang**2) / (2 * extent**2))
    clump_x = r_ring * torch.cos(a0 + 0.5 * extent)
    clump_y = r_ring * torch.sin(a0 + 0.5 * extent)
    clump = torch.exp(-((xx - clump_x) ** 2 + (yy - clump_y) ** 2) / (2 * 0.035**2))
    img = galaxy + u(0.3, 1.0)[:, None, None] * arc + u(0.0, 0.5)[:, None, None] * clump
    img = gaussian_blur(img[:, None], psf_sigma).repeat(1, channels, 1, 1) * disk_mask(size, size)
    return img


@dataclass
class EquivarianceCurve:
    """Relative output change against rotation angle.

    Attributes:
        angles: rotation angles in degrees, shape (A,).
        model_error: relative output change (see :func:`relative_change`) at each angle, (A,).
        floor: interpolation floor (rotate forth and back) at each angle, (A,).
        image_floor: relative change of the images themselves after rotating forth and back, (A,).
        flips: relative output change under the grid flips / transposes (name -> value).
    """

    angles: np.ndarray
    model_error: np.ndarray
    floor: np.ndarray
    image_floor: np.ndarray
    flips: dict[str, float]

    def table(self) -> str:
        """A plain-text table of the curve."""
        lines = [f"{'angle':>7}  {'model':>10}  {'floor':>10}  {'image floor':>11}"]
        for a, m, f, i in zip(self.angles, self.model_error, self.floor, self.image_floor, strict=True):
            lines.append(f"{a:7.1f}  {m:10.3e}  {f:10.3e}  {i:11.3e}")
        for name, value in self.flips.items():
            lines.append(f"{name:>13}: {value:.3e}")
        return "\n".join(lines)


def relative_change(new: torch.Tensor, ref: torch.Tensor) -> float:
    """How much ``new`` (B, ...) differs from ``ref`` (B, ...), relative to how much ``ref`` varies
    between the images of the batch: ``||new - ref|| / ||ref - mean_b(ref)||``.

    Normalising by the spread over images (not by ``||ref||``) makes a constant offset, such as the
    head's bias in an untrained model, count for nothing: 1 means the transform changes the output as
    much as swapping the image for another one. With one image (B = 1) or no spread, ``||ref||`` is used.
    """
    diff = float((new - ref).norm())
    spread = float((ref - ref.mean(dim=0, keepdim=True)).norm()) if ref.shape[0] > 1 else 0.0
    denom = spread if spread > 0 else float(ref.norm())
    return diff / denom if denom > 0 else diff


def calibrate_batchnorm(model: ModelT, images: torch.Tensor) -> ModelT:
    """A copy of ``model``, in eval mode, whose batch-norm statistics are estimated on ``images``.

    An untrained network in eval mode normalises with the initial running statistics (mean 0,
    variance 1), which do not match its activations: its outputs then hardly depend on the image, and
    any change relative to the spread over images is dominated by that artefact (an untrained C8 net
    measured above ResNet-18 at 45 degrees this way, and far below it once calibrated). One train-mode
    pass of ``forward_features(images)`` with a cumulative average gives the statistics a trained
    network has; the weights are unchanged and the original model is left alone. Covers torch
    ``BatchNorm*d`` (also inside escnn's ``InnerBatchNorm``) and escnn's ``IIDBatchNorm2d``.

    Args:
        model: an equilens model (has ``forward_features``), images (B, C, H, W).
    """
    import copy

    model = copy.deepcopy(model)
    normalisers = [m for m in model.modules() if isinstance(getattr(m, "num_batches_tracked", None), torch.Tensor)]
    for m in normalisers:
        m.reset_running_stats()  # type: ignore[operator]
        # cumulative average: after one batch, exactly that batch's statistics
        m.momentum = None  # type: ignore[assignment]
    model.train()
    with torch.no_grad():
        model.forward_features(images)  # type: ignore[operator]
    return model.eval()


@torch.no_grad()
def equivariance_curve(model: nn.Module, images: torch.Tensor, angles: Sequence[float],
                       mask: bool = True, flips: bool = True) -> EquivarianceCurve:
    """Relative output change of ``model`` (put in eval mode) against rotation angle, with its floor.

    Args:
        model: maps (B, C, H, W) -> (B, K); any equilens model (or plain torch module).
        images: (B, C, H, W) float images, H == W.
        angles: rotation angles in degrees.
        mask: multiply the images by :func:`disk_mask` first.
        flips: also measure the four grid reflections (``curve.flips``; empty if False).
    """
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ConfigError(f"images must be (B, C, H, H) square, got {tuple(images.shape)}")
    was_training = model.training
    model.eval()
    try:
        x = images * disk_mask(*images.shape[-2:]) if mask else images
        ref = model(x)
        errs, floors, img_floors = [], [], []
        for angle in angles:
            errs.append(relative_change(model(rotate_images(x, angle)), ref))
            back = rotate_images(rotate_images(x, angle), -angle)
            floors.append(relative_change(model(back), ref))
            img_floors.append(float((back - x).norm() / x.norm()))
        flip_errs = {name: relative_change(model(GRID_TRANSFORMS[name](x)), ref)
                     for name in ("flip_lr", "flip_ud", "transpose", "antitranspose")} if flips else {}
    finally:
        model.train(was_training)
    return EquivarianceCurve(np.asarray(angles, dtype=float), np.asarray(errs), np.asarray(floors),
                             np.asarray(img_floors), flip_errs)


def plot_equivariance_curve(curve: EquivarianceCurve, path: str | Path, title: str = "") -> Path:
    """Save a log-scale plot of the model's output change, the interpolation floor and the images' own
    resampling change against angle to ``path`` (PNG/PDF); exact zeros are marked on the bottom edge,
    not drawn as measured points (:func:`equilens.evaluation.plots.plot_rotation_curve`)."""
    from equilens.evaluation.plots import plot_rotation_curve

    return plot_rotation_curve(curve.angles, curve.model_error, curve.floor, curve.image_floor, path, title=title)
