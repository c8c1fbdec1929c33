"""The realistic CDM population (issue #9): profiles against lenstronomy, halo relations, the mass sheet,
Einstein radii, the new presets, the rot90 identity and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from equilens.errors import ConfigError
from equilens.simulation.config import resolve_config
from equilens.simulation.halos import (
    DUFFY08,
    PALTAS_TRUNCATION,
    MassFunction,
    lensing_units,
    nfw_angles,
)
from equilens.simulation.populations import draw_parameters, subhalo_population
from equilens.simulation.profiles import (
    TNFW_FAR_FIELD_RADIUS,
    annular_sheet_deflection,
    point_mass_deflection,
    tnfw_convergence,
    tnfw_deflection,
    tnfw_total_mass,
    uniform_disk_deflection,
)
from equilens.simulation.render import (
    deflection_scale,
    pixel_integrated_gaussian,
    render_noiseless,
    substructure_deflection,
)
from equilens.simulation.rotation import rotate_record

# ---------------------------------------------------------------------------------------------------------
# Profiles against lenstronomy


def _halos(rng: np.random.Generator, m: int) -> tuple[np.ndarray, ...]:
    rs = rng.uniform(0.02, 0.3, m)
    return rs, rng.uniform(1e-4, 1e-2, m), rs * rng.uniform(0.3, 20, m), rng.uniform(-2, 2, m), rng.uniform(-2, 2, m)


def test_tnfw_matches_lenstronomy_deflection_and_convergence() -> None:
    from lenstronomy.LensModel.Profiles.tnfw import TNFW

    rng = np.random.default_rng(0)
    x, y = rng.uniform(-3, 3, 4000), rng.uniform(-3, 3, 4000)
    rs, a, rt, cx, cy = _halos(rng, 6)
    x[:6], y[:6] = cx + rs * (1 + 1e-3), cy  # close to x = R/Rs = 1 (where the convergence formula cancels)
    x[6:12], y[6:12] = cx + rs * 0.01, cy  # deep inside Rs
    ax, ay = tnfw_deflection(x, y, rs, a, rt, cx, cy)
    kappa = tnfw_convergence(x, y, rs, a, rt, cx, cy)
    ref = TNFW()
    rx, ry, rk = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    for i in range(6):
        fx, fy = ref.derivatives(x, y, rs[i], a[i], rt[i], cx[i], cy[i])
        fxx, _, _, fyy = ref.hessian(x, y, rs[i], a[i], rt[i], cx[i], cy[i])
        rx, ry, rk = rx + fx, ry + fy, rk + (fxx + fyy) / 2
    np.testing.assert_allclose(ax, rx, rtol=1e-6, atol=0)
    np.testing.assert_allclose(ay, ry, rtol=1e-6, atol=0)
    np.testing.assert_allclose(kappa, rk, rtol=1e-6, atol=0)


def test_tnfw_total_mass_is_the_limit_of_the_projected_mass() -> None:
    from lenstronomy.LensModel.Profiles.tnfw import TNFW

    rng = np.random.default_rng(1)
    rs, a, rt, _, _ = _halos(rng, 5)
    rho0 = a / (4 * rs**2 * (1 + math.log(0.5)))
    far = TNFW().mass_2d(1e5 * rt, rs, rho0, rt)
    np.testing.assert_allclose(tnfw_total_mass(rs, a, rt), far, rtol=1e-6)


def test_tnfw_far_field_within_1e3_of_the_exact_deflection() -> None:
    rng = np.random.default_rng(2)
    rs, a, rt, cx, cy = _halos(rng, 8)
    x, y = rng.uniform(-6, 6, 20000), rng.uniform(-6, 6, 20000)
    exact = np.stack(tnfw_deflection(x, y, rs, a, rt, cx, cy))
    far = np.stack(tnfw_deflection(x, y, rs, a, rt, cx, cy, far_field=True))
    scale = np.hypot(*exact)
    assert np.max(np.hypot(*(far - exact)) / scale) < 1e-3
    # the far field is used (not the exact profile everywhere): the point-mass term alone is off by more
    one = 0
    r = np.hypot(x - cx[one], y - cy[one])
    sel = r > TNFW_FAR_FIELD_RADIUS * max(rt[one], rs[one])
    m = tnfw_total_mass(rs[one : one + 1], a[one : one + 1], rt[one : one + 1])[0]
    ex = np.stack(tnfw_deflection(x[sel], y[sel], rs[:1], a[:1], rt[:1], cx[:1], cy[:1]))
    pm = np.stack(point_mass_deflection(x[sel], y[sel], np.sqrt([m / math.pi]), cx[:1], cy[:1]))
    assert np.max(np.hypot(*(pm - ex)) / np.hypot(*ex)) > 1e-3


def test_uniform_disk_matches_convergence_sheet_inside_and_a_point_mass_outside() -> None:
    from lenstronomy.LensModel.lens_model import LensModel

    rng = np.random.default_rng(3)
    x, y = rng.uniform(-5, 5, 3000), rng.uniform(-5, 5, 3000)
    kappa, radius = -0.01, 3.0
    ax, ay = uniform_disk_deflection(x, y, kappa, radius)
    inside = np.hypot(x, y) <= radius
    rx, ry = LensModel(["CONVERGENCE"]).alpha(x, y, [{"kappa": kappa, "ra_0": 0.0, "dec_0": 0.0}])
    np.testing.assert_allclose(ax[inside], rx[inside], rtol=1e-12)
    te = math.sqrt(-kappa) * radius  # a point mass of the disk's mass, sign flipped
    px, py = LensModel(["POINT_MASS"]).alpha(x, y, [{"theta_E": te, "center_x": 0.0, "center_y": 0.0}])
    np.testing.assert_allclose(ax[~inside], -px[~inside], rtol=1e-12)
    np.testing.assert_allclose(ay[~inside], -py[~inside], rtol=1e-12)


def test_annular_sheet_is_a_sum_of_disks() -> None:
    rng = np.random.default_rng(8)
    x, y = rng.uniform(-5, 5, 3000), rng.uniform(-5, 5, 3000)
    x[0] = y[0] = 0.0
    radii = np.array([0.0, 0.7, 1.5, 2.2, 3.3])
    kappa = np.array([-0.01, -0.02, -0.005, -0.03])
    ax, ay = annular_sheet_deflection(x, y, radii, kappa)
    ex, ey = np.zeros_like(x), np.zeros_like(y)
    for k in range(4):
        for r, sign in ((radii[k + 1], 1.0), (radii[k], -1.0)):
            if r > 0:
                dx, dy = uniform_disk_deflection(x, y, sign * kappa[k], r)
                ex, ey = ex + dx, ey + dy
    np.testing.assert_allclose(ax, ex, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(ay, ey, rtol=1e-10, atol=1e-15)


# ---------------------------------------------------------------------------------------------------------
# Units and halo relations


class _Cosmo:
    """astropy FlatLambdaCDM whose angular_diameter_distance also takes (z1, z2), as lenstronomy 1.14.2 calls it."""

    def __new__(cls, **kw):  # noqa: ANN003, ANN204 - a thin test helper
        from astropy.cosmology import FlatLambdaCDM

        class Wrapped(FlatLambdaCDM):
            def angular_diameter_distance(self, z1, z2=None):  # noqa: ANN001, ANN202
                if z2 is None:
                    return super().angular_diameter_distance(z1)
                return self.angular_diameter_distance_z1z2(z1, z2)

        return Wrapped(**kw)


def test_nfw_angles_match_lenstronomy_lens_cosmo() -> None:
    """lenstronomy's LensCosmo.nfw_physical2angle (with a cosmology wrapper that works around its astropy-7
    failure) gives the same Rs; alpha_Rs agrees to 3e-4, the ratio of lenstronomy's solar mass (1.989e30 kg)
    to astropy's IAU value (1.98841e30 kg) in its critical density."""
    from lenstronomy.Cosmo.lens_cosmo import LensCosmo

    lc = LensCosmo(0.5, 1.0, cosmo=_Cosmo(H0=70, Om0=0.3, Ob0=0.05))
    units = lensing_units(70.0, 0.3, 0.05, 0.5, 1.0)
    for m, c in ((1e6, 20.0), (1e8, 12.0), (1e10, 8.0)):
        rs_ref, a_ref = lc.nfw_physical2angle(m, c)
        rs, a = nfw_angles(units, m, c)
        assert rs == pytest.approx(rs_ref, rel=1e-8)
        assert a == pytest.approx(a_ref, rel=5e-4)
    assert units.sigma_crit * 1e6 == pytest.approx(lc.sigma_crit, rel=5e-4)  # Msun / Mpc^2
    assert units.d_d == pytest.approx(lc.dd, rel=1e-10)


def test_lensing_units_by_hand() -> None:
    """Sigma_crit = c^2 D_s / (4 pi G D_d D_ds) from the constants, and kpc per arcsec = D_d * pi / 648000."""
    u = lensing_units(70.0, 0.3, 0.05, 0.5, 1.0)
    c, G, mpc, msun = 299792458.0, 6.6743e-11, 3.0856775814913673e22, 1.988409870698051e30
    sigma = c**2 / (4 * math.pi * G) * u.d_s / (u.d_d * u.d_ds) / mpc * (mpc / 1e3) ** 2 / msun
    assert u.sigma_crit == pytest.approx(sigma, rel=1e-6)
    assert u.kpc_per_arcsec == pytest.approx(u.d_d * 1e3 * math.pi / 648000, rel=1e-12)
    # the brief's numbers for this lens: pyHalo's normalisation gives ~1850 subhalos inside 3", 3 above 1e9
    mf = MassFunction(0.025, -1.9, 1e6, 1e10)
    area = math.pi * (3 * u.kpc_per_arcsec) ** 2
    assert mf.expected_number(area) == pytest.approx(1850, rel=0.01)
    assert mf.expected_number(area, 1e9) == pytest.approx(3.2, abs=0.1)
    assert 2 * mf.mass_density() / u.sigma_crit == pytest.approx(0.0155, abs=0.0005)  # f_sub ~ 1.5%


def test_mass_function_slope_and_normalisation_recovered() -> None:
    """Many Poisson realisations: the counts match Sigma_sub x area x integral (Poisson test) and the
    maximum-likelihood slope matches -1.9 (fixed seed)."""
    mf = MassFunction(0.03, -1.9, 1e6, 1e10)
    rng = np.random.default_rng(4)
    area = 50.0  # kpc^2
    draws = [mf.draw(rng, area) for _ in range(400)]
    counts = np.array([len(d) for d in draws])
    expected = mf.expected_number(area)
    # sum of 400 Poisson counts is Poisson(400 * expected): within 4 sd
    assert abs(counts.sum() - 400 * expected) < 4 * math.sqrt(400 * expected)
    # normalisation recovered: Sigma_sub estimate = counts / (area * integral per unit Sigma_sub)
    per_unit = MassFunction(1.0, -1.9, 1e6, 1e10).expected_number(area)
    assert counts.mean() / per_unit == pytest.approx(0.03, rel=0.02)
    m = np.concatenate(draws)
    # MLE of a truncated power law slope: maximise the likelihood on a grid
    grid = np.linspace(-2.1, -1.7, 401)
    logm = np.log(m)

    def loglike(p: float) -> float:
        norm = (1e10 ** (p + 1) - 1e6 ** (p + 1)) / (p + 1)
        return float(p * logm.sum() - len(m) * math.log(norm))

    best = grid[int(np.argmax([loglike(p) for p in grid]))]
    assert best == pytest.approx(-1.9, abs=0.005)
    # a mass function drawn above a cut keeps the expected number above the cut
    above = [mf.draw(rng, area, lo=1e8) for _ in range(400)]
    assert np.mean([len(d) for d in above]) == pytest.approx(mf.expected_number(area, 1e8), rel=0.1)
    assert min(d.min() for d in above if len(d)) >= 1e8


def test_mass_function_suppression_thins_small_masses() -> None:
    """The hook warm dark matter will use: S(m) = (1 + m_hm / m)^-1.3 thins the draws by its average."""
    m_hm = 1e8

    def s(m: np.ndarray) -> np.ndarray:
        return (1 + m_hm / m) ** -1.3

    cold = MassFunction(0.03, -1.9, 1e7, 1e10)
    warm = MassFunction(0.03, -1.9, 1e7, 1e10, suppression=s)
    rng = np.random.default_rng(5)
    m_cold = np.concatenate([cold.draw(rng, 200.0) for _ in range(200)])
    m_warm = np.concatenate([warm.draw(rng, 200.0) for _ in range(200)])
    assert len(m_warm) / len(m_cold) == pytest.approx(float(np.mean(s(m_cold))), rel=0.05)
    assert np.median(m_warm) > np.median(m_cold)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"sigma_sub": -0.01}, r"must be >= 0 kpc\^-2"),
        ({"m_min": 1e10, "m_max": 1e6}, r"needs 0 < min < max \(Msun\), got \[1e\+10, 1e\+06\]"),
        ({"m_min": 1e8, "m_max": 1e8}, "needs 0 < min < max"),
    ],
)
def test_mass_function_bad_input(kwargs: dict, pattern: str) -> None:
    base = {"sigma_sub": 0.025, "slope": -1.9, "m_min": 1e6, "m_max": 1e10}
    with pytest.raises(ConfigError, match=pattern):
        MassFunction(**{**base, **kwargs})


def _cdm_records(preset: str, n: int, seed: int, overrides: dict | None = None) -> tuple:
    cfg = resolve_config(preset, overrides or {})
    rng = np.random.default_rng(seed)
    return cfg, [draw_parameters(cfg, "cdm_tnfw", rng) for _ in range(n)]


def test_concentrations_and_truncation_follow_their_relations() -> None:
    cfg, recs = _cdm_records("euclid_dm", 60, 6, {"subhalo_render_mass_min": 1e7, "sigma_sub_range": [0.05, 0.05]})
    units = lensing_units(cfg.H0, cfg.Om0, cfg.Ob0, cfg.z_lens, cfg.z_source)
    m = np.concatenate([r["subhalos"]["mass"] for r in recs])
    c = np.concatenate([r["subhalos"]["concentration"] for r in recs])
    resid = np.log10(c / DUFFY08.mean(m, cfg.z_lens))
    assert len(m) > 2000
    assert abs(resid.mean()) < 0.02 and resid.std() == pytest.approx(0.2, rel=0.05)
    assert stats.normaltest(resid).pvalue > 1e-3
    # Duffy et al. 2008 at z = 0.5, 1e8 Msun: 5.71 (1e8 / (2e12/0.7))^-0.084 1.5^-0.47
    assert DUFFY08.mean(1e8, 0.5) == pytest.approx(5.71 * (1e8 / (2e12 / 0.7)) ** -0.084 * 1.5**-0.47)
    for r in recs[:10]:
        s = r["subhalos"]
        dist_kpc = np.hypot(s["x"], s["y"]) * units.kpc_per_arcsec
        rt = 1.4 * (np.asarray(s["mass"]) / 1e7) ** (1 / 3) * (dist_kpc / 50.0) ** (2 / 3)  # paltas
        np.testing.assert_allclose(s["r_trunc_kpc"], rt, rtol=1e-12)
        np.testing.assert_allclose(s["r_trunc"], rt / units.kpc_per_arcsec, rtol=1e-12)
        rs, a = nfw_angles(units, np.asarray(s["mass"]), np.asarray(s["concentration"]))
        np.testing.assert_allclose(s["Rs"], rs, rtol=1e-12)
        np.testing.assert_allclose(s["alpha_Rs"], a, rtol=1e-12)
        assert set(s["profile"]) <= {"TNFW"}
    assert PALTAS_TRUNCATION.radius(1e7, 50.0) == pytest.approx(1.4)


def test_sigma_sub_drawn_from_its_prior_and_recorded() -> None:
    cfg, recs = _cdm_records("hst_dm", 300, 7)
    sig = np.array([r["population"]["sigma_sub"] for r in recs])
    assert cfg.sigma_sub_range == (0.0, 0.05)
    assert stats.kstest(sig / 0.05, "uniform").pvalue > 1e-3
    # the rendered count follows Sigma_sub (Poisson mean proportional to it)
    n = np.array([len(r["subhalos"]["mass"]) for r in recs])
    expected = np.array([r["population"]["n_expected_rendered"] for r in recs])
    assert stats.pearsonr(sig, n)[0] > 0.8
    assert n.sum() == pytest.approx(expected.sum(), rel=0.05)
    assert all(min(r["subhalos"]["mass"], default=1e8) >= 1e8 for r in recs)
    f_sub = np.array([r["population"]["f_sub"] for r in recs])
    np.testing.assert_allclose(f_sub / sig, f_sub[0] / sig[0], rtol=1e-9)  # f_sub proportional to Sigma_sub
    assert f_sub[0] / sig[0] * 0.025 == pytest.approx(0.0155, abs=0.0005)
    # positions uniform in area inside 3 Einstein radii
    u = np.concatenate([np.hypot(r["subhalos"]["x"], r["subhalos"]["y"]) / (3 * r["lens"]["theta_E"]) for r in recs])
    assert u.max() <= 1 and stats.kstest(u**2, "uniform").pvalue > 1e-3


# ---------------------------------------------------------------------------------------------------------
# Mass sheet and Einstein radii


def _ring_mean_radial(x0: np.ndarray, y0: np.ndarray, ax: np.ndarray, ay: np.ndarray) -> float:
    r = np.hypot(x0, y0)
    return float(np.mean((ax * x0 + ay * y0) / r))


def _ring(radius: float, n: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    t = (np.arange(n) + 0.5) * 2 * math.pi / n
    return radius * np.cos(t), radius * np.sin(t)


def _main_deflection(params: dict, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from lenstronomy.LensModel.lens_model import LensModel

    from equilens.simulation.render import _main_and_source_kwargs

    kw, _ = _main_and_source_kwargs(resolve_config("euclid_dm"), params)
    return LensModel(["SIE", "SHEAR"]).alpha(x, y, kw[:1] + [{"gamma1": 0.0, "gamma2": 0.0}])


def test_mass_sheet_keeps_the_mean_convergence_of_the_window() -> None:
    """Gauss: the mean convergence inside radius R is <alpha . r_hat>(R) / R. Over the whole window, the
    subhalos plus the sheet add less than 1e-3 of the main lens's mean convergence; without the sheet they add
    0.4-3% of it."""
    for preset, cls in (("euclid_dm", "cdm_tnfw"), ("model_ii", "cdm")):
        for seed in range(6):
            cfg = resolve_config(preset, {"sigma_sub_range": [0.05, 0.05]} if preset == "euclid_dm" else {})
            params = draw_parameters(cfg, cls, np.random.default_rng(seed))
            r_out = params["mass_sheet"]["radii"][-1]
            x, y = _ring(r_out)
            kappa_sub = _ring_mean_radial(x, y, *substructure_deflection(x, y, params)) / r_out
            kappa_main = _ring_mean_radial(x, y, *_main_deflection(params, x, y)) / r_out
            assert abs(kappa_sub) < 1e-3 * kappa_main, (preset, seed, kappa_sub, kappa_main)
            no_sheet = {**params, "mass_sheet": None}
            added = _ring_mean_radial(x, y, *substructure_deflection(x, y, no_sheet)) / r_out
            assert added > 3e-3 * kappa_main  # the halos alone would add 0.4-3% (control)
            assert params["mass_sheet"]["kappa_mean"] == pytest.approx(-params["population"]["kappa_sub_rendered"])


def _einstein_radius(params: dict, with_sheet: bool = True) -> float:
    """Radius where the mean convergence inside equals 1 (<alpha_r>(theta) = theta), by bisection."""
    p = params if with_sheet else {**params, "mass_sheet": None}
    lo, hi = 0.3, 3.0

    def excess(t: float) -> float:
        x, y = _ring(t, 512)
        mx, my = _main_deflection(p, x, y)
        sx, sy = substructure_deflection(x, y, p)
        return _ring_mean_radial(x, y, mx + sx, my + sy) - t

    for _ in range(24):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if excess(mid) > 0 else (lo, mid)
    return 0.5 * (lo + hi)


def test_einstein_ring_radius_distribution_same_in_both_classes() -> None:
    cfg = resolve_config("euclid_dm", {"sigma_sub_range": [0.05, 0.05]})
    none, cdm, cdm_nosheet = [], [], []
    for seed in range(60):
        a = draw_parameters(cfg, "no_sub", np.random.default_rng(seed))
        b = draw_parameters(cfg, "cdm_tnfw", np.random.default_rng(seed))
        none.append(_einstein_radius(a))
        cdm.append(_einstein_radius(b))
        cdm_nosheet.append(_einstein_radius(b, with_sheet=False))
    none, cdm, cdm_nosheet = np.array(none), np.array(cdm), np.array(cdm_nosheet)
    assert stats.ks_2samp(none, cdm).pvalue > 0.05
    # paired (same lens): with the sheet the ring does not move on average; without it, it grows
    d, d0 = cdm - none, cdm_nosheet - none
    assert abs(d.mean()) < 3 * d.std() / math.sqrt(len(d)) + 1e-4
    assert d0.mean() > 10 * abs(d.mean()) and d0.mean() > 5 * d0.std() / math.sqrt(len(d0))


# ---------------------------------------------------------------------------------------------------------
# Presets, rendering


def test_dm_presets_draw_lens_and_source() -> None:
    cfg = resolve_config("euclid_dm")
    recs = [draw_parameters(cfg, "no_sub", np.random.default_rng(s)) for s in range(300)]
    te = np.array([r["lens"]["theta_E"] for r in recs])
    mag = np.array([r["source"]["magnitude"] for r in recs])
    assert te.mean() == pytest.approx(1.1, abs=0.03) and te.std() == pytest.approx(0.15, rel=0.15)
    assert mag.min() >= 21.5 and mag.max() <= 24.0 and mag.std() > 0.5
    assert np.std([r["source"]["R_sersic"] for r in recs]) > 0.05
    angles = np.array([r["lens"]["position_angle"] for r in recs])
    assert stats.kstest(angles / math.pi, "uniform").pvalue > 1e-3
    with pytest.raises(ConfigError, match="has no legacy recipe; presets with one: model_i, model_ii, model_iii"):
        resolve_config("hst_dm", legacy=True)


def test_pixel_integrated_psf_kernel() -> None:
    from scipy.special import erf

    k = pixel_integrated_gaussian(0.16, 0.08, 5.0)
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert k.sum() == pytest.approx(1.0) and np.allclose(k, k.T) and np.allclose(k, k[::-1])
    sigma = 0.16 / 2.3548200450309493 / 0.08
    c = k.shape[0] // 2
    one = 0.5 * (erf(0.5 / (math.sqrt(2) * sigma)) - erf(-0.5 / (math.sqrt(2) * sigma)))
    total = np.sum(np.diff(0.5 * (1 + erf(np.arange(-c - 0.5, c + 1) / (math.sqrt(2) * sigma)))))
    assert k[c, c] == pytest.approx(one**2 / total**2)
    # variance of a Gaussian integrated over pixels: sigma^2 + 1/12 pixel^2
    i = np.arange(k.shape[0]) - c
    var = float(np.sum(k.sum(axis=1) * i**2))
    assert var == pytest.approx(sigma**2 + 1 / 12, rel=1e-3)
    cfg = resolve_config("hst_dm")
    assert (cfg.psf_model, cfg.psf_fwhm) == ("gaussian_pixel_integrated", 0.16)


def _rotated(params: dict) -> dict:
    """The scene turned by -90 degrees (the sense of np.rot90(k=-1)): the library's record rotation."""
    return rotate_record(params, -90.0)


@pytest.mark.parametrize("preset", ["euclid_dm", "hst_dm"])
def test_rotation_by_90_degrees_is_rot90_for_cdm_tnfw(preset: str) -> None:
    cfg = resolve_config(preset, {"image_size": 40, "sigma_sub_range": [0.05, 0.05], "subhalo_render_mass_min": 1e9})
    params = draw_parameters(cfg, "cdm_tnfw", np.random.default_rng(3))
    assert len(params["subhalos"]["mass"]) > 0
    img = render_noiseless(cfg, params)
    rot = render_noiseless(cfg, _rotated(params))
    scale = np.max(np.abs(img))
    np.testing.assert_allclose(rot, np.rot90(img, k=-1), rtol=0, atol=1e-5 * scale)
    assert np.max(np.abs(np.rot90(img, k=-1) - img)) > 1e-2 * scale


def test_one_rendering_path_for_every_profile() -> None:
    """The same halos as point masses or as TNFW go through substructure_deflection; a TNFW halo's deflection
    far outside its truncation radius approaches that of a point of its total mass."""
    cfg = resolve_config("model_ii", {"sigma_sub_range": [0.05, 0.05], "subhalo_render_mass_min": 1e9})
    shared = draw_parameters(cfg, "no_sub", np.random.default_rng(0))
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    pm = subhalo_population(cfg, "POINT_MASS").draw(cfg, rng_a, shared)
    tn = subhalo_population(cfg, "TNFW").draw(cfg, rng_b, shared)
    assert pm["subhalos"]["mass"] == tn["subhalos"]["mass"] and pm["subhalos"]["x"] == tn["subhalos"]["x"]
    x, y = _ring(30.0, 64)
    a_pm = np.stack(substructure_deflection(x, y, {**shared, **pm, "mass_sheet": None}))
    a_tn = np.stack(substructure_deflection(x, y, {**shared, **tn, "mass_sheet": None}))
    m_tn = tnfw_total_mass(tn["subhalos"]["Rs"], tn["subhalos"]["alpha_Rs"], tn["subhalos"]["r_trunc"])
    m_pm = math.pi * np.asarray(pm["subhalos"]["theta_E"]) ** 2
    np.testing.assert_allclose(a_tn, a_pm * m_tn.sum() / m_pm.sum(), rtol=0, atol=2e-2 * np.abs(a_pm).max())
    with pytest.raises(ConfigError, match="valid profiles: POINT_MASS, TNFW"):
        subhalo_population(cfg, "CORED")
    assert deflection_scale(cfg) == 1.0
