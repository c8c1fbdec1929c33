"""Ultra-light dark matter (issue #10): the uldm class of the *_dm family.

Core radii and soliton profiles against the Schive et al. 2014 relations and lenstronomy's ``Uldm``, the
Schive et al. 2016 suppression recovered from draws, the mass split between soliton and envelope conserving
each halo's mass, the boson mass drawn and recorded, bad input. The mean convergence of the window, identical
main lens and source and the rot90 identity are the parametrised tests of test_dm_classes.py (uldm is listed
there)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import integrate, optimize
from test_cdm_tnfw import _Cosmo

from equilens.errors import ConfigError
from equilens.simulation.config import resolve_config
from equilens.simulation.halos import (
    DUFFY08,
    PALTAS_TRUNCATION,
    ULDM_LOG10_M_VALID,
    ULDM_SOLITON_MAX_FRACTION,
    ULDMSuppression,
    WDMConcentrationFactor,
    lensing_units,
    nfw_angles,
    schive_zeta,
    soliton_angles,
    soliton_central_density,
    soliton_mass,
    uldm_core_radius,
    uldm_half_mode_mass,
    uldm_m0,
    uldm_mass_split,
    uldm_min_halo_mass,
)
from equilens.simulation.populations import draw_parameters, flatten_parameters, subhalo_population
from equilens.simulation.profiles import (
    tnfw_total_mass,
    uldm_convergence_profile,
    uldm_deflection,
    uldm_total_mass,
)
from equilens.simulation.render import lenstronomy_kwargs, substructure_deflection

_UNITS = lensing_units(70.0, 0.3, 0.05, 0.5, 1.0)


def test_core_radius_is_the_schive_relation() -> None:
    """r_c = 1.6 kpc m22^-1 a^(1/2) (zeta(z)/zeta(0))^(-1/6) (M_h / 1e9)^(-1/3) (Schive et al. 2014)."""
    m = np.array([1e8, 1e9, 1e10])
    np.testing.assert_allclose(uldm_core_radius(m, 1.0, 0.0, 0.3), 1.6 * (m / 1e9) ** (-1 / 3), rtol=1e-12)
    np.testing.assert_allclose(uldm_core_radius(m, 4.0, 0.0, 0.3), 0.4 * (m / 1e9) ** (-1 / 3), rtol=1e-12)
    om = 0.3 * 1.5**3 / (0.3 * 1.5**3 + 0.7)  # Omega_m(z = 0.5)
    zeta = (18 * math.pi**2 + 82 * (om - 1) - 39 * (om - 1) ** 2) / om
    assert schive_zeta(0.5, 0.3) == pytest.approx(zeta, rel=1e-12)
    by_hand = 1.6 * (1 / 1.5) ** 0.5 * (zeta / schive_zeta(0.0, 0.3)) ** (-1 / 6) * 0.1 ** (-1 / 3)
    assert float(uldm_core_radius(np.array([1e8]), 1.0, 0.5, 0.3)[0]) == pytest.approx(by_hand, rel=1e-12)
    assert by_hand == pytest.approx(2.99, abs=0.01)  # the README's 3.0 kpc for 1e8 Msun at m22 = 1, z = 0.5


def test_soliton_density_and_mass() -> None:
    """rho_c = 1.9e7 m22^-2 (r_c/kpc)^-4 Msun/kpc^3 (Schive's 1.9 (m / 1e-23 eV)^-2 Msun/pc^3); the total mass is
    the integral of 4 pi r^2 rho_c (1 + a (r/r_c)^2)^-8, about 2.2e8 m22^-2 (r_c / kpc)^-1 Msun."""
    assert float(soliton_central_density(np.array([1.0]), 1.0)[0]) == pytest.approx(1.9 * 1e9 / 100)
    a = 2 ** (1 / 8) - 1
    for rc, m22 in ((0.3, 1.0), (0.05, 30.0)):
        rho_c = float(soliton_central_density(np.array([rc]), m22)[0])
        ref = integrate.quad(lambda r, rc=rc, rho_c=rho_c: 4 * math.pi * r * r * rho_c / (1 + a * (r / rc) ** 2) ** 8,
                             0, 200 * rc)[0]
        assert float(soliton_mass(np.array([rc]), m22)[0]) == pytest.approx(ref, rel=1e-8)
        assert ref == pytest.approx(2.2e8 / m22**2 / rc, rel=0.02)


def test_soliton_lensing_parameters_match_lenstronomy() -> None:
    """(kappa_0, theta_c) of a soliton: lenstronomy's Uldm has the same total mass and, converted to Msun / kpc^3,
    the Schive 3D density; LensCosmo.uldm_mphys2angular (lenstronomy's r_c = 224 pc m22^-2 (M / 1e9)^-1 and
    0.091 instead of 2^(1/8) - 1) agrees: theta_c to 2%, kappa_0 (proportional to rho_c r_c, i.e. r_c^-3) to 4%."""
    from lenstronomy.Cosmo.lens_cosmo import LensCosmo
    from lenstronomy.LensModel.Profiles.uldm import Uldm

    lc = LensCosmo(0.5, 1.0, cosmo=_Cosmo(H0=70, Om0=0.3, Ob0=0.05))
    ref = Uldm()
    for m200, m22 in ((1e8, 10.0), (1e9, 3.0), (1e10, 100.0)):
        rc = uldm_core_radius(np.array([m200]), m22, 0.5, 0.3)
        ms = soliton_mass(rc, m22)
        kappa_0, theta_c = (float(v[0]) for v in soliton_angles(_UNITS, ms, rc))
        assert float(uldm_total_mass(kappa_0, theta_c)) * _UNITS.sigma_crit_arcsec2 == pytest.approx(float(ms[0]))
        assert float(ref.mass_2d(1e3 * theta_c, kappa_0, theta_c)) * _UNITS.sigma_crit_arcsec2 == pytest.approx(
            float(ms[0]), rel=1e-6)
        r = np.array([0.0, 0.5, 1.0, 2.0]) * theta_c
        rho = ref.density_lens(r, kappa_0, theta_c) * _UNITS.sigma_crit_arcsec2 / _UNITS.kpc_per_arcsec**3
        schive = soliton_central_density(rc, m22) / (1 + (2 ** (1 / 8) - 1) * (r / theta_c) ** 2) ** 8
        np.testing.assert_allclose(rho, schive, rtol=1e-6)
        assert rho[2] == pytest.approx(rho[0] / 2, rel=1e-9)  # density halves at the core radius
        k_ref, t_ref = lc.uldm_mphys2angular(math.log10(m22) - 22, math.log10(float(ms[0])))
        assert theta_c == pytest.approx(t_ref, rel=0.02) and kappa_0 == pytest.approx(k_ref, rel=0.04)


def test_soliton_far_field_and_convergence_match_lenstronomy() -> None:
    from lenstronomy.LensModel.Profiles.uldm import Uldm

    rng = np.random.default_rng(8)
    x, y = rng.uniform(-1, 1, 4000), rng.uniform(-1, 1, 4000)
    ref = Uldm()
    k0, tc = [0.5, 0.2], [0.01, 0.05]
    exact = np.stack(uldm_deflection(x, y, k0, tc, [0.1, -0.2], [0.0, 0.3]))
    far = np.stack(uldm_deflection(x, y, k0, tc, [0.1, -0.2], [0.0, 0.3], far_field=True))
    np.testing.assert_allclose(far, exact, rtol=0, atol=1e-6 * np.abs(exact).max())
    r = np.hypot(x, y)
    np.testing.assert_allclose(uldm_convergence_profile(r, 0.2, 0.05), ref.kappa_r(r, 0.2, 0.05), rtol=1e-12)
    fxx, _, _, fyy = ref.hessian(x, y, 0.2, 0.05)
    np.testing.assert_allclose(uldm_convergence_profile(r, 0.2, 0.05), (fxx + fyy) / 2, rtol=1e-6, atol=1e-12)


def test_suppression_minimum_mass_and_half_mode_mass() -> None:
    """Schive et al. 2016: S = (1 + (m/m0)^-1.1)^-2.2, m0 = 1.6e10 m22^-4/3, zero below M_min(z) = a^-3/4
    (zeta(z)/zeta(0))^1/4 4.4e7 m22^-3/2 (Schive 2014); half-mode mass where the Hu, Barkana & Gruzinov 2000
    transfer function cos(x^3) / (1 + x^8) is 1/2."""
    assert uldm_m0(1.0) == 1.6e10 and uldm_m0(8.0) == pytest.approx(1.6e10 / 16)
    s = ULDMSuppression(8.0, 1e8)
    m0 = 1e9
    assert float(s(np.array([m0]))[0]) == pytest.approx(2**-2.2)
    assert float(s(np.array([9.9e7]))[0]) == 0.0 and float(s(np.array([1e14]))[0]) == pytest.approx(1, abs=1e-5)
    assert uldm_min_halo_mass(1.0, 0.0, 0.3) == pytest.approx(4.4e7)
    z_ratio = schive_zeta(0.5, 0.3) / schive_zeta(0.0, 0.3)
    assert uldm_min_halo_mass(4.0, 0.5, 0.3) == pytest.approx(1.5**0.75 * z_ratio**0.25 * 4.4e7 / 8)
    x_half = optimize.brentq(lambda x: math.cos(x**3) / (1 + x**8) - 0.5, 0.1, 1.2)
    for m22 in (0.3, 1.0, 100.0):
        k = x_half * 9 * math.sqrt(m22) / (1.61 * m22 ** (1 / 18))
        rho_m = 0.3 * 2.775366e11 * 0.49
        assert uldm_half_mode_mass(m22, 70.0, 0.3) == pytest.approx(4 * math.pi / 3 * rho_m * (math.pi / k) ** 3,
                                                                    rel=1e-6)
    assert uldm_half_mode_mass(1.0, 70.0, 0.3) == pytest.approx(4.05e10, rel=0.01)


def _records(n: int, seed: int, overrides: dict) -> tuple:
    cfg = resolve_config("euclid_dm", overrides)
    rng = np.random.default_rng(seed)
    return cfg, [draw_parameters(cfg, "uldm", rng) for _ in range(n)]


def test_mass_function_suppression_recovered_from_draws() -> None:
    """Counts per mass bin of many uldm images at log10(m / eV) = -20.3 (m0 = 8.7e7 Msun) match Sigma_sub x area
    x the integral of m^-1.9 S(m) over the bin (Poisson, 4 sd) and are far below the CDM counts at low mass."""
    cfg, recs = _records(30, 31, {"uldm_log10_m_range": [-20.3, -20.3], "subhalo_render_mass_min": 1e7,
                                  "sigma_sub_range": [0.05, 0.05]})
    area = sum(math.pi * r["population"]["window_r_out"] ** 2 for r in recs) * _UNITS.kpc_per_arcsec**2
    m = np.concatenate([r["subhalos"]["mass"] for r in recs])
    m22 = 10**1.7
    s = ULDMSuppression(m22, uldm_min_halo_mass(m22, 0.5, 0.3))
    norm = 0.05 / 1e8 * 1e8**1.9
    edges = np.geomspace(1e7, 1e10, 7)
    for lo, hi, n in zip(edges[:-1], edges[1:], np.histogram(m, edges)[0], strict=True):
        cdm = norm * area * integrate.quad(lambda v: v**-1.9, lo, hi)[0]
        uldm = norm * area * integrate.quad(lambda v: v**-1.9 * float(s(np.array([v]))[0]), lo, hi)[0]
        assert abs(n - uldm) < 4 * math.sqrt(uldm) + 1, (lo, n, uldm, cdm)
        if hi <= 1e8:
            assert n < cdm - 6 * math.sqrt(cdm), (lo, n, cdm)  # control: CDM would be rejected
    assert {r["population"]["log10_m_uldm"] for r in recs} == {-20.3}


def test_boson_mass_drawn_recorded_and_halos_follow_the_relations() -> None:
    """log10(m / eV) ~ U(-22.5, -20) per image (column log10_m_uldm); every halo's soliton core radius is the
    relation's at its m200 and the recorded boson mass, its concentration the Duffy relation times the Bose
    factor at the ULDM half-mode mass (0.2 dex scatter), its truncation the paltas rule."""
    cfg, recs = _records(150, 32, {"subhalo_render_mass_min": 1e9})
    v = np.array([r["population"]["log10_m_uldm"] for r in recs])
    assert v.min() >= -22.5 and v.max() <= -20.0 and v.std() == pytest.approx(2.5 / math.sqrt(12), rel=0.15)
    assert [flatten_parameters(r)["log10_m_uldm"] for r in recs[:5]] == v[:5].tolist()
    assert math.isnan(flatten_parameters(draw_parameters(cfg, "wdm", np.random.default_rng(0)))["log10_m_uldm"])
    resid = []
    for r in recs:
        s, pop = r["subhalos"], r["population"]
        assert pop["m22"] == pytest.approx(10 ** (pop["log10_m_uldm"] + 22))
        assert pop["uldm_m0"] == pytest.approx(uldm_m0(pop["m22"]))
        if not s["mass"]:
            continue
        assert set(s["profile"]) == {"ULDM"}
        m, c = np.array(s["mass"]), np.array(s["concentration"])
        np.testing.assert_allclose(s["r_c_kpc"], uldm_core_radius(m, pop["m22"], 0.5, 0.3), rtol=1e-12)
        np.testing.assert_allclose(np.array(s["theta_c"]) * _UNITS.kpc_per_arcsec, s["r_c_kpc"], rtol=1e-12)
        dist = np.hypot(s["x"], s["y"]) * _UNITS.kpc_per_arcsec
        np.testing.assert_allclose(s["r_trunc_kpc"], PALTAS_TRUNCATION.radius(m, dist), rtol=1e-12)
        mean = DUFFY08.mean(m, 0.5) * WDMConcentrationFactor(pop["uldm_m_hm"], 0.5)(m)
        resid.extend(np.log10(c / mean).tolist())
    assert len(resid) > 100
    assert abs(np.mean(resid)) < 3 * 0.2 / math.sqrt(len(resid)) + 1e-3
    assert np.std(resid) == pytest.approx(0.2, rel=0.15)


def test_mass_split_conserves_each_halos_mass() -> None:
    """soliton + envelope == the truncated NFW counterpart's total mass, halo by halo; the soliton is the Schive
    mass unless that exceeds ULDM_SOLITON_MAX_FRACTION of the total, then exactly that fraction (forced here:
    m22 = 1 without the mass-function suppression, where 1e8 Msun halos get solitons heavier than themselves)."""
    sol, factor = uldm_mass_split(np.array([10.0, 10.0, 0.0]), np.array([1.0, 9.0, 1.0]), 0.5)
    np.testing.assert_allclose(sol, [1.0, 5.0, 0.0])
    np.testing.assert_allclose(sol + factor * np.array([10.0, 10.0, 0.0]), [10.0, 10.0, 0.0])
    with pytest.raises(ConfigError, match=r"in \(0, 1\]"):
        uldm_mass_split(np.ones(1), np.ones(1), 1.5)
    cfg = resolve_config("euclid_dm", {"sigma_sub_range": [0.05, 0.05]})
    shared = draw_parameters(cfg, "no_sub", np.random.default_rng(5))
    for log10_m, want_capped in ((-22.0, True), (-20.0, False)):
        pop = dataclasses.replace(subhalo_population(cfg, "ULDM"), log10_m_uldm=log10_m)  # CDM abundance
        s = pop.draw(cfg, np.random.default_rng(6), shared)["subhalos"]
        m, c = np.array(s["mass"]), np.array(s["concentration"])
        rs, alpha_nfw = nfw_angles(_UNITS, m, c)
        total = tnfw_total_mass(rs, alpha_nfw, np.array(s["r_trunc"])) * _UNITS.sigma_crit_arcsec2
        envelope = tnfw_total_mass(rs, np.array(s["alpha_Rs"]), np.array(s["r_trunc"])) * _UNITS.sigma_crit_arcsec2
        sol = np.array(s["soliton_mass"])
        np.testing.assert_allclose(sol + envelope, total, rtol=1e-10)
        kappa_mass = uldm_total_mass(np.array(s["kappa_0"]), np.array(s["theta_c"])) * _UNITS.sigma_crit_arcsec2
        np.testing.assert_allclose(kappa_mass, sol, rtol=1e-10)
        relation = soliton_mass(np.array(s["r_c_kpc"]), 10 ** (log10_m + 22))
        np.testing.assert_allclose(s["soliton_mass_relation"], relation, rtol=1e-12)
        np.testing.assert_allclose(sol, np.minimum(relation, ULDM_SOLITON_MAX_FRACTION * total), rtol=1e-12)
        capped = relation > ULDM_SOLITON_MAX_FRACTION * total
        assert capped.any() == want_capped and len(m) > 10, (log10_m, capped.sum(), len(m))


def test_whole_halos_match_lenstronomy() -> None:
    """A uldm record's halos (TNFW envelope + ULDM soliton each) through the one rendering path equal
    lenstronomy's TNFW + ULDM profiles of lenstronomy_kwargs (to the TNFW far field's 1e-3)."""
    from lenstronomy.LensModel.lens_model import LensModel

    cfg = resolve_config("euclid_dm", {"uldm_log10_m_range": [-20.3, -20.3], "sigma_sub_range": [0.05, 0.05]})
    p = draw_parameters(cfg, "uldm", np.random.default_rng(2))
    models, kwargs, _ = lenstronomy_kwargs(cfg, p)
    assert models[2:].count("ULDM") == models[2:].count("TNFW") == len(p["subhalos"]["mass"]) > 5
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-3, 3, 3000), rng.uniform(-3, 3, 3000)
    ref = np.array(LensModel(models[2:]).alpha(x, y, kwargs[2:]))
    ours = np.array(substructure_deflection(x, y, {**p, "mass_sheet": None}))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3 * np.abs(ref).max())


@pytest.mark.parametrize("bad", [[-24.0, -21.0], [-21.0, -18.5], [-20.0, -21.0]])
def test_boson_mass_outside_its_range_is_a_clear_error(bad: list) -> None:
    lo, hi = ULDM_LOG10_M_VALID
    pattern = "min must be <= max" if bad[0] > bad[1] else rf"uldm_log10_m_range .*must be in \[{lo:g}, {hi:g}\]"
    with pytest.raises(ConfigError, match=pattern):
        resolve_config("euclid_dm", {"uldm_log10_m_range": bad})
    with pytest.raises(ConfigError, match=r"must be in \[-23, -19\]"):
        subhalo_population(resolve_config("euclid_dm"), "ULDM").with_boson_mass(-25.0, 0.5, 70.0, 0.3)
    with pytest.raises(ConfigError, match="needs a drawn boson mass"):
        cfg = resolve_config("euclid_dm", {"sigma_sub_range": [0.05, 0.05]})
        subhalo_population(cfg, "ULDM").draw(cfg, np.random.default_rng(0),
                                             draw_parameters(cfg, "no_sub", np.random.default_rng(0)))
