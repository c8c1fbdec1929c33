"""``equilens show``: a grid of example images per class, with key parameters and substructure marks.

Rows are classes, columns the first ``per_class`` images of each class in data-set order (so the
figure of a data set never changes). Every panel has its own colour bar (units of the data set:
counts for Model I, e-/s for Models II/III) and a title with the class and the parameters that tell
the classes apart: number of subhalos, log10 of the axion mass, source position.

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
            fig.colorbar(im, ax=axis, fraction=0.046, pad=0.03)
            axis.set_title(panel_title(name, record), fontsize=8)
            axis.set_xticks([])
            axis.set_yticks([])
            if mark_substructure:
                sx, sy, sm, vortex, _ = _marks(record)
                if sx.size:
                    px, py = arcsec_to_pixel(sx, sy, image_size, pixel_scale)
                    sizes = 6 + 10 * (np.log10(sm) - 6) if sm.size else 20
                    axis.scatter(px, py, s=sizes, facecolors="none", edgecolors="cyan", linewidths=0.8)
                if vortex.shape[1]:
                    px, py = arcsec_to_pixel(vortex[0], vortex[1], image_size, pixel_scale)
                    axis.plot(px, py, color="lime", linewidth=0.8)
                    axis.scatter(px, py, s=2, color="lime")
                axis.set_xlim(-0.5, image_size - 0.5)
                axis.set_ylim(-0.5, image_size - 0.5)
    fig.suptitle(f"{ds.path.name}: {len(ds)} images, {', '.join(ds.class_names)}", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
