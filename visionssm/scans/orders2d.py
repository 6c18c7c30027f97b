"""2D scan orders on an (H, W) grid; raster position r = i * W + j.

Every builder returns ``(rows, labels)``: a list of K gather indices of length L = H * W (``rows[k][t]`` = raster
position of the t-th token of direction k) and one short label per direction. Sources are in docs/scans.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from visionssm.errors import InputError
from visionssm.scans.axes import axis_order_raster, boustrophedon
from visionssm.scans.hilbert import hilbert_curve

Directions = tuple[list[np.ndarray], tuple[str, ...]]

ROW_MAJOR, COLUMN_MAJOR = (0, 1), (1, 0)


def positive_int(scan: str, option: str, value: object) -> int:
    """Validate an integer option >= 1 and return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"scan {scan!r}: option {option}={value!r} must be an integer >= 1")
    return int(value)


def _cell_coords(shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of every raster position, each (L,)."""
    height, width = shape
    return np.divmod(np.arange(height * width, dtype=np.int64), width)


def raster(shape: Sequence[int]) -> Directions:
    """Row-major order (U-Mamba, LightM-UNet, Vim's forward direction)."""
    return [axis_order_raster(shape, ROW_MAJOR)], ("row",)


def bidirectional(shape: Sequence[int]) -> Directions:
    """Vim: row-major and its reversal."""
    forward = axis_order_raster(shape, ROW_MAJOR)
    return [forward, forward[::-1]], ("row", "row_rev")


def cross(shape: Sequence[int]) -> Directions:
    """VMamba SS2D cross-scan: route0 row-major, route1 column-major, route2/3 their reversals."""
    rows, cols = axis_order_raster(shape, ROW_MAJOR), axis_order_raster(shape, COLUMN_MAJOR)
    return [rows, cols, rows[::-1], cols[::-1]], ("row", "col", "row_rev", "col_rev")


def snake(shape: Sequence[int]) -> Directions:
    """PlainMamba: row snake from the top-left (o1), its reversal (o2), column snake (o3), its reversal (o4)."""
    rows, cols = boustrophedon(shape, ROW_MAJOR), boustrophedon(shape, COLUMN_MAJOR)
    return [rows, rows[::-1], cols, cols[::-1]], ("row_snake", "row_snake_rev", "col_snake", "col_snake_rev")


# ZigMa's corner order: top-left, top-right, bottom-left, bottom-right, as the axes walked from their far end.
_ZIGZAG_CORNERS = (("tl", ()), ("tr", (1,)), ("bl", (0,)), ("br", (0, 1)))


def zigzag8(shape: Sequence[int]) -> Directions:
    """ZigMa's 8 zigzag paths p0..p7: (row snake, column snake) from each of the 4 corners.

    p(2c) is the row snake and p(2c+1) the column snake from corner c in the order TL, TR, BL, BR. Snakes are
    continuous for any rectangle, which generalizes ZigMa's square-only index formula.
    """
    rows, labels = [], []
    for corner, flip in _ZIGZAG_CORNERS:
        rows += [boustrophedon(shape, ROW_MAJOR, flip), boustrophedon(shape, COLUMN_MAJOR, flip)]
        labels += [f"row_snake_{corner}", f"col_snake_{corner}"]
    return rows, tuple(labels)


def zorder(shape: Sequence[int]) -> Directions:
    """Morton (Z) order with the column as the low bit, as MambaAD's ``zorder``.

    For sides that are not powers of two the cells are sorted by Morton code, so the order stays a permutation.
    """
    i, j = _cell_coords(shape)
    code = np.zeros_like(i)
    for bit in range(int(max(shape)).bit_length()):
        code |= ((j >> bit) & 1) << (2 * bit)
        code |= ((i >> bit) & 1) << (2 * bit + 1)
    return [np.argsort(code, kind="stable")], ("zorder",)


def jpeg_zigzag(shape: Sequence[int]) -> Directions:
    """JPEG zigzag over anti-diagonals s = i + j (MambaAD ``zigzag``), for any rectangle.

    Even diagonals run bottom-left to top-right (column ascending), odd ones top-right to bottom-left.
    """
    i, j = _cell_coords(shape)
    diagonal = i + j
    along = np.where(diagonal % 2 == 0, j, i)
    return [np.lexsort((along, diagonal))], ("jpeg_zigzag",)


def hilbert(shape: Sequence[int]) -> Directions:
    """Generalized Hilbert curve (gilbert idea, continuous for every rectangle; see ``visionssm.scans.hilbert``)."""
    return [hilbert_curve(shape)], ("hilbert",)


def _window_keys(i: np.ndarray, j: np.ndarray, window: int) -> tuple[np.ndarray, ...]:
    """Sort keys for np.lexsort (last key = primary): window row, window column, then raster inside the window."""
    return j, i, j // window, i // window


def window(shape: Sequence[int], *, window: int = 7) -> Directions:
    """LocalMamba window scan: windows of ``window`` x ``window`` in raster order, raster order inside each.

    Windows at the bottom/right edge are smaller instead of zero-padded, so no pad token enters the sequence.
    """
    size = positive_int("window", "window", window)
    i, j = _cell_coords(shape)
    return [np.lexsort(_window_keys(i, j, size))], (f"window{size}",)


def atrous(
    shape: Sequence[int], *, stride: int | None = None, rate: int | None = None, window: int | None = None
) -> Directions:
    """Atrous (dilated) scans; two designs chosen by the options.

    Polyphase (default, ``stride`` s, default 2; EfficientVMamba ES2D / ASP-VMUNet v2): the sequence visits the
    sub-grid ``x[0::s, 0::s]`` row-major, then ``x[0::s, 1::s]``, ... all s*s phases one after another, so the
    row is a permutation of all L tokens and the scan state carries across phase boundaries. Direction 0 takes
    phases in row-major order and each sub-grid row-major; direction 1 is the same on the transposed grid
    (phases and sub-grids column-major).

    Dilated windows (``rate`` r, with ``window`` w, default 7; our design for AtrousMamba, which has no public
    code): tokens grouped by phase (i mod r, j mod r) in row-major phase order, and each phase's sub-grid
    ``x[p::r, q::r]`` walked by the ``window`` scan with w x w windows (smaller at the edges). One direction.
    """
    i, j = _cell_coords(shape)
    if rate is None:
        if window is not None:
            raise InputError(f"scan 'atrous': option window={window!r} needs rate= (the dilated-window design)")
        step = positive_int("atrous", "stride", 2 if stride is None else stride)
        by_rows = np.lexsort((j, i, j % step, i % step))
        by_cols = np.lexsort((i, j, i % step, j % step))
        return [by_rows, by_cols], ("phase_row", "phase_col")
    if stride is not None:
        raise InputError(
            f"scan 'atrous': give stride={stride!r} (polyphase) or rate={rate!r} (dilated windows), not both"
        )
    step = positive_int("atrous", "rate", rate)
    size = positive_int("atrous", "window", 7 if window is None else window)
    keys = _window_keys(i // step, j // step, size) + (j % step, i % step)
    return [np.lexsort(keys)], (f"dilated_window_r{step}_w{size}",)
