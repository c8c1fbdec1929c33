"""``equilens show``: a grid of example images per class, with key parameters and substructure marks.

Rows are classes, columns the first ``per_class`` images of each class in data-set order (so the
figure of a data set never changes). Every panel has its own colour bar labelled with the data set's
flux unit (``flux_unit`` of its simulator config: counts for Model I, e-/s for Models II/III; imported
sets record none and say so), an angular scale bar (from ``pixel_scale``) and a title with the class
and the parameters that tell the classes apart: number of subhalos, log10 of the axion mass, source
position. Substructure marks are thin and translucent so that the image stays visible beneath them.

Pixel convention for the substructure marks: the renderer (``equilens.simulation.render``) uses
lenstronomy's ``make_grid(numPix, deltapix)`` frame, in which pixel ``(row, col)`` has its centre at
``x = (col - (n - 1) / 2) * pixel_scale``, ``y = (row - (n - 1) / 2) * pixel_scale`` arcsec, and the
image array's row index follows ``y``. The panels are drawn with ``origin="lower"`` so +y is up.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from equilens.data.store import LensDataset
from equilens.errors import DataError


def arcsec_to_pixel(x: np.ndarray | float, y: np.ndarray | float, image_size: int,
                    pixel_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Lens-plane angles (arcsec, origin at the image centre) -> (col, row) pixel coordinates.

    Inverse of the lenstronomy ``make_grid`` convention above: ``col = x / pixel_scale + (n - 1) / 2``.
    """
    centre = (image_size - 1) / 2.0
    return (np.asarray(x, dtype=float) / pixel_scale + centre, np.asarray(y, dtype=float) / pixel_scale + centre)


def scale_bar_length(field_arcsec: float) -> float:
    """A round scale-bar length (arcsec) of about a quarter of the field of view ``field_arcsec``."""
    for length in (5.0, 2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01):
        if length <= field_arcsec / 4:
            return length
    return field_arcsec / 4


def _draw_scale_bar(axis: Any, image_size: int, pixel_scale: float) -> None:
    length = scale_bar_length(image_size * pixel_scale)
    n_px = length / pixel_scale
    x0, y0 = 0.06 * image_size, 0.07 * image_size
    axis.plot([x0, x0 + n_px], [y0, y0], color="white", linewidth=2, solid_capstyle="butt")
    axis.text(x0 + n_px / 2, y0 + 0.03 * image_size, f'{length:g}"', color="white", ha="center", va="bottom",
              fontsize=8)


def _marks(record: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Any]:
    """(subhalo x, y, mass) in arcsec/Msun, vortex point x, y, and the axion record (or None)."""
    sub = record.get("subhalos") or {"x": [], "y": [], "mass": []}
    sx = np.asarray(sub.get("x", []), dtype=float)
    sy = np.asarray(sub.get("y", []), dtype=float)
    sm = np.asarray(sub.get("mass", []), dtype=float)
    ax = record.get("axion")
    vx = vy = np.zeros(0)
    if ax and "vortex_half_length" in ax and "vortex_angle" in ax:
        n = int(ax.get("vortex_n_points", 2))
        s = np.linspace(-ax["vortex_half_length"], ax["vortex_half_length"], n)
        vx, vy = s * math.cos(ax["vortex_angle"]), s * math.sin(ax["vortex_angle"])
    return sx, sy, sm, np.stack([vx, vy]), ax


def panel_title(class_name: str, record: Mapping[str, Any]) -> str:
    """Class and key parameters of one image (the lines of a panel title)."""
    lines = [class_name]
    sub = record.get("subhalos")
    ax = record.get("axion")
    if ax and ax.get("log10_m_a") is not None:
        text = f"log10 m_a={ax['log10_m_a']:.2f}"
        if ax.get("vortex_half_length") is not None:
            text += f"  L={ax['vortex_half_length']:.2f}\""
        lines.append(text)
    elif sub is not None:
        lines.append(f"n_sub={len(sub.get('mass', []))}")
    src = record.get("source")
    if src and src.get("center_x") is not None:
        lines.append(f"src=({src['center_x']:+.2f}\", {src['center_y']:+.2f}\")")
    return "\n".join(lines)


def preview_grid(dataset: str | os.PathLike[str] | LensDataset, out: str | os.PathLike[str], *, per_class: int = 4,
                 mark_substructure: bool = False, dpi: int = 110) -> Path:
    """Write a PNG grid: one row per class, ``per_class`` examples each.

    Args:
        dataset: a data set directory or an open :class:`LensDataset`.
        out: output image path (format from its suffix, e.g. ``.png``).
        per_class: examples per class (>= 1); fewer when a class has fewer images.
        mark_substructure: overlay CDM subhalo positions (circles, size growing with log mass) and the
            axion vortex line (needs the records of a simulated set; imported sets have none).

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if per_class < 1:
        raise DataError(f"--per-class must be at least 1, got {per_class}")
    ds = dataset if isinstance(dataset, LensDataset) else LensDataset(dataset)
    config = ds.manifest.get("config") or {}
    image_size = int(ds.image_shape[-1])
    pixel_scale = float(config.get("pixel_scale") or 0.0)
    if mark_substructure and not pixel_scale:
        raise DataError(f"{ds.path} has no simulator config (imported?): substructure positions are unknown, "
                        f"drop --mark-substructure")
    unit = str(config.get("flux_unit") or "pixel value (unit not recorded)")
    rows = [(k, name, np.nonzero(ds.labels == k)[0][:per_class]) for k, name in enumerate(ds.class_names)]
    rows = [r for r in rows if r[2].size]
    ncols = max(r[2].size for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(3.1 * ncols, 3.0 * len(rows)), squeeze=False)
    for r, (_, name, positions) in enumerate(rows):
        images = ds.get_images(positions)
        for c in range(ncols):
            axis = axes[r, c]
            if c >= positions.size:
                axis.axis("off")
                continue
            record = ds.record(int(positions[c]))
            im = axis.imshow(images[c, 0], origin="lower", cmap="magma", interpolation="nearest")
            bar = fig.colorbar(im, ax=axis, fraction=0.046, pad=0.03)
            bar.set_label(unit, fontsize=8)
            bar.ax.tick_params(labelsize=7)
            axis.set_title(panel_title(name, record), fontsize=8)
            axis.set_xticks([])
            axis.set_yticks([])
            if pixel_scale:
                _draw_scale_bar(axis, image_size, pixel_scale)
            if mark_substructure:
                sx, sy, sm, vortex, _ = _marks(record)
                if sx.size:
                    px, py = arcsec_to_pixel(sx, sy, image_size, pixel_scale)
                    sizes = 6 + 10 * (np.log10(sm) - 6) if sm.size else 20
                    axis.scatter(px, py, s=sizes, facecolors="none", edgecolors="cyan", linewidths=0.7, alpha=0.8)
                if vortex.shape[1]:  # thin, dashed and translucent: the arcs beneath stay visible
                    px, py = arcsec_to_pixel(vortex[0], vortex[1], image_size, pixel_scale)
                    axis.plot(px, py, color="lime", linewidth=0.6, linestyle=(0, (3, 3)), alpha=0.7)
                    axis.plot(px[[0, -1]], py[[0, -1]], "|", color="lime", markersize=5, alpha=0.9)
                axis.set_xlim(-0.5, image_size - 0.5)
                axis.set_ylim(-0.5, image_size - 0.5)
    scale = (f"{pixel_scale:g}\"/px, field {image_size * pixel_scale:.2f}\"" if pixel_scale
             else "pixel scale not recorded (no angular scale)")
    marks = ("; cyan circles: CDM subhalos (larger = heavier), dashed green: axion vortex"
             if mark_substructure else "")
    fig.suptitle(f"{ds.path.name}: {len(ds)} images, {', '.join(ds.class_names)}; {image_size} px, {scale}; "
                 f"colour: {unit}{marks}", fontsize=9, wrap=True)
    fig.tight_layout()
    out = Path(out)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
