"""evaluate(): metrics on the held-out test split, figures, symmetry table, bad checkpoints."""

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from sklearn import metrics as skm

from equilens.cli import main
from equilens.errors import DataError, ModelError
from equilens.evaluation.equivariance import disk_mask
from equilens.evaluation.evaluate import GRID_TRANSFORMS, _Task, evaluate, load_run_model, symmetry_table
from equilens.models import DEFAULT_EQUIVARIANT_MODEL, create_model
from equilens.training.config import TrainConfig, read_run_config

ANGLES = (0.0, 45.0, 90.0)


def test_classification_evaluation_on_test_split(cls_runs):
    run = cls_runs[0]
    m = evaluate(run, tta=True, angles=ANGLES, log=lambda s: None)
    split = json.loads((run / "split.json").read_text())
    pred = np.load(run / "eval" / "predictions.npz")
    assert np.array_equal(pred["positions"], split["test"]) and m["n"] == len(split["test"])
    probs, truth = pred["probs"], pred["truth"]
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(truth, probs.argmax(1)))
    assert m["auc_macro"] == pytest.approx(skm.roc_auc_score(truth, probs, multi_class="ovr"))
    for name in ("metrics.json", "roc.png", "confusion.png", "symmetry.png"):
        assert (run / "eval" / name).is_file()
    on_disk = json.loads((run / "eval" / "metrics.json").read_text())
    assert on_disk["auc_macro"] == pytest.approx(m["auc_macro"]) and "tta" in on_disk
    names = [r["name"] for r in m["symmetry"]["grid"]]
    assert names == ["identity", "rot90", "rot180", "rot270", "flip_h", "flip_v"]
    assert [r["angle"] for r in m["symmetry"]["continuous"]] == list(ANGLES)
    assert m["checkpoint"].endswith("best.ckpt")


def test_regression_evaluation_and_other_data_set(reg_run, eval_data):
    m = evaluate(reg_run, angles=ANGLES, log=lambda s: None)
    pred = np.load(reg_run / "eval" / "predictions.npz")
    assert m["mae"] == pytest.approx(np.abs(pred["pred"] - pred["truth"]).mean())
    assert m["r2"] == pytest.approx(skm.r2_score(pred["truth"], pred["pred"]))
    assert "calibration" in m and (reg_run / "eval" / "calibration.png").is_file()
    assert (reg_run / "eval" / "pred_vs_true.png").is_file()
    assert np.all(np.isfinite(pred["truth"])) and np.all(pred["sigma"] > 0)
    whole = evaluate(reg_run, data=eval_data, symmetry=False, log=lambda s: None)
    assert whole["n"] == 20 and whole["subset"] == "whole data set"
    assert (reg_run / f"eval-{eval_data.name}" / "metrics.json").is_file()


def test_symmetry_measurement_separates_invariant_and_plain_models():
    """The measurement itself: an exactly D4-invariant model shows ~0 change under rot90 and flips, the
    default model (SO(2): exact for 90-degree rotations, not for flips) under rot90 and rot180."""
    cfg = TrainConfig(data="x", model="m", task="classify")
    task = _Task(cfg, ["a", "b", "c"], None)
    torch.manual_seed(0)
    size = 33
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    x = torch.exp(-((yy - 16.0) ** 2 + (xx - 12.0) ** 2) / 30.0)[None, None].repeat(6, 1, 1, 1)
    x = x + 0.1 * torch.randn(6, 1, size, size)
    labels = np.array([0, 1, 2, 0, 1, 2])
    rows = {}
    for name in ("cnn_small", DEFAULT_EQUIVARIANT_MODEL, "steerable_d8_fine"):
        model = create_model(name, num_outputs=3).eval()
        table = symmetry_table(model, x, labels, labels, task, angles=(0.0, 30.0))
        rows[name] = {r["name"]: r["rel_change"] for r in table["grid"]}
        assert table["continuous"][0]["rel_change"] < 1e-6  # 0 degrees: nothing changes
    eq, d8 = rows[DEFAULT_EQUIVARIANT_MODEL], rows["steerable_d8_fine"]
    assert max(eq["rot90"], eq["rot180"], d8["rot90"], d8["rot180"], d8["flip_h"]) < 1e-4
    assert rows["cnn_small"]["rot90"] > 1e-3


def test_checkpoint_of_another_model_is_refused(cls_runs, tmp_path):
    fake = tmp_path / "fake"
    shutil.copytree(cls_runs[0], fake)
    shutil.rmtree(fake / "eval", ignore_errors=True)
    cfg = yaml.safe_load((fake / "config.yaml").read_text())
    cfg["model"] = "resnet18"
    (fake / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ModelError, match="holds a 'cnn_small' model but the run's config says 'resnet18'"):
        evaluate(fake, log=lambda s: None)
    cfg["model"] = "cnn_small"
    cfg["model_kwargs"] = {"widths": [8, 16, 32]}
    (fake / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ModelError, match=r"does not fit model(.|\n)*made by another architecture, or by equilens "):
        evaluate(fake, log=lambda s: None)
    assert not (fake / "eval").exists()  # nothing written


def test_run_model_loads_a_run_checkpoint_with_its_epoch(cls_runs):
    run = cls_runs[0]
    cfg = read_run_config(run)
    ckpt = run / "checkpoints" / "last.ckpt"
    seen = []
    model, meta = load_run_model(cfg, ckpt, 3, check_meta=seen.append)
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert not model.training and meta["model"] == "cnn_small" and meta["config"] == raw["equilens"]["config"]
    assert (meta["epoch"], meta["global_step"]) == (raw["epoch"], raw["global_step"]) == (1, raw["global_step"])
    assert raw["global_step"] > 0 and seen == [meta]
    for key, value in model.state_dict().items():
        if f"model.{key}" in raw["state_dict"]:
            assert torch.equal(value, raw["state_dict"][f"model.{key}"]), key


def test_run_model_refuses_foreign_checkpoints_and_other_models(cls_runs, tmp_path):
    run = cls_runs[0]
    cfg = read_run_config(run)
    ckpt = run / "checkpoints" / "last.ckpt"
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    plain = tmp_path / "plain.pt"  # the model's weights alone: no run description
    torch.save({k.removeprefix("model."): v for k, v in raw["state_dict"].items()}, plain)
    foreign = tmp_path / "foreign.ckpt"  # a Lightning checkpoint equilens did not write
    torch.save({"state_dict": raw["state_dict"], "epoch": 3, "global_step": 7}, foreign)
    for path in (plain, foreign):
        with pytest.raises(ModelError, match="is not an equilens training checkpoint"):
            load_run_model(cfg, path, 3)
    other = TrainConfig(**{**cfg.to_dict(), "model": "resnet18", "model_kwargs": {}})
    with pytest.raises(ModelError, match="holds a 'cnn_small' model but the run's config says 'resnet18'"):
        load_run_model(other, ckpt, 3)

    def refuse(meta):
        raise ModelError(f"refused run {meta['run_id']}")

    with pytest.raises(ModelError, match="refused run"):  # before the model check: the caller's reason wins
        load_run_model(other, ckpt, 3, check_meta=refuse)
    with pytest.raises(ModelError, match=r"asks for 2 outputs: task classify(.|\n)*made by another architecture"):
        load_run_model(cfg, ckpt, 2)


def test_other_data_set_with_other_classes_is_refused(cls_runs, make_toy, tmp_path):
    other = make_toy(tmp_path / "other", n_per_class=5, classes=("a", "b", "c"))
    with pytest.raises(DataError, match="has classes"):
        evaluate(cls_runs[0], data=other, log=lambda s: None)


def test_cli_evaluate(cls_runs, capsys, tmp_path):
    out = tmp_path / "ev"
    assert main(["evaluate", str(cls_runs[1]), "--angle-step", "180", "--checkpoint", "last",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "macro AUC" in text and "rot90" in text
    assert json.loads((out / "metrics.json").read_text())["checkpoint"].endswith("last.ckpt")
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err


def test_continuous_angles_fill_the_corners_with_empty_sky():
    """Outside the inscribed disk the rotated test images hold the normalised value of zero flux (``sky``),
    not 0 in normalised units (the training set's mean pixel, a bright frame no image has): a steerable net
    trained on full frames put every zero-framed image in one class."""
    cfg = TrainConfig(data="x", model="m", task="classify")
    task = _Task(cfg, ["a", "b"], None)
    seen: list[torch.Tensor] = []

    class Recorder(torch.nn.Module):
        num_outputs = 2

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.clone())
            return torch.stack([x.mean(dim=(1, 2, 3)), x.std(dim=(1, 2, 3))], dim=1)

    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = np.array([0, 1, 0, 1])
    symmetry_table(Recorder(), x, labels, labels, task, angles=(0.0, 30.0), sky=-1.5)
    outside = ~disk_mask(16, 16).bool()
    continuous = seen[len(GRID_TRANSFORMS):]  # after the grid transforms: the masked, rotated inputs
    assert continuous and all(torch.all(batch[..., outside] == -1.5) for batch in continuous)
    inside = ~outside
    assert torch.allclose(continuous[0][..., inside], x[..., inside], atol=1e-6)  # the unrotated baseline
