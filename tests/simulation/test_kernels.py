"""The compiled deflection kernels (equilens.simulation.kernels) against the numpy reference (profiles.py).

The kernels are a speed-up without new physics: every deflection matches the numpy reference (itself tested
against lenstronomy in test_physics_render.py / test_cdm_tnfw.py / test_dm_classes.py) to float rounding,
and so does every rendered image of every class of the *_dm presets."""

from __future__ import annotations

import numpy as np
import pytest

from equilens.simulation import kernels, profiles
from equilens.simulation.config import resolve_config
from equilens.simulation.populations import draw_parameters
from equilens.simulation.presets import DM_PRESETS, list_presets
from equilens.simulation.render import render_noiseless


def _grid(n: int = 48, half: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """Row-major pixel grid (y sorted, as the renderer's rays)."""
    v = np.linspace(-half, half, n)
    xx, yy = np.meshgrid(v, v)
    return xx.ravel(), yy.ravel()


def _close(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], rtol: float = 1e-12) -> None:
    for u, v in zip(a, b, strict=True):
        assert np.all(np.isfinite(u))
        scale = np.max(np.abs(v))
        assert scale > 0
        assert np.max(np.abs(u - v)) <= rtol * scale


def _halos(rng: np.random.Generator, m: int) -> dict[str, np.ndarray]:
    rs = rng.uniform(0.005, 0.3, m)
    return {"Rs": rs, "alpha_Rs": rng.uniform(1e-4, 0.02, m), "r_trunc": rs * rng.uniform(0.3, 30.0, m),
            "x": rng.uniform(-3, 3, m), "y": rng.uniform(-3, 3, m), "r_core": rs * rng.uniform(0.01, 2.0, m)}


@pytest.mark.parametrize("shuffle", [False, True])
def test_tnfw_kernel_matches_reference(shuffle: bool) -> None:
    """Far-field + exact TNFW halos (some centred on a ray, some with the near radius past the grid);
    shuffled rays (y not sorted) take the all-rays path of pass 2."""
    rng = np.random.default_rng(1)
    x, y = _grid()
    if shuffle:
        order = rng.permutation(x.size)
        x, y = x[order], y[order]
    h = _halos(rng, 25)
    h["x"][0], h["y"][0] = x[100], y[100]  # a halo exactly on a ray (R = 0, clipped as lenstronomy)
    args = (h["Rs"], h["alpha_Rs"], h["r_trunc"], h["x"], h["y"])
    _close(kernels.tnfw_deflection(x, y, *args), profiles.tnfw_deflection(x, y, *args, far_field=True))


def test_cnfw_kernel_matches_reference() -> None:
    """Cored halos truncated in projection, one untruncated (r_trunc = inf), one with r_core = Rs (b = 1)."""
    rng = np.random.default_rng(2)
    x, y = _grid()
    h = _halos(rng, 20)
    h["r_trunc"][3] = np.inf
    h["r_core"][4] = h["Rs"][4]
    args = (h["Rs"], h["alpha_Rs"], h["r_core"], h["r_trunc"], h["x"], h["y"])
    _close(kernels.cnfw_deflection(x, y, *args), profiles.cnfw_deflection(x, y, *args))
    empty = [np.zeros(0)] * 6
    assert not np.any(kernels.cnfw_deflection(x, y, *empty)[0])


def test_point_mass_kernel_matches_reference() -> None:
    rng = np.random.default_rng(3)
    x, y = _grid()
    te, cx, cy = rng.uniform(0.001, 0.05, 100), rng.uniform(-2, 2, 100), rng.uniform(-2, 2, 100)
    cx[0], cy[0] = x[7], y[7]  # on a ray: r clipped at POINT_MASS_R_MIN as lenstronomy
    ref = profiles.point_mass_deflection(x, y, te, cx, cy)
    out = kernels.point_mass_deflection(x, y, te, cx, cy)
    for u, v in zip(out, ref, strict=True):  # the ray on a point mass deflects by ~1e48: compare the others
        keep = np.abs(v) < 1e3
        assert np.max(np.abs(u - v)[keep]) <= 1e-12 * np.max(np.abs(v[keep]))
        assert np.array_equal(u[~keep], v[~keep])


def test_jit_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """EQUILENS_JIT=0 renders with the numpy reference (the same function objects' results)."""
    monkeypatch.setenv(kernels.JIT_ENV, "0")
    assert not kernels.jit_enabled()
    x, y = _grid(8)
    h = _halos(np.random.default_rng(4), 3)
    args = (h["Rs"], h["alpha_Rs"], h["r_trunc"], h["x"], h["y"])
    ref = profiles.tnfw_deflection(x, y, *args, far_field=True)
    out = kernels.tnfw_deflection(x, y, *args)
    assert all(np.array_equal(u, v) for u, v in zip(out, ref, strict=True))
    monkeypatch.setenv(kernels.JIT_ENV, "1")
    assert kernels.jit_enabled()


_DM_CASES = [(p.name, c) for p in list_presets() if p.name in DM_PRESETS for c in p.classes]


@pytest.mark.parametrize(("preset", "cls"), _DM_CASES)
def test_dm_images_identical_to_reference_path(preset: str, cls: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every class of every *_dm preset: the compiled render equals the numpy reference render of the same
    records to 1e-9 of the image peak (the speed-up changes no physics)."""
    overrides = {"image_size": 40} if preset == "hst_dm_150" else None  # smaller, same pixel scale
    config = resolve_config(preset, overrides)
    rng = np.random.default_rng(11)
    records = [draw_parameters(config, cls, rng) for _ in range(3)]
    fast = [render_noiseless(config, r) for r in records]
    monkeypatch.setenv(kernels.JIT_ENV, "0")
    slow = [render_noiseless(config, r) for r in records]
    for a, b in zip(fast, slow, strict=True):
        assert np.max(np.abs(a - b)) <= 1e-9 * np.max(np.abs(b))


def test_cnfw_G_inverse_matches_reference_bisection(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled bisection of the SIDM projected truncation radius equals the numpy one (same steps)."""
    rng = np.random.default_rng(5)
    b = rng.uniform(0.01, 2.0, 40)
    b[0] = 1.0  # moved to 1 + 1e-6 as lenstronomy
    x_true = np.exp(rng.uniform(np.log(0.01), np.log(1e3), 40))
    target = profiles.cnfw_G(x_true, b)
    fast = kernels.cnfw_G_inverse(b, target)
    monkeypatch.setenv(kernels.JIT_ENV, "0")
    slow = kernels.cnfw_G_inverse(b, target)
    assert np.max(np.abs(fast / slow - 1.0)) < 1e-12
    ok = np.abs(b - 1.0) > 0.01  # G is ill-conditioned at b = 1 (a (1 - b)^2 denominator): no round trip there
    assert np.max(np.abs(fast[ok] / x_true[ok] - 1.0)) < 1e-8
