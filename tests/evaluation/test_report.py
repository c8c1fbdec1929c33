"""The HTML/markdown report over runs and seeds: statistics, grouping, tables and figures."""

import json
import shutil

import numpy as np
import pytest
import yaml

from equilens.cli import main
from equilens.errors import DataError
from equilens.evaluation.evaluate import evaluate
from equilens.evaluation.report import build_report, run_settings, summarise


def _evaluated(run):
    if not (run / "eval" / "metrics.json").is_file():
        evaluate(run, angles=(0.0, 45.0, 90.0), log=lambda s: None)
    return json.loads((run / "eval" / "metrics.json").read_text())


def test_report_mean_std_over_seeds(cls_runs, reg_run, tmp_path, capsys):
    accs = [_evaluated(r)["accuracy"] for r in cls_runs]
    _evaluated(reg_run)
    out = tmp_path / "report"
    assert main(["report", *map(str, cls_runs), str(reg_run), "--out", str(out)]) == 0
    assert "report.html" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    cls = next(r for r in summary if r["task"] == "classify")
    assert cls["accuracy"][0] == pytest.approx(np.mean(accs))
    assert cls["accuracy"][1] == pytest.approx(np.std(accs, ddof=1), nan_ok=True)
    assert cls["accuracy"][2] == 2 and cls["seeds"] == [0, 1]
    assert cls["auc_no_sub/cdm"][2] == 2
    assert cls["differs"] == {}  # two seeds of one configuration: nothing differs
    md = (out / "report.md").read_text()
    auc_header = next(line for line in md.splitlines() if line.startswith("| model |") and "no_sub/cdm" in line)
    assert auc_header.index("axion vs rest") < auc_header.index("no_sub/cdm")  # classes first, then pairs
    main_header = next(line for line in md.splitlines() if line.startswith("| model |") and "accuracy" in line)
    row = md.splitlines()[md.splitlines().index(main_header) + 2]
    assert "2 (0, 1)" in row and "±" in row
    assert "(n=" not in md.split("## Runs")[0]  # the number of runs is given once per row, not in every cell
    # the largest rotated change sits beside the interpolation floor at that angle
    assert "interpolation floor there" in main_header
    worst = [max(_evaluated(r)["symmetry"]["continuous"], key=lambda c: c["rel_change"]) for r in cls_runs]
    assert cls["worst_angle_floor"][0] == pytest.approx(np.mean([w["floor"] for w in worst]))
    # the data set's full path (not only its base name) is shown once, above the table
    assert f"data = {cls['data']}" in md and cls["data"].count("/") > 1
    assert "## Regression of log10(m_a / eV)" in md
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert (out / "figures" / "comparison_classify.png").is_file()
    assert (out / "figures" / "comparison_regress.png").is_file()
    assert "figures/comparison_classify.png" in md
    for line in md.splitlines():
        if line.startswith("!["):
            assert (out / line.split("](")[1].rstrip(")")).is_file()


def _train(data, out, **kw):
    from equilens.training.config import TrainConfig
    from equilens.training.fit import train

    base = dict(data=str(data), model="cnn_small", epochs=2, batch_size=8, num_workers=0,
                model_kwargs={"widths": [8, 16]})
    base.update(kw)
    return train(TrainConfig(**base), out, progress=False, log=lambda s: None)


@pytest.fixture(scope="module")
def varied_runs(cls_runs, eval_data, tmp_path_factory):
    """cls_runs (seeds 0 and 1, 2 epochs) and: a 1-epoch run (seed 0); a 2-epoch run (seed 0) paused after
    one epoch and resumed; a copy of seed 0 whose config says seed 2 and 3 loader workers (a runtime
    setting), which must join the seeds 0 and 1."""
    root = tmp_path_factory.mktemp("varied")
    one = _train(eval_data, root / "cnn-1epoch-s0", epochs=1)
    resumed = root / "cnn-resumed-s0"  # same settings as cls_runs[0], stopped after one epoch, then resumed
    from equilens.training.config import TrainConfig
    from equilens.training.fit import train

    cfg = TrainConfig(data=str(eval_data), model="cnn_small", epochs=2, batch_size=8, num_workers=0,
                      model_kwargs={"widths": [8, 16]})
    train(cfg, resumed, progress=False, stop_after_epochs=1, log=lambda s: None)
    train(None, resumed, resume=True, progress=False, log=lambda s: None)
    for run in (*cls_runs, one, resumed):
        _evaluated(run)
    other = root / "cnn-s2"
    shutil.copytree(cls_runs[0], other)
    cfg_path = other / "config.yaml"
    c = yaml.safe_load(cfg_path.read_text())
    c.update(seed=2, num_workers=3)
    cfg_path.write_text(yaml.safe_dump(c))
    return [*cls_runs, other, one, resumed]


def test_report_groups_by_everything_but_the_seed(varied_runs, tmp_path):
    runs = [{"path": p, "name": p.name, "config": yaml.safe_load((p / "config.yaml").read_text()),
             "summary": json.loads((p / "train_summary.json").read_text()),
             "metrics": json.loads((p / "eval" / "metrics.json").read_text())} for p in varied_runs]
    assert json.loads((varied_runs[-1] / "train_summary.json").read_text())["sessions"] == 2
    assert "seed" not in run_settings(runs[0]) and "num_workers" not in run_settings(runs[0])
    rows = summarise(runs)
    by_runs = {tuple(r["runs"]): r for r in rows}
    assert set(by_runs) == {("cnn-s0", "cnn-s1", "cnn-s2"), ("cnn-1epoch-s0",), ("cnn-resumed-s0",)}
    pooled = by_runs[("cnn-s0", "cnn-s1", "cnn-s2")]
    assert pooled["accuracy"][2] == 3 and pooled["seeds"] == [0, 1, 2]
    # what differs between the rows, and only that
    assert pooled["differs"] == {"epochs": "2", "resumed": "no"}
    assert by_runs[("cnn-1epoch-s0",)]["differs"] == {"epochs": "1", "resumed": "no"}
    assert by_runs[("cnn-resumed-s0",)]["differs"] == {"epochs": "2", "resumed": "yes"}
    out = tmp_path / "report"
    build_report(varied_runs, out, log=lambda s: None)
    md = (out / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| model |") and "accuracy" in line)
    assert "differs" in header
    assert "epochs=1; resumed=no" in md and "epochs=2; resumed=yes" in md
    shared = next(line for line in md.splitlines() if line.startswith("Shared by every row"))
    assert "status = complete" in shared and "epochs" not in shared


def test_report_rejects_non_runs(tmp_path):
    with pytest.raises(DataError, match="not an equilens run directory"):
        build_report([tmp_path], tmp_path / "r")
