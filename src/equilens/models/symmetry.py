"""Symmetry names and the exact pixel-grid transforms they imply.

A model's symmetry is named once, as a string in the registry: ``"none"``, ``"C{N}"`` (rotations by
multiples of 360/N degrees), ``"D{N}"`` (those plus N reflections), ``"SO(2)"``, ``"O(2)"``, or a
free-form description for models whose invariance is only approximate. On a square pixel grid only
eight transforms are exact (the dihedral group D4 of the grid): the model's group predicts which of
them must leave the output unchanged up to float rounding. Reflections follow escnn's convention:
the group's first reflection (axis 0) is the left-right flip ``torch.flip(x, [-1])``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GridTransform:
    """One exact transform of the square pixel grid: call it on a (..., H, W) tensor.

    ``angle``: the rotation it is, in degrees counter-clockwise in the frame of ``torch.rot90(x, 1, (-2, -1))``
    (0 for the identity); NaN for a reflection, which is no rotation.
    """

    fn: Callable[[torch.Tensor], torch.Tensor]
    angle: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


_NAN = math.nan

#: The identity of the grid (not in :data:`GRID_TRANSFORMS`: every model is invariant to it).
GRID_IDENTITY = GridTransform(lambda x: x, 0.0)

#: The seven non-trivial exact transforms of the square pixel grid, acting on (..., H, W) tensors, with the
#: rotation angle of each (NaN for the four reflections). The one table of them in equilens.
GRID_TRANSFORMS: dict[str, GridTransform] = {
    "rot90": GridTransform(lambda x: torch.rot90(x, 1, (-2, -1)), 90.0),
    "rot180": GridTransform(lambda x: torch.rot90(x, 2, (-2, -1)), 180.0),
    "rot270": GridTransform(lambda x: torch.rot90(x, 3, (-2, -1)), 270.0),
    "flip_lr": GridTransform(lambda x: torch.flip(x, (-1,)), _NAN),
    "flip_ud": GridTransform(lambda x: torch.flip(x, (-2,)), _NAN),
    "transpose": GridTransform(lambda x: x.transpose(-2, -1), _NAN),
    "antitranspose": GridTransform(lambda x: torch.rot90(x, 2, (-2, -1)).transpose(-2, -1), _NAN),
}

_FINITE = re.compile(r"([CD])(\d+)")


def _rotations(order: int) -> list[str]:
    """Grid rotations contained in the cyclic group of ``order`` elements (rotations by 360/order)."""
    names = []
    if order % 4 == 0:
        names += ["rot90", "rot270"]
    if order % 2 == 0:
        names.append("rot180")
    return names


def exact_grid_symmetries(symmetry: str) -> tuple[str, ...]:
    """Names (keys of :data:`GRID_TRANSFORMS`) of the grid transforms the output must be invariant to.

    ``"C4"`` -> rotations by 90, 180, 270 degrees; ``"D1"`` -> the left-right flip; ``"D4"``, ``"D8"``,
    ``"O(2)"`` -> all seven; ``"none"`` or any description this function does not parse -> ().
    A chain such as ``"D8->D4->D1"`` (a network whose group is restricted layer by layer) is read by
    its last group, the one the output is invariant to.
    """
    symmetry = symmetry.split("->")[-1].strip()
    if symmetry in ("SO(2)", "O(2)"):
        names = _rotations(4)
        if symmetry == "O(2)":
            names += ["flip_lr", "flip_ud", "transpose", "antitranspose"]
        return tuple(sorted(names))
    match = _FINITE.fullmatch(symmetry)
    if not match:
        return ()
    kind, n = match.group(1), int(match.group(2))
    names = _rotations(n)
    if kind == "D":
        # reflection axes at k * 180/N degrees from the first (left-right flip) axis
        names.append("flip_lr")
        if n % 2 == 0:
            names.append("flip_ud")
        if n % 4 == 0:
            names += ["transpose", "antitranspose"]
    return tuple(sorted(names))


def continuous_test_angles(symmetry: str) -> tuple[float, ...]:
    """Rotation angles (degrees, within 15-45) in the model's group that the pixel grid cannot represent.

    At these angles the network is equivariant in the continuum and only the grid breaks invariance:
    multiples of 360/N for C_N / D_N, and 15, 30, 45 degrees for SO(2) / O(2). () when there are none.
    Chains ``"A->B"`` are read by their last group.
    """
    symmetry = symmetry.split("->")[-1].strip()
    if symmetry in ("SO(2)", "O(2)"):
        return (15.0, 30.0, 45.0)
    match = _FINITE.fullmatch(symmetry)
    if not match:
        return ()
    step = 360.0 / int(match.group(2))
    angles = []
    k = 1
    while k * step <= 45.0 + 1e-9:
        if k * step >= 15.0 - 1e-9 and (k * step) % 90 != 0:
            angles.append(k * step)
        k += 1
    return tuple(angles)
