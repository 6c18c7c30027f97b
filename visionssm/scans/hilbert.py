"""Generalized Hilbert curves for any rectangle (2D) and any box (3D).

The construction follows the idea of the generalized Hilbert curve ("gilbert", J. Červený): fill a box with a
path that starts at one corner and ends at the corner next to it along the box's *major* axis, by splitting the
box into 2, 3 or 5 smaller boxes that are filled the same way with rotated/reflected frames. Power-of-two squares
give the classic Hilbert curve.

What this module adds is a parity rule. A path between two corners exists in a grid graph only if the checkerboard
colours allow it: from a corner to the next corner along an axis of length ``n`` the path exists iff ``n`` is even
or every side is odd (and ``n > 1`` unless the box is a single line). Every split below is chosen so that all its
pieces satisfy this rule, and the top-level call runs the major axis along a side for which it holds. Such a split
always exists (w = major side, b = a minor side; flat boxes are handled as rectangles):

* 2D: if w >= 4 and the rectangle is long, two parts along w with an even first part; otherwise a U turn whose
  parts along b have an even size (needs b >= 3); the 2 x 2 square is a U of single cells.
* 3D, w even: w >= 4 splits along w into even parts; w = 2 with a side >= 3 takes a U turn along that side with an
  even first part; 2 x 2 x 2 is the octant step on single cells. All sides odd (>= 3): a U turn with an even part.

By induction every step of the curve is a unit step, for every rectangle and every box: there is no diagonal step,
not even for the odd x even rectangles where the original gilbert needs one. The splitter prefers the shapes and
split points that keep pieces close to cubes and tries the others only when the parity rule demands it.

Coordinates inside the recursion are *local*: axis 0 is the major axis of the current box. A piece is placed in its
parent by a signed axis permutation (its frame) and an origin.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from functools import lru_cache

import numpy as np

# A piece of a box: (size in its own frame, origin in the parent's local coordinates,
# frame = for each of the piece's axes, the parent axis it runs along and the direction +1/-1).
Frame = tuple[tuple[int, int], ...]
Piece = tuple[tuple[int, ...], tuple[int, ...], Frame]

_CANDIDATES_PER_SPLIT = 4


def _path_exists(size: Sequence[int]) -> bool:
    """True if a box of this size has a unit-step path from corner 0 to the next corner along axis 0.

    ``size[0]`` is the major axis. The condition is the checkerboard-colour parity of the two corners.
    """
    major, *rest = size
    if major == 1:
        return all(n == 1 for n in rest)
    return major % 2 == 0 or all(n % 2 == 1 for n in size)


def _split_points(n: int, prefer_even: bool) -> list[int]:
    """Candidate sizes of the first part when n cells are split in two, best first.

    Points within one cell of the middle come first; among those an even first part is preferred where asked
    (an even part can host a curve along it, which keeps sub-boxes Hilbert-like).
    """
    ranked = sorted(range(1, n), key=lambda k: (abs(2 * k - n) > 2, prefer_even and k % 2 == 1, abs(2 * k - n), -k))
    return ranked[:_CANDIDATES_PER_SPLIT]


def _unit(axis: int, ndim: int, value: int) -> tuple[int, ...]:
    return tuple(value if a == axis else 0 for a in range(ndim))


def _add(*vectors: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(sum(parts)) for parts in zip(*vectors, strict=True))


def _split_major(size: tuple[int, ...]) -> Iterator[list[Piece]]:
    """Two pieces side by side along the major axis (for boxes much longer than wide)."""
    ndim, w = len(size), size[0]
    same = tuple((a, 1) for a in range(ndim))
    for w1 in _split_points(w, prefer_even=True):
        yield [
            ((w1, *size[1:]), (0,) * ndim, same),
            ((w - w1, *size[1:]), _unit(0, ndim, w1), same),
        ]


def _u_turn(size: tuple[int, ...], b: int) -> Iterator[list[Piece]]:
    """Three pieces: up along axis b, across the full major axis, back down along b.

    In 3D the remaining axis c is not split (the 2D Hilbert step extruded along c).
    """
    ndim, w, nb = len(size), size[0], size[b]
    rest = tuple(a for a in range(1, ndim) if a != b)  # axes kept whole (c in 3D, none in 2D)
    for b1 in _split_points(nb, prefer_even=True):
        for w1 in _split_points(w, prefer_even=False):
            first = ((b1, *(size[a] for a in rest), w1), (0,) * ndim, ((b, 1), *((a, 1) for a in rest), (0, 1)))
            across_size = tuple(nb - b1 if a == b else size[a] for a in range(ndim))
            across = (across_size, _unit(b, ndim, b1), tuple((a, 1) for a in range(ndim)))
            back = (
                (b1, *(size[a] for a in rest), w - w1),
                _add(_unit(0, ndim, w - 1), _unit(b, ndim, b1 - 1)),
                ((b, -1), *((a, 1) for a in rest), (0, -1)),
            )
            yield [first, across, back]


def _octants(size: tuple[int, int, int], b: int) -> Iterator[list[Piece]]:
    """Five pieces covering the eight octants of a 3D box (the 3D Hilbert step); b is split first."""
    c = 3 - b
    w, nb, nc = size[0], size[b], size[c]

    def at(**coords: int) -> tuple[int, ...]:
        return _add(_unit(0, 3, coords.get("a", 0)), _unit(b, 3, coords.get("b", 0)), _unit(c, 3, coords.get("c", 0)))

    for b1 in _split_points(nb, prefer_even=True):
        for c1 in _split_points(nc, prefer_even=False):
            for w1 in _split_points(w, prefer_even=False):
                yield [
                    ((b1, c1, w1), at(), ((b, 1), (c, 1), (0, 1))),
                    ((nc, w1, nb - b1), at(b=b1), ((c, 1), (0, 1), (b, 1))),
                    ((w, b1, nc - c1), at(b=b1 - 1, c=nc - 1), ((0, 1), (b, -1), (c, -1))),
                    ((nc, w - w1, nb - b1), at(a=w - 1, b=b1, c=nc - 1), ((c, -1), (0, -1), (b, 1))),
                    ((b1, c1, w - w1), at(a=w - 1, b=b1 - 1), ((b, -1), (c, 1), (0, -1))),
                ]


def _case_order(size: tuple[int, ...]) -> list[Iterator[list[Piece]]]:
    """Ways to split a box, the one that keeps pieces closest to cubes first, the others as parity fallbacks."""
    if len(size) == 2:
        w, h = size
        cases = [_split_major(size), _u_turn(size, 1)]
        return cases if 2 * w > 3 * h else cases[::-1]
    w, h, d = size
    longer, shorter = (1, 2) if h >= d else (2, 1)
    if 2 * w > 3 * h and 2 * w > 3 * d:
        first = [_split_major(size)]
    elif 3 * h > 4 * d:
        first = [_u_turn(size, 1)]
    elif 3 * d > 4 * h:
        first = [_u_turn(size, 2)]
    else:
        first = [_octants(size, longer)]
    fallbacks = [
        _octants(size, longer),
        _octants(size, shorter),
        _u_turn(size, longer),
        _u_turn(size, shorter),
        _split_major(size),
    ]
    return first + fallbacks


@lru_cache(maxsize=16384)  # the choice depends on the size only; sub-box sizes repeat across grids
def _choose_pieces(size: tuple[int, ...]) -> tuple[Piece, ...]:
    for candidates in _case_order(size):
        for pieces in candidates:
            if all(min(piece_size) >= 1 and _path_exists(piece_size) for piece_size, _, _ in pieces):
                return tuple(pieces)
    raise AssertionError(f"no parity-consistent split for box {size}")  # unreachable: see module docstring


def _local_curve(size: tuple[int, ...], memo: dict[tuple[int, ...], np.ndarray]) -> np.ndarray:
    """Local coordinates (L, ndim) of the curve through a box, from corner 0 to the next corner along axis 0."""
    cached = memo.get(size)
    if cached is not None:
        return cached
    ndim, length = len(size), math.prod(size)
    long_axes = [a for a, n in enumerate(size) if n > 1]
    path = np.zeros((length, ndim), dtype=np.int32)
    if len(long_axes) <= 1:
        # A line (or a single cell). Only the top-level call can make it run along a minor axis.
        if long_axes:
            path[:, long_axes[0]] = np.arange(length)
    elif ndim == 3 and len(long_axes) == 2:
        # A flat box is a rectangle: use the 2D curve so flat pieces get 2D-quality splits.
        flat = _local_curve(tuple(size[a] for a in long_axes), memo)
        path[:, long_axes] = flat
    else:
        start = 0
        for piece_size, origin, frame in _choose_pieces(size):
            piece = _local_curve(piece_size, memo)
            stop = start + len(piece)
            for piece_axis, (parent_axis, sign) in enumerate(frame):
                path[start:stop, parent_axis] = origin[parent_axis] + sign * piece[:, piece_axis]
            start = stop
    memo[size] = path
    return path


def _axis_order(shape: Sequence[int]) -> tuple[int, ...]:
    """Physical axes in local order: the longest side that admits a corner-to-corner path becomes the major axis."""
    by_length = sorted(range(len(shape)), key=lambda a: (-shape[a], a))
    for major in by_length:
        order = (major, *(a for a in by_length if a != major))
        if _path_exists([shape[a] for a in order]):
            return order
    raise AssertionError(f"no major axis for shape {tuple(shape)}")  # unreachable: some side is even or all odd


def hilbert_curve(shape: Sequence[int]) -> np.ndarray:
    """Gather index of the generalized Hilbert curve through a grid.

    Args:
        shape: (H, W) or (D, H, W), any positive sizes.

    Returns:
        (L,) int64 raster positions in visiting order. Consecutive positions are always face neighbours.
    """
    shape = tuple(int(n) for n in shape)
    axes = _axis_order(shape)
    local = _local_curve(tuple(shape[a] for a in axes), memo={})
    coords = np.empty_like(local, dtype=np.int64)
    coords[:, list(axes)] = local  # local axis k runs along physical axis axes[k]
    return np.ravel_multi_index(tuple(coords.T), shape).astype(np.int64)
