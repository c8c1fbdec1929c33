"""`equilens models` and `equilens check-equivariance`."""

import re

import torch

from equilens.cli import main
from equilens.models import create_model, get_entry, list_models


def test_models_lists_every_name_with_params_and_symmetry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    table, options = out.split("\noptions", 1)
    lines = {line.split()[0]: line for line in table.splitlines()[1:] if line.strip()}
    assert "kernel_size" in options and "restrict" in options and "e2wrn28_10_d8_paper" in options
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
    assert main(["check-equivariance", "steerable_d4", "--image-size", "33", "--step", "45", "--n-images", "4",
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


def _toy_run(tmp_path, zero_head: bool = False):
    """A trained toy resnet18 in an equilens-like run directory (normalisation.json, checkpoints/) over a
    tiny data set in raw units; returns the checkpoint path."""
    import importlib.util
    import json
    from pathlib import Path

    from equilens.evaluation.equivariance import train_briefly

    spec = importlib.util.spec_from_file_location(
        "equilens_toydata", Path(__file__).parents[1] / "training" / "toydata.py")
    toydata = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toydata)
    data = toydata.make_toy_dataset(tmp_path / "data", n_per_class=12, size=32)
    from equilens.data.store import LensDataset

    ds = LensDataset(data)
    raw = torch.from_numpy(ds.get_images(range(len(ds))))
    labels = torch.from_numpy(ds.labels)
    shift, scale = float(raw.mean()), float(raw.std())
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "normalisation.json").write_text(json.dumps(
        {"image": {"method": "standardise", "shift": shift, "scale": scale}}))
    torch.manual_seed(0)
    model = create_model("resnet18", num_outputs=3, width=0.25)
    train_briefly(model, (raw - shift) / scale, labels, epochs=3, generator=torch.Generator().manual_seed(0))
    if zero_head:
        with torch.no_grad():
            model.head[1].weight.zero_()
    ckpt = run / "checkpoints" / "best.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "equilens": {"model": "resnet18", "model_kwargs": {"width": 0.25},
                             "config": {"data": str(data)}}}, ckpt)
    return ckpt


def _rows(out: str) -> dict[float, list[float]]:
    return {float(line.split()[0]): [float(v) for v in line.split()[1:]] for line in out.splitlines()
            if re.match(r"^\s*\d+\.\d\s", line)}


def test_check_equivariance_of_a_trained_model_uses_its_data_and_normalisation(capsys, tmp_path):
    """A trained resnet18 measured on its run's images, normalised as in training: a clear non-zero
    change at 45 degrees, relative to the spread and to the norm (the former command fed un-normalised
    synthetic images and could report 0.000 at every angle)."""
    ckpt = _toy_run(tmp_path)
    assert main(["check-equivariance", "resnet18", "--checkpoint", str(ckpt), "--step", "45",
                 "--n-images", "16"]) == 0
    out = capsys.readouterr().out
    assert "normalised as in the training run" in out and "data set" in out
    assert "WARNING" not in out
    rows = _rows(out)
    assert rows[45.0][0] > 0.05 and rows[45.0][1] > 0.0  # over the spread, over the norm
    assert rows[0.0][0] == 0.0


def test_check_equivariance_warns_when_outputs_do_not_vary(capsys, tmp_path):
    ckpt = _toy_run(tmp_path, zero_head=True)  # every output is the head's bias
    assert main(["check-equivariance", "resnet18", "--checkpoint", str(ckpt), "--step", "90",
                 "--n-images", "8"]) == 0
    assert "WARNING: the outputs hardly vary" in capsys.readouterr().out


def test_models_names_every_option_of_the_steerable_and_e2wrn_factories():
    import inspect

    from equilens.models.registry import FAMILY_OPTIONS

    for name, family in (("steerable_d8", "steerable"), ("steerable_so2", "steerable"), ("e2wrn10_2_d4", "e2wrn")):
        params = inspect.signature(get_entry(name).factory).parameters.values()
        options = {p.name for p in params if p.kind is not p.VAR_KEYWORD} - {"in_channels", "num_outputs", "layout"}
        missing = [o for o in sorted(options) if o not in FAMILY_OPTIONS[family]]
        assert not missing, (name, missing)
