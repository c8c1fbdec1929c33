"""A tiny synthetic equilens data set for training and evaluation tests (no simulator needed).

Three classes of rotation-invariant 24x24 images that differ visibly: ``no_sub`` a smooth central blob,
``cdm`` the blob plus a few compact bright spots, ``axion`` the blob plus a ring whose radius encodes the
recorded ``log10_m_a`` (NaN for the other classes), so regression has something to learn.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from equilens.data.store import DatasetWriter, plan_shards

CLASSES = ("no_sub", "cdm", "axion")


def _image(label: int, log_m: float, size: int, rng: np.random.Generator) -> np.ndarray:
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - c, xx - c)
    img = 2.0 * np.exp(-0.5 * (r / (size / 8)) ** 2)
    if label == 1:
        for _ in range(3):
            ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(size / 6, size / 3)
            py, px = c + rad * np.sin(ang), c + rad * np.cos(ang)
            img += 3.0 * np.exp(-0.5 * ((yy - py) ** 2 + (xx - px) ** 2) / 0.8**2)
    elif label == 2:
        radius = size / 6 + (log_m + 24.0) * size / 8  # log10_m_a in [-24, -22] -> radius size/6 .. 5 size/12
        img += 1.5 * np.exp(-0.5 * ((r - radius) / 0.9) ** 2)
    return (img + rng.normal(0.0, 0.05, img.shape)).astype(np.float32)


def make_toy_dataset(path: str | Path, n_per_class: int = 20, size: int = 24, seed: int = 0,
                     classes: tuple[str, ...] = CLASSES, counts: tuple[int, ...] | None = None,
                     shard_size: int = 25, nan_image: int | None = None, bad_value: float = float("nan"),
                     hide_nonfinite: bool = False) -> Path:
    """Write the toy data set to ``path`` and return it. ``counts`` overrides images per class;
    ``nan_image`` puts one ``bad_value`` pixel (NaN by default) into that image (bad-input tests);
    ``hide_nonfinite`` then erases the manifest's record of it, so that the NaN reaches training (tests of
    the NaN-loss guard, the last line of defence)."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    counts = counts or tuple(n_per_class for _ in classes)
    labels = np.concatenate([np.full(n, k, dtype=np.int64) for k, n in enumerate(counts)])
    n = labels.size
    log_m = np.where(labels == 2, rng.uniform(-24.0, -22.0, n), np.nan)
    other = rng.normal(size=n)
    images = np.stack([_image(int(lab), float(m), size, rng) for lab, m in zip(labels, log_m, strict=True)])
    if nan_image is not None:
        images[nan_image, size // 2, size // 2] = bad_value
    spec = {"class_names": list(classes), "image_shape": [1, size, size], "seed": seed, "n_images": n,
            "parameter_columns": ["log10_m_a", "other"], "config": {"toy": True}}
    with DatasetWriter(path, spec, plan_shards(n, shard_size)) as writer:
        for k, (a, b) in enumerate(writer.shard_ranges):
            records = [json.dumps({"label": int(labels[i])}) for i in range(a, b)]
            writer.write(k, images[a:b], labels[a:b], np.arange(a, b),
                         {"log10_m_a": log_m[a:b], "other": other[a:b]}, records)
    if hide_nonfinite:
        manifest = json.loads((path / "manifest.json").read_text())
        for shard in manifest["shards"]:
            shard["nonfinite"] = []
        (path / "manifest.json").write_text(json.dumps(manifest))
    return path
