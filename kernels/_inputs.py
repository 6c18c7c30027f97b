"""Argument checks and normalisation shared by every selective-scan backend."""

from __future__ import annotations

import torch
from torch import Tensor

from visionssm.errors import InputError


def compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """float64 if any tensor is float64, else float32: the state is never kept in 16-bit."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def as_grouped(BC: Tensor) -> Tensor:
    """(Bt, N, L) -> (Bt, 1, N, L); (Bt, G, N, L) is returned as is."""
    return BC.unsqueeze(1) if BC.dim() == 3 else BC


def _shape_error(name: str, tensor: Tensor, expected: str) -> InputError:
    return InputError(f"selective_scan: {name} has shape {tuple(tensor.shape)}, expected {expected}")


def check_scan_inputs(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
) -> None:
    """Raise InputError naming the argument when a shape, dtype or device does not fit the S6 signature."""
    if u.dim() != 3:
        raise _shape_error("u", u, "(batch, dim, L)")
    batch, dim, length = u.shape
    if length == 0:
        raise InputError("selective_scan: u has an empty sequence (L = 0)")
    if delta.shape != u.shape:
        raise _shape_error("delta", delta, f"{tuple(u.shape)} like u")
    if A.dim() != 2 or A.shape[0] != dim:
        raise _shape_error("A", A, f"({dim}, N)")
    if A.is_complex():
        raise InputError("selective_scan: complex A is not supported; pass a real (dim, N) tensor")
    state_size = A.shape[1]
    for name, BC in (("B", B), ("C", C)):
        if BC.dim() not in (3, 4) or BC.shape[0] != batch or BC.shape[-2] != state_size or BC.shape[-1] != length:
            raise _shape_error(name, BC, f"({batch}, {state_size}, {length}) or ({batch}, G, {state_size}, {length})")
        groups = BC.shape[1] if BC.dim() == 4 else 1
        if dim % groups != 0:
            raise InputError(f"selective_scan: {name} has {groups} groups, which does not divide dim = {dim}")
    groups_B, groups_C = (BC.shape[1] if BC.dim() == 4 else 1 for BC in (B, C))
    if groups_B != groups_C:
        raise InputError(f"selective_scan: B has {groups_B} group(s) but C has {groups_C}; they must match")
    for name, vec in (("D", D), ("delta_bias", delta_bias)):
        if vec is not None and vec.shape != (dim,):
            raise _shape_error(name, vec, f"({dim},)")
    if z is not None and z.shape != u.shape:
        raise _shape_error("z", z, f"{tuple(u.shape)} like u")
    named = (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z), ("delta_bias", delta_bias))
    for name, t in named:
        if t is not None and t.device != u.device:
            raise InputError(f"selective_scan: {name} is on {t.device} but u is on {u.device}")
        if t is not None and not t.is_floating_point():
            raise InputError(f"selective_scan: {name} has dtype {t.dtype}, expected a floating-point tensor")
