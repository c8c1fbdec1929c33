"""Rotate a drawn parameter record about the image centre: lens images rendered *at* any angle.

A pixel image can be rotated exactly only by multiples of 90 degrees; at any other angle it has to be
resampled, and resampling a noisy image changes it (it smooths the noise), which a model may react to more
than to the rotation itself. A simulated image, however, is a function of its record
(:func:`equilens.simulation.populations.draw_parameters`), and every orientation-dependent quantity of the
record can be turned instead: rendering the turned record (:func:`equilens.simulation.render.render_noiseless`)
then gives the scene rotated in the continuum and sampled on the same pixel grid, with no interpolation.

The renderer's grid is centred on the origin (x along columns, y along rows, both increasing with the array
index), so the image centre is the point (0, 0) arcsec. A rotation by ``angle_deg`` here has the sense of
:func:`equilens.evaluation.equivariance.rotate_images` and ``np.rot90(image)`` (counter-clockwise as
displayed with row 0 at the top); in the renderer's (x, y) coordinates that is a rotation of the scene by
-``angle_deg``. What turns, and how (the angle t = -``angle_deg`` in radians):

- positions (lens centre, source centre, every subhalo's x, y): (x, y) -> (x cos t - y sin t,
  x sin t + y cos t);
- spin-2 quantities (lens e1, e2; source e1, e2; shear gamma1, gamma2): rotated by 2t, since
  e1 + i e2 = |e| exp(2 i phi);
- position angles (lens, source, shear; defined modulo pi): + t, kept in [0, pi);
- the axion vortex angle (a line through the origin, recorded in [0, 2 pi)): + t, kept in [0, 2 pi);
- everything else is invariant: masses, radii, profile parameters, the mass sheet (annuli about the origin),
  the subhalo window (a disk or annulus about the origin), exposure time, noise seed, class.

At multiples of 90 degrees the cosines and sines are taken exactly (0, +-1), so the rendered turned record
equals ``np.rot90`` of the original to float rounding (tested for every class of every preset).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

__all__ = ["rotate_record", "rotation_cos_sin"]


def rotation_cos_sin(angle_deg: float) -> tuple[float, float]:
    """(cos, sin) of ``angle_deg`` degrees, exact (0, +-1) at multiples of 90 degrees."""
    quarter = angle_deg / 90.0
    if abs(quarter - round(quarter)) < 1e-12:
        return [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)][int(round(quarter)) % 4]
    t = math.radians(angle_deg)
    return math.cos(t), math.sin(t)


def _turn(x: float, y: float, c: float, s: float) -> tuple[float, float]:
    return c * x - s * y, s * x + c * y


def _wrap(angle: float, period: float) -> float:
    """``angle`` reduced to [0, period)."""
    out = math.fmod(angle, period)
    if out < 0:
        out += period
    return 0.0 if out >= period else out


def rotate_record(record: dict[str, Any], angle_deg: float) -> dict[str, Any]:
    """The record of the same scene rotated by ``angle_deg`` about the image centre (a new record).

    Rendering the result equals rotating the rendered image of ``record`` by ``angle_deg`` in the sense of
    :func:`equilens.evaluation.equivariance.rotate_images` (counter-clockwise as displayed, row 0 at the top;
    ``np.rot90`` at 90 degrees), up to the pixel grid: the rotated scene is sampled (and, with a
    pixel-integrated or sampled PSF, convolved) on the same unrotated grid. See the module docstring for
    which fields turn.

    Args:
        record: from :func:`equilens.simulation.populations.draw_parameters` (or a data set's stored
            ``records``); not modified.
        angle_deg: rotation angle in degrees (any real number).

    Returns:
        a deep copy of ``record`` with positions, ellipticities, shear and angles rotated.
    """
    c, s = rotation_cos_sin(-angle_deg)  # the display sense (y along rows) is -angle in (x, y)
    c2, s2 = c * c - s * s, 2.0 * s * c  # exact at multiples of 90 degrees as well
    t = math.atan2(s, c)
    out = copy.deepcopy(record)

    def spin2(d: dict[str, Any], k1: str, k2: str) -> None:
        a, b = float(d[k1]), float(d[k2])
        d[k1], d[k2] = c2 * a - s2 * b, s2 * a + c2 * b

    lens = out["lens"]
    lens["center_x"], lens["center_y"] = _turn(float(lens["center_x"]), float(lens["center_y"]), c, s)
    spin2(lens, "e1", "e2")
    if lens.get("position_angle") is not None:
        lens["position_angle"] = _wrap(float(lens["position_angle"]) + t, math.pi)
    shear = out["shear"]
    spin2(shear, "gamma1", "gamma2")
    if shear.get("angle") is not None:
        shear["angle"] = _wrap(float(shear["angle"]) + t, math.pi)
    src = out["source"]
    src["center_x"], src["center_y"] = _turn(float(src["center_x"]), float(src["center_y"]), c, s)
    spin2(src, "e1", "e2")
    if src.get("position_angle") is not None:
        src["position_angle"] = _wrap(float(src["position_angle"]) + t, math.pi)
    sub = out["subhalos"]
    if len(sub["x"]):
        x = np.asarray(sub["x"], dtype=float)
        y = np.asarray(sub["y"], dtype=float)
        sub["x"] = (c * x - s * y).tolist()
        sub["y"] = (s * x + c * y).tolist()
    ax = out.get("axion")
    if ax is not None:
        ax["vortex_angle"] = _wrap(float(ax["vortex_angle"]) + t, 2.0 * math.pi)
    return out
