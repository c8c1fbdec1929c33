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


# --- the HTML page in a real headless browser -------------------------------------------------------

#: Browser executables tried, in order (Debian's package is ``chromium``; .ci/run installs it).
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1400, 1000)

#: Injected before </body> of a copy of the page: measures the layout once everything has loaded and
#: writes the result (JSON) into the DOM, which --dump-dom prints.
_PROBE = """<script>
window.addEventListener('load', function () {
  var de = document.documentElement, vw = de.clientWidth, bad = [], cut = [], small = [];
  document.querySelectorAll('body *').forEach(function (el) {
    var r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > vw + 0.5 && getComputedStyle(el).position !== 'fixed') {
      bad.push(el.tagName + ':' + (el.textContent || el.alt || '').slice(0, 40));
    }
  });
  document.querySelectorAll('td,th').forEach(function (el) {
    if (el.scrollWidth > el.clientWidth + 1) { cut.push(el.textContent.slice(0, 40)); }
  });
  var figs = document.querySelectorAll('body img:not(#zoom img)');
  figs.forEach(function (img) {
    var room = img.parentElement.clientWidth;
    if (img.clientWidth + 1 < Math.min(img.naturalWidth, room)) {
      small.push(img.alt + ' ' + img.clientWidth + ' of ' + img.naturalWidth);
    }
  });
  var big = null;
  var wide = Array.prototype.slice.call(figs).sort(function (a, b) { return b.naturalWidth - a.naturalWidth; })[0];
  if (wide) {
    wide.click();
    var z = document.getElementById('zoom'), zi = z && z.querySelector('img');
    big = zi ? {shown: getComputedStyle(z).display, width: zi.getBoundingClientRect().width,
                natural: wide.naturalWidth} : {shown: 'no zoom element'};
  }
  var out = document.createElement('pre');
  out.id = 'layout-check';
  out.textContent = JSON.stringify({scrollWidth: de.scrollWidth, viewport: vw, overflowing: bad, cut: cut,
                                    shrunk: small, figures: figs.length, zoom: big});
  document.body.appendChild(out);
});
</script>"""


def _browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def _run_browser(browser: str, *args: str) -> str:
    import subprocess

    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           f"--window-size={WINDOW[0]},{WINDOW[1]}", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_report_page_fits_a_1400px_window_in_a_real_browser(request, tmp_path):
    """Render report.html in headless Chromium at 1400 x 1000: a screenshot, nothing wider than the window
    (no horizontal scrolling, no cut table cell), every figure at its own pixel size (or the full
    content width) and a click opens a figure alone at full size."""
    import html as html_lib
    import re

    browser = _browser()
    if browser is None:
        pytest.skip("SKIPPED: no headless Chromium on this machine (looked for " + ", ".join(BROWSERS) + "); "
                    "the report page was not checked in a browser. .ci/run installs Debian's chromium.")
    varied_runs, reg_run = request.getfixturevalue("varied_runs"), request.getfixturevalue("reg_run")
    varied_runs, reg_run = request.getfixturevalue("varied_runs"), request.getfixturevalue("reg_run")
    _evaluated(reg_run)
    out = tmp_path / "report"
    page = build_report([*varied_runs, reg_run], out, log=lambda s: None)

    shot = tmp_path / "report_1400.png"
    _run_browser(browser, "--hide-scrollbars", f"--screenshot={shot}", page.resolve().as_uri())
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")) == WINDOW
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert float(pixels[..., :3].std()) > 0.05  # the page rendered (not a blank screenshot)

    probe = out / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    dom = _run_browser(browser, "--virtual-time-budget=20000", "--dump-dom", probe.resolve().as_uri())
    found = re.search(r'<pre id="layout-check">(.*?)</pre>', dom, re.S)
    assert found, "the layout probe did not run"
    layout = json.loads(html_lib.unescape(found.group(1)))
    assert layout["viewport"] <= WINDOW[0]
    assert layout["scrollWidth"] <= layout["viewport"], layout
    assert layout["overflowing"] == [], layout["overflowing"]
    assert layout["cut"] == [], layout["cut"]
    assert layout["figures"] >= 10 and layout["shrunk"] == [], layout["shrunk"]
    zoom = layout["zoom"]
    assert zoom["shown"] == "block" and zoom["width"] == pytest.approx(zoom["natural"], abs=1)
