"""Feature fields under rotation (``equilens fields``): the models' field read-out obeys its transformation
law, the co-rotating frame stands still for the steerable CNN and not for a plain CNN, and the command
writes its GIF, strip, curve and settings and refuses bad input with one line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from equilens.cli import main
from equilens.errors import ModelError
from equilens.evaluation.equivariance import calibrate_batchnorm, disk_mask, synthetic_lens_images
from equilens.evaluation.fields import comparison_mask, field_change, field_series, pad_image, rotate_fields
from equilens.models import EQUIVARIANT_FIELD_MODELS, PLAIN_FIELD_MODELS, create_model
from equilens.models.base import LensModel


def _rot90_vectors(v: torch.Tensor) -> torch.Tensor:
    """(B, V, 2, H, W) vector field rotated counter-clockwise by 90 degrees: grid rot90, (u, v) -> (-v, u)."""
    return torch.rot90(torch.stack([-v[:, :, 1], v[:, :, 0]], dim=2), 1, (-2, -1))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return synthetic_lens_images(6, 33, torch.Generator().manual_seed(1), psf_sigma=1.0)


@pytest.mark.parametrize("name", ["steerable_c8", "steerable_d4", "steerable_so2_fourier", "steerable_o2_fourier"])
def test_steerable_fields_turn_with_the_input(name, images):
    """Rotating the input by 90 degrees rotates the scalar fields' grid and turns the vectors by 90 degrees
    (right -> up); the D4 and O(2) nets' vectors also mirror under the left-right flip. Both to float
    rounding. The Fourier nets' batch norms are moved off their initial statistics first."""
    torch.manual_seed(0)
    model = create_model(name)
    if "fourier" in name:
        model.train()
        with torch.no_grad():
            model(images)
    model.eval()
    with torch.no_grad():
        ref = model.feature_fields(images, 3)
        rot = model.feature_fields(torch.rot90(images, 1, (-2, -1)), 3)
    assert ref.equivariant and ref.vector.shape[2] == 2
    assert _rel(rot.scalar, torch.rot90(ref.scalar, 1, (-2, -1))) < 1e-5
    right = _rel(rot.vector, _rot90_vectors(ref.vector))
    assert right < 1e-5
    # the opposite sense is far off: the direction convention is tested, not only the magnitude
    assert _rel(rot.vector, _rot90_vectors(_rot90_vectors(_rot90_vectors(ref.vector)))) > max(0.1, 1e4 * right)
    if name in ("steerable_d4", "steerable_o2_fourier"):
        with torch.no_grad():
            flip = model.feature_fields(torch.flip(images, (-1,)), 3)
        mirrored = torch.flip(torch.stack([-ref.vector[:, :, 0], ref.vector[:, :, 1]], dim=2), (-1,))
        assert _rel(flip.vector, mirrored) < 1e-5
        assert _rel(flip.scalar, torch.flip(ref.scalar, (-1,))) < 1e-5


def test_plain_models_expose_channels_without_a_law(images):
    for name in PLAIN_FIELD_MODELS:
        model = create_model(name, width=0.25).eval()
        fields = model.feature_fields(images, 2)
        assert not fields.equivariant
        assert fields.vector.shape[:3] == (6, fields.scalar.shape[1] // 2, 2)
        assert torch.equal(fields.vector[:, 0, 1], fields.scalar[:, 1])  # channel pairs as (right, up)
    with pytest.raises(ModelError, match="feature depth must be in 1..4"):
        create_model("cnn_small").feature_fields(images, 5)


def test_other_models_say_which_expose_fields(images):
    assert "steerable_c8" in EQUIVARIANT_FIELD_MODELS and "steerable_c2" not in EQUIVARIANT_FIELD_MODELS
    bare = LensModel(1, 3, num_features=4, min_input_size=1)
    with pytest.raises(ModelError, match="steerable_c"):
        bare.feature_fields(images, 1)


def test_rotate_fields_exact_on_the_grid_and_back_and_forth_off_it():
    torch.manual_seed(0)
    scalar = torch.randn(1, 2, 9, 9)
    vector = torch.randn(1, 3, 2, 9, 9)
    s, v = rotate_fields(scalar, vector, 90.0)
    assert torch.equal(s, torch.rot90(scalar, 1, (-2, -1)))
    assert torch.equal(v, _rot90_vectors(vector))
    # a smooth field: rotating forth and back by 30 degrees changes it little; the vectors turn by 30 degrees
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 41), torch.linspace(-1, 1, 41), indexing="ij")
    smooth = torch.exp(-(xx**2 + yy**2) * 2)[None, None]
    const = torch.stack([torch.ones_like(xx), torch.zeros_like(xx)])[None, None] * smooth[:, :, None]
    s30, v30 = rotate_fields(smooth, const, 30.0)
    centre = v30[0, 0, :, 20, 20]
    assert torch.allclose(centre / centre.norm(), torch.tensor([np.cos(np.pi / 6), np.sin(np.pi / 6)]).float(),
                          atol=1e-5)
    back, _ = rotate_fields(s30, v30, -30.0)
    mask = comparison_mask(41, 41)
    assert field_change(back, smooth, mask) < 0.02


def test_field_change_ignores_offsets_and_counts_spread():
    mask = torch.ones(5, 5)
    ref = torch.arange(25.0).view(1, 1, 5, 5)
    assert field_change(ref, ref, mask) == 0.0
    spread = float((ref - ref.mean()).norm())
    assert field_change(ref + 1.0, ref, mask) == pytest.approx(5.0 / spread)


@pytest.fixture(scope="module")
def series():
    """The co-rotating frame of an untrained C8 net and ResNet-18 (batch norm calibrated on the test images)
    for a 41 px lens-like image rotated in steps of 45 degrees (and 30)."""
    imgs = synthetic_lens_images(8, 41, torch.Generator().manual_seed(3), psf_sigma=1.0)
    imgs = imgs * disk_mask(41, 41)
    angles = [0.0, 30.0, 45.0, 90.0, 135.0, 180.0, 270.0]
    out = {}
    for name, depth in (("steerable_c8", 3), ("resnet18", 2)):
        torch.manual_seed(0)
        model = calibrate_batchnorm(create_model(name), pad_image(imgs, 0.25)[0])
        out[name] = field_series(model, imgs[:1], angles, depth, name=name)
    return out


def test_corotating_frame_still_for_the_steerable_cnn(series):
    eq = series["steerable_c8"]
    on_grid = np.isin(eq.angles, [90.0, 180.0, 270.0])
    off_grid = np.isin(eq.angles, [30.0, 45.0, 135.0])
    # multiples of 90 degrees: float rounding, and the floor is exactly 0 there
    assert (eq.scalar_change[on_grid] < 1e-5).all() and (eq.vector_change[on_grid] < 1e-5).all()
    assert (eq.scalar_floor[on_grid] == 0).all()
    # in between: at the interpolation floor (below its two-resampling upper reference), far above rounding
    assert (eq.scalar_change[off_grid] < 1.2 * eq.scalar_floor[off_grid]).all(), eq.table()
    assert (eq.vector_change[off_grid] < 1.2 * eq.vector_floor[off_grid]).all(), eq.table()
    assert (eq.scalar_change[off_grid] > 1e-3).all()
    # the drawn frames are what the curve measures: the co-rotating frame at 90 degrees is the one at 0
    k = int(np.flatnonzero(eq.angles == 90.0)[0])
    np.testing.assert_allclose(eq.scalar_back[k], eq.scalar[0], atol=1e-5 * np.abs(eq.scalar[0]).max())


def test_corotating_frame_changes_for_the_cnn(series):
    cnn, eq = series["resnet18"], series["steerable_c8"]
    on_grid = np.isin(cnn.angles, [90.0, 180.0, 270.0])
    assert (cnn.scalar_change[on_grid] > 0.3).all(), cnn.table()
    assert (cnn.vector_change[on_grid] > 0.3).all(), cnn.table()
    diagonal = np.isin(cnn.angles, [45.0, 135.0])
    assert (cnn.scalar_change[diagonal] > 1.8 * cnn.scalar_floor[diagonal]).all(), cnn.table()
    assert (cnn.vector_change[diagonal] > 2.5 * cnn.vector_floor[diagonal]).all(), cnn.table()
    assert (cnn.scalar_change[diagonal] > 3 * eq.scalar_change[diagonal]).all()


# --- the command ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, make_toy):
    return make_toy(tmp_path_factory.mktemp("fields") / "toy", n_per_class=3, size=33)


def _one_line_error(capsys, argv, *must_contain):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("equilens fields: error: ")
    for text in must_contain:
        assert text in lines[0], lines[0]


def test_fields_command_writes_gif_strip_curve_and_settings(tiny_data, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "anim" / "f.gif"
    code = main(["fields", "--data", str(tiny_data), "--index", "4", "--out", str(out), "--frames", "4",
                 "--cnn", "cnn_small", "--seed", "3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "4/4 angles" in captured.err  # progress
    gif_lines = [line.strip() for line in captured.err.splitlines() if line.strip().startswith("GIF:")]
    assert gif_lines == ["GIF: 1/4 angles", "GIF: 2/4 angles", "GIF: 3/4 angles", "GIF: 4/4 angles"], gif_lines
    with Image.open(out) as gif:
        assert gif.n_frames == 4
    assert (tmp_path / "anim" / "f_strip.png").stat().st_size > 1000
    assert (tmp_path / "anim" / "f_change.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "anim" / "f.json").read_text())
    assert summary["settings"]["seed"] == 3 and summary["settings"]["model"] == "steerable_c8"
    assert summary["settings"]["index"] == 4 and summary["settings"]["cnn"] == "cnn_small"
    eq, cnn = summary["equivariant"], summary["conventional"]
    assert eq["angles"] == [0.0, 90.0, 180.0, 270.0]
    assert max(eq["scalar_change"]) < 1e-5 and max(eq["vector_change"]) < 1e-5
    assert min(cnn["scalar_change"][1:]) > 0.1


def test_fields_bad_input(tiny_data, tmp_path, capsys):
    data = str(tiny_data)
    gif = str(tmp_path / "x.gif")
    _one_line_error(capsys, ["fields", "--data", data, "--index", "9", "--out", gif], "out of range", "holds 9 images")
    _one_line_error(capsys, ["fields", "--data", data, "--out", str(tmp_path / "x.png")], ".gif")
    _one_line_error(capsys, ["fields", "--data", data, "--out", gif, "--model", "steerable_x3"], "resnet18")
    _one_line_error(capsys, ["fields", "--data", data, "--out", gif, "--model", "resnet18"], "steerable_c8")
    _one_line_error(capsys, ["fields", "--data", data, "--out", gif, "--cnn", "steerable_c4"], "resnet18, cnn_small")
    _one_line_error(capsys, ["fields", "--data", data, "--out", gif, "--depth", "9"], "--depth must be in 1..7")
    # a checkpoint of a plain CNN for the equivariant side
    cnn = create_model("cnn_small")
    ckpt = tmp_path / "cnn.ckpt"
    torch.save({"equilens": {"model": "cnn_small"},
                "state_dict": {f"model.{k}": v for k, v in cnn.state_dict().items()}}, ckpt)
    _one_line_error(capsys, ["fields", "--data", data, "--out", gif, "--model", "steerable_c8", "--checkpoint",
                             str(ckpt)], "holds cnn_small", "--cnn-checkpoint")
    assert not (tmp_path / "x.gif").exists()


def test_fields_help_imports_nothing_heavy():
    code = ("import sys\nfrom equilens.cli import main\ntry:\n    main(['fields', '--help'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0\nprint('LOADED', [m for m in ('torch', 'matplotlib', 'numpy', 'escnn') "
            "if m in sys.modules])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "--cnn-checkpoint" in proc.stdout and "default: 36" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "LOADED []"


def test_checkpoint_brings_its_model_and_normalisation(tiny_data, tmp_path):
    """With --checkpoint (no --model) the equivariant side is the checkpoint's model with its weights, fed
    the image normalised as in the checkpoint's run (normalisation.json one level up)."""
    from equilens.data.store import LensDataset
    from equilens.evaluation.fields import compare_fields
    from equilens.models import state_dict_for_checkpoint

    torch.manual_seed(5)
    model = create_model("steerable_c4")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    torch.save({"equilens": {"model": "steerable_c4"},
                "state_dict": {f"model.{k}": v for k, v in state_dict_for_checkpoint(model).items()}}, ckpt)
    (tmp_path / "run" / "normalisation.json").write_text(json.dumps(
        {"image": {"method": "standardise", "shift": 1.0, "scale": 2.0}}))
    result = compare_fields(tiny_data, 2, checkpoint=str(ckpt), cnn="cnn_small", frames=2, depth=2)
    assert result.settings["model"] == "steerable_c4" and result.settings["checkpoint"] == str(ckpt)
    assert "trained" in result.equivariant.name and "untrained" not in result.equivariant.name
    raw = LensDataset(tiny_data).get_images([2])[0, 0]
    expected = (raw - 1.0) / 2.0 * disk_mask(33, 33).numpy()
    np.testing.assert_allclose(result.image, expected, rtol=1e-6, atol=1e-6)
    assert result.equivariant.scalar_change[1] < 1e-5  # 180 degrees: in C4, exact on the grid
