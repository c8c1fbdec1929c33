"""Every registered model, proved by test: shapes, gradients, exact grid symmetries, continuous angles, export.

Models are built once per session with small widths (the architecture and symmetry do not depend on the
width) and fixed torch seeds, so results are reproducible.
"""

from __future__ import annotations

import copy

import pytest
import torch

from equilens.evaluation.equivariance import (
    calibrate_batchnorm,
    relative_change,
    rotate_images,
    synthetic_lens_images,
)
from equilens.models import create_model, export_model, get_entry, list_models
from equilens.models.steerable import EscnnModule
from equilens.models.symmetry import GRID_TRANSFORMS, continuous_test_angles, exact_grid_symmetries

ALL = list_models()
#: Small-width options per family, to keep the test set fast; every other option is the default.
SMALL = {"resnet": {"width": 0.25}, "steerable": {"width": 0.5}, "e2wrn": {"width": 0.25}}
EXACT = [n for n in ALL if exact_grid_symmetries(get_entry(n).symmetry)]

_CACHE: dict[str, torch.nn.Module] = {}


def build(name: str) -> torch.nn.Module:
    """The model ``name`` with small widths and seeded weights, 3 outputs (built once per session)."""
    if name not in _CACHE:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            _CACHE[name] = create_model(name, in_channels=1, num_outputs=3, **SMALL.get(get_entry(name).family, {}))
    return _CACHE[name]


def images(n: int, size: int, seed: int = 1) -> torch.Tensor:
    return synthetic_lens_images(n, size, torch.Generator().manual_seed(seed))


def test_registry_lists_every_family():
    families = {get_entry(n).family for n in ALL}
    assert {"resnet", "cnn", "steerable", "e2wrn"} <= families
    for n in (1, 2, 4, 8, 12, 16):
        assert f"steerable_c{n}" in ALL and f"steerable_d{n}" in ALL
    assert {"steerable_so2", "steerable_o2", "resnet18", "cnn_small"} <= set(ALL)


@pytest.mark.parametrize("size", [29])
@pytest.mark.parametrize("name", ALL)
def test_forward_shape_finite_and_gradients(name, size):
    model = build(name)
    model.train()
    saved = {k: v.clone() for k, v in model.state_dict().items()}  # train mode moves BN statistics
    model.zero_grad(set_to_none=True)
    x = images(3, size)
    out = model(x)
    assert out.shape == (3, model.num_outputs) == (3, 3)
    assert torch.isfinite(out).all()
    feats = model.forward_features(x)
    assert feats.shape == (3, model.num_features)
    out.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad
    model.zero_grad(set_to_none=True)
    model.load_state_dict(saved)


@pytest.mark.parametrize("size", [30, 33])
@pytest.mark.parametrize("name", EXACT)
def test_exact_grid_invariance(name, size):
    """rot90 (and flips for dihedral groups) change the output by <= 1e-5 relative, even and odd sizes.

    In float64: the change is measured against the outputs' spread over images, which is small for an
    untrained net, so float32 rounding alone (~1e-7 of the output) could approach 1e-5 of it.
    """
    model = build(name).train()
    model = copy.deepcopy(model).double().eval()
    x = images(4, size).double()
    with torch.no_grad():
        ref = model(x)
        errors = {t: relative_change(model(GRID_TRANSFORMS[t](x)), ref)
                  for t in exact_grid_symmetries(model.symmetry)}
    assert max(errors.values()) <= 1e-5, errors


@pytest.mark.parametrize("size", [30, 33])
def test_resnet18_control_is_not_invariant(size):
    """The control: a plain ResNet-18 changes its output under rot90 and flips far above 1e-5."""
    model = build("resnet18").eval()
    x = images(4, size)
    with torch.no_grad():
        ref = model(x)
        for t in ("rot90", "flip_lr"):
            assert relative_change(model(GRID_TRANSFORMS[t](x)), ref) > 1e-3


def test_restricted_e2wrn_keeps_only_its_last_group():
    """e2wrn16_4_d8_r (D8 -> D4 -> D1) is exactly flip-invariant, and measurably not rot90-invariant."""
    model = build("e2wrn16_4_d8_r").eval()
    x = images(3, 33)
    with torch.no_grad():
        ref = model(x)
        assert relative_change(model(GRID_TRANSFORMS["flip_lr"](x)), ref) <= 1e-5
        assert relative_change(model(GRID_TRANSFORMS["rot90"](x)), ref) > 1e-4
    assert exact_grid_symmetries(model.symmetry) == ("flip_lr",)


def calibrated(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """:func:`calibrate_batchnorm`, checking that every batch norm saw exactly the batch ``x``."""
    model = calibrate_batchnorm(model, x)
    tracked = [m for m in model.modules() if isinstance(getattr(m, "num_batches_tracked", None), torch.Tensor)]
    assert all(int(m.num_batches_tracked) == 1 for m in tracked)
    return model


@torch.no_grad()
def feature_rotation_change(model: torch.nn.Module, x: torch.Tensor, angle: float) -> float:
    """mean_i ||phi(R x_i) - phi(x_i)|| / mean_{i != j} ||phi(x_i) - phi(x_j)|| for the invariant
    features phi = ``forward_features`` (before the head): 1 means rotating an image changes its
    features as much as replacing it with another image."""
    f = model.forward_features(x)
    n = f.shape[0]
    between = torch.cdist(f, f).sum() / (n * (n - 1))
    return float((model.forward_features(rotate_images(x, angle)) - f).norm(dim=1).mean() / between)


def claims_rotations(symmetry: str) -> bool:
    """The symmetry contains a rotation: a grid rotation (C_N, D_N with N >= 2), a group angle off the
    grid, or a continuous group (also approximate ones such as ETN's "SO(2) approx., ...")."""
    return (any(t.startswith("rot") for t in exact_grid_symmetries(symmetry))
            or bool(continuous_test_angles(symmetry)) or symmetry.startswith(("SO(2)", "O(2)")))


ROTATING = [n for n in ALL if claims_rotations(get_entry(n).symmetry)]
_CONTROL: dict[tuple[tuple[int, ...], float, float], float] = {}


def resnet18_rotation_change(x: torch.Tensor, angle: float) -> float:
    """:func:`feature_rotation_change` of the calibrated control ResNet-18 (cached per image batch and angle)."""
    key = (tuple(x.shape), float(x.sum()), angle)
    if key not in _CONTROL:
        _CONTROL[key] = feature_rotation_change(calibrated(build("resnet18"), x), x, angle)
    return _CONTROL[key]


@pytest.mark.parametrize("size", [65])
@pytest.mark.parametrize("name", ROTATING)
def test_continuous_angles_below_resnet(name, size):
    """At 15, 30, 45 degrees (and the group's own angles in between, e.g. 22.5 for N = 16), on
    band-limited disk-masked lens-like images (Gaussian PSF, sigma 2 px), rotating the input changes
    the invariant features less than it changes ResNet-18's on the same images, at every angle.

    Measure: :func:`feature_rotation_change` on batch-norm-calibrated copies (:func:`calibrated`).
    Checked with image seeds 1-5 at 65 px and 1-3 at 49 px (this test keeps seed 1 at 65 px): ResNet-18
    gives 0.43-0.59 at 15 degrees and 0.63-0.95 at 45; every model with a 90-degree rotation or a
    continuous group stays at or below 0.52x of it at 65 px (0.62x at 49 px); steerable_c2 / _d2, whose
    only rotation is 180 degrees, are the closest (up to 0.84x), as expected.
    """
    symmetry = get_entry(name).symmetry
    angles = sorted({15.0, 30.0, 45.0} | set(continuous_test_angles(symmetry)))
    x = synthetic_lens_images(8, size, torch.Generator().manual_seed(1), psf_sigma=2.0)
    model = calibrated(build(name), x)
    ours = [feature_rotation_change(model, x, a) for a in angles]
    control = [resnet18_rotation_change(x, a) for a in angles]
    assert all(c > 0.3 for c in control), control  # the control really changes (vs ~0.1 or less)
    assert all(o > 0 for o in ours), ours  # measured: off the grid nothing is exact
    assert all(o < c for o, c in zip(ours, control, strict=True)), (name, angles, ours, control)


def test_rotate_images_matches_rot90_and_round_trips():
    x = images(2, 31)
    near = rotate_images(x, 90.0 - 1e-6)  # takes the interpolating path
    assert torch.allclose(near, torch.rot90(x, 1, (-2, -1)), atol=1e-5)
    assert torch.equal(rotate_images(x, 270.0), torch.rot90(x, 3, (-2, -1)))
    back = rotate_images(rotate_images(x, 30.0), -30.0)
    assert 0 < float((back - x).norm() / x.norm()) < 0.2


@pytest.mark.parametrize("name", ALL)
def test_export_matches_and_reloads(name, tmp_path):
    model = build(name).eval()
    x = images(2, 31)
    exported = export_model(model)
    if not any(isinstance(m, EscnnModule) for m in model.modules()):
        assert exported is model  # plain torch already
        return
    assert not any(isinstance(m, EscnnModule) and not m.exported for m in exported.modules())
    import escnn.nn

    assert not any(isinstance(m, escnn.nn.EquivariantModule) for m in exported.modules())
    with torch.no_grad():
        ref = model(x)
        assert relative_change(exported(x), ref) <= 1e-5
    path = tmp_path / "exported.pt"
    torch.save(exported.state_dict(), path)
    other = export_model(model)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(3)
        for p in other.parameters():  # other weights, same architecture
            p.add_(torch.randn(p.shape, generator=gen) * 0.5)
        assert relative_change(other(x), ref) > 1e-4
        other.load_state_dict(torch.load(path, weights_only=True))
        assert relative_change(other(x), ref) <= 1e-5
    assert model.training is False  # export left the original model alone


def test_models_share_no_buffers_across_instances():
    """escnn caches basis-expansion modules per field types; two models of one name must not share them, or
    converting one (``.double()``, ``.to(device)``) breaks the other (seen: float64 tests broke later D_N nets)."""
    a = create_model("steerable_d4", in_channels=1, num_outputs=3)
    b = create_model("steerable_d4", in_channels=1, num_outputs=3)
    ptrs = {t.data_ptr() for t in [*a.parameters(), *a.buffers()]}
    assert not any(t.data_ptr() in ptrs for t in [*b.parameters(), *b.buffers()])
    a.double()
    assert b.eval()(torch.randn(2, 1, 29, 29)).dtype == torch.float32
