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

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from equilens.data.choices import AUGMENTATIONS, check_choice
from equilens.data.transforms import augment_batch
from equilens.errors import ConfigError, ModelError
from equilens.models.batchnorm import recompute_batch_norm
from equilens.models.symmetry import GRID_TRANSFORMS

if TYPE_CHECKING:
    from equilens.models.base import LensModel

ModelT = TypeVar("ModelT", bound=nn.Module)


def disk_mask(height: int, width: int) -> torch.Tensor:
    """(H, W) float mask: 1 inside the largest disk centred on the grid centre, 0 outside."""
    yy = torch.arange(height, dtype=torch.float64) - (height - 1) / 2
    xx = torch.arange(width, dtype=torch.float64) - (width - 1) / 2
    r2 = yy[:, None] ** 2 + xx[None, :] ** 2
    return (r2 <= ((min(height, width) - 1) / 2) ** 2).to(torch.float32)


def sky_fill(normalizer: Callable[[np.ndarray], Any]) -> float:
    """The normalised value of a pixel with zero flux (empty sky), e.g. -mean/std for ``standardise``."""
    return float(np.asarray(normalizer(np.zeros((1, 1), dtype=np.float32))).reshape(-1)[0])


def masked_rotation(images: torch.Tensor, angle: float, sky: float) -> torch.Tensor:
    """(B, C, H, W) normalised images rotated counter-clockwise by ``angle`` degrees about the grid centre,
    with every pixel outside the inscribed disk (before and after the turn) set to ``sky``."""
    mask = disk_mask(*images.shape[-2:]).to(images.dtype)
    # relative to empty sky, so that the rotation's zero padding and the mask are sky too
    return rotate_images((images - sky) * mask, angle) * mask + sky


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


#: Names of the per-image parameters of the synthetic lens-like images, in the order they are drawn.
LENS_PARAMS: tuple[str, ...] = ("cx", "cy", "q", "phi", "sigma", "r_ring", "w_ring", "a0", "extent",
                                "arc_amp", "clump_amp")


def draw_lens_params(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Draw the parameters of ``n`` synthetic lens-like images (see :func:`render_lens_images`).

    Lengths are in units of the image's smaller side, angles in radians; each entry has shape (n,).
    """
    ranges = {"cx": (-0.05, 0.05), "cy": (-0.05, 0.05), "q": (0.6, 1.0), "phi": (0.0, math.pi),
              "sigma": (0.05, 0.12), "r_ring": (0.15, 0.3), "w_ring": (0.025, 0.05), "a0": (-math.pi, math.pi),
              "extent": (0.6, 2.5), "arc_amp": (0.3, 1.0), "clump_amp": (0.0, 0.5)}
    return {k: lo + (hi - lo) * torch.rand((n,), generator=generator, dtype=torch.float64)
            for k, (lo, hi) in ((k, ranges[k]) for k in LENS_PARAMS)}


def render_lens_images(params: dict[str, torch.Tensor], height: int, width: int | None = None,
                       angle_deg: float = 0.0, channels: int = 1, psf_sigma: float = 0.0,
                       mask: bool = True) -> torch.Tensor:
    """Render the analytic lens-like images of ``params``, rotated by ``angle_deg`` about the grid centre.

    The rotation is applied to the analytic profile before sampling it on the pixel grid, so an image
    rendered at 30 degrees involves no interpolation: comparing a model's outputs on images rendered at
    0 and at ``angle_deg`` measures the model alone. The sense is that of :func:`rotate_images` (and of
    ``torch.rot90(x, 1, (-2, -1))`` at 90 degrees, which this reproduces to float rounding).

    Each image is an elliptical Gaussian lens galaxy at a small offset, a partial Einstein ring (arc) and
    a compact clump on it, values of order 1 (not physical: a smooth, structured test input). Computed
    in float64, returned in float32.

    Args:
        params: from :func:`draw_lens_params` (n images).
        height, width: image size in pixels (width defaults to height).
        angle_deg: rotation angle, degrees, counter-clockwise as displayed (row 0 at the top).
        channels: copies of the image along C.
        psf_sigma: Gaussian PSF blur in pixels (0: none), applied after rendering.
        mask: multiply by the inscribed-disk mask (:func:`disk_mask`).

    Returns:
        (n, channels, height, width) float32.
    """
    width = height if width is None else width
    p = {k: v.to(torch.float64)[:, None, None] for k, v in params.items()}
    scale = min(height, width)
    yy = (torch.arange(height, dtype=torch.float64) - (height - 1) / 2)[None, :, None] / scale
    xx = (torch.arange(width, dtype=torch.float64) - (width - 1) / 2)[None, None, :] / scale
    quarter = angle_deg / 90.0
    if abs(quarter - round(quarter)) < 1e-12:  # exact cosines and sines on the grid's own angles
        c, s = [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)][int(round(quarter)) % 4]
    else:
        c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    # the rotated image at pixel p is the unrotated profile at R^-1 p
    xs, ys = c * xx - s * yy, s * xx + c * yy
    dx, dy = xs - p["cx"], ys - p["cy"]
    xr = dx * torch.cos(p["phi"]) + dy * torch.sin(p["phi"])
    yr = -dx * torch.sin(p["phi"]) + dy * torch.cos(p["phi"])
    galaxy = torch.exp(-(xr**2 + (yr / p["q"]) ** 2) / (2 * p["sigma"] ** 2))
    r = torch.sqrt(xs**2 + ys**2)
    ang = torch.atan2(ys, xs)
    dang = torch.remainder(ang - p["a0"] + math.pi, 2 * math.pi) - math.pi
    arc = (torch.exp(-((r - p["r_ring"]) ** 2) / (2 * p["w_ring"] ** 2))
           * torch.exp(-(dang**2) / (2 * p["extent"] ** 2)))
    clump_x = p["r_ring"] * torch.cos(p["a0"] + 0.5 * p["extent"])
    clump_y = p["r_ring"] * torch.sin(p["a0"] + 0.5 * p["extent"])
    clump = torch.exp(-((xs - clump_x) ** 2 + (ys - clump_y) ** 2) / (2 * 0.035**2))
    img = (galaxy + p["arc_amp"] * arc + p["clump_amp"] * clump)[:, None]
    img = gaussian_blur(img, psf_sigma)
    if mask:
        img = img * disk_mask(height, width).to(torch.float64)
    return img.repeat(1, channels, 1, 1).float()


def synthetic_lens_images(n: int, size: int, generator: torch.Generator, channels: int = 1,
                          psf_sigma: float = 0.0) -> torch.Tensor:
    """Random smooth lens-like test images (n, channels, size, size), masked to the inscribed disk.

    :func:`draw_lens_params` then :func:`render_lens_images` at angle 0. Not physical: a smooth,
    structured input for symmetry tests, unlike white noise (whose rotation by a non-grid angle is
    dominated by interpolation). ``psf_sigma`` > 0 (pixels) blurs the images with a Gaussian PSF before
    masking (band-limits them further, so that bilinear rotation changes them less).
    """
    return render_lens_images(draw_lens_params(n, generator), size, channels=channels, psf_sigma=psf_sigma)


#: Ring-radius class boundaries of :func:`rotation_task` (units of the image's smaller side).
RING_CLASS_EDGES: tuple[float, ...] = (0.2, 0.25)


def rotation_task(n: int, generator: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A rotation-invariant 3-class toy task: parameters of ``n`` lens-like images and their labels.

    The label (``torch.long``, (n,)) is the tercile of the ring radius (edges :data:`RING_CLASS_EDGES`),
    which does not change when the image is rotated; render the images with :func:`render_lens_images`.
    """
    params = draw_lens_params(n, generator)
    labels = torch.bucketize(params["r_ring"], torch.tensor(RING_CLASS_EDGES, dtype=torch.float64))
    return params, labels


def train_briefly(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epochs: int,
                  generator: torch.Generator, batch_size: int = 32, lr: float = 3e-3,
                  bn_batches: int = 32, augmentation: str = "none") -> list[float]:
    """Train ``model`` in place with Adam and cross-entropy on (N, C, H, W) images and (N,) labels.

    A short training run for measuring what training does to a model's symmetry, not a training
    pipeline (see :mod:`equilens.training` for that). Minibatches are shuffled with ``generator``, and
    each is transformed by :func:`~equilens.data.transforms.augment_batch` with ``augmentation`` (one of
    ``none | rot90 | rotate | flip | rotate+flip``; drawn from ``generator`` too).
    Afterwards the batch-norm running statistics are recomputed with the final weights over
    ``bn_batches`` batches of a fixed random subset of ``images``
    (:func:`~equilens.models.batchnorm.recompute_batch_norm`; 0: the moving averages of training are
    kept). The model is left in eval mode.

    Returns:
        mean training loss of every epoch.
    """
    check_choice("augmentation", augmentation, AUGMENTATIONS)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(images.shape[0], generator=generator)
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(augment_batch(images[idx], augmentation, generator)), labels[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(order))
    # the running statistics for the final weights: with a constant learning rate the moving average lags
    # the weights enough to change the evaluated network (equilens.models.batchnorm)
    # (a fixed random subset, not the first images, which may all be of one class)
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:max(bn_batches, 0) * batch_size]
    recompute_batch_norm(model, (images[pick[i:i + batch_size]] for i in range(0, len(pick), batch_size)))
    model.eval()
    return losses


@dataclass
class OffGridChange:
    """Output change of a model between analytic images rendered at 0 degrees and at each angle.

    Attributes:
        angles: degrees, (A,).
        vs_spread: ``||f(x_a) - f(x_0)|| / ||f(x_0) - mean f(x_0)||`` per angle (A,): 1 means the rotation
            changes the outputs as much as swapping images.
        vs_norm: ``||f(x_a) - f(x_0)|| / ||f(x_0)||`` per angle (A,).
        spread_ratio: ``||f(x_0) - mean f(x_0)|| / ||f(x_0)||``: how much the outputs vary between images;
            below :data:`MIN_SPREAD_RATIO` the spread-relative figure is dominated by float rounding.
    """

    angles: np.ndarray
    vs_spread: np.ndarray
    vs_norm: np.ndarray
    spread_ratio: float

    @property
    def spread_too_small(self) -> bool:
        """True when the outputs hardly vary between images (the spread-relative figure means little)."""
        return self.spread_ratio < MIN_SPREAD_RATIO


#: Outputs whose spread over images is below this fraction of their norm are "not varying": a relative
#: change of float32 rounding (~1e-7 of the norm) then reads as up to ~1e-7 / this of the spread.
MIN_SPREAD_RATIO = 1e-3


def output_spread_ratio(outputs: torch.Tensor) -> float:
    """``||f - mean_b f|| / ||f||`` of (B, K) outputs (0 when all are zero)."""
    norm = float(outputs.norm())
    return float((outputs - outputs.mean(dim=0, keepdim=True)).norm()) / norm if norm > 0 else 0.0


@torch.no_grad()
def off_grid_change(model: nn.Module, params: dict[str, torch.Tensor], height: int, angles: Sequence[float],
                    width: int | None = None, transform: Callable[[torch.Tensor], torch.Tensor] | None = None
                    ) -> OffGridChange:
    """Model output change for images rendered exactly at each angle (no interpolation), eval mode.

    Args:
        model: (B, C, H, W) -> (B, K); put in eval mode (its mode is restored).
        params: image parameters from :func:`draw_lens_params` / :func:`rotation_task`.
        height, width: image size (pixels); a 90-degree multiple of an H x W image is rendered W x H.
        angles: degrees.
        transform: applied to every rendered batch before the model (e.g. the run's normalisation).
    """
    width = height if width is None else width
    was_training = model.training
    model.eval()
    fix = transform if transform is not None else (lambda t: t)
    in_ch = int(getattr(model, "in_channels", 1))
    try:
        ref = model(fix(render_lens_images(params, height, width, channels=in_ch)))
        spread = float((ref - ref.mean(dim=0, keepdim=True)).norm())
        norm = float(ref.norm())
        vs_spread, vs_norm = [], []
        for angle in angles:
            quarter_odd = abs(angle / 90.0 - round(angle / 90.0)) < 1e-12 and round(angle / 90.0) % 2 == 1
            h, w = (width, height) if quarter_odd else (height, width)
            out = model(fix(render_lens_images(params, h, w, angle_deg=angle, channels=in_ch)))
            diff = float((out - ref).norm())
            vs_spread.append(diff / spread if spread > 0 else float("inf") if diff > 0 else 0.0)
            vs_norm.append(diff / norm if norm > 0 else diff)
    finally:
        model.train(was_training)
    return OffGridChange(np.asarray(angles, dtype=float), np.asarray(vs_spread), np.asarray(vs_norm),
                         spread / norm if norm > 0 else 0.0)


def run_normaliser(checkpoint: str | Path) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The image normalisation of the training run that wrote ``checkpoint``, or None if not found.

    ``equilens train`` writes ``normalisation.json`` into the run directory and checkpoints into its
    ``checkpoints/`` folder; this looks beside the checkpoint and one level up.
    """
    from equilens.data.transforms import Normalizer

    path = Path(checkpoint)
    for folder in (path.parent, path.parent.parent):
        stats_file = folder / "normalisation.json"
        if stats_file.is_file():
            stats = json.loads(stats_file.read_text(encoding="utf-8"))
            normaliser = Normalizer.from_dict(stats["image"])
            return lambda x: normaliser(x)
    return None


def dataset_images(directory: str | Path, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` images (n, C, H, W) float32, raw units, drawn without replacement (``generator``) from an
    equilens data set directory (all of them if it holds fewer)."""
    from equilens.data.store import LensDataset

    dataset = LensDataset(directory)
    pick = torch.randperm(len(dataset), generator=generator)[:n].sort().values.numpy()
    return torch.from_numpy(dataset.get_images(pick))


def checkpoint_test_images(checkpoint: str | Path, n: int, size: int, generator: torch.Generator,
                           data: str | Path | None = None, channels: int = 1,
                           meta: dict[str, object] | None = None) -> tuple[torch.Tensor, str]:
    """Test images for a trained model, prepared as its training inputs were.

    Images come from ``data`` (an equilens data set directory), else from the data set recorded in the
    checkpoint's run description (``meta["config"]["data"]``) if that directory exists, else they are
    :func:`synthetic_lens_images` of ``size`` px. Then the run's normalisation
    (:func:`run_normaliser`) is applied when it can be found.

    Returns:
        (n, C, H, W) float32 images and a one-line description of where they came from.
    """
    config = (meta or {}).get("config")
    recorded = config.get("data") if isinstance(config, dict) else None
    source: str | Path | None = data
    if source is None and isinstance(recorded, str) and Path(recorded).is_dir():
        source = recorded
    if source is not None:
        images = dataset_images(source, n, generator)
        what = f"{images.shape[0]} images of the data set {source}"
    else:
        images = synthetic_lens_images(n, size, generator, channels=channels)
        what = f"{n} synthetic lens-like images of {size} px (no data set given or found)"
    normaliser = run_normaliser(checkpoint)
    if normaliser is None:
        return images, what + ", no run normalisation found (normalisation.json beside the checkpoint)"
    return normaliser(images), what + ", normalised as in the training run"


@dataclass
class EquivarianceCurve:
    """Relative output change against rotation angle.

    Attributes:
        angles: rotation angles in degrees, shape (A,).
        model_error: relative output change (see :func:`relative_change`: over the outputs' spread
            between images) at each angle, (A,).
        floor: interpolation floor (rotate forth and back) at each angle, (A,), same normalisation.
        image_floor: relative change of the images themselves after rotating forth and back, (A,).
        flips: relative output change under the grid flips / transposes (name -> value).
        model_error_norm: the output change relative to the outputs' norm ``||f(x)||``, (A,).
        spread_ratio: ``||f(x) - mean f(x)|| / ||f(x)||`` (see :func:`output_spread_ratio`).
    """

    angles: np.ndarray
    model_error: np.ndarray
    floor: np.ndarray
    image_floor: np.ndarray
    flips: dict[str, float]
    model_error_norm: np.ndarray | None = None
    spread_ratio: float = float("nan")

    @property
    def spread_too_small(self) -> bool:
        """True when the outputs hardly vary between the images (below :data:`MIN_SPREAD_RATIO` of their
        norm): the spread-relative figures then measure float rounding and the model's insensitivity
        to its input, not its symmetry."""
        return bool(self.spread_ratio < MIN_SPREAD_RATIO)

    def table(self) -> str:
        """A plain-text table of the curve."""
        norm = self.model_error_norm if self.model_error_norm is not None else np.full_like(self.angles, np.nan)
        lines = [f"{'angle':>7}  {'model':>10}  {'model/norm':>10}  {'floor':>10}  {'image floor':>11}"]
        for a, m, n, f, i in zip(self.angles, self.model_error, norm, self.floor, self.image_floor, strict=True):
            lines.append(f"{a:7.1f}  {m:10.3e}  {n:10.3e}  {f:10.3e}  {i:11.3e}")
        for name, value in self.flips.items():
            lines.append(f"{name:>13}: {value:.3e}")
        lines.append(f"outputs' spread over images / their norm: {self.spread_ratio:.3e}")
        if self.spread_too_small:
            lines.append(f"WARNING: the outputs hardly vary between these images (spread below {MIN_SPREAD_RATIO:g} "
                         "of their norm): 'model' (change over spread) then measures rounding and an input the "
                         "model does not respond to, not its symmetry. Use images like the training data "
                         "(check-equivariance --data DATASET).")
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
        ref_norm = float(ref.norm())
        errs, errs_norm, floors, img_floors = [], [], [], []
        for angle in angles:
            out = model(rotate_images(x, angle))
            errs.append(relative_change(out, ref))
            errs_norm.append(float((out - ref).norm()) / ref_norm if ref_norm > 0 else float((out - ref).norm()))
            back = rotate_images(rotate_images(x, angle), -angle)
            floors.append(relative_change(model(back), ref))
            img_floors.append(float((back - x).norm() / x.norm()))
        flip_errs = {name: relative_change(model(GRID_TRANSFORMS[name](x)), ref)
                     for name in ("flip_lr", "flip_ud", "transpose", "antitranspose")} if flips else {}
    finally:
        model.train(was_training)
    return EquivarianceCurve(np.asarray(angles, dtype=float), np.asarray(errs), np.asarray(floors),
                             np.asarray(img_floors), flip_errs, np.asarray(errs_norm), output_spread_ratio(ref))


def plot_equivariance_curve(curve: EquivarianceCurve, path: str | Path, title: str = "") -> Path:
    """Save a log-scale plot of the model's output change, the interpolation floor and the images' own
    resampling change against angle to ``path`` (PNG/PDF); exact zeros are marked on the bottom edge,
    not drawn as measured points (:func:`equilens.evaluation.plots.plot_rotation_curve`)."""
    from equilens.evaluation.plots import plot_rotation_curve

    return plot_rotation_curve(curve.angles, curve.model_error, curve.floor, curve.image_floor, path, title=title)


# ---------------------------------------------------------------------------------------------------------
# Simulated lens images rendered at the rotated angle (no interpolation)


@dataclass
class RenderedRotations:
    """Test images of a simulated data set re-rendered from their records at each angle.

    Every image is float32 (N, 1, H, W) in the data set's raw unit (not normalised, not masked).

    Attributes:
        angles: degrees, (A,).
        positions: data-set positions of the N images, (N,).
        stored: the stored (noisy) images, i.e. angle 0 with the data set's own noise realisation.
        noiseless: (A + 1) noiseless renderings: index 0 at 0 degrees, index i + 1 at ``angles[i]``.
        noisy: (A, 2) noisy renderings at each angle, two fresh noise realisations each (``noisy[i][j]``).
        shifted: noiseless renderings at 0 degrees on a grid moved by a sub-pixel offset (``shifts``), or None:
            the same scene sampled at other points, which changes every pixel network (its pooling and
            strides alias) without any rotation; see :class:`LensOffGridChange`.
        shifts: (N, 2) the offsets (dx, dy) in pixels, or None.
    """

    angles: np.ndarray
    positions: np.ndarray
    stored: torch.Tensor
    noiseless: list[torch.Tensor]
    noisy: list[tuple[torch.Tensor, torch.Tensor]]
    shifted: torch.Tensor | None = None
    shifts: np.ndarray | None = None


def render_rotations(dataset: str | Path, positions: Sequence[int] | np.ndarray, angles: Sequence[float],
                     noise_seed: int = 0, max_shift_px: float | None = 0.5) -> RenderedRotations:
    """Re-render the images at ``positions`` of a simulated data set rotated by each angle.

    Each image's record (``LensDataset.record``) is turned about the image centre
    (:func:`equilens.simulation.rotation.rotate_record`, the sense of :func:`rotate_images`) and rendered
    with the data set's config, so the rotated image involves no interpolation. Noise cannot be rotated
    off the grid, so noisy images at an angle get fresh realisations (``add_noise`` of the rotated
    noiseless image), two per angle, from ``numpy.random.default_rng([noise_seed, index, angle number,
    realisation])``. Unless ``max_shift_px`` is None, each image is also rendered unrotated on a grid moved
    by an offset drawn uniformly in [-max_shift_px, max_shift_px] pixels per axis from
    ``numpy.random.default_rng([noise_seed, index, 7919])`` (``shifted``; see :class:`LensOffGridChange`).

    Args:
        dataset: an equilens data set directory simulated by equilens (records and config in its manifest).
        positions: data-set positions (0 .. len-1).
        angles: degrees.
        noise_seed: seed of the fresh noise realisations and of the grid offsets.
        max_shift_px: largest grid offset per axis, pixels (>= 0); None: no shifted renderings.

    Raises:
        DataError: the data set has no simulation config (not simulated by equilens) or more than one channel.
    """
    from equilens.data.store import LensDataset
    from equilens.errors import DataError
    from equilens.simulation.config import SimConfig
    from equilens.simulation.render import add_noise, render_noiseless
    from equilens.simulation.rotation import rotate_record

    ds = LensDataset(dataset)
    if ds.manifest.get("config") is None:
        raise DataError(f"{ds.path} was not simulated by equilens (no config in its manifest): its images cannot "
                        "be rendered at an angle; use the bilinear rotation (equivariance_curve) instead")
    if ds.image_shape[0] != 1:
        raise DataError(f"rendering at an angle supports one-channel data sets; {ds.path} has {ds.image_shape[0]}")
    if max_shift_px is not None and not (0.0 <= max_shift_px < math.inf):
        raise DataError(f"max_shift_px must be a finite number of pixels >= 0 (or None), got {max_shift_px}")
    config = SimConfig.from_dict(ds.manifest["config"])
    pos = np.asarray(positions, dtype=np.int64)
    records = [ds.record(int(p)) for p in pos]
    stored = torch.from_numpy(ds.get_images(pos))

    def stack(images: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(images).astype(np.float32)[:, None])

    noiseless = [stack([render_noiseless(config, r) for r in records])]
    noisy: list[tuple[torch.Tensor, torch.Tensor]] = []
    for a, angle in enumerate(angles):
        clean = [render_noiseless(config, rotate_record(r, float(angle))) for r in records]
        noiseless.append(stack(clean))
        pair = []
        for j in range(2):
            pair.append(stack([add_noise(config, img, r, np.random.default_rng([noise_seed, int(r["index"]), a, j]))
                               for img, r in zip(clean, records, strict=True)]))
        noisy.append((pair[0], pair[1]))
    shifted, shifts = None, None
    if max_shift_px is not None:
        shifts = np.stack([np.random.default_rng([noise_seed, int(r["index"]), 7919]).uniform(
            -max_shift_px, max_shift_px, 2) for r in records]) if records else np.zeros((0, 2))
        shifted = stack([render_noiseless(config, r, (float(d[0]), float(d[1])))
                         for r, d in zip(records, shifts, strict=True)])
    return RenderedRotations(np.asarray(angles, dtype=float), pos, stored, noiseless, noisy, shifted, shifts)


@dataclass
class LensOffGridChange:
    """Output change of a model on simulated lens images rendered at each angle (see :func:`lens_off_grid_change`).

    All changes are ``||f(a) - f(b)||`` over the spread ``||f - mean_b f||`` of the reference outputs between
    images (as :func:`relative_change`), per angle, shape (A,).

    Attributes:
        angles: degrees, (A,).
        noiseless: noiseless images rendered at the angle against noiseless images at 0 degrees.
        noisy: fresh noise at the angle against the stored noisy images (includes the noise's own effect).
        noise_floor: two fresh noise realisations of the same image at the same angle, against each other
            (over the stored images' spread): what a perfectly invariant model would still show in ``noisy``.
        noiseless_spread_ratio, noisy_spread_ratio: the reference outputs' spread over their norm
            (:func:`output_spread_ratio`) on noiseless and stored images.
        shift_floor: noiseless images on a grid moved by a sub-pixel offset against those at 0 degrees (NaN
            when ``rotations`` has no shifted renderings). Nothing turns: this is the change that sampling the
            same scene at other points causes. A rotation off the grid samples the scene at other points too,
            so a convolutional network with a global pool (translation-invariant up to the sampling), even if
            exactly rotation-equivariant in the continuum, can show a change of this order in ``noiseless``.
            A model that depends on where the scene lies (e.g. ring means about the grid centre) changes more
            under the shift than under a rotation, so for such a model this is no floor.
    """

    angles: np.ndarray
    noiseless: np.ndarray
    noisy: np.ndarray
    noise_floor: np.ndarray
    noiseless_spread_ratio: float
    noisy_spread_ratio: float
    shift_floor: float = float("nan")


@torch.no_grad()
def lens_off_grid_change(model: nn.Module, rotations: RenderedRotations,
                         transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                         mask: bool = True, batch_size: int = 64) -> LensOffGridChange:
    """Output change of ``model`` (eval mode) on lens images rendered at each angle, noiseless and noisy.

    Args:
        model: (B, 1, H, W) -> (B, K).
        rotations: from :func:`render_rotations`.
        transform: applied to raw images before the model (the training run's standardisation).
        mask: then multiply by :func:`disk_mask` (content rotated in or out of the frame counts for nothing).
        batch_size: images per forward pass.
    """
    was_training = model.training
    model.eval()
    fix = transform if transform is not None else (lambda t: t)
    h, w = rotations.stored.shape[-2:]
    disk = disk_mask(h, w) if mask else torch.ones(h, w)

    def run(images: torch.Tensor) -> torch.Tensor:
        outs = [model(fix(images[i:i + batch_size]) * disk) for i in range(0, images.shape[0], batch_size)]
        return torch.cat(outs)

    def spread(ref: torch.Tensor) -> float:
        return float((ref - ref.mean(dim=0, keepdim=True)).norm())

    def over(diff: torch.Tensor, by: float) -> float:
        d = float(diff.norm())
        return d / by if by > 0 else float("inf") if d > 0 else 0.0

    try:
        clean_ref = run(rotations.noiseless[0])
        noisy_ref = run(rotations.stored)
        s_clean, s_noisy = spread(clean_ref), spread(noisy_ref)
        clean, noisy, floor = [], [], []
        for i in range(len(rotations.angles)):
            clean.append(over(run(rotations.noiseless[i + 1]) - clean_ref, s_clean))
            first = run(rotations.noisy[i][0])
            noisy.append(over(first - noisy_ref, s_noisy))
            floor.append(over(run(rotations.noisy[i][1]) - first, s_noisy))
        shift = float("nan") if rotations.shifted is None else over(run(rotations.shifted) - clean_ref, s_clean)
    finally:
        model.train(was_training)
    return LensOffGridChange(rotations.angles.copy(), np.asarray(clean), np.asarray(noisy), np.asarray(floor),
                             output_spread_ratio(clean_ref), output_spread_ratio(noisy_ref), shift)


@dataclass
class LayerOffGridChange:
    """Where in a network the off-grid change arises (see :func:`layer_off_grid_change`).

    Attributes:
        angles: degrees, (A,).
        depths: the feature depths measured, 1 .. ``model.feature_depths``, (D,).
        rotation: (D, A) change of the pooled features at each depth between noiseless images at 0 degrees
            and at each angle, over the pooled features' spread between images.
        shift: (D,) the same for the sub-pixel-shifted renderings (NaN without them).
        descriptions: (D,) what the features at each depth are (``FeatureFields.description``).
    """

    angles: np.ndarray
    depths: np.ndarray
    rotation: np.ndarray
    shift: np.ndarray
    descriptions: list[str]


@torch.no_grad()
def layer_off_grid_change(model: LensModel, rotations: RenderedRotations,
                          transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                          mask: bool = True, batch_size: int = 64) -> LayerOffGridChange:
    """The change of :func:`lens_off_grid_change`, measured after every feature depth of ``model``.

    At each depth the scalar fields of :meth:`~equilens.models.base.LensModel.feature_fields` (for the
    steerable nets the mean of every regular field over the group, an invariant of the grid's group
    elements; for plain CNNs the channels) are averaged over space, giving (N, S) features per image set,
    and compared as the outputs are (:func:`relative_change`): ``||g(x_a) - g(x_0)|| / ||g(x_0) - mean
    g(x_0)||``. A change that grows from one depth to the next was made by that layer.

    Args:
        model: a :class:`~equilens.models.base.LensModel` with ``feature_depths`` > 0 (eval mode is used).
        rotations: from :func:`render_rotations`.
        transform: applied to raw images before the model (the training run's standardisation).
        mask: then multiply by :func:`disk_mask`, as :func:`lens_off_grid_change` does.
        batch_size: images per forward pass.
    """
    depths = int(getattr(model, "feature_depths", 0))
    if depths < 1:
        raise ModelError(f"{type(model).__name__} has no feature depths to measure (feature_depths = {depths}); "
                         "per-layer changes need a model with feature_fields, e.g. steerable_*, resnet18, cnn_small")
    was_training = model.training
    model.eval()
    fix = transform if transform is not None else (lambda t: t)
    h, w = rotations.stored.shape[-2:]
    disk = disk_mask(h, w) if mask else torch.ones(h, w)

    def pooled(images: torch.Tensor, depth: int) -> tuple[torch.Tensor, str]:
        parts, what = [], ""
        for i in range(0, images.shape[0], batch_size):
            fields = model.feature_fields(fix(images[i:i + batch_size]) * disk, depth)
            parts.append(fields.scalar.mean(dim=(-2, -1)))
            what = fields.description
        return torch.cat(parts), what

    rotation = np.zeros((depths, len(rotations.angles)))
    shift = np.full(depths, np.nan)
    descriptions = []
    try:
        for d in range(1, depths + 1):
            ref, what = pooled(rotations.noiseless[0], d)
            descriptions.append(what)
            for i in range(len(rotations.angles)):
                rotation[d - 1, i] = relative_change(pooled(rotations.noiseless[i + 1], d)[0], ref)
            if rotations.shifted is not None:
                shift[d - 1] = relative_change(pooled(rotations.shifted, d)[0], ref)
    finally:
        model.train(was_training)
    return LayerOffGridChange(rotations.angles.copy(), np.arange(1, depths + 1), rotation, shift, descriptions)
