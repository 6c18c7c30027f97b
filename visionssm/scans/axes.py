"""Closed-form orders built from axis permutations, reflections and boustrophedon turns (any number of axes).

All functions return gather indices: ``g[t]`` is the raster position of the t-th visited cell, where the raster
position of a cell is its C-order (last axis fastest) flat index in ``shape``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from visionssm.errors import InputError

AXIS_LETTERS = {2: "hw", 3: "dhw"}


def parse_axis_order(order: str, ndim: int) -> tuple[int, ...]:
    """Turn an axis-order string such as ``"whd"`` (slowest to fastest) into axis numbers ``(2, 1, 0)``."""
    letters = AXIS_LETTERS[ndim]
    if not isinstance(order, str) or sorted(order) != sorted(letters):
        raise InputError(f"axis order {order!r} is not a permutation of {letters!r}")
    return tuple(letters.index(letter) for letter in order)


def axis_order_raster(shape: Sequence[int], order: Sequence[int]) -> np.ndarray:
    """Raster scan with the axes nested in ``order`` (slowest first): ``order=(1, 0)`` is column-major in 2D."""
    grid = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    return np.ascontiguousarray(grid.transpose(order)).reshape(-1)


def boustrophedon(shape: Sequence[int], order: Sequence[int], flip: Sequence[int] = ()) -> np.ndarray:
    """Continuous snake: like ``axis_order_raster`` but every other line, plane, ... is walked backwards.

    Args:
        shape: grid shape, any number of axes.
        order: axes from slowest to fastest.
        flip: axes (in ``shape`` numbering) walked from their last index, i.e. the corner the snake starts at.

    Returns:
        (L,) int64 gather index; consecutive cells always differ by one along exactly one axis.
    """
    grid = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    if flip:
        grid = np.flip(grid, axis=tuple(flip))
    grid = np.ascontiguousarray(grid.transpose(order))
    # Innermost first: once the block under every index of axis m reads as a snake, reversing the blocks at odd
    # indices of m (flipping all faster axes reverses a C-order block) makes consecutive blocks meet end to start.
    for m in range(grid.ndim - 2, -1, -1):
        odd = (slice(None),) * m + (slice(1, None, 2),)
        grid[odd] = np.flip(grid[odd], axis=tuple(range(m + 1, grid.ndim))).copy()
    return grid.reshape(-1)


def mamba_nd_cycle(shape: Sequence[int]) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """Mamba-ND's per-layer axis cycle as one direction set, in cycle order.

    2D: row-major, reversed, column-major, reversed. 3D: (D, H, W), reversed, (D, W, H), reversed, (W, H, D),
    reversed (axis orders slowest to fastest). Layer i of Mamba-ND uses direction ``i % K``.
    """
    ndim = len(shape)
    orders = {2: (("row", "hw"), ("col", "wh")), 3: (("dhw", "dhw"), ("dwh", "dwh"), ("whd", "whd"))}[ndim]
    rows, labels = [], []
    for label, order in orders:
        forward = axis_order_raster(shape, parse_axis_order(order, ndim))
        rows += [forward, forward[::-1]]
        labels += [label, f"{label}_rev"]
    return rows, tuple(labels)
