"""Every bad input named in the README ends in one line on stderr and exit code 2, and leaves no folder."""

import json

import pytest
import torch
import yaml

from equilens.cli import main
from equilens.training.config import TrainConfig
from equilens.training.fit import train

TINY = ["--model", "cnn_small", "--model-arg", "widths=[8, 16]", "--epochs", "1", "--num-workers", "0",
        "--batch-size", "8", "--no-progress"]


def _one_line_error(capsys, command):
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"equilens {command}: error: "), err
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def runs(toy_data, tmp_path_factory):
    """Two classification runs with the same config in different folders, and a regression run."""
    root = tmp_path_factory.mktemp("runs")
    base = dict(data=str(toy_data), model="cnn_small", epochs=1, batch_size=8, num_workers=0,
                model_kwargs={"widths": [8, 16]})
    quiet = {"progress": False, "log": lambda _: None}
    a = train(TrainConfig(**base), root / "a", **quiet)
    b = train(TrainConfig(**base), root / "b", **quiet)
    reg = train(TrainConfig(**base, task="regress", target="log10_m_a", predict_variance=True), root / "reg",
                **quiet)
    return a, b, reg


@pytest.mark.parametrize("extra, expected", [
    (["--devices", "0"], "devices must be a count >= 1"),
    (["--devices", "-1"], "devices must be a count >= 1"),
    (["--accelerator", "cpu", "--devices", "2,3"], "cannot run with accelerator='cpu'"),
    (["--accelerator", "quantum"], "unknown accelerator 'quantum'; valid: auto, cpu"),
])
def test_train_device_errors(toy_data, tmp_path, capsys, extra, expected):
    out = tmp_path / "run"
    assert main(["train", "--data", str(toy_data), *TINY, *extra, "--out", str(out)]) == 2
    assert expected in _one_line_error(capsys, "train")
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_train_gpu_without_gpu(toy_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(toy_data), *TINY, "--accelerator", "gpu", "--out", str(out)]) == 2
    assert "accelerator='gpu'" in _one_line_error(capsys, "train")
    assert not out.exists()


def test_evaluate_batch_size_zero(runs, capsys):
    assert main(["evaluate", str(runs[0]), "--batch-size", "0"]) == 2
    assert "batch_size must be an integer >= 1, got 0" in _one_line_error(capsys, "evaluate")
    assert main(["evaluate", str(runs[0]), "--symmetry-images", "0"]) == 2
    _one_line_error(capsys, "evaluate")


def test_foreign_checkpoint_is_refused(runs, capsys):
    a, b, reg = runs
    for other in (b, reg):  # same architecture and config / another task
        assert main(["evaluate", str(a), "--checkpoint", str(other / "checkpoints/best.ckpt"),
                     "--no-symmetry"]) == 2
        err = _one_line_error(capsys, "evaluate")
        assert "was made by another run" in err and f"equilens evaluate {other.resolve()}" in err
    assert not (a / "eval").exists()
    assert main(["evaluate", str(a), "--checkpoint", "last", "--no-symmetry"]) == 0  # its own: fine
    assert json.loads((a / "eval/metrics.json").read_text())["checkpoint_epoch"] == 0


def test_regression_head_mismatch_is_one_line(runs, tmp_path, capsys):
    reg = runs[2]
    cfg = yaml.safe_load((reg / "config.yaml").read_text())
    cfg["predict_variance"] = False  # the run now asks for a 1-output head; the checkpoint has 2
    broken = tmp_path / "reg"
    broken.mkdir()
    for name in ("split.json", "normalisation.json"):
        (broken / name).write_bytes((reg / name).read_bytes())
    (broken / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["evaluate", str(broken), "--checkpoint", str(reg / "checkpoints/best.ckpt"),
                 "--no-symmetry"]) == 2
    err = _one_line_error(capsys, "evaluate")
    assert "weight(s) of another shape" in err and "checkpoint (2," in err and "model (1," in err
    assert "tensor(" not in err and len(err) < 1000


def test_simulate_clash_names_the_differing_keys(tmp_path, capsys):
    out = tmp_path / "d"
    common = ["simulate", "--preset", "model_i", "--n-per-class", "1", "--classes", "no_sub", "--out", str(out),
              "--no-progress"]
    assert main([*common, "--set", "image_size=16"]) == 0
    capsys.readouterr()
    assert main([*common, "--set", "image_size=20", "--seed", "3"]) == 2
    err = _one_line_error(capsys, "simulate")
    assert "config.image_size: stored 16, requested 20" in err and "seed: stored 0, requested 3" in err
    assert "image_shape[1]: stored 16, requested 20" in err
