"""The HTML/markdown report over runs and seeds."""

import json

import numpy as np
import pytest

from equilens.cli import main
from equilens.errors import DataError
from equilens.evaluation.evaluate import evaluate


def test_report_mean_std_over_seeds(cls_runs, reg_run, tmp_path, capsys):
    accs = [evaluate(r, angles=(0.0, 90.0), log=lambda s: None)["accuracy"] for r in cls_runs]
    if not (reg_run / "eval" / "metrics.json").is_file():
        evaluate(reg_run, angles=(0.0,), log=lambda s: None)
    out = tmp_path / "report"
    assert main(["report", *map(str, cls_runs), str(reg_run), "--out", str(out)]) == 0
    assert "report.html" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    cls = next(r for r in summary if r["task"] == "classify")
    assert cls["accuracy"][0] == pytest.approx(np.mean(accs))
    assert cls["accuracy"][1] == pytest.approx(np.std(accs, ddof=1), nan_ok=True)
    assert cls["accuracy"][2] == 2 and cls["seeds"] == [0, 1]
    assert cls["auc_no_sub/cdm"][2] == 2
    md = (out / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| model |") and "accuracy" in line)
    assert header.index("auc_axion") < header.index("auc_no_sub/cdm")  # classes first, then pairs
    html = (out / "report.html").read_text()
    assert "(n=2)" in md and "## Regression" in md and "log10_m_a" in md
    assert "data:image/png;base64," in html
    for line in md.splitlines():
        if line.startswith("!["):
            assert (out / line.split("](")[1].rstrip(")")).is_file()


def test_report_rejects_non_runs(tmp_path):
    with pytest.raises(DataError, match="not an equilens run directory"):
        from equilens.evaluation.report import build_report

        build_report([tmp_path], tmp_path / "r")
