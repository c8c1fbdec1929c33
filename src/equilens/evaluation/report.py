"""``build_report()``: one HTML page (self-contained, figures embedded as base64) and a markdown twin
(figures copied to ``figures/`` beside it) comparing evaluated runs.

Grouping. Runs are grouped by everything that defines them except the seed (:func:`run_settings`): every
key of ``config.yaml`` other than ``seed`` and the keys that only change where and how fast a run ran
(:data:`equilens.training.config.RUNTIME_KEYS`), the data set's resolved path, whether training finished
(``status``) and was resumed, and which checkpoint was evaluated on what. Runs that differ in anything
else (1 against 2 epochs, resumed or not, another learning rate) are separate rows; what differs between
the rows is shown in a ``differs`` column, what they share is listed once above the table.

Each row shows the mean ± sample standard deviation (ddof = 1) over its runs (normally one per seed) of
the test metrics, the parameter count, the training time, and the symmetry of the trained models: the
relative output change under rot90 (exact) and the largest over the continuous angles, with the
interpolation floor at that angle beside it (the change an exactly invariant model would still show from
resampling). The number of runs is given once per row. A comparison figure per task shows each headline
metric against the model, with single runs as dots and error bars of the standard deviation over seeds.
A run that has not been evaluated is listed as such.

Studies. A study directory (``equilens study``, :mod:`equilens.workflows.study`) in or under one of the inputs
adds a "Studies" section: the tables and figure its ``study.json`` records (e.g. the data-efficiency table).

The HTML page fits a 1400 px wide window (no horizontal scrolling); figures are shown at their own pixel
size (scaled down only when the window is narrower) and open alone, at full size, when clicked.
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
from equilens.evaluation import plots
from equilens.evaluation.metrics import mean_std
from equilens.training.config import RUNTIME_KEYS

EVAL_DIR = "eval"
#: The record of a study directory (:data:`equilens.workflows.study.STUDY_FILE`, equal by a test); its tables
#: are shown in a "Studies" section of the report when it lies in or under one of the report's inputs.
STUDY_FILE = "study.json"
#: Config keys that never separate runs into groups: the seed (what a group averages over) and the
#: settings that change where and how fast a run ran, not its result.
UNGROUPED_KEYS: frozenset[str] = RUNTIME_KEYS | {"seed"}
#: Settings shown in their own table columns, so not repeated in the ``differs`` column.
_OWN_COLUMN = ("task", "model")
#: Settings listed first (the rest follow alphabetically).
_FIRST_SETTINGS = ("data", "target", "epochs", "status", "resumed", "evaluated", "augmentation", "normalisation")

Stats = tuple[float, float, int]


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


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if value is None:
        return "none"
    return str(value)


def run_settings(run: dict[str, Any]) -> dict[str, str]:
    """Everything that defines ``run`` apart from its seed, as ``{setting: value}`` display strings.

    Config keys (without :data:`UNGROUPED_KEYS`; ``model_kwargs`` entries as ``model_kwargs.KEY``; the
    data set as its resolved path), then ``status`` (complete, paused, stopped early), ``resumed``
    (trained in more than one session) and ``evaluated`` (checkpoint file and evaluated subset, or
    ``not evaluated``).
    """
    c, s, m = run["config"], run["summary"], run["metrics"]
    out: dict[str, str] = {}
    for key in sorted(c):
        value = c[key]
        if key in UNGROUPED_KEYS:
            continue
        if key == "model_kwargs":
            for k in sorted(value or {}):
                out[f"model_kwargs.{k}"] = _show(value[k])
        elif key == "data":
            out[key] = str(Path(str(value)).resolve())
        else:
            out[key] = _show(value)
    out["status"] = str(s.get("status", "unknown (no train_summary.json)"))
    out["resumed"] = "yes" if int(s.get("sessions", 1) or 1) > 1 else "no"
    if m:
        where = str(m.get("subset", "test split"))
        if where != "test split":
            where += f" of {m.get('data')}"
        out["evaluated"] = f"{Path(str(m.get('checkpoint', '?'))).name} on {where}"
    else:
        out["evaluated"] = "not evaluated"
    return out


def _fmt(stats: Stats, digits: int = 4, sci: bool = False, n_expected: int | None = None) -> str:
    """``mean ± std`` (the mean alone for one run); ``(n=k)`` only when k differs from ``n_expected``."""
    mean, std, n = stats
    if n == 0 or not math.isfinite(mean):
        return "-"
    spec = f".{digits}{'e' if sci else 'f'}"
    text = f"{mean:{spec}}" if n == 1 or not math.isfinite(std) else f"{mean:{spec}} ± {std:{spec}}"
    return text if n_expected is None or n == n_expected else f"{text} (n={n})"


def _symmetry_numbers(m: dict[str, Any]) -> tuple[float, float, float, float]:
    """(rot90 change, largest change over the continuous angles, interpolation floor at that angle, that
    angle) of one run's metrics; NaN where the symmetry was not measured."""
    s = m.get("symmetry")
    nan = float("nan")
    if not s:
        return nan, nan, nan, nan
    rot90 = next((r["rel_change"] for r in s["grid"] if r["name"] == "rot90"), nan)
    worst = max(s["continuous"], key=lambda r: r["rel_change"], default=None)
    if worst is None:
        return float(rot90), nan, nan, nan
    return float(rot90), float(worst["rel_change"]), float(worst.get("floor", nan)), float(worst["angle"])


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per group of runs that differ only in the seed (see module docstring).

    Each row holds the statistics ``(mean, sample std, n)`` of every number, the per-run values
    (``values``: number -> list over the evaluated runs, for the comparison figure), the group's
    ``settings`` and ``differs``: the settings whose value is not the same in every row of its task.
    """
    groups: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = {}
    for run in runs:
        run["settings"] = run_settings(run)
        groups.setdefault(tuple(sorted(run["settings"].items())), []).append(run)
    rows = []
    for key, members in groups.items():
        settings = dict(key)
        task = settings.get("task", "?")
        evaluated = [r for r in members if r["metrics"]]
        cols = ("accuracy", "auc_macro") if task == "classify" else ("mae", "rmse", "r2", "bias")
        row: dict[str, Any] = {"task": task, "target": run_target(members[0]), "model": settings.get("model", "?"),
                               "augmentation": settings.get("augmentation", ""), "data": settings.get("data", ""),
                               "settings": settings, "runs": [r["name"] for r in members],
                               "seeds": [r["config"].get("seed") for r in members],
                               "n_evaluated": len(evaluated)}
        values: dict[str, list[float]] = {}
        for col in cols:
            values[col] = [float(r["metrics"].get(col, float("nan"))) for r in evaluated]
        if task == "classify" and evaluated:
            for k in ("auc_per_class", "auc_pairwise"):  # pairs are named "a/b"; older runs lack them
                for cname in evaluated[0]["metrics"].get(k, {}):
                    values[f"auc_{cname}"] = [float(r["metrics"].get(k, {}).get(cname, float("nan")))
                                              for r in evaluated]
        sym = [_symmetry_numbers(r["metrics"]) for r in evaluated]
        values["rot90_change"] = [s[0] for s in sym]
        values["worst_angle_change"] = [s[1] for s in sym]
        values["worst_angle_floor"] = [s[2] for s in sym]
        for name, v in values.items():
            row[name] = mean_std(v)
        row["worst_angle"] = sorted({s[3] for s in sym if math.isfinite(s[3])})
        row["values"] = values
        row["params"] = members[0]["summary"].get("num_parameters")
        row["symmetry_group"] = members[0]["summary"].get("symmetry", "")
        row["train_minutes"] = mean_std([r["summary"].get("training_seconds", float("nan")) / 60 for r in members])
        row["epochs"] = sorted({r["summary"].get("epochs_completed") for r in members}, key=str)
        row["metric_cols"] = [c for c in values if c in cols or c.startswith("auc_") and c != "auc_macro"]
        rows.append(row)
    rows.sort(key=lambda r: (r["task"], str(r["target"]), r["model"], sorted(r["settings"].items())))
    for task in {r["task"] for r in rows}:
        sel = [r for r in rows if r["task"] == task]
        keys = list(dict.fromkeys(k for r in sel for k in r["settings"]))
        varying = [k for k in keys if k not in _OWN_COLUMN
                   and len({r["settings"].get(k, "(unset)") for r in sel}) > 1]
        for r in sel:
            r["differs"] = {k: r["settings"].get(k, "(unset)") for k in varying}
    return rows


def run_target(run: dict[str, Any]) -> str:
    """The regression target of a run ('' for classification)."""
    return str(run["config"].get("target") or "")


def shared_settings(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The settings with one value in every row (shown once above a table)."""
    if not rows:
        return {}
    first = rows[0]["settings"]
    shared = {k: v for k, v in first.items() if k not in _OWN_COLUMN
              and all(r["settings"].get(k) == v for r in rows[1:])}
    if first.get("task") == "classify":
        shared.pop("target", None)
    order = {k: i for i, k in enumerate(_FIRST_SETTINGS)}
    return dict(sorted(shared.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def _differs_text(row: dict[str, Any]) -> str:
    return "; ".join(f"{k}={v}" for k, v in row.get("differs", {}).items())


def _table(rows: list[dict[str, Any]], task: str) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """(header, body) of the main table of ``task`` and of its AUC table (classification; empty else)."""
    sel = [r for r in rows if r["task"] == task]
    if not sel:
        return [], [], [], []
    any_differs = any(r.get("differs") for r in sel)
    metric_cols = ["accuracy", "auc_macro"] if task == "classify" else ["mae", "rmse", "r2", "bias"]
    names = {"accuracy": "accuracy", "auc_macro": "macro AUC (one vs rest)", "mae": "MAE", "rmse": "RMSE",
             "r2": "R²", "bias": "bias (pred - true)"}
    header = ["model", "symmetry group", *(["differs"] if any_differs else []), "runs (seeds)",
              *(names[c] for c in metric_cols), "rot90 output change",
              "largest output change, rotated (angle)", "interpolation floor there",
              "parameters", "training min", "epochs"]
    body = []
    for r in sel:
        n = r["n_evaluated"]
        seeds = ", ".join(str(s) for s in r["seeds"])
        runs_cell = f"{len(r['runs'])} ({seeds})" + ("" if n == len(r["runs"]) else f", {n} evaluated")
        cells = [r["model"], str(r["symmetry_group"]), *([_differs_text(r)] if any_differs else []), runs_cell]
        cells += [_fmt(r[c], n_expected=n) if c in r else "-" for c in metric_cols]
        angle = ", ".join(f"{a:.0f}" for a in r["worst_angle"])
        worst = _fmt(r["worst_angle_change"], digits=3, n_expected=n)
        cells += [_fmt(r["rot90_change"], digits=1, sci=True, n_expected=n),
                  worst + (f" ({angle}°)" if angle and worst != "-" else ""),
                  _fmt(r["worst_angle_floor"], digits=3, n_expected=n),
                  f"{r['params']:,}" if isinstance(r["params"], int) else "-",
                  _fmt(r["train_minutes"], digits=1), ",".join(str(e) for e in r["epochs"])]
        body.append(cells)
    if task != "classify":
        return header, body, [], []
    # per-class columns, then per-pair ones, in the runs' class order
    auc_cols = list(dict.fromkeys(c for r in sel for c in r["metric_cols"] if c.startswith("auc_")
                                  and c != "auc_macro"))
    if not auc_cols:
        return header, body, [], []
    auc_header = ["model", *(["differs"] if any_differs else []),
                  *(f"{c.removeprefix('auc_')} vs rest" if "/" not in c else c.removeprefix("auc_")
                    for c in auc_cols)]
    auc_body = [[r["model"], *([_differs_text(r)] if any_differs else []),
                 *(_fmt(r[c], digits=3, n_expected=r["n_evaluated"]) if c in r else "-" for c in auc_cols)]
                for r in sel]
    return header, body, auc_header, auc_body


def _group_label(row: dict[str, Any]) -> str:
    extra = [f"{k}={v}" for k, v in row.get("differs", {}).items() if k != "data"]
    if "data" in row.get("differs", {}):
        extra.append(f"data={Path(row['settings']['data']).name}")
    return "\n".join([row["model"], *extra])


def comparison_figure(rows: list[dict[str, Any]], task: str, path: Path) -> Path | None:
    """The across-model figure of ``task``'s rows (``None`` when no row of the task was evaluated)."""
    sel = [r for r in rows if r["task"] == task and r["n_evaluated"]]
    if not sel:
        return None
    if task == "classify":
        panels = [("accuracy", "test accuracy", False), ("auc_macro", "macro AUC (one vs rest)", False)]
    else:
        target = plots.target_label(str(sel[0]["target"])) if len({r["target"] for r in sel}) == 1 else "target"
        panels = [("mae", f"MAE of {target}", False), ("r2", "R²", False)]
    panels.append(("worst_angle_change", "largest output change over rotation angles", True))
    groups = [(_group_label(r), r["values"]) for r in sel]
    title = "models compared on the test split (n: runs of each model, differing only in the seed)"
    return plots.plot_comparison(groups, panels, path, title=title,
                                 references={"worst_angle_change": ("worst_angle_floor",
                                                                    "interpolation floor at that angle")})


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.2em auto;max-width:1340px;
 padding:0 16px;line-height:1.4;color:#222}
h1{font-size:1.6em;margin:.2em 0}h2{margin-top:1.4em;border-bottom:1px solid #ccc}
h3{margin:1.2em 0 .3em}h4{margin:.8em 0 .2em;font-size:1em}
table{border-collapse:collapse;margin:.5em 0 1.2em;max-width:100%}
td,th{border:1px solid #c8c8c8;padding:4px 8px;font-size:14px;vertical-align:top}
th{background:#eef1f5;text-align:left;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.text{white-space:nowrap}td.wrap{overflow-wrap:anywhere;min-width:5em}.nw{white-space:nowrap}
.settings{font-size:13px;color:#333;overflow-wrap:anywhere}
.settings code{background:#f3f3f3;padding:0 3px}
.note{font-size:13px;color:#555}
.figs{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
.figs img,.wide img{max-width:100%;height:auto;border:1px solid #ddd;cursor:zoom-in;display:block}
#zoom{display:none;position:fixed;inset:0;background:rgba(20,20,20,.88);overflow:auto;z-index:10;
 cursor:zoom-out;padding:12px;box-sizing:border-box}
#zoom img{display:block;margin:auto;background:#fff;max-width:none}
"""

_JS = """
(function(){var z=document.getElementById('zoom'),zi=z.querySelector('img');
document.querySelectorAll('img.fig').forEach(function(i){i.addEventListener('click',function(){
zi.src=i.src;zi.alt=i.alt;z.style.display='block';});});
z.addEventListener('click',function(){z.style.display='none';});
document.addEventListener('keydown',function(e){if(e.key==='Escape'){z.style.display='none';}});})();
"""


def _cell(text: str) -> str:
    """Escaped cell text in which ``mean ± std`` never breaks (a following ``(angle)`` may wrap)."""
    head, sep, tail = text.partition(" (")
    return f"<span class='nw'>{html.escape(head)}</span>{html.escape(sep + tail)}"


def _html_table(header: list[str], body: list[list[str]]) -> str:
    kind = {"model": "text", "symmetry group": "text", "runs (seeds)": "text", "differs": "wrap"}
    out = ["<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr>"]
    for cells in body:
        out.append("<tr>" + "".join(
            f"<td class='{kind.get(h, 'num')}'>{'<br>'.join(_cell(p) for p in c.split('; '))}</td>"
            for h, c in zip(header, cells, strict=True)) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _md_table(header: list[str], body: list[list[str]]) -> list[str]:
    def esc(c: str) -> str:
        return c.replace("|", "\\|")
    return ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(map(esc, cells)) + " |" for cells in body), ""]


def find_studies(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Study directories (holding :data:`STUDY_FILE`) in or under the report's inputs, each once, in order."""
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for record in sorted(p.rglob(STUDY_FILE)):
                if record.parent.resolve() not in [f.resolve() for f in found]:
                    found.append(record.parent)
    return found


def _study_section(studies: Sequence[Path], fig_dir: Path) -> tuple[list[str], list[str]]:
    """Markdown and HTML of the studies' tables (as recorded in their ``study.json``) and figures."""
    md: list[str] = []
    h: list[str] = []
    for study in studies:
        record = json.loads((study / STUDY_FILE).read_text(encoding="utf-8"))
        for table in record.get("tables", []):
            title = f"{table['title']} ({study.resolve()})"
            md += [f"### {title}", "", table["note"], "", *_md_table(table["header"], table["rows"])]
            h += [f"<h3>{html.escape(title)}</h3>", f"<p class='note'>{html.escape(table['note'])}</p>",
                  _html_table(table["header"], table["rows"])]
            for extra in table.get("extra", []):
                md += [extra["note"], "", *_md_table(extra["header"], extra["rows"])]
                h += [f"<p class='note'>{html.escape(extra['note'])}</p>", _html_table(extra["header"], extra["rows"])]
            src = study / table["figure"]
            if src.is_file():
                dest = fig_dir / f"study_{study.name}_{src.name}"
                shutil.copyfile(src, dest)
                md += [f"![{table['title']}](figures/{dest.name})", ""]
                h.append(f"<div class='wide'>{_img(src, table['title'])}</div>")
    return md, h


def _img(src: Path, alt: str) -> str:
    b64 = base64.b64encode(src.read_bytes()).decode("ascii")
    return (f"<img class='fig' alt='{html.escape(alt)}' title='click: open at full size' "
            f"src='data:image/png;base64,{b64}'>")


def build_report(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str],
                 title: str = "equilens runs", log: Callable[[str], None] = print) -> Path:
    """Write ``out/report.html``, ``out/report.md`` (figures in ``out/figures/``) and
    ``out/summary.json`` comparing the runs; returns the HTML path."""
    runs = collect_runs(paths)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    rows = summarise(runs)
    intro = ("Test-split metrics: mean ± sample standard deviation over the runs of a row (runs that differ "
             "only in the seed); a single run shows its value alone. Symmetry columns: relative output change "
             "of the trained model (1 = as different as another image) under an exact 90-degree rotation, and "
             "the largest over the continuous rotation angles on disk-masked images, beside the interpolation "
             "floor at that angle (the change an exactly invariant model would still show from resampling; a "
             "model at its floor is as invariant as the pixel grid allows).")
    md = [f"# {title}", "", intro, ""]
    h = ["<!doctype html><html><head><meta charset='utf-8'>",
         "<meta name='viewport' content='width=device-width, initial-scale=1'>",
         f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
         f"<h1>{html.escape(title)}</h1>", f"<p class='note'>{html.escape(intro)} Click a figure to open it "
         "alone at full size (click or Esc closes it).</p>"]
    for task, heading in (("classify", "Classification"), ("regress", "Regression")):
        header, body, auc_header, auc_body = _table(rows, task)
        if not header:
            continue
        sel = [r for r in rows if r["task"] == task]
        shared = shared_settings(sel)
        if task == "regress" and "target" in shared:
            heading += f" of {plots.target_label(shared['target'])}"
        shared_text = "; ".join(f"{k} = {v}" for k, v in shared.items() if k != "task")
        md += [f"## {heading}", "", f"Shared by every row: {shared_text}", ""]
        h += [f"<h2>{html.escape(heading)}</h2>",
              "<p class='settings'>Shared by every row: " + "; ".join(
                  f"{html.escape(k)} = <code>{html.escape(v)}</code>" for k, v in shared.items() if k != "task")
              + "</p>"]
        if task == "regress":
            note = "MAE, RMSE and bias in the target's units."
            md += [note, ""]
            h.append(f"<p class='note'>{note}</p>")
        md += _md_table(header, body)
        h.append(_html_table(header, body))
        if auc_header:
            note = ("ROC AUC per class (one vs rest) and per class pair (one vs one, Hand & Till; 0.5 = chance, "
                    "which one vs rest can hide):")
            md += [note, "", *_md_table(auc_header, auc_body)]
            h += [f"<p class='note'>{html.escape(note)}</p>", _html_table(auc_header, auc_body)]
        fig = comparison_figure(rows, task, fig_dir / f"comparison_{task}.png")
        if fig is not None:
            md += [f"![models compared ({task})](figures/{fig.name})", ""]
            h.append(f"<div class='wide'>{_img(fig, f'models compared ({task})')}</div>")
    studies = find_studies(paths)
    if studies:
        study_md, study_h = _study_section(studies, fig_dir)
        md += ["## Studies", "", *study_md]
        h += ["<h2>Studies</h2>", *study_h]
    md += ["## Runs", ""]
    h.append("<h2>Runs and their figures</h2>")
    for row in rows:
        heading = f"{row['model']} ({row['symmetry_group']})"
        if row.get("differs"):
            heading += f": {_differs_text(row)}"
        md += [f"### {heading}", ""]
        h.append(f"<h3>{html.escape(heading)}</h3>")
        for run in (r for r in runs if r["name"] in row["runs"]):
            s, m = run["summary"], run["metrics"]
            line = (f"{run['name']} ({run['path'].resolve()}): seed {run['config'].get('seed')}, "
                    f"{s.get('epochs_completed', '?')} epochs, {s.get('training_seconds', float('nan')) / 60:.1f} min "
                    f"in {s.get('sessions', 1)} session(s), status {s.get('status', '?')}")
            if not m:
                line += " - NOT EVALUATED (run `equilens evaluate` on it)"
            md += [f"#### {run['name']}", "", line, ""]
            h += [f"<h4>{html.escape(run['name'])}</h4>", f"<p class='note'>{html.escape(line)}</p>"]
            if m:
                imgs = []
                for name in m.get("figures", []):
                    src = run["path"] / EVAL_DIR / name
                    if not src.is_file():
                        continue
                    dest = fig_dir / f"{run['name']}_{name}"
                    shutil.copyfile(src, dest)
                    md.append(f"![{run['name']} {name}](figures/{dest.name})")
                    imgs.append(_img(src, f"{run['name']} {name}"))
                h.append("<div class='figs'>" + "".join(imgs) + "</div>")
                md.append("")
    h += ["<div id='zoom'><img alt=''></div>", f"<script>{_JS}</script>", "</body></html>"]
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    html_path = out / "report.html"
    html_path.write_text("\n".join(h) + "\n", encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(
        [{k: v for k, v in r.items() if k not in ("metric_cols", "values")} for r in rows], indent=2,
        default=str) + "\n", encoding="utf-8")
    log(f"report written to {html_path.resolve()} (markdown: {(out / 'report.md').resolve()})")
    return html_path
