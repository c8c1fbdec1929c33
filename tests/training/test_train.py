"""Training runs: files, weights_only checkpoints, resume, NaN stop, shape checks, bad input."""

import json

import pytest
import torch
import yaml

import equilens
from equilens.cli import main
from equilens.errors import ConfigError, DataError, ModelError
from equilens.training.config import TrainConfig
from equilens.training.fit import train
from equilens.training.module import LensModule, TrainingDiverged


def _cfg(data, **kw):
    base = dict(data=str(data), model="cnn_small", epochs=2, batch_size=8, num_workers=0,
                model_kwargs={"widths": [8, 16]})
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def run_classify(toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cls"
    return train(_cfg(toy_data, augmentation="rot90"), out, progress=False)


def test_run_directory_layout(run_classify):
    for name in ("config.yaml", "split.json", "normalisation.json", "train_summary.json",
                 "checkpoints/best.ckpt", "checkpoints/last.ckpt", "logs/csv/metrics.csv"):
        assert (run_classify / name).is_file(), name
    assert any((run_classify / "logs/tensorboard").glob("events.out.tfevents*"))
    summary = json.loads((run_classify / "train_summary.json").read_text())
    assert summary["status"] == "complete" and summary["epochs_completed"] == 2
    assert summary["num_parameters"] > 0 and summary["training_seconds"] > 0
    assert summary["equilens_version"] == equilens.__version__
    meta = torch.load(run_classify / "checkpoints/best.ckpt", weights_only=True)["equilens"]
    assert meta["equilens_version"] == equilens.__version__
    saved = yaml.safe_load((run_classify / "config.yaml").read_text())
    assert saved["augmentation"] == "rot90" and saved["model_kwargs"] == {"widths": [8, 16]}
    split = json.loads((run_classify / "split.json").read_text())
    assert len(split["test"]) == 9 and not set(split["test"]) & set(split["train"])


def test_checkpoints_load_weights_only(run_classify):
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = torch.load(run_classify / "checkpoints" / name, weights_only=True)
        assert ckpt["equilens"]["model"] == "cnn_small"
        assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_existing_run_is_refused_and_nothing_written(run_classify, toy_data):
    before = (run_classify / "checkpoints/last.ckpt").read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        train(_cfg(toy_data), run_classify, progress=False)
    # --overwrite with a bad config fails before touching the run
    with pytest.raises(DataError):
        train(_cfg(toy_data, task="regress", target="nope"), run_classify, overwrite=True, progress=False)
    assert (run_classify / "checkpoints/last.ckpt").read_bytes() == before


def test_resume_reproduces_uninterrupted_run(run_classify, toy_data, tmp_path):
    out = tmp_path / "resumed"
    train(_cfg(toy_data, augmentation="rot90"), out, progress=False, stop_after_epochs=1)
    assert json.loads((out / "train_summary.json").read_text())["epochs_completed"] == 1
    train(None, out, resume=True, progress=False)
    a = torch.load(run_classify / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(out / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["sessions"] == 2 and summary["status"] == "complete"
    with pytest.raises(ConfigError, match="differs from the saved run in: epochs"):
        train(_cfg(toy_data, augmentation="rot90", epochs=5), out, resume=True, progress=False)


def test_nan_loss_stops_with_last_good_checkpoint(toy_data, tmp_path, monkeypatch):
    original = LensModule.loss

    def poisoned(self, out, target):
        loss = original(self, out, target)
        return loss * float("nan") if self.current_epoch == 1 else loss

    monkeypatch.setattr(LensModule, "loss", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged, match="last good checkpoint is .*last.ckpt"):
        train(_cfg(toy_data), out, progress=False)
    ckpt = torch.load(out / "checkpoints/last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_nan_image_missed_by_the_manifest_stops_the_run(make_toy, tmp_path):
    """A NaN image the manifest does not record (refused up front otherwise): the NaN-loss guard stops it."""
    data = make_toy(tmp_path / "nan_data", n_per_class=10, nan_image=0, hide_nonfinite=True)
    with pytest.raises(TrainingDiverged, match="not written yet"):
        train(_cfg(data, normalisation="none", epochs=1, val_fraction=0.2, test_fraction=0.2), tmp_path / "r",
              progress=False)


def test_bad_data_sets(make_toy, tmp_path):
    empty_class = make_toy(tmp_path / "empty", counts=(10, 0, 10))
    with pytest.raises(DataError, match="class 'cdm' has no images"):
        train(_cfg(empty_class), tmp_path / "r1", progress=False)
    tiny_class = make_toy(tmp_path / "tiny", counts=(20, 20, 3))
    with pytest.raises(DataError, match="leaves class 'axion' without"):
        train(_cfg(tiny_class), tmp_path / "r2", progress=False)
    corrupt = make_toy(tmp_path / "corrupt", n_per_class=10)
    shard = corrupt / "shard-00001.h5"
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="shard-00001.h5 is corrupt"):
        train(_cfg(corrupt), tmp_path / "r3", progress=False)
    assert not any((tmp_path / n).exists() for n in ("r1", "r2", "r3"))


def test_regression_shape_check():
    m = LensModule("cnn_small", {"widths": [8, 16]}, "regress", num_classes=3)
    out = torch.zeros(4, 1)
    assert m.loss(out, torch.zeros(4)).shape == ()
    with pytest.raises(ModelError, match="refusing to broadcast"):
        m.loss(out, torch.zeros(4, 1))
    with pytest.raises(ModelError, match=r"\(B, 1\)"):
        m.loss(torch.zeros(4, 2), torch.zeros(4))


def test_regression_with_variance_via_yaml_config(toy_data, tmp_path):
    conf = tmp_path / "run.yaml"
    conf.write_text(yaml.safe_dump({"data": str(toy_data), "model": "cnn_small", "task": "regress",
                                    "target": "log10_m_a", "predict_variance": True, "epochs": 1,
                                    "batch_size": 8, "num_workers": 0, "model_kwargs": {"widths": [8, 16]}}))
    out = tmp_path / "reg"
    assert main(["train", "--config", str(conf), "--out", str(out), "--no-progress",
                 "--early-stopping", "3"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["predict_variance"] is True and saved["target"] == "log10_m_a"
    assert saved["early_stopping_patience"] == 3
    ckpt = torch.load(out / "checkpoints/best.ckpt", weights_only=True)
    assert ckpt["state_dict"]["model.head.1.weight"].shape[0] == 2


def test_cli_bad_inputs(toy_data, tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["train", "--data", str(toy_data), "--model", "cnn_small", "--task", "regress",
                 "--target", "m_sub", "--out", str(out)]) == 2
    assert "it records: log10_m_a, other" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--model", "cnn_small", "--out", str(out)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert main(["train", "--data", str(toy_data), "--model", "no_such_net", "--out", str(out)]) == 2
    assert "Valid names:" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: x\nmodel: cnn_small\nlearning_rate: 1\n")
    assert main(["train", "--config", str(bad), "--out", str(out)]) == 2
    assert "valid keys:" in capsys.readouterr().err
    assert not out.exists()


def _train_ddp(data, out, *extra: str, timeout: float = 300):
    """`equilens train` of a tiny cnn_small for one epoch with DDP over 2 CPU processes (gloo)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "equilens", "train", "--data", str(data), "--model", "cnn_small",
           "--model-arg", "widths=[8, 16]", "--epochs", "1", "--num-workers", "0", "--accelerator", "cpu",
           "--devices", "2", "--strategy", "ddp", "--out", str(out), "--no-progress", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_ddp_two_cpu_processes(toy_data, tmp_path):
    """`--strategy ddp --devices 2` on CPU (gloo): Lightning relaunches the command for rank 1."""
    out = tmp_path / "ddp"
    proc = _train_ddp(toy_data, out, "--batch-size", "8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["status"] == "complete"
    torch.load(out / "checkpoints/last.ckpt", weights_only=True)


def test_ddp_nan_on_one_process_stops_every_process(make_toy, tmp_path):
    """A NaN seen by one rank only stops both ranks with the clear error (none dies of a bare connection error)."""
    from equilens.training.fit import build_datamodule

    clean = make_toy(tmp_path / "clean", n_per_class=12)
    cfg = _cfg(clean, normalisation="none", epochs=1)
    first_train_image = int(build_datamodule(cfg, log=lambda _: None).positions("train")[0])
    data = make_toy(tmp_path / "nan", n_per_class=12, nan_image=first_train_image, hide_nonfinite=True)
    out = tmp_path / "ddp-nan"
    proc = _train_ddp(data, out, "--batch-size", "4", "--normalisation", "none", timeout=240)
    assert proc.returncode != 0
    assert "training loss became nan on process" in proc.stderr, proc.stderr[-3000:]
    assert "on another of the 2 processes" in proc.stderr, proc.stderr[-3000:]
    assert not (out / "train_summary.json").exists()


def test_default_equivariant_model_checkpoints_resume_and_load(make_toy, tmp_path):
    """escnn models cache expanded filters as extra state in eval mode; checkpoints must still resume and load."""
    from equilens.evaluation.evaluate import load_run_model
    from equilens.models import DEFAULT_EQUIVARIANT_MODEL

    data = make_toy(tmp_path / "d33", n_per_class=8, size=33)
    cfg = _cfg(data, model=DEFAULT_EQUIVARIANT_MODEL, model_kwargs={}, val_fraction=0.25, test_fraction=0.25)
    out = tmp_path / "eq"
    train(cfg, out, progress=False, stop_after_epochs=1)
    train(None, out, resume=True, progress=False)
    assert json.loads((out / "train_summary.json").read_text())["epochs_completed"] == 2
    model, meta = load_run_model(cfg, out / "checkpoints" / "last.ckpt", 3)
    assert meta["model"] == DEFAULT_EQUIVARIANT_MODEL and not model.training


def test_checkpoints_hold_batch_norm_statistics_of_their_weights(run_classify):
    """The PreciseBatchNorm callback recomputes the statistics before every validation, so the last
    checkpoint's running statistics are those of its own weights over the callback's training batches."""
    from equilens.data.datamodule import LensDataModule
    from equilens.models import load_model
    from equilens.models.batchnorm import batch_norm_layers, recompute_batch_norm
    from equilens.training.fit import batch_norm_batches, build_datamodule, read_run_config

    cfg = read_run_config(run_classify)
    assert cfg.bn_batches == 32
    split, stats = LensDataModule.load_saved(run_classify)
    dm = build_datamodule(cfg, split, stats, log=lambda _: None)
    model = load_model("cnn_small", run_classify / "checkpoints/last.ckpt")
    stored = [{k: v.clone() for k, v in m.state_dict().items() if "running" in k} for m in batch_norm_layers(model)]
    batches = list(batch_norm_batches(dm, cfg.bn_batches))
    assert sum(len(b) for b in batches) == len(dm.positions("train"))  # 32 batches of 8 cover the toy split
    recompute_batch_norm(model, batches)
    fresh = [{k: v for k, v in m.state_dict().items() if "running" in k} for m in batch_norm_layers(model)]
    for a, b in zip(stored, fresh, strict=True):
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="bn_batches must be >= 0"):
        TrainConfig(data="x", model="cnn_small", bn_batches=-1).validate()
