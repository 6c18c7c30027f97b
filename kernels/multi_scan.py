"""``multi_scan``: one selective scan per direction of a scan order, merged back onto the grid.

Every per-token tensor is given in raster layout over the spatial grid; the scan order is applied by
index inside the operator, so callers never build permuted copies. ``backend="triton"`` runs the fused
kernels, each direction reading its tokens in place and adding into the merged output (all K directions in one
launch where rows are short, one launch per direction otherwise: ``kernels/triton_scan``); "auto" does so on
CUDA tensors where they are faster (``fused_by_default``: N = 1, directions read from their shape). Every other
case composes gather -> ``selective_scan`` over all K directions at once (as K groups of channels, on the chosen
backend) -> inverse gather and merge.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from visionssm.errors import InputError

from .backends import resolve_backend
from .interface import selective_scan


class ScanOrder(Protocol):
    """What the kernels need of a scan order (``visionssm.scans.ScanPlan`` is one)."""

    index: Tensor  # (K, L): index[k, t] = raster position of the t-th token of direction k
    inverse: Tensor  # (K, L): inverse[k, p] = step at which direction k visits raster position p
    merge: str  # "sum" or "mean"

    def to(self, device: torch.device) -> ScanOrder: ...


def _check(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, plan: ScanOrder, D, delta_bias) -> None:
    num_dirs, length = plan.index.shape
    batch, dim, *spatial = u.shape
    if len(spatial) == 0 or torch.Size(spatial).numel() != length:
        raise InputError(
            f"multi_scan: u has shape {tuple(u.shape)}, expected (batch, dim, *spatial) with {length} positions "
            f"to match the scan plan"
        )
    expected = {
        "delta": (batch, num_dirs, dim, *spatial),
        "B": (batch, num_dirs, None, *spatial),
        "C": (batch, num_dirs, None, *spatial),
    }
    for name, tensor in (("delta", delta), ("B", B), ("C", C)):
        want = expected[name]
        if tensor.dim() != len(want) or any(w is not None and w != s for w, s in zip(want, tensor.shape)):
            shown = tuple("N" if w is None else w for w in want)
            raise InputError(f"multi_scan: {name} has shape {tuple(tensor.shape)}, expected {shown}")
    if A.dim() != 3 or A.shape[:2] != (num_dirs, dim) or A.shape[2] != B.shape[2] or C.shape[2] != B.shape[2]:
        raise InputError(
            f"multi_scan: A has shape {tuple(A.shape)}, expected ({num_dirs}, {dim}, N) with N = {B.shape[2]} "
            f"as in B and C"
        )
    for name, vec in (("D", D), ("delta_bias", delta_bias)):
        if vec is not None and vec.shape != (num_dirs, dim):
            raise InputError(f"multi_scan: {name} has shape {tuple(vec.shape)}, expected ({num_dirs}, {dim})")
    if plan.merge not in ("sum", "mean"):
        raise InputError(f"multi_scan: unknown merge rule {plan.merge!r}; expected 'sum' or 'mean'")


def multi_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    plan: ScanOrder,
    D: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = True,
    backend: str = "auto",
) -> Tensor:
    """Run one S6 scan per direction of ``plan`` over a grid and merge the K results.

    Args:
        u: (Bt, D, *spatial) input shared by all directions, raster layout.
        delta: (Bt, K, D, *spatial) step sizes per direction.
        A: (K, D, N) state matrix per direction.
        B, C: (Bt, K, N, *spatial) per direction.
        plan: a scan order with K directions over prod(spatial) tokens (e.g. ``scan_plan("cross", (H, W))``).
        D, delta_bias: (K, D) per direction, optional.
        delta_softplus: apply softplus to delta + delta_bias (True, as in VMamba).
        backend: "triton" for the fused kernels; "auto" for them on CUDA tensors where they are the faster way
            (N = 1, every direction a raster or column order or its reverse), else composition; any other name
            composes gather, :func:`selective_scan` on that backend, and merge.

    Returns:
        (Bt, D, *spatial): the K directions' outputs put back in raster order and summed (or averaged).
    """
    _check(u, delta, A, B, C, plan, D, delta_bias)
    plan = plan.to(u.device)
    if resolve_backend(backend, u) == "triton":
        from .triton_scan import fused_by_default, multi_scan_triton  # imports triton: only on demand

        # "auto" runs the fused kernels only where they were measured faster than composing (N = 1).
        if backend != "auto" or fused_by_default(plan.index, A.shape[-1]):
            return multi_scan_triton(u, delta, A, B, C, plan.index, plan.merge, D, delta_bias, delta_softplus)
    num_dirs, length = plan.index.shape
    batch, dim = u.shape[:2]
    state_size = A.shape[-1]
    index = plan.index
    # Gather every direction's token order: (Bt, D, K, L) -> (Bt, K * D, L), direction-major channels.
    u_seq = u.reshape(batch, dim, length)[:, :, index].transpose(1, 2).reshape(batch, num_dirs * dim, length)

    def directed(x: Tensor, channels: int) -> Tensor:
        """(Bt, K, channels, *spatial) -> (Bt, K, channels, L) in each direction's order."""
        flat = x.reshape(batch, num_dirs, channels, length)
        return flat.gather(-1, index[None, :, None, :].expand(batch, num_dirs, channels, length))

    y = selective_scan(
        u_seq,
        directed(delta, dim).reshape(batch, num_dirs * dim, length),
        A.reshape(num_dirs * dim, state_size),
        directed(B, state_size),
        directed(C, state_size),
        D=None if D is None else D.reshape(-1),
        delta_bias=None if delta_bias is None else delta_bias.reshape(-1),
        delta_softplus=delta_softplus,
        backend=backend,
    )
    y = y.view(batch, num_dirs, dim, length)
    raster = y.gather(-1, plan.inverse[None, :, None, :].expand(batch, num_dirs, dim, length))
    merged = raster.sum(1) if plan.merge == "sum" else raster.mean(1)
    return merged.view(u.shape)
