"""Launch code and autograd for the Triton selective scan (plain and multi-direction).

Each direction of a scan runs a kernel body specialised for how it reads its tokens (``Direction``); later
directions add into the output of earlier ones, which makes the merge race-free without atomics. Where a program
owns whole channel rows (SEQUENTIAL) and rows are short, one launch runs the directions of each kernel family, each
program walking them in turn (``direction_kernels.py``); otherwise one direction is launched after the other. Two
kinds of kernel body: (channel, token) tiles (``kernels.py``) for column-order (TRANSPOSED) directions, (state,
token) tiles of one channel row (``state_kernels.py``) for the others, at every N (with ``STATE_TILE_COLUMNS``,
SEQUENTIAL launches run column directions too on state tiles, of whole columns). The forward pass keeps only u,
delta, A, B, C, D, z, delta_bias plus one float32 state per chunk of ``Tiling.chunk_len`` (1024) tokens, (Bt, K, D,
n_chunks, N): as much as mamba_ssm keeps (2N values per chunk of 2048). The backward pass recomputes each chunk's
states from the saved state before it. Chunk-parallel launches (few channel rows, long sequences) add transient
per-chunk buffers of the size of the saved states. Tilings are a fixed table per N, measured on an H100 and an H200
(benchmarks/triton_scan_gpu.py); Triton caches the compiled kernels (nothing is compiled at install time)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import torch
import triton.language as tl
from torch import Tensor

from visionssm.errors import BackendUnavailableError

from .._inputs import as_grouped, compute_dtype
from ..backends import triton_interpreting
from .direction_kernels import _directions_backward_kernel, _directions_forward_kernel
from .kernels import (
    FROM_CARRY,
    LINEAR,
    SUMMARY,
    TRANSPOSED,
    _carry_kernel,
    _scan_backward_kernel,
    _scan_forward_kernel,
)
from .state_kernels import _state_backward_kernel, _state_forward_kernel


class Tiling(NamedTuple):
    """Work split of one N range: tokens per chunk (saved state, register tile), channels and warps per program."""

    chunk_len: int
    forward_block_d: int
    forward_warps: int
    backward_block_d: int
    backward_warps: int


# Keyed by the largest N they serve; measured on an H100 (benchmarks/triton_scan_gpu.py --sweep). A chunk of 1024
# tokens keeps N floats per 1024 tokens: as much as mamba_ssm's 2N per 2048. For N > 1 the chunk was 2048 until the
# state tile backward, which keeps the entry state of each of a chunk's tiles in registers, ran 4-9 % faster on
# chunks of 1024 (H200, docs/benchmarks.md).
TILINGS = {1: Tiling(1024, 1, 4, 1, 8), 64: Tiling(1024, 1, 8, 1, 16)}


class StateTiling(NamedTuple):
    """Work split of the (state, token) tile kernels (``state_kernels.py``), forward and backward: tokens per
    register tile (a power of two), warps per program (one channel row each) for N <= 16 (see
    ``_Geometry.state_warps``); for the backward also a cap on registers per thread (ptxas spills above it; None:
    no cap); for the forward the software-pipelining stages of its tile loop (``tl.range``'s num_stages: the next
    tiles' loads are issued, as asynchronous copies, while one is computed; 1: none; used where a chunk has more
    than one tile); for the backward the most tokens per vector load of its B and C tiles (0: Triton's choice, 16
    bytes); for the forward, in launches of one program per channel row (not chunk-parallel) whose rows fit one
    tile, the channel rows that one program walks one after the other (a power of two; fewer where it does not
    divide Bt * D)."""

    forward_tile: int
    forward_warps: int
    backward_tile: int
    backward_warps: int
    backward_max_registers: int | None = None
    forward_stages: int = 1
    backward_vector: int = 0
    forward_rows: int = 1


STATE_TILES_FROM_N = 1
"""Smallest N served by the (state, token) tile kernels; smaller N (and TRANSPOSED directions) by the (channel,
token) tile kernels. Raised only to compare the two (benchmarks, tests)."""

STATE_TILINGS = {
    1: StateTiling(256, 1, 128, 1, forward_stages=2, forward_rows=4),
    64: StateTiling(32, 1, 32, 1, 168, backward_vector=4),
}
"""The (state, token) tilings, keyed like ``TILINGS`` by the largest N they serve; their chunks (saved states) are
those of ``TILINGS``. From the H200 sweeps (benchmarks/triton_scan_gpu.py --state-sweep, docs/benchmarks.md): one
warp per program keeps every reduction and scan inside the warp. At N = 1, 256-token forward tiles and 128-token
backward tiles beat the (channel, token) kernels at VMamba-T stage 1 (float32 forward 0.263 vs 0.320 ms, backward
0.925 vs 1.332 ms), and two pipelining stages take the forward to 0.233 ms (bfloat16 0.177 -> 0.161 ms). Rows of
one tile (VMamba-T stage 3, L = 196) run 4 per program: bfloat16 forward 0.064 -> 0.051 ms (at stage 1, 4 rows of
13 tiles per program were 13 % slower); with B and C loaded once per program and each row's loads issued while the
row before is computed, 0.041 ms (8 rows: the same, 16: 0.044 ms). For N > 1, 32-token tiles beat 64 and wider
programs in the float32 forward. The backward left uncapped takes 255 registers (8 one-warp programs per SM) and
still spills; capped at 168 it spills a little more but runs 12 programs per SM: 12-14 % faster at the SegMamba and
VMamba N = 16 shapes (at 128 the spills cost more than the occupancy gains). Its B and C tiles load in 4-token
vectors: in 16-bit types Triton's 8-token (16-byte) loads gave them another register layout than the float32 tiles,
and the conversions spilled: SegMamba stage 1 bfloat16 backward 19.4 -> 12.9 ms, float32 16.2 -> 13.1 ms."""

GATHER_TRANSPOSED_FROM_N = 1 << 20
"""Smallest N at which column-order (TRANSPOSED) directions are read through their index on the (state, token)
tile kernels at every row length (shorter rows always are, ``_Geometry.gathers_columns``); lowered only to compare
the two (benchmarks)."""

STATE_TILE_COLUMNS = False
"""Whether SEQUENTIAL launches run column-order (TRANSPOSED) directions whose padded columns fit a state tile on
state tiles of whole columns (``_columns_forward``, ``_columns_backward``: loads of neighbouring columns' rows, no
index), the kernel family of the other directions, so that long rows too could run every direction in one launch.
Off until timed on a GPU against the (channel, token) tiles (benchmarks/triton_scan_gpu.py --launch-sharing);
the tests run both."""

STATE_PARALLEL_BELOW_ROWS_PER_SM = 16
"""State tile kernels: chunk-parallel launches when there are fewer channel rows (programs) than this many per SM."""

MAX_BLOCK_D = 4
"""Sequences shorter than a chunk get more channels per program (up to this many) to keep the tile size."""

PARALLEL_BELOW_PROGRAMS_PER_SM = 2
"""Chunk-parallel launches when there are fewer channel-row programs than this many per SM."""

BACKWARD_ROW_STEPS = 8
"""(Channel, token) tile kernels, for N = 1 and gathered directions: channel blocks that one backward program walks
per chunk, summing their dB and dC before one atomic add: scattered atomics otherwise dominate the backward pass
(at VMamba-T's stage 1, 96 channels add into every B and C element). Directions read in memory order (linear,
transposed) add coalesced rows, cheaply enough that one block per program (fewer registers, more programs in
flight) is faster."""

CHUNK_PARALLEL: bool | None = None
"""Force (True) or forbid (False) chunk-parallel launches; None decides from the sizes."""

CARRY_ROWS = 64
"""Channel rows per program of the carry kernel."""


class Direction(NamedTuple):
    """How one direction reads its tokens from the raster layout (see ``kernels.py``).

    kind: "linear" (memory order), "transposed" (the columns of the grid seen as an (L / cols, cols) matrix, one
    after the other) or "gather" (through ``index``); flip: the reverse of a linear or transposed order; cols: Q
    of the (P, Q) view; index: (L,) int64 raster position of every step (gather).
    """

    kind: str
    flip: bool = False
    cols: int = 1
    index: Tensor | None = None


PLAIN = (Direction("linear"),)
"""The one direction of a plain scan: tokens in memory order."""


def _next_power_of_2(n: int) -> int:
    """Smallest power of two >= n (>= 1); plain Python: triton.next_power_of_2 costs microseconds per call on the
    host, several times per scan."""
    return 1 << max(n - 1, 0).bit_length()


class _Launch(NamedTuple):
    """Kernel arguments of one direction: LAYOUT, FLIP, P_PAD, VEC, HAS_INDEX, cols, chunk count, index row, and
    whether the (state, token) tile kernels run it (N >= STATE_TILES_FROM_N; TRANSPOSED only on tiles of whole
    columns, ``_Geometry.launch``)."""

    layout: int
    flip: bool
    rows_pad: int
    vec: int
    has_index: bool
    cols: int
    num_chunks: int
    index: Tensor | None
    state_tiles: bool = False


@dataclass(frozen=True)
class _Geometry:
    """Sizes of one launch; what they imply is computed once per call (cached properties)."""

    batch: int
    dim: int
    length: int
    num_dirs: int
    state: int
    b_groups: int
    c_groups: int

    @cached_property
    def tiling(self) -> Tiling:
        return TILINGS[min((k for k in TILINGS if k >= self.state), default=max(TILINGS))]

    @cached_property
    def chunk_len(self) -> int:
        """The tiling's chunk length, or the next power of two of L for shorter sequences."""
        return min(self.tiling.chunk_len, _next_power_of_2(self.length))

    @cached_property
    def state_tiling(self) -> StateTiling:
        return STATE_TILINGS[min((k for k in STATE_TILINGS if k >= self.state), default=max(STATE_TILINGS))]

    @cached_property
    def forward_stages(self) -> int:
        """Pipelining stages of the state tile forward: the tiling's where a chunk has several tiles, else 1."""
        tiling = self.state_tiling
        return tiling.forward_stages if self.chunk_len > self.tile_len(tiling.forward_tile) else 1

    @cached_property
    def forward_one_tile(self) -> bool:
        """Whether a row fits one tile of the state tile forward (one chunk: no tile loop, no entry state)."""
        return self.length <= self.tile_len(self.state_tiling.forward_tile)

    @cached_property
    def forward_rows(self) -> int:
        """Channel rows per program of the state tile forward's SEQUENTIAL launches: where a row fits one tile,
        the tiling's, halved until it divides the channels that share a B and a C group (so that a program's rows
        share their batch and groups); else 1 (long rows keep their programs busy)."""
        if not self.forward_one_tile:
            return 1
        rows = self.state_tiling.forward_rows
        while self.segment_len % rows:
            rows //= 2
        return rows

    @cached_property
    def shares_launches(self) -> bool:
        """Whether the SEQUENTIAL directions of one kernel family share a launch (``direction_kernels.py``): where
        rows fit one forward tile, whose short launches are bound by the host (there every direction runs on state
        tiles, ``gathers_columns``). Measured on an H100 (fused cross scan, eager forward + backward ms, one launch /
        two, columns on (channel, token) tiles / one per direction): VMamba-T stage 3 (L = 196) 1.44 / 2.06 / 2.74
        in bfloat16, 1.60 / 1.78 / 2.60 in float32; at stage 1 (L = 3136) one launch per direction beats two shared
        ones, 2.59 against 3.33 ms (float32), as the shared state tile backward's registers (127 per thread against
        80 and 96 for its raster and reversed bodies, compiled for sm_90) cost occupancy."""
        return self.forward_one_tile

    def tile_len(self, tile: int) -> int:
        """Tokens per register tile of the (state, token) tile kernels: ``tile``, or the chunk if shorter."""
        return min(tile, self.chunk_len)

    def state_warps(self, warps: int) -> int:
        """Warps per program of the (state, token) tile kernels: ``warps`` (set for N <= 16) times N_PAD / 16, which
        keeps the elements per thread, and so the registers, of N = 16 (N = 64 in one warp spills)."""
        return warps * max(1, self.state_pad // 16)

    @cached_property
    def gathers_columns(self) -> bool:
        """Whether column-order (TRANSPOSED) directions are read through their index on the state tile kernels
        rather than as (channel, token) tiles: where rows fit one forward tile, so that every direction of a cross
        scan runs in one launch (a short row's tile touches each of its cache lines however its tokens are ordered);
        at every length from N = GATHER_TRANSPOSED_FROM_N. Measured on an H100 (fused cross scan, VMamba-T stage 3,
        forward device time): 135 against 181 us in bfloat16, 117 against 165 us in float32. Longer rows gathered
        column by column reload each cache line once per tile: stage 1, float32, forward 1.28 against 0.54 ms."""
        return self.state >= STATE_TILES_FROM_N and (self.forward_one_tile or self.state >= GATHER_TRANSPOSED_FROM_N)

    @cached_property
    def column_tiles(self) -> bool:
        """Whether SEQUENTIAL launches run column directions on state tiles of whole columns (``STATE_TILE_COLUMNS``)
        where those do not gather them (``gathers_columns``)."""
        return STATE_TILE_COLUMNS

    def launch(self, direction: Direction, column_tile: int = 0) -> _Launch:
        """Kernel arguments of a direction; a transposed order is gathered where ``gathers_columns`` or where its
        columns exceed a chunk. ``column_tile`` > 0 (SEQUENTIAL launches): transposed orders whose padded columns
        fit a state tile of that many slots run on state tiles of whole columns (``_columns_forward``,
        ``_columns_backward``)."""
        state_tiles = self.state >= STATE_TILES_FROM_N
        if direction.kind == "transposed" and not self.gathers_columns:
            rows_pad = _next_power_of_2(self.length // direction.cols)
            if rows_pad <= self.chunk_len:
                columns_per_chunk = self.chunk_len // rows_pad
                num_chunks = -(-direction.cols // columns_per_chunk)
                # Rows of 4 aligned columns load as one 16-byte vector (float32) when cols is a multiple of 4.
                vec = math.gcd(direction.cols, columns_per_chunk, 4)
                on_state_tiles = state_tiles and 0 < rows_pad <= self.tile_len(column_tile)
                return _Launch(
                    TRANSPOSED.value,
                    direction.flip,
                    rows_pad,
                    vec,
                    False,
                    direction.cols,
                    num_chunks,
                    None,
                    on_state_tiles,
                )
        num_chunks = -(-self.length // self.chunk_len)
        if direction.kind == "linear":
            return _Launch(LINEAR.value, direction.flip, 1, 1, False, 1, num_chunks, None, state_tiles)
        return _Launch(LINEAR.value, False, 1, 1, True, 1, num_chunks, direction.index, state_tiles)

    @cached_property
    def segment_len(self) -> int:
        """Channels sharing both their B group and their C group (a program never straddles two)."""
        return self.dim // math.lcm(self.b_groups, self.c_groups)

    @cached_property
    def length_align(self) -> int:
        """Largest power of two (at most 16) dividing L: the kernels' LENGTH_ALIGN (``_aligned_length``)."""
        return min(16, self.length & -self.length)

    @cached_property
    def state_pad(self) -> int:
        return _next_power_of_2(self.state)

    def blocks(self, block_d: int) -> tuple[int, int]:
        """(BLOCK_D, blocks per segment) for programs of ``block_d`` channels per full-length chunk."""
        widened = max(block_d, min(MAX_BLOCK_D, block_d * self.tiling.chunk_len // self.chunk_len))
        block_d = min(_next_power_of_2(self.segment_len), widened)
        return block_d, -(-self.segment_len // block_d)

    def row_blocks(self, blocks_per_segment: int) -> int:
        return self.batch * (self.dim // self.segment_len) * blocks_per_segment

    def chunk_parallel(self, row_blocks: int, num_chunks: int, device: torch.device) -> bool:
        """Whether to launch one program per chunk; ``row_blocks``: programs per chunk of the (channel, token)
        tile kernels (the (state, token) tile kernels have one per channel row)."""
        if num_chunks == 1:
            return False
        if CHUNK_PARALLEL is not None:
            return CHUNK_PARALLEL
        sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1
        if self.state >= STATE_TILES_FROM_N:
            return self.batch * self.dim < STATE_PARALLEL_BELOW_ROWS_PER_SM * sms
        return row_blocks < PARALLEL_BELOW_PROGRAMS_PER_SM * sms


def _launch_flags(geom: _Geometry, D, z, delta_bias, softplus: bool, mean: bool, dtype: torch.dtype) -> dict:
    return dict(
        STATE=geom.state,
        CHUNK_LEN=geom.chunk_len,
        HAS_D=D is not None,
        HAS_Z=z is not None,
        HAS_BIAS=delta_bias is not None,
        SOFTPLUS=softplus,
        MEAN=mean,
        COMPUTE=tl.float64 if dtype == torch.float64 else tl.float32,
        LENGTH_ALIGN=geom.length_align,
    )


def _or(tensor: Tensor | None, placeholder: Tensor) -> Tensor:
    """Kernels take a pointer for every optional tensor; unused ones get a placeholder."""
    return placeholder if tensor is None else tensor


def _carry(geom: _Geometry, local: Tensor, decay_sum: Tensor, A: Tensor, carried: Tensor, reverse: bool) -> None:
    """Chain the per-chunk maps of every channel row (``_carry_kernel``)."""
    rows = geom.batch * geom.num_dirs * geom.dim
    _carry_kernel[(-(-rows // CARRY_ROWS),)](
        local,
        decay_sum,
        A,
        carried,
        rows,
        geom.num_dirs * geom.dim,
        local.shape[3],
        STATE=geom.state,
        N_PAD=geom.state_pad,
        BLOCK_R=CARRY_ROWS,
        REVERSE=reverse,
        COMPUTE=tl.float64 if local.dtype == torch.float64 else tl.float32,
    )


def _size_args(geom: _Geometry, cols, num_chunks, chunk_stride: int, blocks_per_segment: int) -> tuple:
    """The runtime size arguments shared by the per-direction and the one-launch kernels; ``cols`` and
    ``num_chunks`` are a direction's (ints) or a launch's directions' (tuples)."""
    return (
        geom.dim,
        geom.length,
        cols,
        num_chunks,
        chunk_stride,
        geom.num_dirs,
        geom.b_groups,
        geom.c_groups,
        geom.segment_len,
        blocks_per_segment,
    )


def _direction_args(geom: _Geometry, k: int, launch: _Launch, chunk_stride: int, blocks_per_segment: int) -> tuple:
    """The (channel, token) tile kernels' runtime size arguments for direction k."""
    return (k, *_size_args(geom, launch.cols, launch.num_chunks, chunk_stride, blocks_per_segment))


def _state_tile_args(geom: _Geometry, k: int, launch: _Launch, chunk_stride: int) -> tuple:
    """The (state, token) tile kernels' runtime size arguments for direction k."""
    return (k, geom.length, launch.num_chunks, chunk_stride, geom.num_dirs)


def _state_tile_flags(geom: _Geometry, launch: _Launch, k: int, tile: int) -> dict:
    """Compile-time arguments of the (state, token) tile kernels: with the channel count and the B and C group
    counts among them, a program finds its batch, channel and groups by multiplications instead of runtime integer
    divisions (about 20 instructions each, a large part of a short program's set-up); a model has few distinct
    channel counts, so few variants compile."""
    return dict(
        DIM=geom.dim,
        B_GROUPS=geom.b_groups,
        C_GROUPS=geom.c_groups,
        N_PAD=geom.state_pad,
        TILE_LEN=geom.tile_len(tile),
        FLIP=launch.flip,
        HAS_INDEX=launch.has_index,
        ACCUMULATE=k > 0,
    )


def _direction_flags(launch: _Launch, k: int) -> dict:
    return dict(
        LAYOUT=launch.layout,
        FLIP=launch.flip,
        P_PAD=launch.rows_pad,
        VEC=launch.vec,
        HAS_INDEX=launch.has_index,
        ACCUMULATE=k > 0,
    )


def _launch_groups(keys: list, shared: bool) -> list[tuple[int, ...]]:
    """The directions of each SEQUENTIAL launch: with ``shared``, those with equal keys (their kernel family and
    launch sizes), in the order of each group's first direction; else one launch per direction."""
    if not shared:
        return [(k,) for k in range(len(keys))]
    groups: dict = {}
    for k, key in enumerate(keys):
        groups.setdefault(key, []).append(k)
    return [tuple(group) for group in groups.values()]


def _directions_args(
    geom: _Geometry, launches: list[_Launch], group: tuple[int, ...], chunk_stride: int, blocks_per_segment: int
) -> tuple:
    """The one-launch kernels' runtime size arguments for the directions ``group``."""
    cols = tuple(launches[k].cols for k in group)
    num_chunks = tuple(launches[k].num_chunks for k in group)
    return _size_args(geom, cols, num_chunks, chunk_stride, blocks_per_segment)


def _directions_flags(geom: _Geometry, launches: list[_Launch], group: tuple[int, ...]) -> dict:
    """The one-launch kernels' compile-time arguments for the directions ``group``: the state tile kernels'
    sizes, the launch's kernel family, whether it adds into the output of directions launched before it, and
    per-direction tuples."""
    return dict(
        DIM=geom.dim,
        B_GROUPS=geom.b_groups,
        C_GROUPS=geom.c_groups,
        STATE_TILES=launches[group[0]].state_tiles,
        DIRECTIONS=group,
        ACCUMULATE=group[0] > 0,
        LAYOUTS=tuple(launches[k].layout for k in group),
        FLIPS=tuple(launches[k].flip for k in group),
        P_PADS=tuple(launches[k].rows_pad for k in group),
        VECS=tuple(launches[k].vec for k in group),
        HAS_INDEXES=tuple(launches[k].has_index for k in group),
    )


def scan_forward(geom, directions, u, delta, A, B, C, D, z, delta_bias, softplus, mean, dtype, need_last_state):
    """Run the forward kernel(s): SEQUENTIAL, one launch per group of directions (``_launch_groups``);
    chunk-parallel, launches of one direction after the other. Each direction adds into out.

    Returns out (Bt, D, L) in u's dtype, states (Bt, K, D, n_chunks, N) and the final state (Bt, K, D, N), or None
    unless ``need_last_state``. The state tile kernels skip the states of directions of one chunk then (the
    backward pass reads only the states before a chunk)."""
    block_d, blocks_per_segment = geom.blocks(geom.tiling.forward_block_d)
    row_blocks = geom.row_blocks(blocks_per_segment)
    launches = [geom.launch(direction) for direction in directions]
    chunk_stride = max(launch.num_chunks for launch in launches)
    parallel = geom.chunk_parallel(row_blocks, chunk_stride, u.device)
    # K directions add into one raster-order output: accumulate in the compute dtype.
    out = torch.empty(u.shape, dtype=dtype if geom.num_dirs > 1 else u.dtype, device=u.device)
    chunk_shape = (geom.batch, geom.num_dirs, geom.dim, chunk_stride)
    states = torch.empty((*chunk_shape, geom.state), dtype=dtype, device=u.device)
    flags = _launch_flags(geom, D, z, delta_bias, softplus, mean, dtype)
    inputs = (u, delta, A, B, C, _or(D, A), _or(z, u), _or(delta_bias, A))
    store_states = [need_last_state or launch.num_chunks > 1 for launch in launches]

    def launch(k, mode, local, decay_sum):
        chunks = launches[k].num_chunks
        if launches[k].state_tiles:
            _state_forward_kernel[(geom.batch * geom.dim, chunks)](
                *inputs,
                _or(launches[k].index, u),
                out,
                states,
                local,
                decay_sum,
                *_state_tile_args(geom, k, launches[k], chunk_stride),
                launches[k].cols,
                LAYOUT=launches[k].layout,
                P_PAD=launches[k].rows_pad,
                MODE=mode.value,
                num_warps=geom.state_warps(geom.state_tiling.forward_warps),
                NUM_STAGES=geom.forward_stages,
                ROWS=1,
                ONE_TILE=False,
                STORE_STATES=store_states[k],
                **_state_tile_flags(geom, launches[k], k, geom.state_tiling.forward_tile),
                **flags,
            )
            return
        _scan_forward_kernel[(row_blocks, chunks)](
            *inputs,
            _or(launches[k].index, u),
            out,
            states,
            local,
            decay_sum,
            *_direction_args(geom, k, launches[k], chunk_stride, blocks_per_segment),
            BLOCK_D=block_d,
            MODE=mode.value,
            num_warps=geom.tiling.forward_warps,
            **_direction_flags(launches[k], k),
            **flags,
        )

    if parallel:
        # Chunks past a direction's own count stay identity maps (zeros) for the carry pass.
        local = torch.zeros_like(states)
        decay_sum = torch.zeros(chunk_shape, dtype=dtype, device=u.device)
        for k in range(geom.num_dirs):
            launch(k, SUMMARY, local, decay_sum)
        _carry(geom, local, decay_sum, A, states, reverse=False)
        for k in range(geom.num_dirs):
            launch(k, FROM_CARRY, local, decay_sum)
    else:
        if geom.column_tiles:
            launches = [geom.launch(direction, geom.state_tiling.forward_tile) for direction in directions]
        for group in _launch_groups([launch.state_tiles for launch in launches], geom.shares_launches):
            state_tiles = launches[group[0]].state_tiles
            rows = geom.forward_rows if state_tiles else block_d
            warps = geom.state_warps(geom.state_tiling.forward_warps) if state_tiles else geom.tiling.forward_warps
            _directions_forward_kernel[(geom.batch * geom.dim // rows if state_tiles else row_blocks,)](
                *inputs,
                tuple(_or(launches[k].index, u) for k in group),
                out,
                states,
                *_directions_args(geom, launches, group, chunk_stride, blocks_per_segment),
                N_PAD=geom.state_pad,
                TILE_LEN=geom.tile_len(geom.state_tiling.forward_tile),
                NUM_STAGES=geom.forward_stages,
                ROWS=rows,
                ONE_TILE=geom.forward_one_tile,
                BLOCK_D=block_d,
                STORE_STATES=tuple(store_states[k] for k in group),
                num_warps=warps,
                **_directions_flags(geom, launches, group),
                **flags,
            )
    if not need_last_state:
        last_state = None
    elif all(launch.num_chunks == chunk_stride for launch in launches):
        last_state = states[:, :, :, -1].clone()
    else:
        last_state = torch.stack([states[:, k, :, launch.num_chunks - 1] for k, launch in enumerate(launches)], 1)
    return out.to(u.dtype), states, last_state


def scan_backward(geom, directions, dout, u, delta, A, B, C, D, z, delta_bias, states, softplus, mean):
    """Run the backward kernel(s): SEQUENTIAL, one launch per group of directions (``_launch_groups``);
    chunk-parallel, launches of one direction after the other. Returns the gradients of u, delta, A, B, C, D, z,
    delta_bias."""
    dtype = states.dtype
    device = u.device
    block_d, blocks_per_segment = geom.blocks(geom.tiling.backward_block_d)
    chunk_stride = states.shape[3]
    parallel = geom.chunk_parallel(geom.row_blocks(blocks_per_segment), chunk_stride, device)
    column_tile = geom.state_tiling.backward_tile if geom.column_tiles and not parallel else 0
    launches = [geom.launch(direction, column_tile) for direction in directions]
    # N = 1, gathered directions on (channel, token) tiles: a program walks several channel blocks and sums their
    # dB and dC before one atomic add.
    walks_blocks = [geom.state == 1 and launch.has_index and not launch.state_tiles for launch in launches]
    row_steps = [min(BACKWARD_ROW_STEPS, blocks_per_segment) if walks else 1 for walks in walks_blocks]
    programs_per_segment = [-(-blocks_per_segment // steps) for steps in row_steps]
    du = torch.empty(u.shape, dtype=dtype if geom.num_dirs > 1 else u.dtype, device=device)
    ddelta = torch.empty_like(delta)
    dz = None if z is None else torch.empty_like(z)
    # Several programs add into one dB/dC slot when a B or C group spans several of them.
    segments_per_group = max(geom.dim // groups for groups in (geom.b_groups, geom.c_groups)) // geom.segment_len
    atomic_bc = [
        geom.dim // min(geom.b_groups, geom.c_groups) > 1
        if launch.state_tiles
        else segments_per_group * programs_per_segment[k] > 1
        for k, launch in enumerate(launches)
    ]
    new_bc = torch.zeros if any(atomic_bc) else torch.empty
    dB, dC = (new_bc(t.shape, dtype=dtype, device=device) for t in (B, C))
    chunk_shape = (geom.batch, geom.num_dirs, geom.dim, chunk_stride)
    # Zeros: directions with fewer chunks than chunk_stride leave their last slots unwritten.
    dA = torch.zeros((*chunk_shape, geom.state), dtype=dtype, device=device)
    dD = None if D is None else torch.zeros(chunk_shape, dtype=dtype, device=device)
    dbias = None if delta_bias is None else torch.zeros(chunk_shape, dtype=dtype, device=device)
    flags = _launch_flags(geom, D, z, delta_bias, softplus, mean, dtype)
    inputs = (u, delta, A, B, C, _or(D, A), _or(z, u), _or(delta_bias, A))
    outputs = (du, ddelta, dB, dC, _or(dz, u), dA, _or(dD, dA), _or(dbias, dA))

    def launch(k, mode, carry, decay_sum):
        tensors = (*inputs, _or(launches[k].index, u), dout)
        chunks = launches[k].num_chunks
        if launches[k].state_tiles:
            _state_backward_kernel[(geom.batch * geom.dim, chunks)](
                *tensors,
                states,
                carry,
                decay_sum,
                *outputs,
                *_state_tile_args(geom, k, launches[k], chunk_stride),
                launches[k].cols,
                LAYOUT=launches[k].layout,
                P_PAD=launches[k].rows_pad,
                ATOMIC_BC=atomic_bc[k],
                BC_VECTOR=geom.state_tiling.backward_vector,
                MODE=mode.value,
                num_warps=geom.state_warps(geom.state_tiling.backward_warps),
                maxnreg=geom.state_tiling.backward_max_registers,
                **_state_tile_flags(geom, launches[k], k, geom.state_tiling.backward_tile),
                **flags,
            )
            return
        _scan_backward_kernel[(geom.row_blocks(programs_per_segment[k]), chunks)](
            *tensors,
            states,
            carry,
            decay_sum,
            *outputs,
            *_direction_args(geom, k, launches[k], chunk_stride, programs_per_segment[k]),
            BLOCK_D=block_d,
            ATOMIC_BC=atomic_bc[k],
            ROW_STEPS=row_steps[k],
            MODE=mode.value,
            num_warps=geom.tiling.backward_warps,
            **_direction_flags(launches[k], k),
            **flags,
        )

    if parallel:
        local = torch.zeros_like(states)
        carried = torch.empty_like(states)
        decay_sum = torch.zeros(chunk_shape, dtype=dtype, device=device)
        for k in range(geom.num_dirs):
            launch(k, SUMMARY, local, decay_sum)
        _carry(geom, local, decay_sum, A, carried, reverse=True)
        for k in range(geom.num_dirs):
            launch(k, FROM_CARRY, carried, decay_sum)
    else:
        # State tile programs carry dh in registers; channel tile programs pass it to the previous chunk in memory.
        carry = states if all(launch.state_tiles for launch in launches) else torch.empty_like(states)
        keys = [(launch.state_tiles, steps) for launch, steps in zip(launches, row_steps)]
        for group in _launch_groups(keys, geom.shares_launches):
            state_tiles = launches[group[0]].state_tiles
            programs = geom.batch * geom.dim if state_tiles else geom.row_blocks(programs_per_segment[group[0]])
            tiling = geom.state_tiling
            _directions_backward_kernel[(programs, 1)](
                *inputs,
                tuple(_or(launches[k].index, u) for k in group),
                dout,
                states,
                carry,
                *outputs,
                *_directions_args(geom, launches, group, chunk_stride, programs_per_segment[group[0]]),
                N_PAD=geom.state_pad,
                TILE_LEN=geom.tile_len(tiling.backward_tile),
                BC_VECTOR=tiling.backward_vector,
                BLOCK_D=block_d,
                ROW_STEPS=row_steps[group[0]],
                ATOMIC_BCS=tuple(atomic_bc[k] for k in group),
                num_warps=geom.state_warps(tiling.backward_warps) if state_tiles else geom.tiling.backward_warps,
                maxnreg=tiling.backward_max_registers if state_tiles else None,
                **_directions_flags(geom, launches, group),
                **flags,
            )
    return (
        du.to(u.dtype),
        ddelta,
        dA.sum((0, 3)).to(A.dtype),
        dB.to(B.dtype),
        dC.to(C.dtype),
        None if D is None else dD.sum((0, 3)).to(D.dtype),
        dz,
        None if delta_bias is None else dbias.sum((0, 3)).to(delta_bias.dtype),
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
    def forward(
        ctx, u, delta, A, B, C, D, z, delta_bias, directions, softplus, b_groups, c_groups, mean, need_last_state
    ):
        u, delta, A, B, C = (t.contiguous() for t in (u, delta, A, B, C))
        D, z, delta_bias = (None if t is None else t.contiguous() for t in (D, z, delta_bias))
        batch, num_dirs, dim, length = delta.shape
        geom = _Geometry(batch, dim, length, num_dirs, A.shape[-1], b_groups, c_groups)
        dtype = compute_dtype(u, delta, A, B, C)
        out, states, last_state = scan_forward(
            geom, directions, u, delta, A, B, C, D, z, delta_bias, softplus, mean, dtype, need_last_state
        )
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states)
        ctx.geom, ctx.directions, ctx.softplus, ctx.mean = geom, directions, softplus, mean
        if last_state is not None:
            ctx.mark_non_differentiable(last_state)
        return out, last_state

    @staticmethod
    def backward(ctx, dout, _dlast_state):
        u, delta, A, B, C, D, z, delta_bias, states = ctx.saved_tensors
        grads = scan_backward(
            ctx.geom,
            ctx.directions,
            dout.contiguous(),
            u,
            delta,
            A,
            B,
            C,
            D,
            z,
            delta_bias,
            states,
            ctx.softplus,
            ctx.mean,
        )
        return (*grads, None, None, None, None, None, None)


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
        D, delta_bias: (D,). z: (Bt, D, L). delta_softplus: softplus(delta + delta_bias), threshold 20; with a
            16-bit delta computed through the hardware log2, within 2^-11 relative (the delta's own rounding
            moves it by more).
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
        PLAIN,
        delta_softplus,
        B4.shape[1],
        C4.shape[1],
        False,
        return_last_state,
    )
    return (out, last_state[:, 0]) if return_last_state else out
