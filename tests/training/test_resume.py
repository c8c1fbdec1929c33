"""Checkpoints, resume and logs: last.ckpt every epoch, exact resume with loader workers after kill -9,
CSV logs of every session kept."""

import csv
import json
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from equilens.training.config import TrainConfig
from equilens.training.fit import train
from equilens.training.module import LensModule


def _cfg(data, **kw):
    base = dict(data=str(data), model="cnn_small", epochs=3, batch_size=8, num_workers=2,
                model_kwargs={"widths": [8, 16]}, augmentation="rot90")
    base.update(kw)
    return TrainConfig(**base)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _val_losses(path):
    return [(int(r["epoch"]), float(r["val_loss"])) for r in _rows(path) if r.get("val_loss")]


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_last_checkpoint_is_the_latest_epoch_when_the_loss_stops_improving(toy_data, tmp_path, monkeypatch):
    original = LensModule.loss

    def worsening(self, out, target):
        # a validation loss that grows every epoch: only epoch 0 is ever the best
        loss = original(self, out, target)
        return loss if self.training else loss + 10.0 * self.current_epoch

    monkeypatch.setattr(LensModule, "loss", worsening)
    out = train(_cfg(toy_data, num_workers=0), tmp_path / "plateau", progress=False, log=lambda _: None)
    assert torch.load(out / "checkpoints/best.ckpt", weights_only=True)["epoch"] == 0
    assert torch.load(out / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 2


_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from equilens.training.config import TrainConfig
    from equilens.training.fit import train
    from equilens.training.module import LensModule

    data, out, mode = sys.argv[1:4]
    if mode == "kill":
        def on_train_epoch_start(self):
            if self.current_epoch == 2:  # last.ckpt of epoch 1 is on disk: die without any cleanup
                os.kill(os.getpid(), signal.SIGKILL)
        LensModule.on_train_epoch_start = on_train_epoch_start
    cfg = TrainConfig(data=data, model="cnn_small", epochs=3, batch_size=8, num_workers=2,
                      model_kwargs={"widths": [8, 16]}, augmentation="rot90")
    if mode == "resume":
        train(None, out, resume=True, progress=False)
    else:
        train(cfg, out, progress=False, stop_after_epochs=1 if mode == "stop" else None)
""")


def _run(data, out, mode):
    """Train in a fresh interpreter (every session with the same torch settings, as from the command line)."""
    return subprocess.run([sys.executable, "-c", _SCRIPT, str(data), str(out), mode], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def uninterrupted(toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "whole"
    proc = _run(toy_data, out, "whole")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_resume_after_kill9_with_loader_workers_matches_uninterrupted_run(toy_data, uninterrupted, tmp_path):
    losses = [v for _, v in _val_losses(uninterrupted / "logs/csv/metrics.csv")]
    assert len(losses) == 3 and losses[0] > losses[1] > losses[2]  # a new best every epoch
    out = tmp_path / "killed"
    proc = _run(toy_data, out, "kill")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert torch.load(out / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 1
    assert not (out / "train_summary.json").exists()

    proc = _run(toy_data, out, "resume")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("best.ckpt", "last.ckpt"):
        a, b = _weights(uninterrupted / "checkpoints" / name), _weights(out / "checkpoints" / name)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    summary = json.loads((out / "train_summary.json").read_text())
    whole = json.loads((uninterrupted / "train_summary.json").read_text())
    assert summary["best_val_loss"] == whole["best_val_loss"] and summary["status"] == "complete"
    # the killed session's log survives; the resumed session writes the next one
    assert [e for e, _ in _val_losses(out / "logs/csv/metrics.csv")] == [0, 1]
    assert [e for e, _ in _val_losses(out / "logs/csv-session2/metrics.csv")] == [2]


def test_stop_and_resume_with_workers_matches(toy_data, uninterrupted, tmp_path):
    out = tmp_path / "paused"
    for mode in ("stop", "resume"):
        proc = _run(toy_data, out, mode)
        assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = _weights(uninterrupted / "checkpoints/last.ckpt"), _weights(out / "checkpoints/last.ckpt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [e for e, _ in _val_losses(out / "logs/csv/metrics.csv")] == [0]
    assert [e for e, _ in _val_losses(out / "logs/csv-session2/metrics.csv")] == [1, 2]


def test_one_line_per_epoch_and_no_library_chatter(toy_data, tmp_path, capfd):
    lines = []
    train(_cfg(toy_data, num_workers=0, epochs=2), tmp_path / "quiet", progress=True, log=lines.append)
    captured = capfd.readouterr()
    chatter = captured.out + captured.err
    for noise in ("GPU available", "TPU available", "litlogger", "LeafSpec", "FLOPs", "Restoring states"):
        assert noise not in chatter
    epoch_lines = [ln for ln in lines if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in epoch_lines] == ["1/2", "2/2"]
    assert all("val_loss" in ln and "train_loss" in ln for ln in epoch_lines)
    train(None, tmp_path / "quiet", resume=True, progress=False, log=lines.append)  # nothing left: no chatter
    captured = capfd.readouterr()
    assert "exists and is not empty" not in captured.out + captured.err


def test_never_finite_validation_loss_is_reported(toy_data, tmp_path, monkeypatch):
    original = LensModule.loss

    def nan_on_validation(self, out, target):
        loss = original(self, out, target)
        return loss if self.training else loss * float("nan")

    monkeypatch.setattr(LensModule, "loss", nan_on_validation)
    lines = []
    out = train(_cfg(toy_data, num_workers=0, epochs=1), tmp_path / "nanval", progress=False, log=lines.append)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["best_val_loss"] is None and "never finite" in summary["warning"]
    assert any(line.startswith("WARNING: the validation loss was never finite") for line in lines)
