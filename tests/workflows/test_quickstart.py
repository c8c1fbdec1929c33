"""The main job (quickstart) in a tiny configuration, end to end with the real simulator."""

import json

import pytest

from equilens.cli import main
from equilens.errors import ModelError
from equilens.models import DEFAULT_EQUIVARIANT_MODEL
from equilens.workflows.quickstart import (
    QUICKSTART_MODELS,
    QUICKSTART_PHYSICS,
    QuickstartConfig,
    check_settings,
    run_quickstart,
    summarise_runs,
)

TINY = ["--image-size", "32", "--n-per-class", "10", "--angle-step", "180", "--workers", "1", "--no-progress"]


def test_quickstart_defaults_name_the_default_equivariant_model():
    assert QUICKSTART_MODELS == (DEFAULT_EQUIVARIANT_MODEL, "resnet18")
    cfg = QuickstartConfig()
    assert cfg.preset == "model_ii"
    assert dict(cfg.sim_overrides) == dict(QUICKSTART_PHYSICS)  # the learnable physics (see the module docstring)


@pytest.mark.slow
def test_quickstart_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "qs"
    args = ["quickstart", "--out", str(out), "--epochs", "1", *TINY]
    assert main(args) == 0
    text = capsys.readouterr().out
    lines = text.strip().splitlines()
    report = out / "report" / "report.html"
    assert lines[-1] == f"report: {report.resolve()}"
    assert text.count(str(report.resolve())) == 1  # the report path once, at the end
    assert "[2/3] run 1 of 2" in text and "[2/3] run 2 of 2" in text and "[3/3]" in text
    assert "for 1 epoch " in text and "1 epochs" not in text
    assert "one-vs-one AUC of a pair" in text and "0.5 = " in text  # the numbers are explained
    for model in QUICKSTART_MODELS:
        metrics = json.loads((out / "runs" / f"{model}-seed0" / "eval" / "metrics.json").read_text())
        assert metrics["n"] == 6 and 0.0 <= metrics["auc_macro"] <= 1.0
        assert f"{model}-seed0" in text
    md = (out / "report" / "report.md").read_text()
    assert DEFAULT_EQUIVARIANT_MODEL in md and "resnet18" in md
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert manifest["config"]["subhalo_mass_slope"] == -0.9 and "command" in manifest
    assert manifest["config"]["subhalo_abundance"] == "count"
    # running it again keeps the finished runs
    assert main(args) == 0
    assert "already trained with these settings, kept" in capsys.readouterr().out


@pytest.mark.slow
def test_quickstart_changed_settings_retrain_or_are_refused(tmp_path, capsys):
    out = tmp_path / "qs"
    base = ["quickstart", "--out", str(out), "--models", "cnn_small", *TINY]
    assert main([*base, "--epochs", "1"]) == 0
    capsys.readouterr()
    run = out / "runs" / "cnn_small-seed0"
    # more epochs: the run is trained again (not "kept") and the report shows the new setting
    assert main([*base, "--epochs", "2"]) == 0
    text = capsys.readouterr().out
    assert "settings changed since it was trained (epochs 1 -> 2)" in text and "kept" not in text
    assert json.loads((run / "train_summary.json").read_text())["epochs_completed"] == 2
    assert "2 epochs" in (out / "report" / "report.md").read_text()
    # another augmentation: trained again too
    assert main([*base, "--epochs", "2", "--augmentation", "rot90"]) == 0
    assert "augmentation none -> rot90" in capsys.readouterr().out
    assert "augmentation: rot90" in (run / "config.yaml").read_text()
    # another symmetry angle step: the run is kept but evaluated again
    argv = [a if a != "180" else "90" for a in [*base, "--epochs", "2", "--augmentation", "rot90"]]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "already trained with these settings, kept" in text and "evaluating cnn_small-seed0" in text
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert sorted(r["angle"] for r in metrics["symmetry"]["continuous"]) == [0.0, 90.0, 180.0, 270.0, 360.0]
    # another data set: refused with one line and code 2, nothing changed
    before = (out / "data" / "manifest.json").read_text()
    assert main([*argv, "--n-per-class", "12"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n_per_class 10 -> 12" in err[0] and "another --out" in err[0]
    assert (out / "data" / "manifest.json").read_text() == before
    assert main([*argv, "--set", "subhalo_mass_slope=-1.9"]) == 2
    assert "subhalo_mass_slope -0.9 -> -1.9" in capsys.readouterr().err


def test_check_settings_refuses_another_data_set(tmp_path):
    from equilens.errors import ConfigError
    from equilens.simulation.config import resolve_config

    def sim(**overrides):
        return resolve_config("model_ii", {**QUICKSTART_PHYSICS, **overrides}).to_dict()

    cfg = QuickstartConfig(n_per_class=20)
    assert check_settings(cfg, tmp_path, sim()) is None
    (tmp_path / "quickstart.json").write_text(json.dumps({**cfg.to_dict(), "sim_config": sim()}))
    # training settings may change (those runs are trained again); the preset's own size is no change
    assert check_settings(QuickstartConfig(n_per_class=20, epochs=9), tmp_path, sim())["epochs"] == 6
    assert check_settings(QuickstartConfig(n_per_class=20, image_size=64), tmp_path, sim(image_size=64))
    with pytest.raises(ConfigError, match="image_size 64 -> 48"):
        check_settings(QuickstartConfig(n_per_class=20, image_size=48), tmp_path, sim(image_size=48))
    with pytest.raises(ConfigError, match="n_per_class 20 -> 30"):
        check_settings(QuickstartConfig(n_per_class=30), tmp_path, sim())


def test_summary_explains_a_pair_at_chance(tmp_path):
    for name, pair in (("a-seed0", 0.51), ("b-seed0", 0.47)):
        (tmp_path / name / "eval").mkdir(parents=True)
        (tmp_path / name / "eval" / "metrics.json").write_text(json.dumps({
            "n": 135, "accuracy": 0.6, "auc_macro": 0.83,
            "auc_pairwise": {"no_sub/cdm": pair, "no_sub/axion": 1.0, "cdm/axion": 0.99},
            "symmetry": {"grid": [{"name": "rot90", "rel_change": 1e-6 if name == "a-seed0" else 0.5}]}}))
    text = summarise_runs([tmp_path / "a-seed0", tmp_path / "b-seed0", tmp_path / "missing"], physics="default")
    assert "no_sub/cdm is near chance for every model" in text
    assert "no_sub/axion is near chance" not in text
    assert "0.510" in text and "not evaluated" in text
    assert "1.0e-06" in text and "5.0e-01" in text and "rot90 change" in text


def test_quickstart_unknown_model_fails_before_simulating(tmp_path):
    with pytest.raises(ModelError, match="Valid names"):
        run_quickstart(QuickstartConfig(models=("nope",)), tmp_path / "q")
    assert not (tmp_path / "q").exists()
