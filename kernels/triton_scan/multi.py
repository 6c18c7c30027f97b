"""Fused multi-direction scan: the K directions of a scan plan, each read in place and merged in-kernel.

Each direction reads u, delta, B and C at the raster positions of its order (no gathered copies) and adds its output
into the raster-order result, one direction after the other (within one launch for short rows, see
``direction_kernels.py``), so the accumulation into ``out`` (and into ``du`` in the backward pass) needs no atomics
and is deterministic. Orders that are the raster order, a column order of the grid seen as a (P, Q) matrix (a 2D
column scan, a 3D depth-fastest scan), or the reverse of either are read with coalesced loads computed from their
shape; any other order goes through its index row.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from torch import Tensor

from .scan import Direction, _FusedScan, check_device

_CACHE_SIZE = 64
_described: OrderedDict[tuple, tuple[Tensor, tuple[Direction, ...]]] = OrderedDict()


def _structure(row: np.ndarray) -> tuple[str, int] | None:
    """("linear", 1) for the raster order, ("transposed", Q) for the column order of an (L / Q, Q) view."""
    length = row.size
    if np.array_equal(row, np.arange(length)):
        return "linear", 1
    cols = int(row[1]) if length > 1 and row[0] == 0 else 0
    columns = (
        np.arange(length).reshape(length // cols, cols).T.ravel() if 1 < cols < length and length % cols == 0 else None
    )
    if columns is not None and np.array_equal(row, columns):
        return "transposed", cols
    return None


def describe_directions(index: Tensor) -> tuple[Direction, ...]:
    """How the kernels read each row of a (K, L) index map; cached per index tensor (plans keep theirs)."""
    key = (index.data_ptr(), index.device, tuple(index.shape))
    hit = _described.get(key)
    if hit is not None:
        _described.move_to_end(key)
        return hit[1]
    directions = []
    for k, row in enumerate(index.cpu().numpy()):
        for flip, candidate in ((False, row), (True, row[::-1])):
            found = _structure(candidate)
            if found is not None:
                directions.append(Direction(found[0], flip, found[1], index[k]))
                break
        else:
            directions.append(Direction("gather", index=index[k]))
    # The entry keeps the index tensor alive, so its address cannot be reused by another tensor.
    _described[key] = (index, tuple(directions))
    if len(_described) > _CACHE_SIZE:
        _described.popitem(last=False)
    return tuple(directions)


def fused_by_default(index: Tensor, state: int) -> bool:
    """Whether ``multi_scan(backend="auto")`` runs the fused kernels for a plan's (K, L) index and state size N.

    Only for N = 1 (VMamba's d_state) with every direction read in place from its shape (raster, column, or the
    reverse of either). Measured on an H200 (docs/benchmarks.md, 2026-12-04), the fused cross scan took 0.41-0.93x
    the time of gathering, one Triton scan over the K directions and merging at VMamba-T stages 1 and 3, forward
    and forward + backward, float32 and bfloat16 (in a second, host-bound call the stage-3 float32 forward alone
    was slower fused, 0.861 vs 0.627 ms; forward + backward stayed faster). At N = 16 its forward + backward took
    1.5-4.6x as long (cross at VMamba-T stage 1, tri-orientation at SegMamba stage 2, bidirectional at Vim-S:
    column directions run on the (channel, token) kernels, reversed ones are read from decreasing addresses);
    directions read through their index were not measured.
    """
    return state == 1 and all(direction.kind != "gather" for direction in describe_directions(index))


def multi_scan_triton(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    index: Tensor,
    merge: str,
    D: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = True,
) -> Tensor:
    """K selective scans over one grid, each in its own token order, summed or averaged in raster order.

    Args:
        u: (Bt, D, *spatial) input shared by the K directions.
        delta: (Bt, K, D, *spatial); A: (K, D, N); B, C: (Bt, K, N, *spatial), all in raster layout.
        index: (K, L) int64 on u's device, ``index[k, t]`` = raster position of direction k's t-th token.
        merge: "sum" or "mean" over directions.
        D, delta_bias: (K, D), optional. delta_softplus: softplus(delta + delta_bias).

    Returns:
        (Bt, D, *spatial) in u's dtype.
    """
    check_device(u)
    batch, dim, *spatial = u.shape
    num_dirs, length = index.shape
    out, _ = _FusedScan.apply(
        u.reshape(batch, dim, length),
        delta.reshape(batch, num_dirs, dim, length),
        A,
        B.reshape(batch, num_dirs, -1, length),
        C.reshape(batch, num_dirs, -1, length),
        D,
        None,
        delta_bias,
        describe_directions(index),
        delta_softplus,
        1,
        1,
        merge == "mean",
        False,
    )
    return out.view(u.shape)
