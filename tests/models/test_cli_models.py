"""`equilens models` and `equilens check-equivariance`."""

import re

import torch

from equilens.cli import main
from equilens.models import create_model, get_entry, list_models


def test_models_lists_every_name_with_params_and_symmetry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert set(lines) == set(list_models())
    assert re.search(r"\b11,171,779\b", lines["resnet18"])  # ResNet-18, 1 channel in, 3 out
    for name in list_models():
        assert f" {get_entry(name).symmetry} " in lines[name]
        assert re.search(r"\d[\d,]*", lines[name])
    assert "D8->D4->D1" in lines["e2wrn16_4_d8_r"]


def test_models_unknown_family(capsys):
    assert main(["models", "--family", "nope"]) == 2
    assert "steerable" in capsys.readouterr().err


def test_check_equivariance_untrained_with_plot(capsys, tmp_path):
    out_png = tmp_path / "curve.png"
    assert main(["check-equivariance", "steerable_d4", "--image-size", "33", "--step", "45", "--n-images", "2",
                 "--out", str(out_png)]) == 0
    out = capsys.readouterr().out
    assert "exact grid symmetries expected" in out and "rot90" in out
    rows = {float(line.split()[0]): [float(v) for v in line.split()[1:]] for line in out.splitlines()
            if re.match(r"^\s*\d+\.\d\s", line)}
    assert sorted(rows) == [0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0, 360.0]
    assert rows[90.0][0] < 1e-5 and rows[45.0][0] > rows[90.0][0]
    assert out_png.stat().st_size > 1000


def test_check_equivariance_from_state_dict_and_lightning_checkpoint(capsys, tmp_path):
    model = create_model("cnn_small", num_outputs=2)
    plain = tmp_path / "weights.pt"
    torch.save(model.state_dict(), plain)
    lightning = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "equilens": {"model": "cnn_small", "model_kwargs": {}}, "epoch": 1}, lightning)
    tables = []
    for ckpt in (plain, lightning):
        assert main(["check-equivariance", "cnn_small", "--checkpoint", str(ckpt), "--image-size", "33",
                     "--step", "90", "--n-images", "2"]) == 0
        out = capsys.readouterr().out
        assert "trained" in out
        tables.append(out.split("\n", 1)[1])
    assert tables[0] == tables[1]  # the same weights, read from either format


def test_check_equivariance_bad_size(capsys):
    assert main(["check-equivariance", "steerable_d4", "--image-size", "8"]) == 2
    assert "at least 16" in capsys.readouterr().err
