"""3D scan orders on a (D, H, W) box; raster position r = (d * H + h) * W + w.

Builders return ``(rows, labels)`` like those in ``orders2d``. An axis-order label such as ``"hwd"`` lists the axes
from slowest to fastest, so ``"dhw"`` is the raster and ``"hwd"`` walks depth fastest.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import permutations

from visionssm.errors import InputError
from visionssm.scans.axes import axis_order_raster, boustrophedon, parse_axis_order
from visionssm.scans.hilbert import hilbert_curve
from visionssm.scans.orders2d import Directions

CROSS3D_ORDERS = ("dhw", "hdw", "whd")
CROSS3D_12_ORDERS = tuple("".join(p) for p in permutations("dhw"))  # dhw, dwh, hdw, hwd, wdh, whd


def _orders_and_reversals(shape: Sequence[int], orders: Sequence[str]) -> Directions:
    forward = [axis_order_raster(shape, parse_axis_order(order, 3)) for order in orders]
    labels = tuple(orders) + tuple(f"{order}_rev" for order in orders)
    return forward + [row[::-1] for row in forward], labels


def raster3d(shape: Sequence[int]) -> Directions:
    """Raster order (d, h, w) with w fastest (U-Mamba, LightM-UNet)."""
    return [axis_order_raster(shape, (0, 1, 2))], ("dhw",)


def tri_orientation(shape: Sequence[int]) -> Directions:
    """SegMamba's tri-orientated Mamba: raster, reversed raster, and the inter-slice scan (H, W, D), depth fastest.

    SegMamba builds the third scan by interleaving ``ns`` chunks, which needs L % ns == 0 and equals this axis
    order when ns = D; defined as an axis order it has no divisibility restriction.
    """
    forward = axis_order_raster(shape, (0, 1, 2))
    return [forward, forward[::-1], axis_order_raster(shape, (1, 2, 0))], ("dhw", "dhw_rev", "hwd")


def cross3d(shape: Sequence[int]) -> Directions:
    """6-direction 3D cross-scan: flattened in (D, H, W), (H, D, W) and (W, H, D) order, then the 3 reversals."""
    return _orders_and_reversals(shape, CROSS3D_ORDERS)


def cross3d_12(shape: Sequence[int]) -> Directions:
    """12-direction 3D cross-scan (SS3D): the 6 axis orders dhw, dwh, hdw, hwd, wdh, whd, then their reversals."""
    return _orders_and_reversals(shape, CROSS3D_12_ORDERS)


def snake3d(shape: Sequence[int], *, axis_orders: Sequence[str] = ("dhw",)) -> Directions:
    """Continuous 3D boustrophedon and its reversal for each axis order (default one order: K = 2).

    For ``"dhw"`` rows snake within each depth slice and every other slice is walked backwards, so each step moves
    one cell along one axis. Directions: the snakes in the given order, then their reversals.
    """
    if isinstance(axis_orders, str) or not axis_orders:
        raise InputError(
            f"scan 'snake3d': option axis_orders={axis_orders!r} must be a non-empty tuple such as ('dhw', 'whd')"
        )
    if len(set(axis_orders)) != len(axis_orders):
        raise InputError(f"scan 'snake3d': option axis_orders={axis_orders!r} repeats an order")
    forward = [boustrophedon(shape, parse_axis_order(order, 3)) for order in axis_orders]
    labels = tuple(f"snake_{order}" for order in axis_orders) + tuple(f"snake_{order}_rev" for order in axis_orders)
    return forward + [row[::-1] for row in forward], labels


def hilbert3d(shape: Sequence[int]) -> Directions:
    """Generalized 3D Hilbert curve (gilbert3d idea, continuous for every box; see ``visionssm.scans.hilbert``)."""
    return [hilbert_curve(shape)], ("hilbert3d",)
