"""Studies (equilens.workflows.study, `equilens study`): tiny grids of 1-2 epoch runs on 24 px toy data.

One data-efficiency study (a small CNN, 2 sizes x 2 seeds, one cell interrupted beforehand) is shared by
the tests of its tables, resume, report inclusion and refusals; the Dask path and rotation robustness run
their own tiny grids.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from equilens.errors import ConfigError, ModelError
from equilens.workflows.study import CELL_FILE, STUDY_FILE, Cell, StudyConfig, run_study, study_cells

_spec = importlib.util.spec_from_file_location("equilens_toydata_study",
                                               Path(__file__).parent / "training" / "toydata.py")
toydata = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toydata)

TINY = {"widths": [4, 8]}  # cnn_small at its smallest: a 24 px epoch in well under a second


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return toydata.make_toy_dataset(tmp_path_factory.mktemp("studydata") / "toy", n_per_class=30, size=24)


def _cfg(data: Path, **kw) -> StudyConfig:
    base = dict(data=str(data), models=("cnn_small",), augment=("none",), sizes=(4, 8), seeds=2, epochs=2,
                batch_size=8, model_kwargs=TINY, accelerator="cpu", angle_step=90.0, target_auc=0.51)
    base.update(kw)
    return StudyConfig(**base)


@pytest.fixture(scope="module")
def study(data, tmp_path_factory):
    """The study directory, its config and log, with one cell trained for 1 of 2 epochs beforehand."""
    from equilens.evaluation.monitor import ValidationAUC
    from equilens.training.fit import train
    from equilens.workflows.study import _write_study_file, cell_train_config, check_study

    out = tmp_path_factory.mktemp("studies") / "eff"
    cfg = _cfg(data)
    interrupted = Cell("cnn_small", "none", 8, 1)
    # what run_study does first, then a cell stopped after 1 of its 2 epochs (as if the study was killed)
    out.mkdir()
    _write_study_file(cfg, out, check_study(cfg, out), tables=[])
    train(cell_train_config(cfg, interrupted), out / interrupted.name, stop_after_epochs=1, progress=False,
          callbacks=[ValidationAUC()], log=lambda _m: None)
    log: list[str] = []
    table = run_study(cfg, out, log=log.append)
    return out, cfg, log, table, interrupted


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_every_cell_is_an_evaluated_run_on_one_test_split_with_nested_subsets(study):
    out, cfg, log, table, _ = study
    cells = study_cells(cfg)
    assert len(cells) == 4
    splits = {c: json.loads((out / c.name / "split.json").read_text()) for c in cells}
    tests = {tuple(s["test"]) for s in splits.values()}
    vals = {tuple(s["val"]) for s in splits.values()}
    assert len(tests) == 1 and len(vals) == 1  # every cell, size and seed on one test and validation split
    for c in cells:
        assert (out / c.name / "eval" / "metrics.json").is_file()
        assert len(splits[c]["train"]) == 3 * c.size  # size per class, 3 classes
    small = set(splits[Cell("cnn_small", "none", 4, 0)]["train"])
    large = set(splits[Cell("cnn_small", "none", 8, 0)]["train"])
    assert small < large  # nested subsets of one training pool
    assert any(line.startswith("cell 1 of 4") for line in log)
    assert any("left for" in line for line in log)  # the time estimate over cells


def test_interrupted_cell_continued_from_its_last_checkpoint(study):
    out, _cfg_, log, _, interrupted = study
    assert f"{interrupted.name}: resuming" in log
    summary = json.loads((out / interrupted.name / "train_summary.json").read_text())
    assert summary["sessions"] == 2 and summary["epochs_completed"] == 2
    assert (out / interrupted.name / "logs" / "csv-session2" / "metrics.csv").is_file()


def test_val_auc_logged_every_epoch_equals_the_metric_of_the_last_checkpoint(study):
    """The per-epoch val_auc (ValidationAUC callback) is the macro AUC of the model at that epoch's end."""
    import torch

    from equilens.data.datamodule import LensDataModule
    from equilens.evaluation.evaluate import load_run_model, predict
    from equilens.evaluation.metrics import classification_metrics, softmax
    from equilens.training.config import read_run_config
    from equilens.training.fit import build_datamodule
    from equilens.workflows.study import validation_curve

    out, cfg, *_ = study
    run = out / Cell("cnn_small", "none", 4, 0).name
    curve = validation_curve(run)
    assert [e for e, _ in curve] == [0, 1]
    tcfg = read_run_config(run)
    split, stats = LensDataModule.load_saved(run)
    dm = build_datamodule(tcfg, split, stats, log=lambda _m: None)
    pos = dm.positions("val")
    model, _ = load_run_model(tcfg, run / "checkpoints" / "last.ckpt", 3)
    with torch.no_grad():
        logits = predict(model, torch.from_numpy(dm.normalizer(dm.dataset.get_images(pos))))
    auc = classification_metrics(softmax(logits.numpy()), dm.dataset.labels[pos], dm.class_names)["auc_macro"]
    assert curve[-1][1] == pytest.approx(auc, abs=1e-5)


def test_tables_hold_the_cells_numbers(study):
    out, cfg, _, table, _ = study
    cells = _rows(out / "cells.csv")
    assert len(cells) == 4
    for row in cells:
        cell = json.loads((out / row["cell"] / CELL_FILE).read_text())["row"]
        metrics = json.loads((out / row["cell"] / "eval" / "metrics.json").read_text())
        assert float(row["auc_macro"]) == pytest.approx(metrics["auc_macro"])
        assert float(row["accuracy"]) == pytest.approx(metrics["accuracy"])
        assert float(row["wall_seconds"]) > 0 and cell["n_train"] == 3 * int(row["size"])
        first = next(e for e, a in _curve(out / row["cell"]) if a >= cfg.target_auc) if row["images_to_target"] \
            else None
        if first is not None:
            assert int(row["images_to_target"]) == (first + 1) * cell["n_train"]
    summary = _rows(out / "data_efficiency.csv")
    assert [(r["size"], r["seeds"]) for r in summary] == [("4", "2"), ("8", "2")]
    pair = summary[0]["hardest_pair"]
    for r in summary:
        mine = [c for c in cells if c["size"] == r["size"]]
        aucs = [float(c["auc_macro"]) for c in mine]
        assert float(r["auc_macro_mean"]) == pytest.approx(np.mean(aucs))
        assert float(r["auc_macro_std"]) == pytest.approx(np.std(aucs, ddof=1), abs=1e-12)
        assert float(r["hardest_pair_auc_mean"]) == pytest.approx(np.mean([float(c[f"auc_{pair}"]) for c in mine]))
    pairs = ("no_sub/cdm", "no_sub/axion", "cdm/axion")
    pair_means = {p: np.mean([float(c[f"auc_{p}"]) for c in cells]) for p in pairs}
    assert pair == min(pair_means, key=pair_means.get)
    text = table.read_text()
    assert table.name == "data_efficiency.md" and "| cnn_small | none | 4 | 2 |" in text
    m4 = f"{float(summary[0]['auc_macro_mean']):.4f} ± {float(summary[0]['auc_macro_std']):.4f}"
    assert m4 in text
    assert (out / "data_efficiency.png").stat().st_size > 10_000


def _curve(run: Path):
    from equilens.workflows.study import validation_curve

    return validation_curve(run)


def test_rerun_keeps_finished_cells_and_runs_only_a_deleted_one(study):
    import shutil

    out, cfg, *_ = study
    gone = Cell("cnn_small", "none", 4, 1)
    kept = {c.name: (out / c.name / "checkpoints" / "best.ckpt").stat().st_mtime_ns for c in study_cells(cfg)
            if c != gone}
    shutil.rmtree(out / gone.name)
    log: list[str] = []
    run_study(cfg, out, log=log.append)
    assert "3 finished earlier (kept), 1 to run" in log[0]
    trained = [line for line in log if line.startswith("training ")]
    assert trained and all(gone.name in line for line in trained)
    assert (out / gone.name / CELL_FILE).is_file()
    assert {n: (out / n / "checkpoints" / "best.ckpt").stat().st_mtime_ns for n in kept} == kept


def test_report_includes_the_study_table(study, tmp_path):
    from equilens.evaluation.report import STUDY_FILE as REPORT_STUDY_FILE
    from equilens.evaluation.report import build_report

    out, *_ = study
    assert REPORT_STUDY_FILE == STUDY_FILE
    page = build_report([out], tmp_path / "report", log=lambda _m: None)
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Studies" in md and "Data efficiency: equivariance versus augmentation" in md
    assert "| cnn_small | none | 8 | 2 |" in md
    assert (tmp_path / "report" / "figures" / "study_eff_data_efficiency.png").is_file()
    assert "Data efficiency" in page.read_text()
    # a report of runs without a study has no such section
    build_report([out / Cell("cnn_small", "none", 4, 0).name], tmp_path / "plain", log=lambda _m: None)
    assert "## Studies" not in (tmp_path / "plain" / "report.md").read_text()


def test_other_settings_in_the_same_directory_are_refused(study):
    out, cfg, *_ = study
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ConfigError, match=r"other settings \(epochs 2 -> 3\)"):
        run_study(_cfg(Path(cfg.data), epochs=3), out, log=lambda _m: None)
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.parametrize(("kw", "message"), [
    ({"models": ("cnn_small", "no_such_net")}, r"unknown model 'no_such_net'. Valid names: .*resnet18"),
    ({"augment": ("none", "spin")}, r"unknown augmentation 'spin'; valid: none, rot90, rotate"),
    ({"sizes": (4, 30)}, r"size 30 per class is more than .* holds for training: it has no_sub 30, cdm 30, axion 30 "
                         r"images, of which .* leaves no_sub 22, cdm 22, axion 22 for training; choose sizes up to 22"),
    ({"sizes": ()}, r"at least one of sizes"),
    ({"models": ()}, r"at least one of models"),
    ({"sizes": (4, 0)}, r"integers >= 1"),
    ({"seeds": 0}, r"seeds must be >= 1"),
    ({"target_auc": 0.3}, r"target_auc must be in \(0.5, 1\]"),
])
def test_bad_input_says_what_is_valid(data, tmp_path, kw, message):
    with pytest.raises((ConfigError, ModelError), match=message):
        run_study(_cfg(data, **kw), tmp_path / "s", log=lambda _m: None)
    assert not (tmp_path / "s").exists()  # nothing written


def test_cli_errors_are_one_line(data, tmp_path, capsys):
    from equilens.cli import main

    base = ["study", "data-efficiency", "--data", str(data), "--out", str(tmp_path / "s"), "--epochs", "1"]
    for extra, message in ((["--sizes", ""], "--sizes is empty"), (["--sizes", "4,x"], "comma-separated integers"),
                           (["--models", "nope"], "unknown model 'nope'"),
                           (["--augment", "twirl"], "unknown augmentation 'twirl'"),
                           (["--models", "cnn_small", "--model-arg", "depth=3"], "takes no option depth")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("equilens study: error:") and message in err and "\n" not in err
    assert main(["study"]) == 2  # no study named: the usage


@pytest.mark.parametrize("argv", [["study", "--help"], ["study", "data-efficiency", "--help"],
                                  ["study", "rotation-robustness", "--help"]])
def test_help_imports_nothing_heavy(argv):
    heavy = ("torch", "lightning", "escnn", "matplotlib", "numpy", "h5py")
    code = (f"import sys\nfrom equilens.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit as e:\n"
            f"    assert e.code == 0, e.code\nprint('LOADED', [m for m in {heavy!r} if m in sys.modules])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "LOADED []"
    if argv[1:2] == ["data-efficiency"]:
        text = " ".join(proc.stdout.split())
        assert "(default: 250,500,1000,2000)" in text and "(default: 0.9)" in text


def test_cells_run_as_dask_tasks(data, tmp_path):
    from distributed import LocalCluster

    cfg = _cfg(data, sizes=(4,), seeds=1, augment=("none", "rot90"), epochs=1)
    log: list[str] = []
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        run_study(cfg, tmp_path / "dask", scheduler=cluster.scheduler_address, log=log.append)
    assert "on the Dask cluster at" in log[0]
    assert not any(line.startswith("training ") for line in log)  # the training ran in the worker
    rows = _rows(tmp_path / "dask" / "cells.csv")
    assert sorted(r["augment"] for r in rows) == ["none", "rot90"]
    assert all(math.isfinite(float(r["auc_macro"])) for r in rows)


def test_unreachable_scheduler_is_one_clear_error(data, tmp_path):
    from equilens.errors import DataError

    with pytest.raises(DataError, match="cannot reach the Dask scheduler"):
        run_study(_cfg(data, sizes=(4,), seeds=1), tmp_path / "s", scheduler="tcp://127.0.0.1:9", log=lambda _m: None)


def test_rotation_robustness_equivariant_versus_not(data, tmp_path):
    """An exactly D4-invariant model keeps its test metrics at every multiple of 90 degrees; the curve covers
    0..360 degrees for every cell, and the tables hold its numbers."""
    cfg = _cfg(data, kind="rotation-robustness", models=("steerable_d4", "resnet18"), sizes=(None,), seeds=1,
               epochs=1, model_kwargs={"width": 0.125}, rotation_step=45.0)
    table = run_study(cfg, tmp_path / "rot", log=lambda _m: None)
    rows = _rows(tmp_path / "rot" / "rotation.csv")
    assert sorted({float(r["angle"]) for r in rows}) == [0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0, 360.0]
    eq = {float(r["angle"]): r for r in rows if r["model"] == "steerable_d4"}
    for angle in (90.0, 180.0, 270.0, 360.0):
        assert float(eq[angle]["accuracy_mean"]) == float(eq[0.0]["accuracy_mean"])
        assert float(eq[angle]["auc_macro_mean"]) == pytest.approx(float(eq[0.0]["auc_macro_mean"]), abs=1e-6)
    cell = json.loads((tmp_path / "rot" / "resnet18-none-nall-seed0" / CELL_FILE).read_text())
    curve = {r["angle"]: r for r in cell["rotation"]}
    cnn = {float(r["angle"]): r for r in rows if r["model"] == "resnet18"}
    assert float(cnn[45.0]["accuracy_mean"]) == pytest.approx(curve[45.0]["accuracy"])
    assert cell["row"]["n_train"] == 66  # all of the training split: 22 per class
    assert "| 45 |" in table.read_text() and (tmp_path / "rot" / "rotation.png").stat().st_size > 10_000
