"""Lens test images re-rendered at an angle (render_rotations) and a model's change on them
(lens_off_grid_change): exact at 90 degrees, noise floor beside the noisy figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from equilens.data.store import LensDataset
from equilens.errors import DataError
from equilens.evaluation.equivariance import lens_off_grid_change, render_rotations
from equilens.simulation.config import resolve_config
from equilens.simulation.generate import generate_dataset, reproduce_image


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("offgrid") / "d"
    generate_dataset(resolve_config("model_iii", {"image_size": 24}), ["no_sub", "cdm", "axion"], 3, 5, out,
                     progress=False)
    return str(out)


class _RadialMean(nn.Module):
    """Exactly rotation-invariant in the continuum and on the grid's own quarter turns: the image's mean in
    four rings about the grid centre."""

    def __init__(self, size: int) -> None:
        super().__init__()
        yy, xx = torch.meshgrid(torch.arange(size) - (size - 1) / 2, torch.arange(size) - (size - 1) / 2,
                                indexing="ij")
        r = torch.sqrt(yy**2 + xx**2)
        edges = torch.linspace(0, (size - 1) / 2, 5)
        self.register_buffer("rings", torch.stack([((r >= a) & (r < b)).float()
                                                   for a, b in zip(edges[:-1], edges[1:], strict=True)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,khw->bk", x, self.rings) / self.rings.sum((1, 2))


class _Mean(nn.Module):
    """The mean pixel value: translation-invariant up to the sampling while the light stays in the frame."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((1, 2, 3))[:, None]


class _Corner(nn.Module):
    """Not invariant: one off-centre pixel and the mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, 0, 7, 9], x.mean((1, 2, 3))], dim=1)


def test_rendered_rotations_reproduce_the_data_set_and_quarter_turns(dataset: str) -> None:
    ds = LensDataset(dataset)
    positions = np.array([0, 4, 8])
    rot = render_rotations(dataset, positions, [90.0, 30.0], noise_seed=3)
    assert rot.stored.shape == (3, 1, 24, 24)
    np.testing.assert_array_equal(rot.stored.numpy(), ds.get_images(positions))
    for i, p in enumerate(positions):
        clean = reproduce_image(dataset, int(p), noiseless=True).astype(np.float32)
        np.testing.assert_array_equal(rot.noiseless[0][i, 0].numpy(), clean)
        np.testing.assert_allclose(rot.noiseless[1][i, 0].numpy(), np.rot90(clean), rtol=1e-5,
                                   atol=1e-6 * np.abs(clean).max())
    # 30 degrees is a different image; two fresh noise realisations differ; same seed, same noise
    assert not torch.allclose(rot.noiseless[2], rot.noiseless[0])
    assert not torch.equal(rot.noisy[1][0], rot.noisy[1][1])
    again = render_rotations(dataset, positions, [90.0, 30.0], noise_seed=3)
    assert torch.equal(again.noisy[1][0], rot.noisy[1][0])


def test_change_zero_for_an_invariant_model_and_floor_for_noise(dataset: str) -> None:
    rot = render_rotations(dataset, np.arange(9), [90.0, 30.0])
    scale = float(rot.stored.std())
    invariant = lens_off_grid_change(_RadialMean(24), rot, lambda x: x / scale, mask=False)
    assert invariant.noiseless[0] < 1e-5  # a quarter turn: exact
    assert invariant.noiseless[1] < 0.15  # 30 degrees: only the pixel grid (hard-edged rings of 24 px: 0.09)
    # with noise, even an exactly invariant model changes: by about its noise floor
    assert invariant.noise_floor[0] > 0
    assert invariant.noisy[0] == pytest.approx(invariant.noise_floor[0], rel=0.5)
    control = lens_off_grid_change(_Corner(), rot, lambda x: x / scale)
    assert control.noiseless[0] > 10 * max(invariant.noiseless[0], 1e-3)


def test_a_data_set_without_config_is_refused(dataset: str, tmp_path: pytest.TempPathFactory) -> None:
    import json
    import shutil

    copy = tmp_path / "copy"  # type: ignore[operator]
    shutil.copytree(dataset, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["config"] = None
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="bilinear"):
        render_rotations(copy, [0], [30.0])


def test_grid_offset_of_whole_pixels_moves_the_image() -> None:
    from equilens.errors import ConfigError
    from equilens.simulation.populations import draw_parameters
    from equilens.simulation.render import render_noiseless

    cfg = resolve_config("model_iii", {"image_size": 32})
    record = draw_parameters(cfg, "cdm", np.random.default_rng(3))
    image = render_noiseless(cfg, record)
    m = 6  # the PSF's reach: the borders see the zero padding of the convolution
    right = render_noiseless(cfg, record, (1.0, 0.0))  # rays one pixel further in x: content one column left
    np.testing.assert_allclose(right[m:-m, m:-m], image[m:-m, m + 1:-m + 1], rtol=1e-9, atol=1e-12 * image.max())
    down = render_noiseless(cfg, record, (0.0, -2.0))
    np.testing.assert_allclose(down[m:-m, m:-m], image[m - 2:-m - 2, m:-m], rtol=1e-9, atol=1e-12 * image.max())
    np.testing.assert_array_equal(render_noiseless(cfg, record, (0.0, 0.0)), image)
    half = render_noiseless(cfg, record, (0.5, 0.5))
    assert 1e-3 < np.abs(half - image).max() / image.max()  # a sub-pixel offset samples other points
    with pytest.raises(ConfigError, match="finite"):
        render_noiseless(cfg, record, (float("nan"), 0.0))


def test_sub_pixel_shift_floor(tmp_path: pytest.TempPathFactory) -> None:
    data = str(tmp_path / "d")  # type: ignore[operator]
    # 48 px: the lens light falls off well inside the frame, so a sub-pixel shift keeps the total flux
    generate_dataset(resolve_config("euclid_dm", {"image_size": 48}), ["no_sub", "cdm_tnfw"], 4, 5, data,
                     progress=False)
    rot = render_rotations(data, np.arange(8), [30.0], max_shift_px=0.5)
    assert rot.shifted is not None and rot.shifts is not None and rot.shifted.shape == (8, 1, 48, 48)
    assert np.all(np.abs(rot.shifts) <= 0.5) and np.abs(rot.shifts).max() > 0.1
    again = render_rotations(data, np.arange(8), [30.0], max_shift_px=0.5)
    np.testing.assert_array_equal(again.shifts, rot.shifts)  # seeded
    scale = float(rot.stored.std())
    flux = lens_off_grid_change(_Mean(), rot, lambda x: x / scale, mask=False)
    pixel = lens_off_grid_change(_Corner(), rot, lambda x: x / scale, mask=False)
    # the mean flux is translation-invariant up to the sampling (measured 0.0016); one pixel is not (0.018)
    assert 0 < flux.shift_floor < 0.2 * pixel.shift_floor
    unshifted = render_rotations(data, np.arange(8), [30.0], max_shift_px=0.0)
    assert lens_off_grid_change(_Corner(), unshifted, lambda x: x / scale).shift_floor == 0.0
    none = render_rotations(data, np.arange(8), [30.0], max_shift_px=None)
    assert none.shifted is None and np.isnan(lens_off_grid_change(_Corner(), none, lambda x: x / scale).shift_floor)
    with pytest.raises(DataError, match="max_shift_px"):
        render_rotations(data, [0], [30.0], max_shift_px=-1.0)


def test_layer_changes_exact_at_quarter_turns_for_a_steerable_net_not_for_resnet(dataset: str) -> None:
    from equilens.errors import ModelError
    from equilens.evaluation.equivariance import layer_off_grid_change
    from equilens.models import create_model

    rot = render_rotations(dataset, np.arange(9), [90.0, 30.0])
    scale = float(rot.stored.std())
    torch.manual_seed(0)
    d4 = create_model("steerable_d4", width=0.5).eval()
    layers = layer_off_grid_change(d4, rot, lambda x: x / scale)
    assert layers.depths.tolist() == list(range(1, d4.feature_depths + 1))
    assert layers.rotation.shape == (d4.feature_depths, 2) and len(layers.descriptions) == d4.feature_depths
    assert layers.rotation[:, 0].max() < 1e-4  # a quarter turn: every depth exactly invariant
    assert layers.rotation[:, 1].min() > 1e-3  # 30 degrees: not exact
    assert np.isfinite(layers.shift).all() and layers.shift.min() > 0  # the sub-pixel-shifted renderings
    torch.manual_seed(0)
    fourier = create_model("steerable_so2_fourier", width=0.5).eval()  # the default: fields of frequency 0..3
    fourier_layers = layer_off_grid_change(fourier, rot, lambda x: x / scale)
    assert fourier_layers.rotation.shape == (fourier.feature_depths, 2)
    assert fourier_layers.rotation[:, 0].max() < 1e-4 < fourier_layers.rotation[:, 1].min()
    # the last depth's pooled features are what the head sees, so their change is of the outputs' order
    torch.manual_seed(0)
    resnet = create_model("resnet18", width=0.25).eval()
    plain = layer_off_grid_change(resnet, rot, lambda x: x / scale)
    assert plain.rotation[:, 0].max() > 100 * layers.rotation[:, 0].max()
    with pytest.raises(ModelError, match="feature_depths"):
        layer_off_grid_change(create_model("harmonic_net"), rot)
