"""The evaluation figures say what they show: units, labelled error bars, exact zeros, titles that fit."""

import json
import math

import numpy as np
import pytest

from equilens.evaluation import plots


@pytest.fixture
def keep_figures(monkeypatch):
    """Keep the figures the plot functions would close, and return a function giving the last one."""
    import matplotlib.pyplot as plt

    real_close = plt.close  # plots.plt is matplotlib.pyplot itself
    kept = []
    monkeypatch.setattr(plt, "close", lambda fig: kept.append(fig))
    yield lambda: kept[-1]
    for fig in kept:
        real_close(fig)


# the symmetry of a steerable_d4-like model at a 45-degree step: exact zeros at 0 and 360 degrees, the
# floor and image change exactly 0 at the grid angles (rot90 is a permutation), so every positive point
# of those two series lies between zeros
ANGLES = np.arange(0.0, 361.0, 45.0)
MODEL = np.array([0, 0.26, 2.4e-6, 0.26, 2.1e-6, 0.26, 2.3e-6, 0.26, 0])
FLOOR = np.array([0, 0.33, 0, 0.33, 0, 0.33, 0, 0.33, 0])
IMAGE = np.array([0, 0.018, 0, 0.018, 0, 0.018, 0, 0.018, 0])


def _line(ax, label_start):
    return next(line for line in ax.lines if str(line.get_label()).startswith(label_start))


def test_rotation_curve_draws_isolated_points_and_no_fake_values_for_exact_zeros(keep_figures, tmp_path):
    plots.plot_rotation_curve(ANGLES, MODEL, FLOOR, IMAGE, tmp_path / "c.png", title="t")
    ax = keep_figures().axes[0]
    for start, values in (("model", MODEL), ("floor", FLOOR), ("image", IMAGE)):
        line = _line(ax, start)
        assert line.get_marker() not in (None, "None", "", " ")  # points between zeros are drawn
        y = np.asarray(line.get_ydata(), dtype=float)
        np.testing.assert_array_equal(y[values > 0], values[values > 0])
        assert np.isnan(y[values == 0]).all()  # not drawn at some small stand-in value like 1e-9
    # every drawn data value is a measured one (zeros are markers in axes coordinates, y = 0 there)
    measured = set(np.concatenate([MODEL, FLOOR, IMAGE]).tolist())
    for line in ax.lines:
        if line.get_transform() == ax.transData:
            ys = np.asarray(line.get_ydata(), dtype=float)
            assert set(ys[np.isfinite(ys)].tolist()) <= measured
    assert any("exactly 0" in str(line.get_label()) for line in ax.lines)


def test_long_check_equivariance_title_is_wrapped_inside_the_figure(keep_figures, tmp_path):
    title = ("steerable_d4 (D4), trained (/a/rather/long/path/to/some/run/directory/of/the/user/checkpoints/"
             "best.ckpt), 8 images of 65 px")
    plots.plot_rotation_curve(ANGLES, MODEL, FLOOR, None, tmp_path / "c.png", title=title)
    fig = keep_figures()
    fig.canvas.draw()
    box = fig.axes[0].title.get_window_extent()
    width, height = fig.canvas.get_width_height()
    assert box.x0 >= 0 and box.x1 <= width and box.y1 <= height
    assert "\n" in fig.axes[0].get_title()


def test_symmetry_figure_shows_the_headline_beside_the_masked_curve(keep_figures, tmp_path):
    table = {"metric": "accuracy", "n_grid": 135, "n_continuous": 60,
             "grid": [{"name": "identity", "angle": 0.0, "rel_change": 0.0, "metric": 0.593},
                      {"name": "rot90", "angle": 90.0, "rel_change": 0.0, "metric": 0.593}],
             "continuous": [{"angle": float(a), "rel_change": float(m), "floor": float(f), "image_floor": float(i),
                             "metric": 0.55} for a, m, f, i in zip(ANGLES, MODEL, FLOOR, IMAGE, strict=True)]}
    plots.plot_symmetry(table, tmp_path / "s.png", "accuracy", title="d4 seed 0")
    left, right = keep_figures().axes[:2]
    assert _line(left, "images").get_marker() not in (None, "None", "")  # the image floor is visible
    headline = _line(right, "headline")
    assert set(headline.get_ydata()) == {0.593} and "masking" in headline.get_label()
    # the exact rot90 change of 0 is on the bottom edge, not a measured point
    rot = _line(left, "exact grid rotation")
    assert np.isnan(np.asarray(rot.get_ydata(), dtype=float)).all()


def test_regression_roc_and_confusion_labels(keep_figures, tmp_path):
    assert plots.target_label("log10_m_a") == "log10(m_a / eV)"
    assert plots.target_label("unknown_column") == "unknown_column"
    rng = np.random.default_rng(0)
    truth = rng.uniform(-24, -22, 30)
    plots.plot_pred_vs_true(truth + 0.1, truth, np.full(30, 0.2), "log10_m_a", tmp_path / "p.png", title="r")
    ax = keep_figures().axes[0]
    assert ax.get_xlabel() == "true log10(m_a / eV)" and ax.get_ylabel() == "predicted log10(m_a / eV)"
    assert any("1 sigma" in t.get_text() for t in ax.get_legend().get_texts())
    probs = rng.dirichlet(np.ones(3), 30)
    labels = rng.integers(0, 3, 30)
    plots.plot_roc(probs, labels, ["a", "b", "c"], {"a": 0.5, "b": 0.6, "c": 0.7}, tmp_path / "r.png",
                   title="ROC, m seed 0")
    ax = keep_figures().axes[0]
    assert "one vs rest" in ax.get_title()
    assert all("vs rest" in t.get_text() for t in ax.get_legend().get_texts()[:3])


def test_comparison_figure_has_error_bars_over_seeds_and_a_legend_saying_so(keep_figures, tmp_path):
    groups = [("resnet18", {"accuracy": [0.5, 0.6, 0.7], "worst": [0.7, 0.8], "floor": [0.5, 0.5]}),
              ("steerable_d4", {"accuracy": [0.8], "worst": [0.6], "floor": [0.55]})]
    plots.plot_comparison(groups, [("accuracy", "test accuracy", False), ("worst", "largest change", True)],
                          tmp_path / "c.png", references={"worst": ("floor", "interpolation floor")})
    fig = keep_figures()
    acc = fig.axes[0]
    bars = [c for c in acc.containers if hasattr(c, "has_yerr")]
    assert bars[0].has_yerr and not bars[1].has_yerr  # no error bar for a single run
    (segments,) = bars[0][2]
    low, high = segments.get_segments()[0][:, 1]
    assert high - low == pytest.approx(2 * np.std([0.5, 0.6, 0.7], ddof=1))
    legend = " | ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "sample std over seeds" in legend and "interpolation floor" in legend
    assert [t.get_text() for t in acc.get_xticklabels()] == ["resnet18\n(n=3)", "steerable_d4\n(n=1)"]


def _tiny_dataset(path, config):
    from equilens.data.store import DatasetWriter, plan_shards

    size, n = 16, 2
    spec = {"class_names": ["no_sub", "axion"], "image_shape": [1, size, size], "seed": 0, "n_images": n,
            "parameter_columns": ["log10_m_a"], "config": config}
    images = np.random.default_rng(0).random((n, 1, size, size)).astype(np.float32)
    records = [{"label": 0, "subhalos": {"x": [], "y": [], "mass": []}},
               {"label": 1, "axion": {"log10_m_a": -23.0, "vortex_half_length": 0.3, "vortex_angle": 0.5}}]
    with DatasetWriter(path, spec, plan_shards(n, 10)) as writer:
        writer.write(0, images, np.arange(n), np.arange(n), {"log10_m_a": np.array([math.nan, -23.0])},
                     [json.dumps(r) for r in records])
    return path


def test_preview_colour_bars_carry_the_unit_and_panels_an_angular_scale(keep_figures, tmp_path):
    from equilens.evaluation.preview import preview_grid, scale_bar_length

    data = _tiny_dataset(tmp_path / "sim", {"flux_unit": "e-/s", "pixel_scale": 0.1})
    preview_grid(data, tmp_path / "p.png", per_class=1, mark_substructure=True)
    fig = keep_figures()
    colour_bars = [ax for ax in fig.axes if ax.get_ylabel()]
    assert [ax.get_ylabel() for ax in colour_bars] == ["e-/s", "e-/s"]
    image_axes = [ax for ax in fig.axes if ax.images]
    assert all(any(t.get_text() == '0.2"' for t in ax.texts) for ax in image_axes)  # 16 px x 0.1" = 1.6"
    assert scale_bar_length(6.46) == 1.0 and scale_bar_length(1.6) == 0.2
    vortex = [line for line in image_axes[1].lines if line.get_linestyle() != "None" and line.get_color() == "lime"]
    assert vortex and all(line.get_alpha() < 1 and line.get_linewidth() < 1 for line in vortex)

    imported = _tiny_dataset(tmp_path / "imported", {})
    preview_grid(imported, tmp_path / "q.png", per_class=1)
    fig = keep_figures()
    assert {ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()} == {"pixel value (unit not recorded)"}
    assert "pixel scale not recorded" in fig._suptitle.get_text()
