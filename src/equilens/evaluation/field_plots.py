"""Figures of :mod:`equilens.evaluation.fields` (matplotlib, Agg backend): the animation of the feature
fields while the input rotates (GIF, Pillow writer), a PNG strip of a few of its frames, and the
co-rotating frame's relative change against the angle.

Every field panel shows one scalar field as a colour map and one vector field as arrows, on the part of
the feature grid that covers the image, with row 0 at the top (the frame in which the input turns
counter-clockwise). Colour scales and arrow lengths are shared by every frame and by both rows (lab and
co-rotating frame) of a network, so a change of colour or length is a change of the field.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from equilens.errors import ConfigError  # noqa: E402
from equilens.evaluation.fields import FieldsComparison, FieldSeries  # noqa: E402
from equilens.evaluation.plots import DPI, MIN_FONT, _zero_legend_entry, log_series, wrap_text  # noqa: E402

#: Most arrows drawn along each axis of a field panel (denser grids are subsampled).
MAX_ARROWS = 20


class _Scale:
    """Colour range and arrow scale of one network, shared by all its frames and both rows."""

    def __init__(self, series: FieldSeries) -> None:
        inside = series.mask > 0
        values = np.concatenate([series.scalar[:, inside].ravel(), series.scalar_back[:, inside].ravel()])
        self.vmin, self.vmax = float(values.min()), float(values.max())
        if self.vmax <= self.vmin:
            self.vmax = self.vmin + 1.0
        lengths = np.concatenate([np.hypot(*np.moveaxis(series.vector, 1, 0))[:, inside].ravel(),
                                  np.hypot(*np.moveaxis(series.vector_back, 1, 0))[:, inside].ravel()])
        self.vlen = float(np.percentile(lengths, 99)) if lengths.size and lengths.max() > 0 else 1.0
        n = series.scalar.shape[-1]
        self.step = max(1, int(np.ceil(n / MAX_ARROWS)))
        # the longest arrow about 1.3 arrow spacings
        self.quiver_scale = self.vlen / (1.3 * self.step)


def _arrows(series: FieldSeries, scale: _Scale) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column, row positions and the inside-disk selection of the drawn arrows (symmetric about the centre)."""
    n = series.scalar.shape[-1]
    centre = (n - 1) // 2
    first = centre % scale.step
    idx = np.arange(first, n, scale.step)
    cols, rows = np.meshgrid(idx, idx)
    inside = series.mask[rows, cols] > 0
    return cols, rows, inside


class _FieldPanel:
    """One panel: a scalar field (colour) with a vector field (arrows) over it, updated frame by frame."""

    def __init__(self, ax: Any, series: FieldSeries, scale: _Scale, back: bool) -> None:
        self.series, self.back, self.scale = series, back, scale
        self.cols, self.rows, self.inside = _arrows(series, scale)
        scalar, vector = self._frame(0)
        self.image = ax.imshow(scalar, cmap="viridis", vmin=scale.vmin, vmax=scale.vmax, origin="upper",
                               interpolation="nearest")
        u, v = self._uv(vector)
        self.quiver = ax.quiver(self.cols, self.rows, u, v, angles="uv", scale_units="xy", scale=scale.quiver_scale,
                                color="white", edgecolor="black", linewidth=0.4, width=0.012, pivot="middle")
        n = scalar.shape[-1]
        radius = (n - 1) / 2 * _mask_radius(series.mask)
        ax.add_patch(plt.Circle(((n - 1) / 2, (n - 1) / 2), radius, fill=False, color="white", lw=0.6, ls=":"))
        ax.set_xticks([])
        ax.set_yticks([])

    def _frame(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.series
        return (s.scalar_back[k], s.vector_back[k]) if self.back else (s.scalar[k], s.vector[k])

    def _uv(self, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = np.where(self.inside, vector[0][self.rows, self.cols], np.nan)
        v = np.where(self.inside, vector[1][self.rows, self.cols], np.nan)
        return u, v

    def update(self, k: int) -> None:
        scalar, vector = self._frame(k)
        self.image.set_data(scalar)
        self.quiver.set_UVC(*self._uv(vector))


def _mask_radius(mask: np.ndarray) -> float:
    """Radius of the comparison disk as a fraction of the (cropped) grid's inscribed radius."""
    n = mask.shape[-1]
    yy, xx = np.indices(mask.shape) - (n - 1) / 2
    r = np.hypot(yy, xx)[mask > 0]
    return float(r.max() / ((n - 1) / 2)) if r.size and n > 1 else 1.0


class _FieldFigure:
    """The animation's figure: input | equivariant network | conventional network; lab frame on top, the
    co-rotating frame (rotated back by the input's angle) below."""

    def __init__(self, comparison: FieldsComparison, width: float = 12.0) -> None:
        self.c = comparison
        eq, conv = comparison.equivariant, comparison.conventional
        fig, axes = plt.subplots(2, 3, figsize=(width, width * 0.72))
        fig.subplots_adjust(left=0.02, right=0.95, top=0.85, bottom=0.12, wspace=0.3, hspace=0.42)
        self.fig = fig
        from equilens.evaluation.equivariance import rotate_images

        self._rotate = rotate_images
        image = comparison.image
        lim = float(np.abs(image).max()) or 1.0
        vmin = float(image.min())
        self.input_lab = axes[0, 0].imshow(image, cmap="magma", vmin=vmin, vmax=lim, origin="upper")
        self.input_back = axes[1, 0].imshow(image, cmap="magma", vmin=vmin, vmax=lim, origin="upper")
        for ax in axes[:, 0]:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(self.input_lab, ax=axes[:, 0].tolist(), shrink=0.7, label="input (as fed to the networks)")
        self.panels = []
        for col, series in ((1, eq), (2, conv)):
            scale = _Scale(series)
            top = _FieldPanel(axes[0, col], series, scale, back=False)
            bottom = _FieldPanel(axes[1, col], series, scale, back=True)
            self.panels += [top, bottom]
            fig.colorbar(top.image, ax=axes[:, col].tolist(), shrink=0.7,
                         label=f"scalar field {series.field_index} (colour)")
        self.axes = axes
        self.titles = {(0, 1): f"{eq.name}\nlab frame", (1, 1): "co-rotating frame",
                       (0, 2): f"{conv.name}\nlab frame", (1, 2): "co-rotating frame"}
        self.note = fig.text(0.5, 0.01, wrap_text(
            f"Colour: a scalar field, arrows: a vector field (vector field {eq.vector_index} of {eq.description}; "
            f"vector field {conv.vector_index} of {conv.description}). Co-rotating frame: the response rotated "
            f"back by the input's angle. Change: relative change of all the layer's fields in the co-rotating "
            f"frame; floor: the same from resampling alone. Dotted circle: the image's disk, where it is "
            f"measured.", 150), ha="center", va="bottom", fontsize=MIN_FONT)
        self.update(0)

    def update(self, k: int) -> None:
        c = self.c
        angle = float(c.equivariant.angles[k])
        import torch

        image = torch.from_numpy(c.image)[None, None]
        lab = self._rotate(image, angle)
        self.input_lab.set_data(lab[0, 0].numpy())
        self.input_back.set_data(self._rotate(lab, -angle)[0, 0].numpy())
        self.axes[0, 0].set_title(f"input rotated by {angle:.0f} deg", fontsize=10)
        self.axes[1, 0].set_title("input rotated back", fontsize=10)
        for panel in self.panels:
            panel.update(k)
        for (row, col), text in self.titles.items():
            series = c.equivariant if col == 1 else c.conventional
            extra = ""
            if row == 1:
                extra = (f"\nchange: scalars {_fmt(series.scalar_change[k])}, vectors "
                         f"{_fmt(series.vector_change[k])}\n(floor {_fmt(series.scalar_floor[k])}, "
                         f"{_fmt(series.vector_floor[k])})")
            self.axes[row, col].set_title(text + extra, fontsize=9)
        self.fig.suptitle(f"Feature fields while the input rotates: {angle:.0f} degrees "
                          f"(image {c.settings['index']}, class {c.settings['class']})", fontsize=11)


def _short(series: FieldSeries, lines: bool = False) -> str:
    """The network's label, its state on a line of its own when ``lines``."""
    return series.name.replace(" (", "\n(") if lines else series.name


def _fmt(value: float) -> str:
    return "0" if value == 0 else f"{value:.2g}"


def write_field_animation(comparison: FieldsComparison, path: str | os.PathLike[str], fps: int = 6,
                          dpi: int = 80, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the animation (one frame per angle) as a GIF with matplotlib's Pillow writer."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    if not PillowWriter.isAvailable():
        raise ConfigError("writing the GIF needs Pillow (pip install pillow)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = _FieldFigure(comparison)
    n = len(comparison.equivariant.angles)

    def frame(k: int) -> list[Any]:
        figure.update(k)
        if progress is not None:
            progress(k + 1, n)
        return []

    def first() -> list[Any]:  # matplotlib draws an initial frame before the n frames: not counted as progress
        figure.update(0)
        return []

    animation = FuncAnimation(figure.fig, frame, frames=n, init_func=first, interval=1000 / fps, blit=False)
    animation.save(str(path), writer=PillowWriter(fps=fps), dpi=dpi)
    plt.close(figure.fig)
    return path


def strip_angles(angles: Sequence[float], count: int = 5) -> list[int]:
    """Indices of ``count`` frames to show in the strip: 0, the multiples of 90 up to 180 and off-grid angles
    between them when present (e.g. 0, 30, 45, 90, 180 degrees for a 10-degree or 15-degree step)."""
    wanted = (0.0, 30.0, 45.0, 90.0, 180.0, 135.0, 60.0, 270.0)
    picked: list[int] = []
    for target in wanted:
        k = int(np.argmin(np.abs(np.asarray(angles) - target)))
        if abs(angles[k] - target) < 1e-6 and k not in picked:
            picked.append(k)
        if len(picked) == count:
            break
    for k in range(len(angles)):  # coarse steps: fill up with whatever frames there are
        if len(picked) >= min(count, len(angles)):
            break
        if k not in picked:
            picked.append(k)
    return sorted(picked, key=lambda k: angles[k])


def plot_field_strip(comparison: FieldsComparison, path: str | os.PathLike[str],
                     frames: Sequence[int] | None = None) -> Path:
    """A PNG of a few frames: one column per angle; rows: the input, each network in the lab frame and in
    the co-rotating frame. Scales shared as in the animation."""
    from equilens.evaluation.equivariance import rotate_images

    eq, conv = comparison.equivariant, comparison.conventional
    picks = list(frames) if frames is not None else strip_angles(list(eq.angles))
    rows = [("input", None, False)] + [(f"{_short(series, True)}\n{frame}", series, back)
                                       for series in (eq, conv)
                                       for frame, back in (("lab frame", False), ("co-rotating frame", True))]
    fig, axes = plt.subplots(len(rows), len(picks), figsize=(1.9 * len(picks) + 1.6, 1.95 * len(rows) + 0.9),
                             squeeze=False)
    import torch

    image = torch.from_numpy(comparison.image)[None, None]
    scales = {id(eq): _Scale(eq), id(conv): _Scale(conv)}
    vmin, vmax = float(comparison.image.min()), float(np.abs(comparison.image).max()) or 1.0
    for j, k in enumerate(picks):
        angle = float(eq.angles[k])
        for i, (label, series, back) in enumerate(rows):
            ax = axes[i, j]
            if series is None:
                ax.imshow(rotate_images(image, angle)[0, 0].numpy(), cmap="magma", vmin=vmin, vmax=vmax)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"{angle:.0f} deg", fontsize=10)
            else:
                panel = _FieldPanel(ax, series, scales[id(series)], back)
                panel.update(k)
                if back:
                    change = f"{_fmt(series.scalar_change[k])} / {_fmt(series.vector_change[k])}"
                    ax.set_title(f"change {change}", fontsize=MIN_FONT)
            if j == 0:
                ax.set_ylabel(label, fontsize=MIN_FONT)
    fig.suptitle(wrap_text(
        f"Feature fields of image {comparison.settings['index']} ({comparison.settings['class']}) rotated "
        f"counter-clockwise; colour: a scalar field, arrows: a vector field; change: co-rotating frame's "
        f"relative change (scalars / vectors)", 110), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_field_change(comparison: FieldsComparison, path: str | os.PathLike[str]) -> Path:
    """Relative change of the co-rotating frame against the input's angle, scalar and vector fields in
    two panels, both networks with their interpolation floors (log axis; exact zeros on the bottom edge)."""
    eq, conv = comparison.equivariant, comparison.conventional
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.9), sharey=True)
    for ax, kind in zip(axes, ("scalar", "vector"), strict=True):
        zeros = False
        for series, color in ((eq, "tab:blue"), (conv, "tab:red")):
            change = getattr(series, f"{kind}_change")
            floor = getattr(series, f"{kind}_floor")
            zeros |= log_series(ax, series.angles, change, "o-", ms=4, color=color, label=f"{series.name}")
            zeros |= log_series(ax, series.angles, floor, "s--", ms=3, color=color, alpha=0.55,
                                label=f"{series.name.split(' ')[0]} floor: image and fields rotated forth and back")
        if zeros:
            _zero_legend_entry(ax)
        for k in range(0, 361, 90):
            ax.axvline(k, color="0.88", lw=0.8, zorder=0)
        ax.set_yscale("log")
        ax.set(xlabel="input rotation angle (degrees)", xticks=range(0, 361, 45), xlim=(-5, 365),
               title=f"{kind} fields: ||R$^{{-1}}$F(Rx) - F(x)|| / spread of F(x)")
    axes[0].set_ylabel("relative change in the co-rotating frame")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=MIN_FONT, loc="lower center", ncol=3)
    settings = comparison.settings
    fig.suptitle(wrap_text(
        f"Co-rotating frame, image {settings['index']} of {settings['data']}: {eq.name}, {eq.description}; "
        f"{conv.name}, {conv.description}", 130), fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
