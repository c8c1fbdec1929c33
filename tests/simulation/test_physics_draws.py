"""Parameter draws: determinism, class independence of lens and source, and the substructure statistics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from equilens.errors import ConfigError
from equilens.simulation.config import resolve_config
from equilens.simulation.populations import (
    CLASS_NAMES,
    draw_parameters,
    einstein_radius,
    flatten_parameters,
    parameter_columns,
    point_masses,
)
from equilens.simulation.render import deflection_scale

SHARED = ("lens", "shear", "source", "exposure_time")


def _many(cfg, class_name: str, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [draw_parameters(cfg, class_name, rng) for _ in range(n)]


def test_classes_are_no_sub_cdm_axion() -> None:
    assert CLASS_NAMES[:3] == ["no_sub", "cdm", "axion"]


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("preset", ["model_i", "model_ii", "model_iii"])
def test_draws_are_deterministic_and_json(preset: str, legacy: bool) -> None:
    cfg = resolve_config(preset, legacy=legacy)
    for class_name in CLASS_NAMES:
        a = draw_parameters(cfg, class_name, np.random.default_rng(7))
        b = draw_parameters(cfg, class_name, np.random.default_rng(7))
        c = draw_parameters(cfg, class_name, np.random.default_rng(8))
        assert a == b
        assert a["source"] != c["source"]
        assert json.loads(json.dumps(a)) == a
        assert a["class"] == class_name


@pytest.mark.parametrize(("preset", "legacy"), [("model_i", False), ("model_i", True), ("model_ii", False),
                                               ("model_ii", True), ("euclid_dm", False), ("hst_dm_150", False)])
def test_lens_and_source_draws_identical_across_classes(preset: str, legacy: bool) -> None:
    """Same generator state -> the same main lens, shear, source and exposure whatever the class."""
    from equilens.simulation.presets import list_presets

    cfg = resolve_config(preset, legacy=legacy)
    classes = next(p.classes for p in list_presets() if p.name == preset)
    for seed in range(25):
        records = [draw_parameters(cfg, c, np.random.default_rng(seed)) for c in classes]
        for key in SHARED:
            assert all(r[key] == records[0][key] for r in records), (seed, key)
        # ... and only the substructure differs
        assert records[0]["subhalos"]["mass"] == [] and records[0]["axion"] is None
        assert records[0]["population"] is None and records[0]["mass_sheet"] is None
        assert records[1]["population"] is not None
        if "axion" in classes:
            assert len(records[1]["subhalos"]["mass"]) > 0 and records[classes.index("axion")]["axion"] is not None


def test_lens_and_source_same_distribution_across_classes() -> None:
    """Independent streams per class: the shared parameters follow one distribution (two-sample KS)."""
    cfg = resolve_config("model_i")
    cols = ("source_x", "source_y", "lens_position_angle", "shear_angle", "source_position_angle", "exposure_time")
    samples = {c: [flatten_parameters(p) for p in _many(cfg, c, 400, seed)] for seed, c in enumerate(CLASS_NAMES)}
    for col in cols:
        ref = [r[col] for r in samples["no_sub"]]
        for c in CLASS_NAMES[1:]:
            p = stats.ks_2samp(ref, [r[col] for r in samples[c]]).pvalue
            assert p > 1e-3, (col, c, p)


def test_einstein_radii_default_and_legacy() -> None:
    """1e12 Msun at z=0.5, source z=1: 1.665" with angular-diameter distances, DeepLense's 1.281"."""
    default, legacy = resolve_config("model_i"), resolve_config("model_i", legacy=True)
    assert einstein_radius(default, 1e12) == pytest.approx(1.665, abs=1e-3)
    assert einstein_radius(legacy, 1e12) == pytest.approx(1.281, abs=1e-3)
    for cfg, value in ((default, 1.665), (legacy, 1.281)):
        record = draw_parameters(cfg, "no_sub", np.random.default_rng(0))
        assert record["lens"]["theta_E"] == pytest.approx(value, abs=1e-3)
    # theta_E ~ sqrt(M)
    assert einstein_radius(default, 1e8) == pytest.approx(1.665e-2, rel=1e-3)


def test_legacy_multiplane_weakening() -> None:
    assert deflection_scale(resolve_config("model_ii", legacy=True)) == pytest.approx(0.634, abs=1e-3)
    assert deflection_scale(resolve_config("model_iii", legacy=True)) == pytest.approx(0.634, abs=1e-3)
    assert deflection_scale(resolve_config("model_i", legacy=True)) == 1.0
    assert deflection_scale(resolve_config("model_ii")) == 1.0


def test_orientation_uniform_by_default_fixed_in_legacy() -> None:
    cfg = resolve_config("model_i")
    recs = _many(cfg, "no_sub", 600, 1)
    for block, key, mod in (("lens", "position_angle", 0.1), ("source", "position_angle", math.hypot(0.1, 0.1))):
        angles = [r[block][key] for r in recs]
        assert stats.kstest(np.asarray(angles) / math.pi, "uniform").pvalue > 1e-3
        for r in recs[:20]:
            assert math.hypot(r[block]["e1"], r[block]["e2"]) == pytest.approx(mod)
            assert 0.5 * math.atan2(r[block]["e2"], r[block]["e1"]) % math.pi == pytest.approx(r[block][key])
    shear = [r["shear"]["angle"] for r in recs]
    assert stats.kstest(np.asarray(shear) / math.pi, "uniform").pvalue > 1e-3
    assert all(math.hypot(r["shear"]["gamma1"], r["shear"]["gamma2"]) == pytest.approx(0.05) for r in recs)

    for cfg in (resolve_config("model_i", legacy=True), resolve_config("model_ii", fixed_orientation=True)):
        assert cfg.fixed_orientation
        for r in _many(cfg, "cdm", 20, 2):
            assert (r["lens"]["e1"], r["lens"]["e2"]) == (0.1, 0.0)
            assert (r["shear"]["gamma1"], r["shear"]["gamma2"]) == (0.05, 0.0)
            assert (r["source"]["e1"], r["source"]["e2"]) == (-0.1, 0.1)
    assert not resolve_config("model_i", legacy=True, fixed_orientation=False).fixed_orientation


def test_subhalo_count_poisson_by_default_fixed_in_legacy() -> None:
    # default: Sigma_sub = 0.025 kpc^-2 over the 0.25-2.0" annulus (461 kpc^2 at z = 0.5), masses >= 1e7 drawn:
    # 460.5 * 0.025 / 0.9 * ((1e7/1e8)^-0.9 - (1e10/1e8)^-0.9) = 101.5 subhalos on average
    recs = _many(resolve_config("model_i"), "cdm", 600, 3)
    counts = np.array([len(r["subhalos"]["mass"]) for r in recs])
    assert recs[0]["population"]["n_expected_rendered"] == pytest.approx(101.5, abs=0.1)
    assert abs(counts.mean() - 101.5) < 4 * math.sqrt(101.5 / len(counts))
    assert 0.85 < counts.var() / counts.mean() < 1.15  # Poisson dispersion
    count_cfg = resolve_config("model_i", {"subhalo_abundance": "count"})
    counts = np.array([len(r["subhalos"]["mass"]) for r in _many(count_cfg, "cdm", 2000, 3)])
    assert abs(counts.mean() - 25) < 4 * 5 / math.sqrt(len(counts))
    assert 0.85 < counts.var() / counts.mean() < 1.15
    legacy = [len(r["subhalos"]["mass"]) for r in _many(resolve_config("model_i", legacy=True), "cdm", 50, 3)]
    assert set(legacy) == {25}
    cfg = resolve_config("model_i", {"n_subhalos_mean": 3.5, "subhalo_abundance": "count"})
    small = np.array([len(r["subhalos"]["mass"]) for r in _many(cfg, "cdm", 2000, 4)])
    assert abs(small.mean() - 3.5) < 4 * math.sqrt(3.5 / len(small))


def _pooled(cfg, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    recs = _many(cfg, "cdm", n, seed)
    mass = np.concatenate([r["subhalos"]["mass"] for r in recs])
    r = np.concatenate([np.hypot(r["subhalos"]["x"], r["subhalos"]["y"]) for r in recs])
    return mass, r


def _power_law_cdf(slope: float, lo: float, hi: float):
    a = slope + 1
    return lambda m: (np.asarray(m) ** a - lo**a) / (hi**a - lo**a)


def test_subhalo_radii_uniform_in_area_default_uniform_in_r_legacy() -> None:
    _, r = _pooled(resolve_config("model_i"), 200, 5)
    assert r.min() >= 0.25 and r.max() <= 2.0
    u_area = (r**2 - 0.25**2) / (2.0**2 - 0.25**2)
    assert stats.kstest(u_area, "uniform").pvalue > 1e-3
    assert stats.kstest((r - 0.25) / 1.75, "uniform").pvalue < 1e-6  # not uniform in r
    _, r_leg = _pooled(resolve_config("model_i", legacy=True), 200, 5)
    assert stats.kstest((r_leg - 0.25) / 1.75, "uniform").pvalue > 1e-3
    assert stats.kstest((r_leg**2 - 0.25**2) / (4.0 - 0.0625), "uniform").pvalue < 1e-6


def test_subhalo_mass_function_slope() -> None:
    mass, _ = _pooled(resolve_config("model_i"), 100, 6)  # default: masses >= 1e7 Msun drawn
    assert mass.min() >= 1e7 and mass.max() <= 1e10
    assert stats.kstest(mass, _power_law_cdf(-1.9, 1e7, 1e10)).pvalue > 1e-3
    assert stats.kstest(mass, _power_law_cdf(-0.9, 1e7, 1e10)).pvalue < 1e-6
    mass, _ = _pooled(resolve_config("model_i", {"subhalo_render_mass_min": None}), 10, 6)
    assert stats.kstest(mass, _power_law_cdf(-1.9, 1e6, 1e10)).pvalue > 1e-3
    mass_leg, _ = _pooled(resolve_config("model_i", legacy=True), 200, 6)
    assert stats.kstest(mass_leg, _power_law_cdf(-0.9, 1e6, 1e10)).pvalue > 1e-3
    assert stats.kstest(mass_leg, _power_law_cdf(-1.9, 1e6, 1e10)).pvalue < 1e-6
    # slope -1 (log-uniform) special case
    mass_log, _ = _pooled(resolve_config("model_i", {"subhalo_mass_slope": -1.0, "subhalo_abundance": "count"}), 100, 7)
    assert stats.kstest(np.log10(mass_log), stats.uniform(6, 4).cdf).pvalue > 1e-3


def test_subhalo_einstein_radii_follow_masses() -> None:
    cfg = resolve_config("model_i")
    r = draw_parameters(cfg, "cdm", np.random.default_rng(9))
    np.testing.assert_allclose(r["subhalos"]["theta_E"], einstein_radius(cfg, np.array(r["subhalos"]["mass"])))


def test_axion_vortex() -> None:
    cfg = resolve_config("model_i")
    recs = _many(cfg, "axion", 300, 10)
    log_m = np.array([r["axion"]["log10_m_a"] for r in recs])
    assert stats.kstest((log_m + 24) / 2, "uniform").pvalue > 1e-3
    for r in recs[:10]:
        ax = r["axion"]
        assert ax["m_a"] == pytest.approx(10 ** ax["log10_m_a"])
        assert ax["vortex_half_length"] == pytest.approx(3e-24 / ax["m_a"])
        assert ax["vortex_n_points"] == 100 and ax["vortex_point_mass"] * 100 == pytest.approx(3e10)
        assert r["subhalos"]["mass"] == []
        te, x, y = point_masses(r)
        assert len(te) == 100
        np.testing.assert_allclose(te, einstein_radius(cfg, 3e8))
        # on a line through the centre at the vortex angle, from -L to L
        d = x * math.cos(ax["vortex_angle"]) + y * math.sin(ax["vortex_angle"])
        np.testing.assert_allclose(-x * math.sin(ax["vortex_angle"]) + y * math.cos(ax["vortex_angle"]), 0, atol=1e-9)
        np.testing.assert_allclose(d, np.linspace(-ax["vortex_half_length"], ax["vortex_half_length"], 100))
    angles = np.array([r["axion"]["vortex_angle"] for r in recs])
    assert stats.kstest(angles / (2 * math.pi), "uniform").pvalue > 1e-3


def test_flat_columns_identical_for_all_classes() -> None:
    for preset in ("model_i", "model_ii"):
        cfg = resolve_config(preset)
        cols = parameter_columns(cfg)
        required = {
            "lens_theta_E", "lens_e1", "lens_e2", "lens_position_angle", "shear_gamma1", "shear_gamma2",
            "source_x", "source_y", "source_e1", "source_e2", "source_position_angle", "source_amp",
            "source_magnitude", "n_subhalos", "subhalo_mass_total", "log10_m_a", "m_a", "vortex_angle",
            "vortex_half_length", "exposure_time",
        }
        assert required <= set(cols)
        rows = {c: flatten_parameters(draw_parameters(cfg, c, np.random.default_rng(11))) for c in CLASS_NAMES}
        for c, row in rows.items():
            assert list(row) == cols, c
            assert all(isinstance(v, float) for v in row.values())
        assert math.isnan(rows["cdm"]["log10_m_a"]) and math.isnan(rows["no_sub"]["vortex_angle"])
        assert -24 <= rows["axion"]["log10_m_a"] <= -22
        assert rows["no_sub"]["n_subhalos"] == 0 and rows["cdm"]["n_subhalos"] > 0
        cdm = draw_parameters(cfg, "cdm", np.random.default_rng(11))
        assert rows["cdm"]["subhalo_mass_total"] == pytest.approx(sum(cdm["subhalos"]["mass"]))
    assert math.isnan(rows["cdm"]["source_amp"]) and rows["cdm"]["source_magnitude"] == 20.0


def test_unknown_class_lists_valid_classes() -> None:
    with pytest.raises(ConfigError, match="valid classes: no_sub, cdm, axion"):
        draw_parameters(resolve_config("model_i"), "not_a_class", np.random.default_rng(0))


def test_draws_use_only_the_generator_passed_in() -> None:
    cfg = resolve_config("model_i")
    np.random.seed(0)  # noqa: NPY002 - only to show the global RNG is never touched
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    rng = np.random.default_rng(1)
    for c in CLASS_NAMES:
        draw_parameters(cfg, c, rng)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    # and the generator's state fully determines the draws
    state = np.random.default_rng(2).bit_generator.state
    g1, g2 = np.random.default_rng(), np.random.default_rng()
    g1.bit_generator.state = state
    g2.bit_generator.state = state
    assert draw_parameters(cfg, "axion", g1) == draw_parameters(cfg, "axion", g2)
