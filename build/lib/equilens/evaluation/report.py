"""``build_report()``: one HTML page (self-contained, figures embedded as base64) and a markdown twin
(figures copied to ``figures/`` beside it) comparing evaluated runs.

Runs are grouped by (task, target, model, augmentation, data set); each group shows the mean +/- sample standard
deviation (ddof = 1) over its runs (normally one per seed) of the test metrics, the parameter count,
the training time, and the symmetry of the trained models (relative output change under rot90 and the
largest over the continuous angles). A run that has not been evaluated is listed as such.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from equilens.errors import DataError
from equilens.evaluation.metrics import mean_std

EVAL_DIR = "eval"


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def collect_runs(paths: Sequence[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Read every run directory in ``paths`` (a directory holding run directories is expanded)."""
    runs: list[dict[str, Any]] = []
    for p in paths:
        p = Path(p)
        if (p / "config.yaml").is_file():
            candidates = [p]
        elif p.is_dir():
            candidates = sorted(q for q in p.iterdir() if (q / "config.yaml").is_file())
        else:
            candidates = []
        if not candidates:
            raise DataError(f"{p} is not an equilens run directory (no config.yaml) and holds none")
        for run in candidates:
            cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
            runs.append({"path": run, "name": run.name, "config": cfg,
                         "summary": _read_json(run / "train_summary.json") or {},
                         "metrics": _read_json(run / EVAL_DIR / "metrics.json")})
    names = [r["name"] for r in runs]
    for r in runs:  # make names unique (runs from different parent directories)
        if names.count(r["name"]) > 1:
            r["name"] = f"{r['path'].parent.name}-{r['name']}"
    return runs


def _group_key(run: dict[str, Any]) -> tuple[str, str, str, str, str]:
    c = run["config"]
    return (str(c.get("task")), str(c.get("target") or ""), str(c.get("model")), str(c.get("augmentation")),
            str(Path(str(c.get("data"))).resolve()))


def _fmt(stats: tuple[float, float, int], digits: int = 4, sci: bool = False) -> str:
    mean, std, n = stats
    if n == 0 or not math.isfinite(mean):
        return "-"
    spec = f".{digits}{'e' if sci else 'f'}"
    if n == 1 or not math.isfinite(std):
        return f"{mean:{spec}} (n=1)"
    return f"{mean:{spec}} ± {std:{spec}} (n={n})"


def _symmetry_numbers(m: dict[str, Any]) -> tuple[float, float]:
    s = m.get("symmetry")
    if not s:
        return float("nan"), float("nan")
    rot90 = next((r["rel_change"] for r in s["grid"] if r["name"] == "rot90"), float("nan"))
    worst = max((r["rel_change"] for r in s["continuous"]), default=float("nan"))
    return float(rot90), float(worst)


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, target, model, data) group with mean/std/n of each number."""
    groups: dict[tuple[str, str, str, str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(_group_key(run), []).append(run)
    rows = []
    for (task, target, model, augmentation, data), members in sorted(groups.items()):
        evaluated = [r for r in members if r["metrics"]]
        cols = ("accuracy", "auc_macro") if task == "classify" else ("mae", "rmse", "r2", "bias")
        row: dict[str, Any] = {"task": task, "target": target, "model": model, "augmentation": augmentation,
                               "data": data, "runs": [r["name"] for r in members],
                               "seeds": [r["config"].get("seed") for r in members],
                               "n_evaluated": len(evaluated)}
        for col in cols:
            row[col] = mean_std([r["metrics"][col] for r in evaluated])
        if task == "classify" and evaluated:
            for key in ("auc_per_class", "auc_pairwise"):  # pairs are named "a/b"; older runs lack them
                for cname in evaluated[0]["metrics"].get(key, {}):
                    row[f"auc_{cname}"] = mean_std([r["metrics"].get(key, {}).get(cname, float("nan"))
                                                    for r in evaluated])
        row["rot90_change"] = mean_std([_symmetry_numbers(r["metrics"])[0] for r in evaluated])
        row["worst_angle_change"] = mean_std([_symmetry_numbers(r["metrics"])[1] for r in evaluated])
        row["params"] = members[0]["summary"].get("num_parameters")
        row["symmetry_group"] = members[0]["summary"].get("symmetry", "")
        row["train_minutes"] = mean_std([r["summary"].get("training_seconds", float("nan")) / 60 for r in members])
        row["epochs"] = sorted({r["summary"].get("epochs_completed") for r in members}, key=str)
        row["metric_cols"] = [c for c in row if c in cols or c.startswith("auc_") and c != "auc_macro"]
        rows.append(row)
    return rows


def _table(rows: list[dict[str, Any]], task: str) -> tuple[list[str], list[list[str]]]:
    sel = [r for r in rows if r["task"] == task]
    if not sel:
        return [], []
    if task == "classify":
        # per-class columns, then per-pair ones, in the runs' class order
        per_class = list(dict.fromkeys(c for r in sel for c in r if c.startswith("auc_") and c != "auc_macro"))
        metric_cols = ["accuracy", "auc_macro", *per_class]
    else:
        metric_cols = ["mae", "rmse", "r2", "bias"]
    header = ["model", "group", "augment", "data", *(["target"] if task == "regress" else []), *metric_cols,
              "rot90 output change", "max change (angles)", "params", "train min", "epochs", "runs"]
    body = []
    for r in sel:
        cells = [r["model"], r["symmetry_group"], r["augmentation"], Path(r["data"]).name]
        if task == "regress":
            cells.append(r["target"])
        cells += [_fmt(r[c]) if c in r else "-" for c in metric_cols]
        cells += [_fmt(r["rot90_change"], digits=1, sci=True), _fmt(r["worst_angle_change"], digits=3),
                  f"{r['params']:,}" if isinstance(r["params"], int) else "-",
                  _fmt(r["train_minutes"], digits=1), ",".join(str(e) for e in r["epochs"]),
                  ", ".join(r["runs"])]
        body.append(cells)
    return header, body


def build_report(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str],
                 title: str = "equilens runs", log: Callable[[str], None] = print) -> Path:
    """Write ``out/report.html`` and ``out/report.md`` comparing the runs; returns the HTML path."""
    runs = collect_runs(paths)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    rows = summarise(runs)
    md = [f"# {title}", "", "Test-split metrics, mean ± sample std over runs (seeds); symmetry columns: relative "
          "output change of the trained model under rot90 and the largest over continuous angles.", ""]
    h = ["<!doctype html><html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
         "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
         "margin-bottom:1.5em}td,th{border:1px solid #bbb;padding:3px 7px;font-size:13px}th{background:#eee}"
         "img{max-width:460px;margin:4px;border:1px solid #ddd}</style></head><body>",
         f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(md[2])}</p>"]
    for task, heading in (("classify", "Classification"), ("regress", "Regression")):
        header, body = _table(rows, task)
        if not header:
            continue
        md += [f"## {heading}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(cells) + " |" for cells in body]
        md.append("")
        h.append(f"<h2>{heading}</h2><table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr>")
        h += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in body]
        h.append("</table>")
    md += ["## Runs", ""]
    h.append("<h2>Runs</h2>")
    for run in runs:
        s, m = run["summary"], run["metrics"]
        line = (f"{run['name']}: {run['config'].get('model')}, seed {run['config'].get('seed')}, "
                f"{s.get('epochs_completed', '?')} epochs, {s.get('training_seconds', float('nan')) / 60:.1f} min, "
                f"status {s.get('status', '?')}")
        if not m:
            line += " - NOT EVALUATED (run `equilens evaluate` on it)"
        md += [f"### {run['name']}", "", line, ""]
        h += [f"<h3>{html.escape(run['name'])}</h3>", f"<p>{html.escape(line)}</p>"]
        if m:
            for fig in m.get("figures", []):
                src = run["path"] / EVAL_DIR / fig
                if not src.is_file():
                    continue
                dest = fig_dir / f"{run['name']}_{fig}"
                shutil.copyfile(src, dest)
                md.append(f"![{run['name']} {fig}](figures/{dest.name})")
                b64 = base64.b64encode(src.read_bytes()).decode("ascii")
                h.append(f"<img alt='{html.escape(run['name'])} {html.escape(fig)}' "
                         f"src='data:image/png;base64,{b64}'>")
            md.append("")
    h.append("</body></html>")
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    html_path = out / "report.html"
    html_path.write_text("\n".join(h) + "\n", encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(
        [{k: v for k, v in r.items() if k != "metric_cols"} for r in rows], indent=2, default=str) + "\n",
        encoding="utf-8")
    log(f"report written to {html_path.resolve()} (markdown: {(out / 'report.md').resolve()})")
    return html_path
