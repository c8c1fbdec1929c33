"""The alternatives to CDM on the realistic population (issue #10): wdm, sidm, axion, uldm (the ULDM relations
are in test_uldm.py).

Half-mode suppression of the mass function and of the concentrations recovered from many draws, m_hm drawn
and recorded, the mean convergence of the window kept, main lens and source identical across classes, the
rot90 identity, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from equilens.errors import ConfigError
from equilens.simulation.config import resolve_config
from equilens.simulation.halos import (
    DUFFY08,
    WDM_LOG10_M_HM_VALID,
    HalfModeSuppression,
    WDMConcentrationFactor,
    lensing_units,
)
from equilens.simulation.populations import draw_parameters, flatten_parameters
from equilens.simulation.presets import DM_PRESETS, list_presets
from equilens.simulation.render import render_noiseless, substructure_deflection
from equilens.simulation.rotation import rotate_record

_FIXED_HM = {"wdm_log10_m_hm_range": [8.5, 8.5], "subhalo_render_mass_min": 1e7, "sigma_sub_range": [0.05, 0.05]}


def _records(cls: str, n: int, seed: int, overrides: dict) -> tuple:
    cfg = resolve_config("euclid_dm", overrides)
    rng = np.random.default_rng(seed)
    return cfg, [draw_parameters(cfg, cls, rng) for _ in range(n)]


def test_half_mode_factors_by_hand() -> None:
    """Lovell et al. 2014 (1 + m_hm/m)^-1.3 and Bose et al. 2016 (1 + 60 m_hm/m)^-0.17 (1+z)^(0.026z-0.04)."""
    s = HalfModeSuppression(1e8)
    assert s(np.array([1e8]))[0] == pytest.approx(2.0**-1.3)
    assert s(np.array([1e14]))[0] == pytest.approx(1.0, abs=1e-5)
    f = WDMConcentrationFactor(1e8, 0.5)
    assert f(np.array([1e8]))[0] == pytest.approx(61.0**-0.17 * 1.5 ** (0.026 * 0.5 - 0.04))
    assert "wdm" in next(p for p in list_presets() if p.name == "euclid_dm").classes
    assert all(p.classes[2:] == ("wdm", "sidm", "axion", "uldm") for p in list_presets() if p.name in DM_PRESETS)


def test_mass_function_suppression_recovered_from_draws() -> None:
    """Counts per mass bin of many wdm images (log10 m_hm = 8.5) match Sigma_sub x area x the integral of
    m^-1.9 (1 + m_hm/m)^-1.3 over the bin (Poisson, 4 sd), and are far below the CDM counts at low mass."""
    cfg, recs = _records("wdm", 40, 11, _FIXED_HM)
    units = lensing_units(cfg.H0, cfg.Om0, cfg.Ob0, cfg.z_lens, cfg.z_source)
    area = sum(math.pi * r["population"]["window_r_out"] ** 2 for r in recs) * units.kpc_per_arcsec**2
    m = np.concatenate([r["subhalos"]["mass"] for r in recs])
    edges = np.geomspace(1e7, 1e10, 7)
    counts = np.histogram(m, edges)[0]
    s = HalfModeSuppression(10**8.5)
    norm = 0.05 / 1e8 * 1e8**1.9
    for lo, hi, n in zip(edges[:-1], edges[1:], counts, strict=True):
        cdm = norm * area * integrate.quad(lambda v: v**-1.9, lo, hi)[0]
        wdm = norm * area * integrate.quad(lambda v: v**-1.9 * float(s(np.array([v]))[0]), lo, hi)[0]
        assert abs(n - wdm) < 4 * math.sqrt(wdm) + 1, (lo, n, wdm, cdm)
        if hi <= 1e8:
            assert n < cdm - 6 * math.sqrt(cdm), (lo, n, cdm)  # control: CDM would be rejected
    assert [r["population"]["log10_m_hm"] for r in recs] == [8.5] * len(recs)


def test_concentration_suppression_recovered_from_draws() -> None:
    cfg, recs = _records("wdm", 20, 12, _FIXED_HM)
    m = np.concatenate([r["subhalos"]["mass"] for r in recs])
    c = np.concatenate([r["subhalos"]["concentration"] for r in recs])
    wdm_mean = DUFFY08.mean(m, cfg.z_lens) * WDMConcentrationFactor(10**8.5, cfg.z_lens)(m)
    resid = np.log10(c / wdm_mean)
    assert len(m) > 300
    assert abs(resid.mean()) < 3 * 0.2 / math.sqrt(len(m)) + 1e-3 and resid.std() == pytest.approx(0.2, rel=0.1)
    low = m < 3e7
    cdm_resid = np.log10(c[low] / DUFFY08.mean(m[low], cfg.z_lens))
    assert cdm_resid.mean() < -0.4  # ~ -0.5 dex at 1e7-3e7 Msun: not the CDM relation (control)


def test_half_mode_mass_drawn_uniformly_and_recorded() -> None:
    cfg, recs = _records("wdm", 200, 13, {"subhalo_render_mass_min": 1e9})
    v = np.array([r["population"]["log10_m_hm"] for r in recs])
    assert v.min() >= 7.0 and v.max() <= 10.0 and v.std() == pytest.approx(3 / math.sqrt(12), rel=0.15)
    assert [flatten_parameters(r)["log10_m_hm"] for r in recs[:5]] == v[:5].tolist()
    assert recs[0]["population"]["m_hm"] == pytest.approx(10 ** v[0])
    assert math.isnan(flatten_parameters(draw_parameters(cfg, "cdm_tnfw", np.random.default_rng(0)))["log10_m_hm"])


def test_main_lens_and_source_identical_in_every_class() -> None:
    cfg = resolve_config("hst_dm")
    for seed in range(5):
        classes = ("no_sub", "cdm_tnfw", "wdm", "sidm", "axion", "uldm")
        recs = [draw_parameters(cfg, c, np.random.default_rng(seed)) for c in classes]
        for key in ("lens", "shear", "source", "exposure_time"):
            assert all(r[key] == recs[0][key] for r in recs)


def _ring(radius: float, n: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    t = (np.arange(n) + 0.5) * 2 * math.pi / n
    return radius * np.cos(t), radius * np.sin(t)


def _mean_radial(x: np.ndarray, y: np.ndarray, ax: np.ndarray, ay: np.ndarray) -> float:
    return float(np.mean((ax * x + ay * y) / np.hypot(x, y)))


@pytest.mark.parametrize("cls", ["cdm_tnfw", "wdm", "sidm", "axion", "uldm"])
def test_mean_convergence_of_the_window_kept(cls: str) -> None:
    """Gauss: subhalos + sheet add less than 1e-3 of the main lens's mean convergence over the window."""
    from lenstronomy.LensModel.lens_model import LensModel

    from equilens.simulation.render import _main_and_source_kwargs

    cfg = resolve_config("euclid_dm", {"sigma_sub_range": [0.05, 0.05], "wdm_log10_m_hm_range": [7.0, 7.5],
                                       "uldm_log10_m_range": [-20.5, -20.0]})
    for seed in range(4):
        p = draw_parameters(cfg, cls, np.random.default_rng(seed))
        r_out = p["mass_sheet"]["radii"][-1]
        x, y = _ring(r_out)
        kw, _ = _main_and_source_kwargs(cfg, p)
        main = _mean_radial(x, y, *LensModel(["SIE"]).alpha(x, y, kw[:1])) / r_out
        sub = _mean_radial(x, y, *substructure_deflection(x, y, p)) / r_out
        assert abs(sub) < 1e-3 * main, (seed, sub, main)
        added = _mean_radial(x, y, *substructure_deflection(x, y, {**p, "mass_sheet": None})) / r_out
        assert added > 2e-3 * main  # control: the halos alone add mass


def _rotated(params: dict) -> dict:
    """The scene turned by -90 degrees (the sense of np.rot90(k=-1)): the library's record rotation."""
    return rotate_record(params, -90.0)


@pytest.mark.parametrize("cls", ["wdm", "sidm", "axion", "uldm"])
def test_rotation_by_90_degrees_is_rot90(cls: str) -> None:
    cfg = resolve_config("euclid_dm", {"image_size": 40, "sigma_sub_range": [0.05, 0.05],
                                       "subhalo_render_mass_min": 1e9, "wdm_log10_m_hm_range": [7.0, 7.0],
                                       "uldm_log10_m_range": [-20.0, -20.0]})
    params = draw_parameters(cfg, cls, np.random.default_rng(3))
    assert len(params["subhalos"]["mass"]) > 0
    img = render_noiseless(cfg, params)
    rot = render_noiseless(cfg, _rotated(params))
    scale = np.max(np.abs(img))
    np.testing.assert_allclose(rot, np.rot90(img, k=-1), rtol=0, atol=1e-5 * scale)
    assert np.max(np.abs(np.rot90(img, k=-1) - img)) > 1e-2 * scale


@pytest.mark.parametrize("bad", [[4.0, 9.0], [7.0, 12.5], [9.0, 8.0]])
def test_half_mode_mass_outside_its_range_is_a_clear_error(bad: list) -> None:
    lo, hi = WDM_LOG10_M_HM_VALID
    pattern = "min must be <= max" if bad[0] > bad[1] else rf"must be in \[{lo:g}, {hi:g}\]"
    with pytest.raises(ConfigError, match=pattern):
        resolve_config("euclid_dm", {"wdm_log10_m_hm_range": bad})
    with pytest.raises(ConfigError, match=r"must be in \[5, 12\]"):
        HalfModeSuppression(1e4)


# ---------------------------------------------------------------------------------------------------------
# SIDM: cored NFW profile and core radii


def test_cnfw_matches_lenstronomy_deflection_convergence_and_mass() -> None:
    from lenstronomy.LensModel.Profiles.cnfw import CNFW

    from equilens.simulation.profiles import cnfw_convergence_profile, cnfw_deflection, cnfw_projected_mass

    rng = np.random.default_rng(5)
    x, y = rng.uniform(-2, 2, 3000), rng.uniform(-2, 2, 3000)
    ref = CNFW()
    for rs, a, rc in ((0.1, 0.01, 0.02), (0.3, 0.05, 0.5), (0.05, 0.002, 0.01)):
        ax, ay = ref.derivatives(x, y, rs, a, rc, 0.1, -0.2)
        bx, by = cnfw_deflection(x, y, [rs], [a], [rc], [np.inf], [0.1], [-0.2])
        np.testing.assert_allclose(bx, ax, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(by, ay, rtol=1e-6, atol=1e-12)
        rho0 = ref._alpha2rho0(a, rs, rc)
        r = np.hypot(x - 0.1, y + 0.2)
        ok = np.abs(r - rc) > 2e-3 * rs  # lenstronomy switches to a series within 1e-3 Rs of the core radius
        kappa = ref.density_2d(x - 0.1, y + 0.2, rs, rho0, rc)
        np.testing.assert_allclose(cnfw_convergence_profile((r / rs) ** 2, rs, a, rc)[ok], kappa[ok], rtol=1e-6)
        assert float(cnfw_projected_mass(1.3, rs, a, rc)) == pytest.approx(float(ref.mass_2d(1.3, rs, rho0, rc)),
                                                                           rel=1e-6)


def test_cnfw_projected_truncation_is_a_point_mass_outside() -> None:
    from equilens.simulation.profiles import cnfw_deflection, cnfw_projected_mass

    rs, a, rc, rt = 0.2, 0.03, 0.05, 0.6
    x, y = _ring(0.9, 256)
    ax, ay = cnfw_deflection(x, y, [rs], [a], [rc], [rt], [0.0], [0.0])
    m = float(cnfw_projected_mass(rt, rs, a, rc))
    np.testing.assert_allclose(ax, m / (math.pi * 0.81) * x, rtol=1e-10)  # M / (pi R^2) (x, y)
    x, y = _ring(0.4, 64)  # inside R_t: the untruncated profile
    np.testing.assert_allclose(cnfw_deflection(x, y, [rs], [a], [rc], [rt], [0.0], [0.0])[0],
                               cnfw_deflection(x, y, [rs], [a], [rc], [np.inf], [0.0], [0.0])[0], rtol=1e-12)


def test_sidm_core_radius_relation() -> None:
    """x_1 (1 + x_1)^2 = rho_s (sigma/m) v_max t_age (Kaplinghat, Tulin & Yu 2016) solved for x_1 = r_core/Rs."""
    from equilens.simulation.halos import SIDM_CROSS_SECTION_VALID, check_cross_section, sidm_core_radius

    units = lensing_units(70.0, 0.3, 0.05, 0.5, 1.0)
    m, c = np.array([1e7, 1e8, 1e9]), np.array([13.0, 11.0, 9.0])
    r200 = (3 * m / (4 * math.pi * 200 * units.rho_crit)) ** (1 / 3)
    rs = r200 / c
    rho_s = m / (4 * math.pi * rs**3 * (np.log1p(c) - c / (1 + c)))
    m_max = 4 * math.pi * rho_s * rs**3 * (np.log(3.16258) - 2.16258 / 3.16258)
    v_max = np.sqrt(4.300917e-6 * m_max / (2.16258 * rs)) * 1.0227122  # kpc/Gyr
    for cs in (0.1, 1.0, 10.0):
        x1 = sidm_core_radius(units, m, c, cs) / rs
        k = rho_s * cs * 2.088357e-10 * v_max * units.age_gyr
        np.testing.assert_allclose(x1 * (1 + x1) ** 2, k, rtol=1e-6)
    assert units.age_gyr == pytest.approx(8.43, abs=0.02)
    grow = [float(sidm_core_radius(units, m[1:2], c[1:2], cs)[0]) for cs in (0.1, 1.0, 10.0)]
    assert grow[0] < grow[1] < grow[2]
    assert SIDM_CROSS_SECTION_VALID == (0.01, 100.0)
    with pytest.raises(ConfigError, match=r"must be in \[0.01, 100\] cm\^2/g"):
        check_cross_section(300.0)


def test_sidm_population_cores_masses_and_cross_section() -> None:
    """Per-halo core radii follow the relation at the recorded (m, c, sigma/m); each cored halo carries the
    total mass of its TNFW counterpart; sigma/m is log-uniform in its range and recorded."""
    from equilens.simulation.halos import PALTAS_TRUNCATION, nfw_angles, sidm_core_radius
    from equilens.simulation.profiles import cnfw_projected_mass, tnfw_total_mass

    cfg, recs = _records("sidm", 120, 21, {"subhalo_render_mass_min": 1e9})
    units = lensing_units(cfg.H0, cfg.Om0, cfg.Ob0, cfg.z_lens, cfg.z_source)
    cs = np.array([r["population"]["cross_section"] for r in recs])
    assert cs.min() >= 1.0 and cs.max() <= 10.0
    assert np.log10(cs).std() == pytest.approx(1 / math.sqrt(12), rel=0.2)
    assert [flatten_parameters(r)["cross_section"] for r in recs[:3]] == cs[:3].tolist()
    n = 0
    for r in recs[:40]:
        s = r["subhalos"]
        if not s["mass"]:
            continue
        m, c = np.array(s["mass"]), np.array(s["concentration"])
        assert set(s["profile"]) == {"CNFW"}
        np.testing.assert_allclose(s["r_core_kpc"], sidm_core_radius(units, m, c, r["population"]["cross_section"]))
        np.testing.assert_allclose(np.array(s["r_core"]) * units.kpc_per_arcsec, s["r_core_kpc"])
        rs, alpha_nfw = nfw_angles(units, m, c)
        np.testing.assert_allclose(s["Rs"], rs)
        dist = np.hypot(s["x"], s["y"]) * units.kpc_per_arcsec
        rt = PALTAS_TRUNCATION.radius(m, dist) / units.kpc_per_arcsec
        total = cnfw_projected_mass(np.array(s["r_trunc"]), rs, np.array(s["alpha_Rs"]), np.array(s["r_core"]))
        np.testing.assert_allclose(total, tnfw_total_mass(rs, alpha_nfw, rt), rtol=1e-6)
        n += len(m)
    assert n > 20
    with pytest.raises(ConfigError, match=r"sidm_cross_section_range \[0.001, 5.0\]: sigma/m must be in \[0.01, 100\]"):
        resolve_config("euclid_dm", {"sidm_cross_section_range": [0.001, 5.0]})


def test_axion_vortex_on_the_cdm_population() -> None:
    """*_dm axion: the cdm_tnfw halos plus a 1e10 Msun vortex whose mass the sheet removes annulus by annulus;
    the DeepLense axion class keeps the vortex alone with 3e10 Msun and no sheet."""
    cfg = resolve_config("euclid_dm", {"sigma_sub_range": [0.05, 0.05]})
    p = draw_parameters(cfg, "axion", np.random.default_rng(4))
    assert cfg.vortex_on_subhalos and cfg.vortex_mass_total == 1e10
    assert len(p["subhalos"]["mass"]) > 0 and set(p["subhalos"]["profile"]) == {"TNFW"}
    ax = p["axion"]
    assert ax["vortex_point_mass"] * ax["vortex_n_points"] == pytest.approx(1e10)
    assert p["population"]["vortex_mass_in_window"] <= 1e10
    assert p["mass_sheet"]["kappa_mean"] < -p["population"]["kappa_sub_rendered"]  # halos + vortex removed
    legacy = draw_parameters(resolve_config("model_ii"), "axion", np.random.default_rng(4))
    assert legacy["subhalos"]["mass"] == [] and legacy["mass_sheet"] is None
    assert legacy["axion"]["vortex_point_mass"] * 100 == pytest.approx(3e10)


def test_uldm_soliton_profile_matches_lenstronomy() -> None:
    from lenstronomy.LensModel.Profiles.uldm import Uldm

    from equilens.simulation.profiles import uldm_deflection, uldm_total_mass

    rng = np.random.default_rng(8)
    x, y = rng.uniform(-1, 1, 2000), rng.uniform(-1, 1, 2000)
    ref = Uldm()
    for k0, tc in ((0.05, 0.02), (0.3, 0.2)):
        ax, ay = ref.derivatives(x, y, k0, tc, 0.1, -0.05)
        bx, by = uldm_deflection(x, y, [k0], [tc], [0.1], [-0.05])
        np.testing.assert_allclose(bx, ax, rtol=1e-6, atol=1e-14)
        np.testing.assert_allclose(by, ay, rtol=1e-6, atol=1e-14)
        assert float(uldm_total_mass(k0, tc)) == pytest.approx(float(ref.mass_2d(1e4, k0, tc)), rel=1e-6)
    two = uldm_deflection(x, y, [0.05, 0.3], [0.02, 0.2], [0.1, 0.0], [-0.05, 0.0])[0]
    one = (uldm_deflection(x, y, [0.05], [0.02], [0.1], [-0.05])[0]
           + uldm_deflection(x, y, [0.3], [0.2], [0.0], [0.0])[0])
    np.testing.assert_allclose(two, one, rtol=1e-12)
