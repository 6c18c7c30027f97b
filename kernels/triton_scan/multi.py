"""Fused multi-direction scan: all K directions of a scan plan in one launch, merged in-kernel.

Each program reads u, delta, B and C at the raster positions ``index[k, t]`` (no gathered copies) and
adds its direction's output into the raster-order result. Usually a program owns a block of channels of one
batch row for all K directions, one direction after the other, so the accumulation into ``out`` (and into ``du``
in the backward pass) needs no atomics and is deterministic; chunk-parallel launches (few channel rows, long
sequences) add with atomics instead.
"""

from __future__ import annotations

from torch import Tensor

from .scan import _FusedScan, check_device


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
        index,
        delta_softplus,
        1,
        1,
        merge == "mean",
    )
    return out.view(u.shape)
