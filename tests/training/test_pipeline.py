"""The main job (quickstart) in a tiny configuration, end to end with the real simulator."""

import json

import pytest

from equilens.cli import main
from equilens.errors import ModelError
from equilens.models import DEFAULT_EQUIVARIANT_MODEL
from equilens.training.pipeline import QUICKSTART_MODELS, QuickstartConfig, run_quickstart


def test_quickstart_defaults_name_the_default_equivariant_model():
    assert QUICKSTART_MODELS == (DEFAULT_EQUIVARIANT_MODEL, "resnet18")
    assert QuickstartConfig().preset == "model_ii"


@pytest.mark.slow
def test_quickstart_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "qs"
    args = ["quickstart", "--out", str(out), "--image-size", "32", "--n-per-class", "10", "--epochs", "1",
            "--angle-step", "180", "--workers", "1", "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    report = out / "report" / "report.html"
    assert f"report: {report.resolve()}" in text.strip().splitlines()[-1]
    for model in QUICKSTART_MODELS:
        metrics = json.loads((out / "runs" / f"{model}-seed0" / "eval" / "metrics.json").read_text())
        assert metrics["n"] == 6 and 0.0 <= metrics["auc_macro"] <= 1.0
    md = (out / "report" / "report.md").read_text()
    assert DEFAULT_EQUIVARIANT_MODEL in md and "resnet18" in md
    # running it again keeps the finished runs
    assert main(args) == 0
    assert "already trained, kept" in capsys.readouterr().out


def test_quickstart_unknown_model_fails_before_simulating(tmp_path):
    with pytest.raises(ModelError, match="Valid names"):
        run_quickstart(QuickstartConfig(models=("nope",)), tmp_path / "q")
    assert not (tmp_path / "q").exists()
