"""Chunked selective scan in pure PyTorch: the fast path on CPU and the fallback everywhere.

The sequence is cut into blocks whose state tensor fits in cache, and each block into sub-chunks
of ``SUB_LEN`` tokens laid out token-major as tiles ``(sub, S, ...)``: token ``t = s * sub + j``
sits at ``[j, s]``. One block is solved in three vectorised steps:

1. a sweep of ``sub`` steps that runs all ``S`` sub-chunks side by side from a zero state, while
   turning the per-token decays into cumulative decays from the sub-chunk start (products of
   ``exp(delta * A) <= 1`` for a stable A, so they can only underflow towards 0, never overflow);
2. a short carry over the ``S`` sub-chunks, starting from the state carried in from the previous
   block;
3. a correction ``h += cumulative_decay * carried_state``.

Nothing ever divides by a decay or exponentiates a positive cumulative sum, so sequences of any
length (millions of tokens) keep full accuracy, and memory stays bounded by the block size. The
backward pass is a custom autograd function: it keeps only the state at each block boundary,
recomputes the block's states and runs the same machinery in reverse for the state gradient.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._inputs import as_grouped, compute_dtype

SUB_LEN = 16
"""Tokens per sub-chunk (the length of the sequential sweep inside a block)."""

BLOCK_STATE_ELEMENTS = 1 << 20
"""Target number of state elements (tokens x batch x dim x N) held per block."""


def _block_shape(length: int, state_elements_per_token: int) -> tuple[int, int]:
    """Sub-chunk length and sub-chunks per block for a sequence of ``length`` tokens."""
    sub = min(SUB_LEN, length)
    per_block = max(1, BLOCK_STATE_ELEMENTS // (sub * state_elements_per_token))
    return sub, min(per_block, -(-length // sub))


def _to_tiles(x: Tensor, sub: int) -> Tensor:
    """(..., T) -> (sub, T // sub, ...) with token t = s * sub + j at [j, s]."""
    x = x.unflatten(-1, (-1, sub))
    last = x.dim() - 1
    return x.permute(last, last - 1, *range(last - 1))


def _from_tiles(x: Tensor) -> Tensor:
    """(sub, S, ...) -> (..., S * sub), the inverse of :func:`_to_tiles`."""
    return x.permute(*range(2, x.dim()), 1, 0).flatten(-2)


def _scan_tiles(decay: Tensor, drive: Tensor, carry: Tensor, reverse: bool = False) -> Tensor:
    """Solve ``h_t = decay_t * h_prev + drive_t`` over one block of tiles, in place.

    Args:
        decay: (sub, S, *state) per-token decays; overwritten with cumulative decays.
        drive: (sub, S, *state) per-token inputs; overwritten with the states h.
        carry: (*state) state entering the block (from the previous token, or from the next
            token when ``reverse``).
        reverse: scan from the last token to the first (h_prev is then h_{t+1}).

    Returns:
        The state leaving the block: (*state).
    """
    sub, num_sub = drive.shape[:2]
    steps = range(sub - 2, -1, -1) if reverse else range(1, sub)
    step = 1 if reverse else -1
    for j in steps:
        drive[j].addcmul_(decay[j], drive[j + step])
        decay[j].mul_(decay[j + step])
    # carried[s] is the state entering sub-chunk s; the extra slot receives the state leaving the block.
    edge = 0 if reverse else sub - 1
    carried = drive.new_empty((num_sub + 1, *drive.shape[2:]))
    order = range(num_sub - 1, -1, -1) if reverse else range(num_sub)
    enter, leave = (num_sub, 0) if reverse else (0, num_sub)
    carried[enter] = carry
    into, out_of = (0, 1) if reverse else (1, 0)
    for s in order:
        torch.addcmul(drive[edge, s], decay[edge, s], carried[s + out_of], out=carried[s + into])
    drive.addcmul_(decay, carried[1:] if reverse else carried[:-1])
    return carried[leave]


def _pad_tokens(x: Tensor, pad: int) -> Tensor:
    return F.pad(x, (0, pad)) if pad else x


class _Workspace:
    """Block-sized buffers reused from block to block.

    Allocating fresh multi-megabyte tensors for every block makes the allocator hand memory back to
    the OS and fault it in again; reusing a few flat buffers keeps the working set mapped and bounded.
    """

    def __init__(self, count: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device):
        numel = math.prod(shape)
        self._flat = [torch.empty(numel, dtype=dtype, device=device) for _ in range(count)]

    def take(self, slot: int, shape: torch.Size) -> Tensor:
        if torch.compiler.is_compiling():
            # A traced graph plans its own memory. Tracing an ``out=`` write into a view of the flat buffer re-views
            # the result onto the buffer, which fails at run time when the result's strides differ from the traced
            # ones (size-1 tile axes, e.g. a 1x1 grid); a fresh tensor per take has no base to write back to.
            return self._flat[slot].new_empty(shape)
        return self._flat[slot][: math.prod(shape)].view(shape)


class _Block(NamedTuple):
    """One block of tokens [start, stop) cast to the compute dtype and laid out as tiles.

    Tile shapes (sub, S, Bt, G, ...): dt, u, dtu (.., 1, Dg); B (.., N, 1); C (.., 1, N).
    """

    start: int
    stop: int
    pad: int
    dt: Tensor  # (Bt, D, T) step sizes after bias and softplus
    dt_pre: Tensor  # (Bt, D, T) step sizes before the softplus
    u: Tensor  # (Bt, D, T)
    dt_tiles: Tensor
    u_tiles: Tensor
    dtu_tiles: Tensor
    B_tiles: Tensor
    C_tiles: Tensor


class _Layout(NamedTuple):
    batch: int
    dim: int
    length: int
    groups: int
    per_group: int
    state_size: int
    sub: int
    block_len: int
    dtype: torch.dtype

    @classmethod
    def of(cls, u: Tensor, A: Tensor, B: Tensor, dtype: torch.dtype) -> _Layout:
        batch, dim, length = u.shape
        groups, state_size = B.shape[1], A.shape[1]
        sub, num_sub = _block_shape(length, batch * dim * state_size)
        return cls(batch, dim, length, groups, dim // groups, state_size, sub, sub * num_sub, dtype)

    def tile_shape(self, count: int) -> tuple[int, ...]:
        """Shape of a block's state tensor for ``count`` tokens: (sub, S, Bt, G, N, Dg)."""
        return (self.sub, -(-count // self.sub), self.batch, self.groups, self.state_size, self.per_group)

    def blocks(self) -> range:
        return range(0, self.length, self.block_len)

    def channel_tiles(self, x: Tensor, pad: int) -> Tensor:
        """(Bt, D, T) -> (sub, S, Bt, G, 1, Dg), contiguous so that broadcasting against it stays fast."""
        tiles = _to_tiles(_pad_tokens(x, pad).view(self.batch, self.groups, 1, self.per_group, -1), self.sub)
        return tiles.contiguous()

    def untile_channels(self, x: Tensor, count: int) -> Tensor:
        """(sub, S, Bt, G, 1, Dg) or (sub, S, Bt, G, Dg) -> (Bt, D, count)."""
        return _from_tiles(x).reshape(self.batch, self.dim, -1)[..., :count]

    def block(self, u, delta, B, C, delta_bias, softplus: bool, start: int) -> _Block:
        stop = min(start + self.block_len, self.length)
        pad = -(stop - start) % self.sub
        dt_pre = delta[..., start:stop].to(self.dtype)
        if delta_bias is not None:
            dt_pre = dt_pre + delta_bias.to(self.dtype)[:, None]
        dt = F.softplus(dt_pre) if softplus else dt_pre
        u_b = u[..., start:stop].to(self.dtype)
        return _Block(
            start,
            stop,
            pad,
            dt,
            dt_pre,
            u_b,
            self.channel_tiles(dt, pad),
            self.channel_tiles(u_b, pad),
            self.channel_tiles(dt * u_b, pad),
            _to_tiles(_pad_tokens(B[..., start:stop].to(self.dtype), pad), self.sub).unsqueeze(-1).contiguous(),
            _to_tiles(_pad_tokens(C[..., start:stop].to(self.dtype), pad), self.sub).unsqueeze(-2).contiguous(),
        )


def _grouped_state_matrix(A: Tensor, lay: _Layout) -> Tensor:
    """(D, N) -> (G, N, Dg) in the compute dtype, contiguous, to broadcast against state tiles."""
    return A.to(lay.dtype).view(lay.groups, lay.per_group, lay.state_size).transpose(1, 2).contiguous()


class _ChunkedSelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        lay = _Layout.of(u, A, B, compute_dtype(u, delta, A, B, C))
        A_t = _grouped_state_matrix(A, lay)
        work = _Workspace(2, lay.tile_shape(lay.block_len), lay.dtype, u.device)
        out = torch.empty_like(u)
        state = u.new_zeros(lay.tile_shape(1)[2:], dtype=lay.dtype)
        block_states = []
        for start in lay.blocks():
            block_states.append(state)
            blk = lay.block(u, delta, B, C, delta_bias, delta_softplus, start)
            count = blk.stop - start
            shape = torch.Size(lay.tile_shape(count))
            decay = torch.mul(blk.dt_tiles, A_t, out=work.take(0, shape)).exp_()
            states = torch.mul(blk.dtu_tiles, blk.B_tiles, out=work.take(1, shape))
            state = _scan_tiles(decay, states, state)
            y = lay.untile_channels(torch.matmul(blk.C_tiles, states), count)
            if D is not None:
                y = y + blk.u * D.to(lay.dtype)[:, None]
            if z is not None:
                y = y * F.silu(z[..., start : blk.stop].to(lay.dtype))
            out[..., start : blk.stop] = y
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, torch.stack(block_states))
        ctx.delta_softplus = delta_softplus
        last_state = state.transpose(-1, -2).reshape(lay.batch, lay.dim, lay.state_size)
        ctx.mark_non_differentiable(last_state)
        return out, last_state

    @staticmethod
    def backward(ctx, dout, _dlast_state):
        u, delta, A, B, C, D, z, delta_bias, block_states = ctx.saved_tensors
        lay = _Layout.of(u, A, B, block_states.dtype)
        dtype = lay.dtype
        A_t = _grouped_state_matrix(A, lay)
        work = _Workspace(4, lay.tile_shape(lay.block_len), dtype, u.device)
        du = torch.empty(u.shape, dtype=dtype, device=u.device)
        ddelta = torch.empty_like(du)
        dB = torch.empty(B.shape, dtype=dtype, device=u.device)
        dC = torch.empty_like(dB)
        dA_t = torch.zeros_like(A_t)
        dD = torch.zeros(lay.dim, dtype=dtype, device=u.device) if D is not None else None
        dz = torch.empty_like(du) if z is not None else None
        ddelta_bias = torch.zeros(lay.dim, dtype=dtype, device=u.device) if delta_bias is not None else None
        # Gradient w.r.t. the state flowing into the current block from the next one, already
        # multiplied by the decay of the next block's first token.
        dstate = torch.zeros_like(block_states[0])
        for block, start in reversed(list(enumerate(lay.blocks()))):
            blk = lay.block(u, delta, B, C, delta_bias, ctx.delta_softplus, start)
            stop, count = blk.stop, blk.stop - start
            shape = torch.Size(lay.tile_shape(count))
            decay = torch.mul(blk.dt_tiles, A_t, out=work.take(0, shape)).exp_()
            drive = torch.mul(blk.dtu_tiles, blk.B_tiles, out=work.take(1, shape))
            states = work.take(2, shape).copy_(drive)
            _scan_tiles(decay, states, block_states[block])

            dy = dout[..., start:stop].to(dtype)
            if z is not None:
                z_b = z[..., start:stop].to(dtype)
                y = lay.untile_channels(torch.matmul(blk.C_tiles, states), count)
                if D is not None:
                    y = y + blk.u * D.to(dtype)[:, None]
                gate = torch.sigmoid(z_b)
                dz[..., start:stop] = dy * y * gate * (1 + z_b * (1 - gate))
                dy = dy * z_b * gate
            if D is not None:
                dD += (dy * blk.u).sum((0, 2))
            dy_tiles = lay.channel_tiles(dy, blk.pad)

            # Reverse scan dh_t = a_{t+1} dh_{t+1} + C_t dy_t; a_{t+1} comes from delta shifted by one token.
            dstates = torch.mul(blk.C_tiles.transpose(-1, -2), dy_tiles, out=work.take(3, shape))
            next_dt_tiles = lay.channel_tiles(_pad_tokens(blk.dt[..., 1:], 1), blk.pad)
            next_decay = torch.mul(next_dt_tiles, A_t, out=work.take(0, shape)).exp_()
            _scan_tiles(next_decay, dstates, dstate, reverse=True)
            dstate = dstates[0, 0] * torch.exp(blk.dt_tiles[0, 0] * A_t)

            dC[..., start:stop] = _from_tiles(torch.matmul(states, dy_tiles.transpose(-1, -2)).squeeze(-1))[..., :count]
            dB[..., start:stop] = _from_tiles(torch.matmul(dstates, blk.dtu_tiles.transpose(-1, -2)).squeeze(-1))[
                ..., :count
            ]
            # dh_t * a_t * h_{t-1}, using a_t * h_{t-1} = h_t - drive_t.
            decayed = torch.sub(states, drive, out=drive).mul_(dstates)
            dA_t += torch.mul(decayed, blk.dt_tiles, out=work.take(0, shape)).sum((0, 1, 2))
            dh_A = torch.mul(decayed, A_t, out=work.take(0, shape)).sum(-2, keepdim=True)
            dh_B = torch.matmul(blk.B_tiles.transpose(-1, -2), dstates)  # (sub, S, Bt, G, 1, Dg)
            du_b = lay.untile_channels(dh_B * blk.dt_tiles, count)
            ddt = lay.untile_channels(dh_B * blk.u_tiles + dh_A, count)
            if D is not None:
                du_b = du_b + dy * D.to(dtype)[:, None]
            du[..., start:stop] = du_b
            if ctx.delta_softplus:
                ddt = ddt * torch.sigmoid(blk.dt_pre)
            if delta_bias is not None:
                ddelta_bias += ddt.sum((0, 2))
            ddelta[..., start:stop] = ddt
        dA = dA_t.transpose(1, 2).reshape(lay.dim, lay.state_size)
        return (
            du.to(u.dtype),
            ddelta.to(delta.dtype),
            dA.to(A.dtype),
            dB.to(B.dtype),
            dC.to(C.dtype),
            None if D is None else dD.to(D.dtype),
            None if z is None else dz.to(z.dtype),
            None if delta_bias is None else ddelta_bias.to(delta_bias.dtype),
            None,
        )


def selective_scan_chunked(
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
    """Selective scan by chunks in pure PyTorch; same signature and results as ``selective_scan_ref``.

    Shapes: u, delta, z (Bt, D, L); A (D, N); B, C (Bt, N, L) or (Bt, G, N, L); D, delta_bias (D,).
    Returns out (Bt, D, L) in u's dtype, and with ``return_last_state`` the final state (Bt, D, N)
    in float32 (float64 for float64 inputs); the final state carries no gradient.
    """
    out, last_state = _ChunkedSelectiveScan.apply(
        u, delta, A, as_grouped(B), as_grouped(C), D, z, delta_bias, delta_softplus
    )
    return (out, last_state) if return_last_state else out
