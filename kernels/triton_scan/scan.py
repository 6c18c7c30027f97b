"""Launch code and autograd for the Triton selective scan (plain and multi-direction).

The forward pass keeps only u, delta, A, B, C, D, z, delta_bias (and the index map) plus one state per
chunk of ``CHUNK_LEN`` tokens, (Bt, K, D, ceil(L / CHUNK_LEN), N) in float32: half of what mamba_ssm keeps
(it stores 2N values per chunk). The backward pass recomputes the states inside each chunk from the saved
state; its only other buffer is a scratch of one state per tile of a chunk for each of its (persistent,
at most BACKWARD_PROGRAMS_PER_SM per SM) programs, a few MB at most. Tilings are fixed tables per N,
measured on an H100; compiled kernels are cached by Triton (nothing is compiled at install time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from visionssm.errors import BackendUnavailableError

from .._inputs import as_grouped, compute_dtype
from ..backends import triton_interpreting
from .kernels import _scan_backward_kernel, _scan_forward_kernel

CHUNK_LEN = 2048
"""Tokens per saved state (a power of two): the backward pass recomputes states from one per chunk."""


class Tiling(NamedTuple):
    """Register tiling of one kernel: BLOCK_D * N_PAD * BLOCK_L ~ tile_elements, BLOCK_D * N_PAD ~ channel_state."""

    tile_elements: int
    channel_state: int
    num_warps: int


# Keyed by the largest N_PAD they serve, chosen from an H100 sweep (benchmarks/triton_scan_gpu.py): about 16
# fp32 per thread in the forward and 8 in the backward (which keeps twice as many tiles live) avoid spills.
FORWARD_TILINGS = {8: Tiling(2048, 8, 4), 32: Tiling(1024, 8, 4), 64: Tiling(2048, 8, 4)}
BACKWARD_TILINGS = {8: Tiling(1024, 8, 4), 32: Tiling(512, 8, 4), 64: Tiling(1024, 8, 8)}
# Multi-direction scans read B and C at scattered positions and add dB, dC with scattered atomics: more
# channels per program (fewer B/C reads and atomics per token) halved fused fwd + bwd time at N = 16.
MULTI_FORWARD_TILINGS = {64: Tiling(2048, 64, 4)}
MULTI_BACKWARD_TILINGS = {64: Tiling(1024, 64, 4)}

MIN_BLOCK_L = 16
"""Smallest tile length (tokens) chosen when N is large."""

MAX_CHANNELS_PER_BLOCK = 4
"""Upper bound of BLOCK_D (channels of one program)."""

BACKWARD_PROGRAMS_PER_SM = 4
"""The backward grid is persistent: this many programs per SM, each with its own scratch slots."""

MAX_BACKWARD_PROGRAMS: int | None = None
"""Cap on the backward grid (None: BACKWARD_PROGRAMS_PER_SM per SM on CUDA, 4 in the interpreter)."""


@dataclass(frozen=True)
class _Geometry:
    """Sizes of one launch and the tiling chosen for it."""

    batch: int
    dim: int
    length: int
    num_dirs: int
    state: int
    b_groups: int
    c_groups: int

    @property
    def num_chunks(self) -> int:
        return -(-self.length // CHUNK_LEN)

    @property
    def segment_len(self) -> int:
        """Channels sharing both their B group and their C group (a program never straddles two)."""
        return self.dim // math.lcm(self.b_groups, self.c_groups)

    @property
    def state_pad(self) -> int:
        return triton.next_power_of_2(self.state)

    def tiles(self, tilings: dict[int, Tiling]) -> tuple[int, int, int, int]:
        """(BLOCK_D, BLOCK_L, blocks per segment, warps) from the tiling for this N."""
        key = min((k for k in tilings if k >= self.state_pad), default=max(tilings))
        tiling = tilings[key]
        block_d = min(
            triton.next_power_of_2(self.segment_len),
            MAX_CHANNELS_PER_BLOCK,
            max(1, tiling.channel_state // self.state_pad),
        )
        block_l = max(MIN_BLOCK_L, tiling.tile_elements // (block_d * self.state_pad))
        block_l = min(triton.next_power_of_2(block_l), triton.next_power_of_2(self.length), CHUNK_LEN)
        return block_d, block_l, -(-self.segment_len // block_d), tiling.num_warps


def _launch_flags(geom: _Geometry, D, z, delta_bias, index, softplus: bool, mean: bool, dtype: torch.dtype) -> dict:
    return dict(
        STATE=geom.state,
        N_PAD=geom.state_pad,
        CHUNK_LEN=CHUNK_LEN,
        HAS_D=D is not None,
        HAS_Z=z is not None,
        HAS_BIAS=delta_bias is not None,
        SOFTPLUS=softplus,
        HAS_INDEX=index is not None,
        ACCUMULATE=geom.num_dirs > 1,
        MEAN=mean,
        COMPUTE=tl.float64 if dtype == torch.float64 else tl.float32,
    )


def _or(tensor: Tensor | None, placeholder: Tensor) -> Tensor:
    """Kernels take a pointer for every optional tensor; unused ones get a placeholder."""
    return placeholder if tensor is None else tensor


def _backward_programs(num_work: int, device: torch.device) -> int:
    if MAX_BACKWARD_PROGRAMS is not None:
        cap = MAX_BACKWARD_PROGRAMS
    elif device.type == "cuda":
        cap = torch.cuda.get_device_properties(device).multi_processor_count * BACKWARD_PROGRAMS_PER_SM
    else:
        cap = 4
    return max(1, min(num_work, cap))


def scan_forward(geom, u, delta, A, B, C, D, z, delta_bias, index, softplus, mean, dtype):
    """Run the forward kernel. Returns out (Bt, D, L) in u's dtype and states (Bt, K, D, n_chunks, N)."""
    block_d, block_l, blocks_per_segment, warps = geom.tiles(
        FORWARD_TILINGS if index is None else MULTI_FORWARD_TILINGS
    )
    # K directions add into one raster-order output: accumulate in the compute dtype.
    out = torch.zeros(u.shape, dtype=dtype, device=u.device) if geom.num_dirs > 1 else torch.empty_like(u)
    states = torch.empty(
        (geom.batch, geom.num_dirs, geom.dim, geom.num_chunks, geom.state), dtype=dtype, device=u.device
    )
    num_segments = geom.dim // geom.segment_len
    grid = (geom.batch * num_segments * blocks_per_segment,)
    _scan_forward_kernel[grid](
        u,
        delta,
        A,
        B,
        C,
        _or(D, A),
        _or(z, u),
        _or(delta_bias, A),
        _or(index, u),
        out,
        states,
        geom.dim,
        geom.length,
        geom.num_chunks,
        geom.num_dirs,
        geom.b_groups,
        geom.c_groups,
        geom.segment_len,
        blocks_per_segment,
        BLOCK_D=block_d,
        BLOCK_L=block_l,
        num_warps=warps,
        **_launch_flags(geom, D, z, delta_bias, index, softplus, mean, dtype),
    )
    return out.to(u.dtype), states


def scan_backward(geom, dout, u, delta, A, B, C, D, z, delta_bias, index, states, softplus, mean):
    """Run the backward kernel. Returns the gradients of u, delta, A, B, C, D, z, delta_bias."""
    dtype = states.dtype
    device = u.device
    tilings = BACKWARD_TILINGS if index is None else MULTI_BACKWARD_TILINGS
    block_d, block_l, blocks_per_segment, warps = geom.tiles(tilings)
    num_segments = geom.dim // geom.segment_len
    num_work = geom.batch * num_segments * blocks_per_segment
    programs = _backward_programs(num_work, device)
    accumulate = geom.num_dirs > 1
    du = torch.zeros(u.shape, dtype=dtype, device=device) if accumulate else torch.empty_like(u)
    ddelta = torch.empty_like(delta)
    dz = None if z is None else torch.empty_like(z)
    dB = torch.zeros(B.shape, dtype=dtype, device=device)
    dC = torch.zeros(C.shape, dtype=dtype, device=device)
    dA = torch.empty((geom.batch, *A.shape), dtype=dtype, device=device)
    dD = None if D is None else torch.empty((geom.batch, *D.shape), dtype=dtype, device=device)
    dbias = None if delta_bias is None else torch.empty((geom.batch, *delta_bias.shape), dtype=dtype, device=device)
    slots = -(-min(CHUNK_LEN, geom.length) // block_l)  # tiles of one chunk
    scratch = torch.empty((programs, slots, block_d, geom.state_pad), dtype=dtype, device=device)
    # Several programs add into one dB/dC slot when a B or C group spans several channel blocks.
    segments_per_group = max(geom.dim // groups for groups in (geom.b_groups, geom.c_groups)) // geom.segment_len
    atomic_bc = segments_per_group * blocks_per_segment > 1
    _scan_backward_kernel[(programs,)](
        u,
        delta,
        A,
        B,
        C,
        _or(D, A),
        _or(z, u),
        _or(delta_bias, A),
        _or(index, u),
        dout,
        states,
        scratch,
        du,
        ddelta,
        dB,
        dC,
        _or(dz, u),
        dA,
        _or(dD, dA),
        _or(dbias, dA),
        geom.dim,
        geom.length,
        geom.num_chunks,
        geom.num_dirs,
        geom.b_groups,
        geom.c_groups,
        geom.segment_len,
        blocks_per_segment,
        num_work,
        BLOCK_D=block_d,
        BLOCK_L=block_l,
        ATOMIC_BC=atomic_bc,
        num_warps=warps,
        **_launch_flags(geom, D, z, delta_bias, index, softplus, mean, dtype),
    )
    return (
        du.to(u.dtype),
        ddelta,
        dA.sum(0).to(A.dtype),
        dB.to(B.dtype),
        dC.to(C.dtype),
        None if D is None else dD.sum(0).to(D.dtype),
        dz,
        None if delta_bias is None else dbias.sum(0).to(delta_bias.dtype),
    )


def check_device(u: Tensor) -> None:
    """BackendUnavailableError unless Triton can run on u's device (CUDA, or CPU under the interpreter)."""
    if not u.is_cuda and not triton_interpreting():
        raise BackendUnavailableError(
            f"backend 'triton' runs on CUDA tensors (the inputs are on {u.device}); set TRITON_INTERPRET=1 to run "
            "its kernels in Triton's CPU interpreter (slow, for tests), or use backend='torch'"
        )


class _FusedScan(torch.autograd.Function):
    """Autograd wrapper of the two kernels over the kernel layouts (see ``kernels.py``)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, index, softplus, b_groups, c_groups, mean):
        u, delta, A, B, C = (t.contiguous() for t in (u, delta, A, B, C))
        D, z, delta_bias, index = (None if t is None else t.contiguous() for t in (D, z, delta_bias, index))
        batch, num_dirs, dim, length = delta.shape
        geom = _Geometry(batch, dim, length, num_dirs, A.shape[-1], b_groups, c_groups)
        dtype = compute_dtype(u, delta, A, B, C)
        out, states = scan_forward(geom, u, delta, A, B, C, D, z, delta_bias, index, softplus, mean, dtype)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, index, states)
        ctx.geom, ctx.softplus, ctx.mean = geom, softplus, mean
        last_state = states[:, :, :, -1].clone()
        ctx.mark_non_differentiable(last_state)
        return out, last_state

    @staticmethod
    def backward(ctx, dout, _dlast_state):
        u, delta, A, B, C, D, z, delta_bias, index, states = ctx.saved_tensors
        grads = scan_backward(
            ctx.geom, dout.contiguous(), u, delta, A, B, C, D, z, delta_bias, index, states, ctx.softplus, ctx.mean
        )
        return (*grads, None, None, None, None, None)


def selective_scan_triton(
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
    """Selective scan with fused Triton kernels; same signature and results as ``selective_scan_ref``.

    Args:
        u, delta: (Bt, D, L), float32, float16 or bfloat16 (float64 computes in float64).
        A: (D, N) real, N up to 64 (any N works; registers grow with the next power of two of N).
        B, C: (Bt, N, L) or (Bt, G, N, L), G dividing D (B and C may have different G).
        D, delta_bias: (D,). z: (Bt, D, L). delta_softplus: softplus(delta + delta_bias), threshold 20.
        return_last_state: also return the final state (Bt, D, N), without gradient.

    Returns:
        out (Bt, D, L) in u's dtype, and with ``return_last_state`` the final state in float32 (float64
        for float64 inputs).
    """
    check_device(u)
    batch, dim, length = u.shape
    B4, C4 = as_grouped(B), as_grouped(C)
    out, last_state = _FusedScan.apply(
        u,
        delta.reshape(batch, 1, dim, length),
        A.unsqueeze(0),
        B4,
        C4,
        None if D is None else D.unsqueeze(0),
        z,
        None if delta_bias is None else delta_bias.unsqueeze(0),
        None,
        delta_softplus,
        B4.shape[1],
        C4.shape[1],
        False,
    )
    return (out, last_state[:, 0]) if return_last_state else out
