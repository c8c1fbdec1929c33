"""Feature fields of a network while its input image rotates, in the lab and the co-rotating frame.

A steerable CNN's intermediate features are fields on the pixel grid with a transformation law: rotating
the input by a group element g rotates every field's grid by g, leaves scalar fields unchanged and turns
vector fields by g. Rotated back by the input's angle (the *co-rotating frame*), its response stands
still; a conventional CNN's changes. The models read their features out as scalar and vector fields
(:meth:`equilens.models.base.LensModel.feature_fields`), so nothing here knows a model family.

The co-rotating change at angle t, for the scalar fields S and, separately, the vector fields V of a
layer (every field of it, not only the one drawn), inside the comparison disk (the input's inscribed
disk on the feature grid)::

    || R_-t F(R_t x) - F(x) || / || F(x) - mean F(x) ||

where R_t rotates the image (:func:`~equilens.evaluation.equivariance.rotate_images`), and on fields
rotates the grid and turns the vectors (:func:`rotate_fields`); the denominator is the fields' spatial
spread (per field and component, over the disk), so 1 means a change as large as the fields' own
variation across the image. Multiples of 90 degrees are exact grid permutations (``torch.rot90``); other
angles use bilinear interpolation, once on the image and once on the fields.

The *interpolation floor* at t is the same change for an exactly equivariant network, made of
resampling alone: the image rotated forth and back, ``R_-t R_t x``, through the network, and its fields
rotated forth and back, ``R_-t R_t F(R_-t R_t x)``, against ``F(x)`` (two resamplings of each where the
co-rotating frame has one: an upper reference, as in ``check-equivariance``). The fields of an untrained
network vary from pixel to pixel of the coarse feature grid, so rotating them is the larger part of the
floor; :attr:`FieldSeries.image_floor` keeps the part from the image alone (``F(R_-t R_t x)``).

The image (masked to its inscribed disk) is zero-padded by a margin before the network, so that no
field within the comparison disk sees the zero padding of the convolutions at the frame's square edge,
which a rotation would move relative to the content.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from equilens.errors import ConfigError
from equilens.evaluation.equivariance import disk_mask, rotate_images
from equilens.models.base import FeatureFields, LensModel

#: Zero margin added on every side of the image before the network, as a fraction of its side.
DEFAULT_MARGIN = 0.25


def comparison_mask(height: int, width: int, radius: float = 1.0) -> torch.Tensor:
    """(H, W) float mask: 1 where the pixel centre lies within ``radius`` x the inscribed radius
    (``(min(H, W) - 1) / 2`` pixels) of the grid centre, 0 elsewhere."""
    yy = torch.arange(height, dtype=torch.float64) - (height - 1) / 2
    xx = torch.arange(width, dtype=torch.float64) - (width - 1) / 2
    r = radius * (min(height, width) - 1) / 2
    return (yy[:, None] ** 2 + xx[None, :] ** 2 <= r**2).to(torch.float32)


def rotate_fields(scalar: torch.Tensor, vector: torch.Tensor, angle_deg: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate scalar and vector fields counter-clockwise (as displayed, row 0 at the top) by ``angle_deg``.

    The grid is rotated as :func:`~equilens.evaluation.equivariance.rotate_images` rotates images (exact
    ``torch.rot90`` at multiples of 90 degrees, bilinear otherwise), and every vector is turned by the same
    angle: (u, v) -> (u cos t - v sin t, u sin t + v cos t) in (right, up) components.

    Args:
        scalar: (B, S, H, W).
        vector: (B, V, 2, H, W), components (right, up).

    Returns:
        the rotated (B, S, H, W) scalar and (B, V, 2, H, W) vector fields.
    """
    b, n_vec, _, h, w = vector.shape
    quarter = angle_deg / 90.0
    if abs(quarter - round(quarter)) < 1e-12:  # exact cosines and sines on the grid's own angles
        c, s = [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)][int(round(quarter)) % 4]
    else:
        c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    moved = rotate_images(vector.reshape(b, n_vec * 2, h, w), angle_deg)
    moved = moved.reshape(b, n_vec, 2, *moved.shape[-2:])
    u, v = moved[:, :, 0], moved[:, :, 1]
    turned = torch.stack([c * u - s * v, s * u + c * v], dim=2)
    return rotate_images(scalar, angle_deg), turned


def _spread(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of squares of (B, ..., H, W) ``x`` about its masked spatial mean, inside ``mask``."""
    weight = mask.sum()
    mean = (x * mask).sum(dim=(-2, -1), keepdim=True) / weight
    return (((x - mean) * mask) ** 2).sum()


def field_change(new: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> float:
    """``||(new - ref) mask|| / ||(ref - masked spatial mean of ref) mask||`` for (B, ..., H, W) fields.

    The denominator is the spread of every field (and component) over the masked grid, so a constant
    offset, such as a bias after the nonlinearity, counts for nothing; 0 if both are 0.
    """
    diff = float((((new - ref) * mask) ** 2).sum().sqrt())
    spread = float(_spread(ref, mask).sqrt())
    return diff / spread if spread > 0 else (0.0 if diff == 0 else float("inf"))


@dataclass
class FieldSeries:
    """One network's feature fields for one image rotated through a list of angles.

    Arrays of fields are cropped to the part of the feature grid that covers the image (without the
    zero margin); the changes are computed on the whole comparison disk.

    Attributes:
        name: label of the network (registry name and state, e.g. "resnet18 (untrained, seed 0)").
        description: what the fields are (:attr:`~equilens.models.base.FeatureFields.description`).
        equivariant: whether the fields have a transformation law.
        angles: input rotation angles, degrees, (A,).
        field_index, vector_index: the scalar / vector field drawn (index among the layer's fields).
        scalar: the drawn scalar field in the lab frame, (A, h, w).
        vector: the drawn vector field in the lab frame, (A, 2, h, w), components (right, up).
        scalar_back, vector_back: the same rotated back by each angle (co-rotating frame).
        scalar_change, vector_change: co-rotating change of all the layer's scalar / vector fields, (A,).
        scalar_floor, vector_floor: the interpolation floor of each, (A,) (module docstring).
        scalar_image_floor, vector_image_floor: the part of the floor from the image alone, (A,).
        mask: (h, w) comparison disk (cropped like the fields).
        grid: side of the whole feature grid (margin included), pixels.
    """

    name: str
    description: str
    equivariant: bool
    angles: np.ndarray
    field_index: int
    vector_index: int
    scalar: np.ndarray
    vector: np.ndarray
    scalar_back: np.ndarray
    vector_back: np.ndarray
    scalar_change: np.ndarray
    vector_change: np.ndarray
    scalar_floor: np.ndarray
    vector_floor: np.ndarray
    scalar_image_floor: np.ndarray
    vector_image_floor: np.ndarray
    mask: np.ndarray = field(repr=False)
    grid: int = 0

    def table(self) -> str:
        """Plain-text table of the co-rotating change and the floors against angle."""
        lines = [f"{self.name}: {self.description}",
                 f"{'angle':>7}  {'scalar':>9}  {'floor':>9}  {'img floor':>9}  {'vector':>9}  {'floor':>9}  "
                 f"{'img floor':>9}"]
        for row in zip(self.angles, self.scalar_change, self.scalar_floor, self.scalar_image_floor,
                       self.vector_change, self.vector_floor, self.vector_image_floor, strict=True):
            lines.append(f"{row[0]:7.1f}  " + "  ".join(f"{v:9.2e}" for v in row[1:]))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        """The curves and settings as JSON-ready data (no field arrays)."""
        return {"name": self.name, "description": self.description, "equivariant": self.equivariant,
                "field_index": self.field_index, "vector_index": self.vector_index, "grid": self.grid,
                "angles": self.angles.tolist(),
                **{k: getattr(self, k).tolist() for k in ("scalar_change", "vector_change", "scalar_floor",
                                                          "vector_floor", "scalar_image_floor",
                                                          "vector_image_floor")}}


def most_varying(fields: torch.Tensor, mask: torch.Tensor) -> int:
    """Index of the field of (1, F, ..., H, W) ``fields`` with the largest spatial spread inside ``mask``
    (the one with the most to show; a field that is flat over the image shows nothing)."""
    spreads = [float(_spread(fields[:, k], mask)) for k in range(fields.shape[1])]
    return int(np.argmax(spreads))


def pad_image(image: torch.Tensor, margin: float) -> tuple[torch.Tensor, int]:
    """``image`` (B, C, H, W) with ``round(margin * H)`` zero pixels added on every side, and that number."""
    if margin < 0:
        raise ConfigError(f"the margin must be >= 0 (a fraction of the image side), got {margin}")
    pad = int(round(margin * image.shape[-2]))
    return (F.pad(image, (pad, pad, pad, pad)) if pad else image), pad


def _crop(n: int, fraction: float) -> slice:
    """Centred slice of a grid of ``n`` pixels keeping about ``fraction`` of it, symmetric about the centre."""
    cut = max(0, int(math.floor((n - fraction * n) / 2)))
    return slice(cut, n - cut)


@torch.no_grad()
def field_series(model: LensModel, image: torch.Tensor, angles: Sequence[float], depth: int, name: str = "",
                 field_index: int | None = None, vector_index: int | None = None,
                 margin: float = DEFAULT_MARGIN, progress: Callable[[int, int], None] | None = None
                 ) -> FieldSeries:
    """The feature fields of ``model`` (eval mode; its mode is restored) for ``image`` rotated by each angle.

    Args:
        model: an equilens model with :meth:`~equilens.models.base.LensModel.feature_fields`.
        image: (1, C, H, H), prepared as the model's inputs (normalised) and masked to the inscribed disk.
        angles: degrees, counter-clockwise as displayed (row 0 at the top).
        depth: layers before the read-out (see the model's ``feature_fields``).
        name: label of the network in tables and figures.
        field_index, vector_index: the scalar / vector field to keep for drawing; None picks the one that
            varies most over the image at angle 0 (:func:`most_varying`).
        margin: zero margin added on every side, fraction of H (module docstring).
        progress: called as ``progress(done, total)`` after every angle.
    """
    if image.ndim != 4 or image.shape[0] != 1 or image.shape[-1] != image.shape[-2]:
        raise ConfigError(f"field_series needs one square image (1, C, H, H), got {tuple(image.shape)}")
    size = image.shape[-1]
    x, pad = pad_image(image, margin)
    was_training = model.training
    model.eval()
    try:
        ref = model.feature_fields(x, depth)
        grid = ref.scalar.shape[-1]
        inner = size / (size + 2 * pad)
        mask = comparison_mask(grid, grid, radius=inner)
        n_scalar, n_vector = ref.scalar.shape[1], ref.vector.shape[1]
        fi = most_varying(ref.scalar, mask) if field_index is None else field_index
        vi = most_varying(ref.vector, mask) if vector_index is None else vector_index
        if not 0 <= fi < n_scalar:
            raise ConfigError(f"scalar field index must be in 0..{n_scalar - 1} for {name}, got {fi}")
        if not 0 <= vi < n_vector:
            raise ConfigError(f"vector field index must be in 0..{n_vector - 1} for {name}, got {vi}")
        crop = _crop(grid, inner)
        drawn: dict[str, list[torch.Tensor]] = {"s": [], "v": [], "sb": [], "vb": []}
        curves: dict[str, list[float]] = {k: [] for k in ("s", "v", "sf", "vf", "si", "vi")}
        for k, angle in enumerate(angles):
            out: FeatureFields = model.feature_fields(rotate_images(x, angle), depth)
            s_back, v_back = rotate_fields(out.scalar, out.vector, -angle)
            for key, value in (("s", out.scalar[0, fi]), ("v", out.vector[0, vi]), ("sb", s_back[0, fi]),
                               ("vb", v_back[0, vi])):
                drawn[key].append(value[..., crop, crop])
            curves["s"].append(field_change(s_back, ref.scalar, mask))
            curves["v"].append(field_change(v_back, ref.vector, mask))
            floor = model.feature_fields(rotate_images(rotate_images(x, angle), -angle), depth)
            curves["si"].append(field_change(floor.scalar, ref.scalar, mask))
            curves["vi"].append(field_change(floor.vector, ref.vector, mask))
            s_floor, v_floor = rotate_fields(*rotate_fields(floor.scalar, floor.vector, angle), -angle)
            curves["sf"].append(field_change(s_floor, ref.scalar, mask))
            curves["vf"].append(field_change(v_floor, ref.vector, mask))
            if progress is not None:
                progress(k + 1, len(angles))
    finally:
        model.train(was_training)
    arrays = {key: torch.stack(values).numpy() for key, values in drawn.items()}
    return FieldSeries(name=name, description=ref.description, equivariant=ref.equivariant,
                       angles=np.asarray(angles, dtype=float), field_index=fi, vector_index=vi,
                       scalar=arrays["s"], vector=arrays["v"], scalar_back=arrays["sb"], vector_back=arrays["vb"],
                       scalar_change=np.asarray(curves["s"]), vector_change=np.asarray(curves["v"]),
                       scalar_floor=np.asarray(curves["sf"]), vector_floor=np.asarray(curves["vf"]),
                       scalar_image_floor=np.asarray(curves["si"]), vector_image_floor=np.asarray(curves["vi"]),
                       mask=mask[crop, crop].numpy(), grid=grid)


def feature_size(model: LensModel, image: torch.Tensor, depth: int, margin: float = DEFAULT_MARGIN) -> int:
    """Side (pixels) of the feature grid of ``model`` after ``depth`` layers for a square ``image`` with
    the zero ``margin`` of :func:`field_series`."""
    with torch.no_grad():
        return int(model.feature_fields(pad_image(image, margin)[0], depth).scalar.shape[-1])


def matching_depth(model: LensModel, image: torch.Tensor, size: int, margin: float = DEFAULT_MARGIN) -> int:
    """The deepest layer of ``model`` whose feature grid is at least ``size`` pixels wide for ``image``
    (so that two networks are shown at the same resolution); 1 if even the first layer's is smaller."""
    was_training = model.training
    model.eval()
    try:
        best = 1
        for depth in range(1, model.feature_depths + 1):
            if feature_size(model, image, depth, margin) >= size:
                best = depth
    finally:
        model.train(was_training)
    return best


def angle_list(frames: int) -> list[float]:
    """``frames`` angles evenly through one turn: 0, 360/frames, ..., degrees (360 itself left out)."""
    if frames < 1:
        raise ConfigError(f"the number of frames must be >= 1, got {frames}")
    return [360.0 * k / frames for k in range(frames)]


@dataclass
class FieldsComparison:
    """An equivariant and a conventional network's feature fields for one image rotated through a turn.

    Attributes:
        equivariant, conventional: the two networks' :class:`FieldSeries`.
        image: the input image as the equivariant network sees it (normalised, masked), (H, H).
        settings: everything needed to make it again (data, index, models, checkpoints, seed, depths, ...).
    """

    equivariant: FieldSeries
    conventional: FieldSeries
    image: np.ndarray
    settings: dict[str, object]

    def to_dict(self) -> dict[str, object]:
        """Settings and both networks' curves, JSON-ready."""
        return {"settings": self.settings, "equivariant": self.equivariant.to_dict(),
                "conventional": self.conventional.to_dict()}


#: Images of the data set on which an untrained network's batch-norm statistics are estimated.
CALIBRATION_IMAGES = 32


def _load_network(name: str, checkpoint: str | None, seed: int, valid: Sequence[str], role: str,
                  option: str) -> LensModel:
    """Model ``name`` (one of ``valid``) with the weights of ``checkpoint``, or untrained from ``seed``."""
    from equilens.models import get_entry, load_model

    get_entry(name)  # unknown names: the registry's error lists every valid one
    if name not in valid:
        raise ConfigError(f"{name} has no {role} feature fields; {option} must be one of {', '.join(valid)}")
    if checkpoint is not None:

        def check(meta: dict[str, Any]) -> None:
            held = meta.get("model")
            if held is not None and held not in valid:
                ckpt_option, other = (("--checkpoint", "--cnn-checkpoint") if option == "--model"
                                      else ("--cnn-checkpoint", "--checkpoint"))
                raise ConfigError(f"checkpoint {checkpoint} holds {held}, which has no {role} feature fields; "
                                  f"{ckpt_option} takes a checkpoint of one of {', '.join(valid)} (a checkpoint "
                                  f"of the other kind goes to {other})")

        return load_model(name, checkpoint, check_meta=check)
    torch.manual_seed(seed)  # untrained weights: escnn and torch layers initialise from torch's RNG
    return load_model(name)


def _prepare(images: torch.Tensor, checkpoint: str | None) -> torch.Tensor:
    """Raw images normalised as in the checkpoint's training run (if found), masked to the inscribed disk."""
    from equilens.evaluation.equivariance import run_normaliser

    normaliser = run_normaliser(checkpoint) if checkpoint is not None else None
    x = normaliser(images) if normaliser is not None else images
    return x * disk_mask(*x.shape[-2:])


def compare_fields(data: str | Path, index: int, model: str | None = None, cnn: str = "resnet18",
                   checkpoint: str | None = None, cnn_checkpoint: str | None = None, depth: int = 3,
                   cnn_depth: int | None = None, frames: int = 36, seed: int = 0, margin: float = DEFAULT_MARGIN,
                   log: Callable[[str], None] | None = None,
                   progress: Callable[[str, int, int], None] | None = None) -> FieldsComparison:
    """Feature fields of a steerable CNN and a conventional CNN for image ``index`` of ``data`` rotating
    through 360 degrees in ``frames`` steps (:func:`field_series` for each).

    Args:
        data: an equilens data set directory.
        index: position of the image in it (0 .. len - 1).
        model: the equivariant network (:data:`~equilens.models.EQUIVARIANT_FIELD_MODELS`); None: the
            checkpoint's model, else ``steerable_c8``.
        cnn: the conventional network (:data:`~equilens.models.PLAIN_FIELD_MODELS`).
        checkpoint, cnn_checkpoint: trained weights of each (a run's ``checkpoints/best.ckpt`` or a state
            dict); its input is normalised as in that run (``normalisation.json`` beside the checkpoint or
            one level up). Without one the network is untrained (weights from ``seed``) and its batch-norm
            statistics are estimated on :data:`CALIBRATION_IMAGES` images of ``data``
            (:func:`~equilens.evaluation.equivariance.calibrate_batchnorm`), raw images in.
        depth: layers of the equivariant network before the read-out.
        cnn_depth: the same for the CNN; None: the deepest whose feature grid is at least as fine.
        frames: number of angles (360 / frames degrees apart).
        seed: untrained weights and the choice of calibration images.
        margin: zero margin around the image, fraction of its side (module docstring).
        log: called with one line per step (what was loaded, which depth); None: silent.
        progress: called as ``progress(network, done, total)`` after every angle.
    """
    from equilens.data.store import LensDataset
    from equilens.evaluation.equivariance import calibrate_batchnorm
    from equilens.models import EQUIVARIANT_FIELD_MODELS, PLAIN_FIELD_MODELS, read_checkpoint

    say = log or (lambda _: None)
    angles = angle_list(frames)
    dataset = LensDataset(data)
    if not 0 <= index < len(dataset):
        raise ConfigError(f"--index {index} is out of range: {data} holds {len(dataset)} images "
                          f"(0..{len(dataset) - 1})")
    raw = torch.from_numpy(dataset.get_images([index]))
    if raw.shape[-1] != raw.shape[-2]:
        raise ConfigError(f"the images of {data} are {raw.shape[-2]}x{raw.shape[-1]} px; rotating them needs "
                          "square images")
    if model is None:
        held = read_checkpoint(checkpoint)[1].get("model") if checkpoint is not None else None
        model = str(held) if held else "steerable_c8"
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(dataset), generator=gen)[:CALIBRATION_IMAGES].sort().values.numpy()
    calibration_raw = torch.from_numpy(dataset.get_images(pick))
    label = dataset.class_names[int(dataset.labels[index])]

    networks: list[tuple[str, LensModel, torch.Tensor, str]] = []
    for name, ckpt, valid, role, option in ((model, checkpoint, EQUIVARIANT_FIELD_MODELS, "equivariant", "--model"),
                                            (cnn, cnn_checkpoint, PLAIN_FIELD_MODELS, "plain-CNN", "--cnn")):
        net = _load_network(name, ckpt, seed, valid, role, option)
        if raw.shape[1] != net.in_channels:
            raise ConfigError(f"{name} takes {net.in_channels} input channel(s); the images of {data} have "
                              f"{raw.shape[1]}")
        image = _prepare(raw, ckpt)
        if ckpt is None:
            net = calibrate_batchnorm(net, pad_image(_prepare(calibration_raw, None), margin)[0])
            state = f"untrained, seed {seed}"
            say(f"{name}: untrained (seed {seed}), batch-norm statistics estimated on {len(pick)} images of {data}")
        else:
            state = "trained"
            say(f"{name}: trained weights from {ckpt}")
        networks.append((name, net, image, state))

    (eq_name, eq_net, eq_image, eq_state), (cnn_name, cnn_net, cnn_image, cnn_state) = networks
    eq_grid = feature_size(eq_net, eq_image, depth, margin) if 1 <= depth <= eq_net.feature_depths else 0
    if eq_grid == 0:
        raise ConfigError(f"--depth must be in 1..{eq_net.feature_depths} for {eq_name}, got {depth}")
    if cnn_depth is None:
        cnn_depth = matching_depth(cnn_net, cnn_image, eq_grid, margin)
    elif not 1 <= cnn_depth <= cnn_net.feature_depths:
        raise ConfigError(f"--cnn-depth must be in 1..{cnn_net.feature_depths} for {cnn_name}, got {cnn_depth}")
    say(f"image {index} ({label}) of {data}, {raw.shape[-1]} px; {eq_name} after {depth} layer(s), "
        f"{cnn_name} after {cnn_depth}; {frames} frames of {360 / frames:g} degrees")

    def report(name: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda done, total: progress(name, done, total))

    eq = field_series(eq_net, eq_image, angles, depth, name=f"{eq_name} ({eq_state})", margin=margin,
                      progress=report(eq_name))
    conv = field_series(cnn_net, cnn_image, angles, cnn_depth, name=f"{cnn_name} ({cnn_state})", margin=margin,
                        progress=report(cnn_name))
    settings: dict[str, object] = {
        "data": str(data), "index": index, "class": label, "image_size": int(raw.shape[-1]),
        "model": eq_name, "checkpoint": checkpoint, "depth": depth, "cnn": cnn_name, "cnn_checkpoint": cnn_checkpoint,
        "cnn_depth": cnn_depth, "frames": frames, "seed": seed, "margin": margin,
        "calibration_images": None if checkpoint is not None and cnn_checkpoint is not None else pick.tolist()}
    return FieldsComparison(eq, conv, eq_image[0, 0].numpy(), settings)
