"""Configuration: presets, overrides, validation and the error messages (each says what would be valid)."""

from __future__ import annotations

import json

import pytest

from equilens.errors import ConfigError
from equilens.simulation.config import (
    CONFIG_KEYS,
    SimConfig,
    load_overrides_file,
    parse_set_overrides,
    resolve_config,
)
from equilens.simulation.presets import DEEPLENSE_PRESETS, DM_PRESETS, LEGACY_DIFFERENCES, PRESET_NAMES, list_presets


def test_presets_listed_with_classes_size_and_instrument() -> None:
    infos = {p.name: p for p in list_presets()}
    assert list(infos) == list(PRESET_NAMES) == [*DEEPLENSE_PRESETS, *DM_PRESETS]
    assert DEEPLENSE_PRESETS == ("model_i", "model_ii", "model_iii")
    assert DM_PRESETS == ("euclid_dm", "hst_dm", "hst_dm_150")
    assert (infos["model_i"].image_size, infos["model_i"].pixel_scale) == (150, 0.05)
    assert (infos["model_ii"].image_size, infos["model_ii"].pixel_scale) == (64, 0.101)
    assert (infos["model_iii"].image_size, infos["model_iii"].pixel_scale) == (64, 0.08)
    assert infos["model_iii"].instrument == "hst_wfc3_f160w"
    assert all(infos[p].classes == ("no_sub", "cdm", "axion") for p in DEEPLENSE_PRESETS)
    assert all(infos[p].classes == ("no_sub", "cdm_tnfw", "wdm", "sidm", "axion", "uldm") for p in DM_PRESETS)
    sizes = (infos["hst_dm_150"].image_size, infos["hst_dm"].image_size, infos["euclid_dm"].pixel_scale)
    assert sizes == (150, 64, 0.101)
    assert len(LEGACY_DIFFERENCES) >= 8


@pytest.mark.parametrize(("preset", "legacy"),
                         [(p, False) for p in PRESET_NAMES] + [(p, True) for p in DEEPLENSE_PRESETS])
def test_config_round_trips_through_json(preset: str, legacy: bool) -> None:
    cfg = resolve_config(preset, legacy=legacy)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert list(d) == list(CONFIG_KEYS)
    again = SimConfig.from_dict(d)
    assert again == cfg and hash(again) == hash(cfg)


def test_preset_values() -> None:
    m1, m2 = resolve_config("model_i"), resolve_config("model_ii", legacy=True)
    assert (m1.noise, m1.noise_model, m1.flux_unit, m1.source_amp, m1.background_rms) == (
        "default", "poisson_gaussian_counts", "counts", 20.0, 0.01)
    assert m1.exposure_time_range == pytest.approx((1e3, 10**3.5))
    assert (m2.noise, m2.flux_scale, m2.z_source_convention, m2.distance_convention) == (
        "none", 2.0, 2.5, "legacy_luminosity")
    assert (m2.subhalo_mass_slope, m2.subhalo_count_distribution, m2.subhalo_radial_distribution) == (
        -0.9, "fixed", "uniform_radius")
    assert resolve_config("model_i", legacy=True).noise_model == "legacy_deeplense_counts"


def test_overrides_apply_and_legacy_can_come_from_overrides() -> None:
    cfg = resolve_config("model_i", {"noise": "none", "image_size": 32, "subhalo_mass_range": [1e7, 1e9]})
    assert (cfg.noise, cfg.image_size, cfg.subhalo_mass_range) == ("none", 32, (1e7, 1e9))
    assert resolve_config("model_ii", {"legacy": True}) == resolve_config("model_ii", legacy=True)
    assert resolve_config("model_ii", {"fixed_orientation": True}).fixed_orientation


def test_parse_set_overrides_types() -> None:
    out = parse_set_overrides(
        ["noise=none", "image_size=64", "subhalo_mass_range=[1e7, 1e10]", "z_source_convention=null",
         "legacy=true", "pixel_scale=0.1", "main_halo_mass=2e12", "subhalo_mass_slope=-1.9"]
    )
    assert out == {
        "noise": "none", "image_size": 64, "subhalo_mass_range": [1e7, 1e10], "z_source_convention": None,
        "legacy": True, "pixel_scale": 0.1, "main_halo_mass": 2e12, "subhalo_mass_slope": -1.9,
    }
    assert isinstance(out["image_size"], int) and isinstance(out["main_halo_mass"], float)
    assert resolve_config("model_i", out).main_halo_mass == 2e12


def test_parse_set_overrides_errors() -> None:
    with pytest.raises(ConfigError, match="key=value.*valid keys: preset, legacy"):
        parse_set_overrides(["noise"])
    with pytest.raises(ConfigError, match="unknown config key.*'nosie'.*did you mean 'noise'.*valid keys:.*noise"):
        parse_set_overrides(["nosie=none"])
    with pytest.raises(ConfigError, match="not a valid YAML"):
        parse_set_overrides(["subhalo_mass_range=[1, 2"])


def test_load_overrides_file(tmp_path) -> None:
    good = tmp_path / "o.yaml"
    good.write_text("noise: none\nsubhalo_mass_range: [1e7, 1e9]\nn_subhalos_mean: 10\n")
    over = load_overrides_file(good)
    assert over == {"noise": "none", "subhalo_mass_range": [1e7, 1e9], "n_subhalos_mean": 10}
    assert resolve_config("model_i", over).n_subhalos_mean == 10.0
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping.*valid keys"):
        load_overrides_file(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("noise: [none\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_overrides_file(tmp_path / "bad.yaml")
    (tmp_path / "unk.yaml").write_text("colour: red\n")
    with pytest.raises(ConfigError, match="unknown config key.*'colour'.*valid keys"):
        load_overrides_file(tmp_path / "unk.yaml")
    with pytest.raises(ConfigError, match="cannot read overrides file"):
        load_overrides_file(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_overrides_file(tmp_path / "empty.yaml") == {}


def test_unknown_preset_lists_presets() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'model_iv'; valid presets: model_i, model_ii, model_iii"):
        resolve_config("model_iv")


def test_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(ConfigError, match="unknown config key.*'n_sub'.*valid keys: preset, .*n_subhalos_mean"):
        resolve_config("model_i", {"n_sub": 3})


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"noise": "gaussian"}, "valid values: default, none"),
        ({"noise_model": "x"}, "valid values: poisson_gaussian_counts, legacy_deeplense_counts, ccd"),
        ({"distance_convention": "comoving"}, "valid values: angular_diameter, legacy_luminosity"),
        ({"subhalo_count_distribution": "binomial"}, "valid values: poisson, fixed"),
        ({"subhalo_radial_distribution": "nfw"}, "valid values: uniform_area, uniform_radius"),
        ({"instrument": "jwst"}, "valid values: deeplense_model_i, euclid_vis, euclid_vis_deeplense, hst_wfc3_f160w"),
        ({"n_subhalos_mean": 0}, "must be > 0"),
        ({"n_subhalos_mean": -3}, "must be > 0"),
        ({"vortex_n_points": 0}, "must be >= 2"),
        ({"vortex_n_points": 2.5}, "must be an integer"),
        ({"image_size": 0}, "must be >= 4"),
        ({"image_size": -64}, "must be >= 4"),
        ({"supersampling_factor": 0}, "must be >= 1"),
        ({"main_halo_mass": 0}, "must be > 0"),
        ({"main_halo_mass": -1e12}, "must be > 0"),
        ({"vortex_mass_total": -3e10}, "must be > 0"),
        ({"subhalo_mass_range": [1e10, 1e6]}, "min must be < max"),
        ({"subhalo_mass_range": [1e8, 1e8]}, "min must be < max"),
        ({"subhalo_mass_range": [0, 1e10]}, "min must be > 0"),
        ({"subhalo_mass_range": [-1e6, 1e10]}, "min must be > 0"),
        ({"subhalo_mass_range": [1e6]}, r"must be a pair \[min, max\]"),
        ({"subhalo_radius_range": [2.0, 0.25]}, "min must be < max"),
        ({"axion_log10_mass_range": [-22, -24]}, "min must be <= max"),
        ({"exposure_time_range": [-1, 10]}, "min must be > 0"),
        ({"pixel_scale": "wide"}, "not a number"),
        ({"pixel_scale": True}, "not a bool"),
        ({"fixed_orientation": "yes"}, "must be true or false"),
        ({"z_source": 0.4}, r"z_source \(0.4\) must be greater than z_lens \(0.5\)"),
        ({"z_source_convention": 0.8}, "must be null or >= z_source"),
        ({"lens_e1": 1.5}, "modulus"),
        ({"source_magnitude": 20.0}, "exactly one of source_amp, source_magnitude and source_magnitude_range"),
        # the realistic-abundance keys (issue #9): each error names the valid range
        ({"sigma_sub_range": [-0.01, 0.05]}, r"'sigma_sub_range': min must be >= 0 \(expected \[min, max\] kpc"),
        ({"sigma_sub_range": [0.05, 0.01]}, "min must be <= max"),
        ({"subhalo_mass_range": [1e10, 1e6]}, r"min must be < max \(expected \[min, max\] Msun, 0 < min < max"),
        ({"subhalo_render_mass_min": 1e11}, r"must be null or below the maximum subhalo mass 1e\+10 Msun"),
        ({"subhalo_window_theta_E": 0.5}, r"must be >= 1 \(a window at least as large as the Einstein radius"),
        ({"subhalo_abundance": "many"}, "valid values: sigma_sub, count"),
        ({"psf_model": "airy"}, "valid values: gaussian, gaussian_pixel_integrated"),
        ({"lens_theta_E_normal": [-1.0, 0.1]}, "the mean must be > 0"),
        ({"lens_theta_E_normal": [1.0, -0.1]}, "the sd must be >= 0"),
        ({"shear_sd": -0.1}, "must be >= 0"),
        ({"preset": "model_ii"}, "conflicts with the chosen preset 'model_i'; choose the preset directly"),
        ({"flux_unit": "e-/s"}, "set flux_unit=counts"),
        ({"background_rms": None}, "needs background_rms"),
    ],
)
def test_bad_values_say_what_is_valid(overrides: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        resolve_config("model_i", overrides)


def test_ccd_needs_its_numbers() -> None:
    with pytest.raises(ConfigError, match="noise_model=ccd needs read_noise"):
        resolve_config("model_ii", {"read_noise": None})
    with pytest.raises(ConfigError, match="source_magnitude needs magnitude_zero_point"):
        resolve_config("model_ii", {"magnitude_zero_point": None, "noise_model": "ccd"})


def test_fixed_count_needs_integer_mean() -> None:
    with pytest.raises(ConfigError, match="needs an integer n_subhalos_mean"):
        resolve_config("model_i", {"n_subhalos_mean": 2.5}, legacy=True)


def test_from_dict_rejects_missing_and_unknown_keys() -> None:
    d = resolve_config("model_i").to_dict()
    d.pop("z_lens")
    with pytest.raises(ConfigError, match="missing keys z_lens; a complete config has: preset"):
        SimConfig.from_dict(d)
    d = resolve_config("model_i").to_dict() | {"extra": 1}
    with pytest.raises(ConfigError, match="unknown config key.*'extra'"):
        SimConfig.from_dict(d)
    with pytest.raises(ConfigError, match="must be a mapping"):
        SimConfig.from_dict([1, 2])  # type: ignore[arg-type]


def test_instrument_override_loads_its_numbers() -> None:
    cfg = resolve_config("model_ii", {"instrument": "hst_wfc3_f160w", "read_noise": 3.0})
    hst = resolve_config("model_iii")
    assert (cfg.pixel_scale, cfg.psf_fwhm, cfg.magnitude_zero_point, cfg.exposure_time_range) == (
        hst.pixel_scale, hst.psf_fwhm, hst.magnitude_zero_point, hst.exposure_time_range)
    assert cfg.read_noise == 3.0 and cfg.image_size == 64
    legacy = resolve_config("model_ii", legacy=True)
    assert (legacy.instrument, legacy.magnitude_zero_point, legacy.sky_brightness) == (
        "euclid_vis_deeplense", 24.0, 22.35)


def test_settings_modules_do_not_import_the_population_code() -> None:
    """Config data stands alone: config, presets, instruments and halos import neither populations nor the
    renderer (the circle config -> presets -> populations -> config is gone)."""
    import ast
    from pathlib import Path

    import equilens.simulation as sim

    root = Path(sim.__file__).parent
    for name in ("config", "presets", "instruments", "halos"):
        tree = ast.parse((root / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        bad = {m for m in imported if m.split(".")[-1] in ("populations", "render", "generate", "profiles")}
        assert not bad, (name, bad)


# Keys added with a class: older manifests lack them (e.g. a Model II set written before uldm existed).
_OTHER_VALUES = {"wdm_log10_m_hm_range": [8.0, 9.0], "sidm_cross_section_range": [2.0, 3.0],
                 "uldm_log10_m_range": [-21.0, -20.5], "vortex_on_subhalos": None}
_OWNER = {"wdm_log10_m_hm_range": "wdm", "sidm_cross_section_range": "sidm", "uldm_log10_m_range": "uldm",
          "vortex_on_subhalos": "axion"}


def test_a_manifest_written_before_a_class_key_existed_still_loads() -> None:
    from equilens.simulation.config import ADDED_WITH_CLASS

    assert set(ADDED_WITH_CLASS) == set(_OTHER_VALUES)
    for preset in ("model_ii", "euclid_dm"):
        full = resolve_config(preset).to_dict()
        old = {k: v for k, v in full.items() if k not in ADDED_WITH_CLASS}
        assert SimConfig.from_dict(old) == SimConfig.from_dict(full)
        with pytest.raises(ConfigError, match="missing keys pixel_scale"):
            SimConfig.from_dict({k: v for k, v in full.items() if k != "pixel_scale"})
        # a key of a class is still required when another key is missing too
        with pytest.raises(ConfigError, match="missing keys"):
            SimConfig.from_dict({k: v for k, v in old.items() if k != "image_size"})


@pytest.mark.parametrize("key", sorted(_OTHER_VALUES))
def test_a_class_key_changes_only_its_own_class(key: str) -> None:
    import numpy as np

    from equilens.simulation.generate import preset_classes
    from equilens.simulation.populations import draw_parameters
    from equilens.simulation.render import render_noiseless

    for preset in ("model_ii", "euclid_dm"):
        base = resolve_config(preset, {"image_size": 32})
        value = _OTHER_VALUES[key]
        other = resolve_config(preset, {"image_size": 32,
                                        key: (not getattr(base, key)) if value is None else value})
        changed = []
        for cls in preset_classes(base):
            a = render_noiseless(base, draw_parameters(base, cls, np.random.default_rng(11)))
            b = render_noiseless(other, draw_parameters(other, cls, np.random.default_rng(11)))
            if not np.array_equal(a, b):
                changed.append(cls)
        assert set(changed) <= {_OWNER[key]}, (preset, key, changed)
        if preset == "euclid_dm":
            assert changed == [_OWNER[key]]  # the key does act on its class (the test can fail)
