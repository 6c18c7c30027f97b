"""Sequential selective scan: the exact oracle every other backend is tested against.

The recurrence is run one token at a time, exactly as written in the Mamba paper (S6), with the
state and every accumulation in float32 (float64 when any input is float64). It is differentiable
through ordinary autograd and meant for tests and small problems, not for speed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._inputs import as_grouped, compute_dtype


def selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Run the S6 recurrence token by token.

    Args:
        u: (Bt, D, L) input sequence.
        delta: (Bt, D, L) step sizes (before ``delta_bias`` and softplus).
        A: (D, N) real state matrix (diagonal per channel).
        B: (Bt, N, L) or (Bt, G, N, L) input projection; channel d uses group d // (D // G).
        C: (Bt, N, L) or (Bt, G, N, L) output projection.
        D: (D,) skip connection, optional.
        z: (Bt, D, L) gate, optional: the output is multiplied by silu(z).
        delta_bias: (D,) added to delta before the softplus, optional.
        delta_softplus: apply softplus to delta (+ bias).
        return_last_state: also return the final state.

    Returns:
        out: (Bt, D, L) in u's dtype, and with ``return_last_state`` the final state (Bt, D, N) in the
        compute dtype (float32, or float64 for float64 inputs).
    """
    dtype = compute_dtype(u, delta, A, B, C)
    batch, dim, _ = u.shape
    u_c, delta_c = u.to(dtype), delta.to(dtype)
    if delta_bias is not None:
        delta_c = delta_c + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta_c = F.softplus(delta_c)
    B_c, C_c = (as_grouped(t).to(dtype) for t in (B, C))
    channels_per_group = dim // B_c.shape[1]
    # (Bt, L, D, N): per-token decay and input, one slice per step of the loop below.
    B_full = B_c.repeat_interleave(channels_per_group, dim=1)
    C_full = C_c.repeat_interleave(channels_per_group, dim=1)
    decay = torch.exp(torch.einsum("bdl,dn->bldn", delta_c, A.to(dtype)))
    drive = torch.einsum("bdl,bdnl->bldn", delta_c * u_c, B_full)
    readout = C_full.permute(0, 3, 1, 2)
    state = u_c.new_zeros(batch, dim, A.shape[1])
    ys = []
    for decay_t, drive_t, readout_t in zip(decay.unbind(1), drive.unbind(1), readout.unbind(1)):
        state = decay_t * state + drive_t
        ys.append((state * readout_t).sum(-1))
    out = torch.stack(ys, dim=-1)
    if D is not None:
        out = out + u_c * D.to(dtype)[:, None]
    if z is not None:
        out = out * F.silu(z.to(dtype))
    out = out.to(u.dtype)
    return (out, state) if return_last_state else out
