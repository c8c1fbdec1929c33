"""The compiled deflection kernels (equilens.simulation.kernels) against the numpy reference (profiles.py).

The kernels are a speed-up without new physics: every deflection matches the numpy reference (itself tested
against lenstronomy in test_physics_render.py / test_cdm_tnfw.py / test_dm_classes.py) to float rounding,
and so does every rendered image of every class of the *_dm presets."""

from __future__ import annotations

import numpy as np
import pytest

from equilens.simulation import kernels, profiles
from equilens.simulation.config import resolve_config
from equilens.simulation.generate import image_streams
from equilens.simulation.populations import draw_parameters, point_masses
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


@pytest.mark.parametrize("half_length", [0.0, 0.03, 0.3, 0.77, 1.5, 3.0, 30.0])
def test_vortex_kernel_matches_point_masses(half_length: float) -> None:
    """The vortex kernel (point by point near the line, the multipole series beyond 2 half-lengths) equals
    the point-mass sum of the same points (populations.point_masses) to 1e-12 of each ray's deflection,
    from a vortex smaller than a pixel (all rays on the series) to one longer than the grid (all point by
    point), with an odd number of points (one at the centre) and rays on a point."""
    x, y = _grid(64, 3.2)
    for n_points, angle in [(100, 0.7), (7, 2.1)]:
        axion = {"vortex_n_points": n_points, "vortex_half_length": half_length, "vortex_angle": angle,
                 "vortex_point_theta_E": 0.0117}
        params = {"subhalos": {"mass": [], "theta_E": [], "x": [], "y": []}, "axion": axion}
        te, cx, cy = point_masses(params)
        ref = profiles.point_mass_deflection(x, y, te, cx, cy)
        out = kernels.vortex_deflection(x, y, 0.0117, half_length, n_points, angle)
        err = np.hypot(out[0] - ref[0], out[1] - ref[1])
        keep = np.hypot(*ref) < 1e3  # a ray exactly on a point deflects by ~1e48 (clipped as lenstronomy)
        assert np.all(err[keep] <= 1e-12 * np.hypot(*ref)[keep])
        assert np.all(np.isfinite(out[0])) and np.all(np.isfinite(out[1]))
    assert kernels.vortex_series_terms(2.0, 1e-14) == 24  # 4^-24 / (1 - 1/2) < 1e-14


def test_vortex_series_bound() -> None:
    """The truncated series at the far radius: relative error within the stated bound, worst on the line."""
    terms = kernels.vortex_series_terms(2.0, 1e-6)
    s = np.linspace(-1.0, 1.0, 101)
    for w in (2.0 + 0.0j, 2.0j, 1.5 + 1.5j):
        exact = np.sum(1.0 / (w - s))
        series = sum(np.sum(s ** (2 * j)) / w ** (2 * j + 1) for j in range(terms))
        assert abs(series - exact) <= 1e-6 * abs(exact)
    with pytest.raises(ValueError, match="sqrt"):
        kernels.vortex_series_terms(1.2)


#: Noiseless images rendered by the code before the vortex kernel (commit 1afa3ed: every vortex point through
#: the point-mass kernel), seed 7, images 0-2 (draw_parameters with image_streams(7, i)): total, sum of
#: column offset x image, sum of row offset x image, peak. The axion images' vortex half-lengths are 0.51",
#: 0.21" and 0.77": most of their rays take the series.
_OLD_RENDER = {
    ("euclid_dm", "cdm_tnfw"): [(310.1433605035389, 309.6312146757391, 550.7648254753555, 1.497983053629571),
                                (128.30536306698258, -260.62643507142155, 92.37029423479459, 1.0391816643459677),
                                (54.84853968253262, 42.406814810396796, 12.886565559929835, 0.21706005240915274)],
    ("euclid_dm", "axion"): [(309.8125358657984, 307.3448777375445, 553.8797890549473, 1.4996721012910956),
                             (128.94101455877458, -265.9770750507361, 86.0897645072983, 1.0306037975116444),
                             (54.95740839661322, 40.860891222746055, 14.42376002840848, 0.21391055689322594)],
    ("hst_dm", "cdm_tnfw"): [(386.44109010960045, 491.67445987530846, 865.7268994098351, 1.158328931048274),
                             (160.3035963282014, -416.29622304846765, 155.40114712768536, 0.8234986705357948),
                             (68.32060465085759, 66.84488325665333, 18.785418917639618, 0.16820666315712235)],
    ("hst_dm", "axion"): [(386.0058666630364, 488.1627152206017, 870.751826409047, 1.1585152285791243),
                          (160.85365379463286, -423.47121226653604, 143.54699723420515, 0.7860915827493923),
                          (68.4531591286365, 64.37504013963978, 21.22710335395459, 0.16596022663694285)],
}


@pytest.mark.parametrize(("preset", "cls"), list(_OLD_RENDER))
def test_images_equal_old_render(preset: str, cls: str) -> None:
    """The vortex kernel changes no image: fixed-seed images equal those of the earlier renderer to 1e-6."""
    config = resolve_config(preset)
    for i, old in enumerate(_OLD_RENDER[(preset, cls)]):
        image = render_noiseless(config, draw_parameters(config, cls, image_streams(7, i)[0]))
        v = np.arange(image.shape[0]) - (image.shape[0] - 1) / 2
        new = (image.sum(), (image * v[None, :]).sum(), (image * v[:, None]).sum(), image.max())
        np.testing.assert_allclose(new, old, rtol=1e-6)
