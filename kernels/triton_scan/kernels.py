"""Triton kernels of the fused selective scan (S6): forward, backward, and the chunk-carry pass between them.

A kernel scans one direction: a plain scan (tokens in memory order), or one direction of a multi-direction scan,
whose output is added into the raster-order result of the directions run before it (ACCUMULATE), in the same
program (``direction_kernels.py``) or by an earlier launch.
Layouts, all contiguous (Bt = batch, D = channels, L = tokens, N = state size, n_chunks = the largest chunk
count of the K directions):

- u, z, out, dout, du, dz: (Bt, D, L), shared by the K directions;
- delta, ddelta: (Bt, K, D, L); A: (K, D, N); D, delta_bias: (K, D);
- B, C, dB, dC: (Bt, K * G, N, L): channel d of direction k uses group k * G + d // (D // G);
- index: (L,), the launched direction's row of the (K, L) index map (GATHER only);
- states: (Bt, K, D, n_chunks, N), the state after each chunk, the only thing the forward pass keeps;
- per-chunk partial sums of the backward pass: dA (Bt, K, D, n_chunks, N), dD and ddelta_bias (Bt, K, D, n_chunks).

How a direction reads its tokens (LAYOUT, FLIP; one tile = one chunk of CHUNK_LEN slots):

- LINEAR: slot j of chunk c is memory position c * CHUNK_LEN + j (plain scans, raster directions); with FLIP the
  direction is the reversed raster order and chunk c holds positions L - (c + 1) * CHUNK_LEN + j, so loads stay
  contiguous and the recurrences run from the tile's last slot to its first.
- TRANSPOSED: the direction visits the columns of the raster grid seen as a (P, Q) matrix (column-major: a 2D
  grid's column scan, a 3D volume's depth-fastest scan). A chunk is Q_TILE = CHUNK_LEN / P_PAD whole columns,
  kept as a (BLOCK_D, P_PAD, Q_TILE) tile in memory layout: tile rows are grid rows (bottom to top with FLIP), so
  loads and stores read consecutive positions (VEC-wide vectors when cols is a multiple of VEC), and nothing is
  transposed in registers. Slots of the padding rows P..P_PAD - 1 have dt = 0, which leaves the state unchanged.
  With FLIP the columns are visited in reverse.
- GATHER (HAS_INDEX): slot j of chunk c is memory position index[c * CHUNK_LEN + j]: any other order.

A program owns BLOCK_D channels of one batch row that share their B and C groups (so a B or C row is loaded
once for all of them) and works on (BLOCK_D, slots...) register tiles, one state index n after the other: per
n, the chunk's recurrence h_t = exp(dt_t A_n) h_{t-1} + dt_t u_t B_{n,t} is ``_chunk_scan``: one
``tl.associative_scan`` along the slots with the state carried in folded into the first slot, or for TRANSPOSED
tiles a scan down the columns followed by an exclusive scan of the columns' maps across the chunk.

Work is split in one of two ways (MODE):

- SEQUENTIAL: a program walks all chunks of its channels in order (forward) or in reverse (backward),
  carrying the state (or its gradient) through the states buffer. Enough when Bt * D gives every SM several
  programs.
- Chunk-parallel, when there are few rows and long sequences (3D volumes): SUMMARY programs, one per chunk,
  reduce their chunk to an affine map of the state (its decay exp(A * sum dt) and its input, a plain sum
  of decayed inputs: no scan), ``_carry_kernel`` chains those maps over the chunks, and FROM_CARRY programs,
  one per chunk, start from the carried state.
"""

from __future__ import annotations

import triton
import triton.language as tl
from triton.language.extra import libdevice

LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)

FAST_MATH = tl.constexpr(not triton.knobs.runtime.interpret)
"""Compiled kernels compute float32 exp2 and divisions with libdevice's subnormal-flushing forms: one MUFU
instruction each (plus a multiply for the division), where tl.exp2 and "/" add 3 to 4 instructions of range
fix-ups per call. Triton's CPU interpreter cannot call libdevice, so under it (known at import, when triton.jit
decides too) the kernels use tl.exp2 and "/"."""

# Work splits (the MODE argument); kernels read only constexpr globals.
SEQUENTIAL = tl.constexpr(0)
SUMMARY = tl.constexpr(1)
FROM_CARRY = tl.constexpr(2)

# Token layouts of a direction (the LAYOUT argument).
LINEAR = tl.constexpr(0)
TRANSPOSED = tl.constexpr(1)


@triton.jit
def _linear_combine(decay_first, value_first, decay_second, value_second):
    """Compose h -> decay_first * h + value_first with h -> decay_second * h + value_second."""
    return decay_second * decay_first, decay_second * value_first + value_second


@triton.jit
def _exp2(x):
    """2^x; float32 results below 2^-126 flush to 0 (a decay or exp(-|x|) that small is 0 to every consumer)."""
    if FAST_MATH and x.dtype == tl.float32:
        return libdevice.exp2(x)
    return tl.exp2(x)


@triton.jit
def _div(x, y):
    """x / y; in float32 within 2 ulp for |y| in [2^-126, 2^126] (0 above it, where x / y rounds to about 0)."""
    if FAST_MATH and y.dtype == tl.float32:
        return libdevice.fast_dividef(x, y)
    return x / y


@triton.jit
def _log2(x):
    """log2(x); float32 through the hardware approximation (absolute error about 2^-22 for x in [1, 2])."""
    if FAST_MATH and x.dtype == tl.float32:
        return libdevice.fast_log2f(x)
    return tl.log2(x)


@triton.jit
def _widen(x, COMPUTE: tl.constexpr):
    """x in the compute dtype. Compiled, bfloat16 to float32 takes one bit operation per element (pairs held in
    32-bit registers: the low one shifted up, the high one masked), where the compiler's conversion spends two on
    every high half."""
    if FAST_MATH and x.dtype == tl.bfloat16 and tl.float32 == COMPUTE:
        return tl.inline_asm_elementwise(
            "{ shl.b32 $0, $2, 16; and.b32 $1, $2, 0xffff0000; }",
            "=r,=r,r",
            [x],
            dtype=tl.float32,
            is_pure=True,
            pack=2,
        )
    return x.to(COMPUTE)


@triton.jit
def _softplus(x, ROUGH: tl.constexpr):
    """softplus with torch's threshold 20 (x above it passes through). In float32 the formula below passes x > 20
    through unchanged by itself (its log1p term, below 2.1e-9, is under half an ulp of x), so it needs no test.

    float32: max(x, 0) + log1p(t), t = exp(-|x|) in (0, 1], with log1p(t) = 2 atanh(s), s = t / (2 + t) <= 1/3,
    summed to s^13 (truncation below 1.5e-8): one exp, one division and seven multiply-adds, where an accurate
    log costs a polynomial of its own. Beyond the series, the error is the exp's and the division's: 3e-7 of
    float64 softplus under the interpreter; on a GPU, whose exp rounds x log2(e), up to about |x| 2^-23 more
    (1.8e-6 at x = -40, H200).
    ROUGH (deltas given in a 16-bit type): log1p(t) as log2(1 + t) ln 2 through the hardware log2, or t below
    2^-10, for about half the instructions; relative error up to 2^-11, where the 16-bit delta's own rounding
    moves softplus by |x| 2^-9 relative (1.3e-2 at x = -7, dt = 1e-3) or more.
    float64: log1p(e) as log(1 + e) * e / ((1 + e) - 1), exact to rounding."""
    if x.dtype == tl.float64:
        e = tl.exp(x)
        one_plus = 1.0 + e
        log1p = tl.where(one_plus == 1.0, e, tl.log(one_plus) * e / (one_plus - 1.0))
        return tl.where(x > 20.0, x, log1p)
    t = _exp2(tl.abs(x) * -LOG2E)
    if ROUGH:
        log1p = tl.where(t < 0.0009765625, t, _log2(1.0 + t) * LN2)
    else:
        s = _div(t, 2.0 + t)
        s2 = s * s
        series = 1.0 / 13.0
        for inverse in tl.static_range(11, 0, -2):
            series = series * s2 + 1.0 / inverse
        log1p = 2.0 * s * series
    return tl.maximum(x, 0.0) + log1p


@triton.jit
def _sigmoid(x):
    return _div(1.0, 1.0 + _exp2(x * -LOG2E))


@triton.jit
def _rows_of_program(work, dim, segment_len, blocks_per_segment, BLOCK: tl.constexpr):
    """(batch row, first channel, end of its segment) of row block ``work`` (BLOCK channels per block)."""
    blocks_per_row = (dim // segment_len) * blocks_per_segment
    batch = work // blocks_per_row
    rest = work % blocks_per_row
    segment = rest // blocks_per_segment
    first = segment * segment_len + (rest % blocks_per_segment) * BLOCK
    return batch.to(tl.int64), first, (segment + 1) * segment_len


@triton.jit
def _chunk_range(num_chunks, MODE: tl.constexpr):
    """(first chunk, end chunk) of this program."""
    if MODE == SEQUENTIAL:
        return 0, num_chunks
    chunk = tl.program_id(1)
    return chunk, chunk + 1


@triton.jit
def _column_slots(
    i,
    j,
    chunk,
    length,
    cols,
    NEXT: tl.constexpr,
    FLIP: tl.constexpr,
    P_PAD: tl.constexpr,
    Q_TILE: tl.constexpr,
    VEC: tl.constexpr,
):
    """TRANSPOSED: (memory position, valid) of the slots at tile rows ``i``, tile columns ``j`` (broadcastable
    tensors), or with NEXT of the slot that follows each of them in scan order (the next tile row, or the first
    row of the next column in scan order after the last padding row). Tile rows run down a column in scan order
    (bottom to top with FLIP); tile columns are in memory order.

    VEC: cols and the tile's first column are multiples of VEC, so each run of VEC columns is valid or not as a
    whole and starts at an aligned position: the loads and stores of a tile row can be VEC wide."""
    rows = length // cols
    first_q = cols - (chunk + 1) * Q_TILE if FLIP else chunk * Q_TILE
    if NEXT:
        wraps = i == P_PAD - 1
        i = tl.where(wraps, 0, i + 1)
        q = tl.where(wraps, first_q + j + (-1 if FLIP else 1), first_q + j)
        q_valid = (q >= 0) & (q < cols)
    else:
        q = first_q + j
        # The columns outside [0, cols) are whole runs of VEC: tested per run, the mask is constant over a run.
        runs = j // VEC
        q_valid = runs >= -first_q // VEC if FLIP else runs < (cols - first_q) // VEC
    p = rows - 1 - i if FLIP else i
    positions = p.to(tl.int64) * cols + q
    if VEC > 1 and not NEXT:
        positions = tl.max_contiguous(tl.multiple_of(positions, [1, VEC]), [1, VEC])
    return positions, (p >= 0) & (p < rows) & q_valid


@triton.jit
def _chunk_slots(
    index_ptr,
    chunk,
    length,
    cols,
    NEXT: tl.constexpr,
    LAYOUT: tl.constexpr,
    FLIP: tl.constexpr,
    HAS_INDEX: tl.constexpr,
    CHUNK_LEN: tl.constexpr,
    P_PAD: tl.constexpr,
    VEC: tl.constexpr,
):
    """(memory positions (int64), valid) of the chunk's slots, or with NEXT of the token after each slot in
    scan order, shaped as the chunk's tiles: (CHUNK_LEN,), or (P_PAD, Q_TILE) for TRANSPOSED."""
    if LAYOUT == TRANSPOSED:
        positions, valid = _column_slots(
            tl.arange(0, P_PAD)[:, None],
            tl.arange(0, CHUNK_LEN // P_PAD)[None, :],
            chunk,
            length,
            cols,
            NEXT,
            FLIP,
            P_PAD,
            CHUNK_LEN // P_PAD,
            VEC,
        )
    elif FLIP:
        positions = (length - (chunk + 1) * CHUNK_LEN + tl.arange(0, CHUNK_LEN) - (1 if NEXT else 0)).to(tl.int64)
        valid = positions >= 0
    else:
        steps = chunk * CHUNK_LEN + tl.arange(0, CHUNK_LEN) + (1 if NEXT else 0)
        valid = steps < length
        positions = tl.load(index_ptr + steps, mask=valid, other=0) if HAS_INDEX else steps
        positions = positions.to(tl.int64)
    # A single return: Triton rejects differently shaped returns even in branches it never compiles.
    return positions, valid


@triton.jit
def _end_slot(
    LAST: tl.constexpr, LAYOUT: tl.constexpr, FLIP: tl.constexpr, CHUNK_LEN: tl.constexpr, P_PAD: tl.constexpr
):
    """Mask, shaped as the chunk's slots, of its first slot in scan order (or with LAST its last one)."""
    if LAYOUT == TRANSPOSED:
        rows = tl.arange(0, P_PAD)[:, None]
        cols = tl.arange(0, CHUNK_LEN // P_PAD)[None, :]
        end = (rows == (P_PAD - 1 if LAST else 0)) & (cols == (CHUNK_LEN // P_PAD - 1 if LAST != FLIP else 0))
    else:
        end = tl.arange(0, CHUNK_LEN) == (CHUNK_LEN - 1 if LAST != FLIP else 0)
    return end


@triton.jit
def _per_channel(values, LAYOUT: tl.constexpr):
    """(BLOCK_D,) channel values broadcast against the chunk's (BLOCK_D, slots...) tiles."""
    tile = values[:, None, None] if LAYOUT == TRANSPOSED else values[:, None]
    return tile


@triton.jit
def _per_slot(values, LAYOUT: tl.constexpr):
    """Values shaped as the chunk's slots broadcast against its (BLOCK_D, slots...) tiles."""
    tile = values[None, :, :] if LAYOUT == TRANSPOSED else values[None, :]
    return tile


@triton.jit
def _sum_slots(tile, LAYOUT: tl.constexpr):
    """(BLOCK_D,) sums of a (BLOCK_D, slots...) tile over the chunk's slots."""
    total = tl.sum(tl.sum(tile, axis=2), axis=1) if LAYOUT == TRANSPOSED else tl.sum(tile, axis=1)
    return total


@triton.jit
def _exclusive_sum(values, AFTER: tl.constexpr, LAYOUT: tl.constexpr, FLIP: tl.constexpr):
    """Per slot, the sum of a (BLOCK_D, slots...) tile over the slots before it in scan order (with AFTER, after
    it)."""
    if LAYOUT == TRANSPOSED:
        in_column = tl.cumsum(values, axis=1, reverse=AFTER) - values
        columns = tl.sum(values, axis=1)
        other_columns = tl.cumsum(columns, axis=1, reverse=AFTER != FLIP) - columns
        total = in_column + other_columns[:, None, :]
    else:
        total = tl.cumsum(values, axis=1, reverse=AFTER != FLIP) - values
    return total


@triton.jit
def _add_pairs(first1, second1, first2, second2):
    """Sum two (first, second) pairs (one reduction for both)."""
    return first1 + first2, second1 + second2


@triton.jit
def _column_combine(
    full_decay1, full_value1, head_decay1, head_value1, full_decay2, full_value2, head_decay2, head_value2
):
    """Combine two runs of columns, the earlier first, each as (its map, the map of all its columns but the last):
    (full2 o full1, head2 o full1). Scanned over single columns (full = the column's map, head = identity), the
    head part is the exclusive scan: the map from the chunk's entry to each column's first slot."""
    full_decay, full_value = _linear_combine(full_decay1, full_value1, full_decay2, full_value2)
    head_decay, head_value = _linear_combine(full_decay1, full_value1, head_decay2, head_value2)
    return full_decay, full_value, head_decay, head_value


@triton.jit
def _chunk_scan(
    decay,
    drive,
    entry,
    REVERSE: tl.constexpr,
    LAYOUT: tl.constexpr,
    FLIP: tl.constexpr,
    CHUNK_LEN: tl.constexpr,
    P_PAD: tl.constexpr,
):
    """h_t = decay_t * h_prev + drive_t over a (BLOCK_D, slots...) tile in scan order (with REVERSE against it),
    h_prev of the first slot being ``entry`` (BLOCK_D,). Returns h at every slot.

    TRANSPOSED tiles are scanned down their columns (tile rows are in scan order), each column from the identity;
    each column's map (read at its last row) is then chained over the columns in scan order (an exclusive scan of
    maps, ``_column_combine``) to give the state entering it. Both scans run along the tile's own axes, so the tile
    keeps the register layout of its coalesced loads (no transposition)."""
    if LAYOUT == TRANSPOSED:
        col_decay, col_value = tl.associative_scan((decay, drive), 1, _linear_combine, reverse=REVERSE)
        # Kept 3D (BLOCK_D, 1, Q_TILE) so that the column maps stay in the tile's register layout.
        total_row = (tl.arange(0, P_PAD) == (0 if REVERSE else P_PAD - 1))[None, :, None]
        full_decay, full_value = tl.reduce(
            (tl.where(total_row, col_decay, 0.0), tl.where(total_row, col_value, 0.0)), 1, _add_pairs, keep_dims=True
        )
        _, _, head_decay, head_value = tl.associative_scan(
            (
                full_decay,
                full_value,
                tl.full(full_decay.shape, 1, full_decay.dtype),
                tl.full(full_value.shape, 0, full_value.dtype),
            ),
            2,
            _column_combine,
            reverse=REVERSE != FLIP,
        )
        states = col_decay * (head_decay * entry[:, None, None] + head_value) + col_value
    else:
        first = _per_slot(_end_slot(REVERSE, LAYOUT, FLIP, CHUNK_LEN, P_PAD), LAYOUT)
        _, states = tl.associative_scan(
            (decay, tl.where(first, drive + decay * entry[:, None], drive)),
            1,
            _linear_combine,
            reverse=REVERSE != FLIP,
        )
    return states


@triton.jit
def _load_slots(ptr, positions, valid, LAYOUT: tl.constexpr):
    """(1, slots...) tile of a B or C row at the chunk's slots, 0 where masked; shaped as the channel tiles so that
    it shares their register layout."""
    return tl.load(ptr + _per_slot(positions, LAYOUT), mask=_per_slot(valid, LAYOUT), other=0)


@triton.jit
def _load_rows(ptr, rows, positions, valid, row_mask, LAYOUT: tl.constexpr):
    """(BLOCK_D, slots...) tile of rows ``rows`` (offsets) at the chunk's slots; 0 where masked."""
    mask = _per_channel(row_mask, LAYOUT) & _per_slot(valid, LAYOUT)
    return tl.load(ptr + _per_channel(rows, LAYOUT) + _per_slot(positions, LAYOUT), mask=mask, other=0)


@triton.jit
def _store_rows(ptr, rows, positions, valid, row_mask, values, LAYOUT: tl.constexpr):
    """Store a (BLOCK_D, slots...) tile at the chunk's slots (converted to ptr's type)."""
    mask = _per_channel(row_mask, LAYOUT) & _per_slot(valid, LAYOUT)
    offsets = _per_channel(rows, LAYOUT) + _per_slot(positions, LAYOUT)
    tl.store(ptr + offsets, values.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _add_slots(ptr, positions, valid, values, ATOMIC: tl.constexpr, LAYOUT: tl.constexpr):
    """Store (or atomically add) a (1, slots...) tile (a sum over the channel tiles' first axis, kept 2D/3D so that
    it keeps their register layout) at the chunk's positions."""
    if ATOMIC:
        # Relaxed: the sums are read after the kernel, so no ordering (and no memory fences) is needed.
        tl.atomic_add(ptr + _per_slot(positions, LAYOUT), values, mask=_per_slot(valid, LAYOUT), sem="relaxed")
    else:
        tl.store(ptr + _per_slot(positions, LAYOUT), values, mask=_per_slot(valid, LAYOUT))


@triton.jit
def _slot_value(tile, at, LAYOUT: tl.constexpr):
    """(BLOCK_D,) values of a (BLOCK_D, slots...) tile at the one slot where ``at`` (shaped as the tile) is true.

    A masked sum: storing straight from the tile through a pointer that is the same for all slots would make Triton
    move the whole tile to another register layout (through shared memory) first."""
    return _sum_slots(tl.where(at, tile, 0.0), LAYOUT)


@triton.jit
def _step_sizes(raw, mask, bias, SOFTPLUS: tl.constexpr, LOADED_AS_MINUS_INF: tl.constexpr = False):
    """delta + bias (raw as loaded, in the compute dtype after it; bias broadcast against it) and softplus of it
    (dt), 0 where masked so that masked slots keep the state. Softplus is ROUGH for 16-bit deltas.
    LOADED_AS_MINUS_INF (with SOFTPLUS, float32): masked slots of raw were loaded as -inf, whose softplus is 0."""
    rough: tl.constexpr = raw.dtype.primitive_bitwidth < 32
    raw = _widen(raw, bias.dtype) + bias
    dt = _softplus(raw, rough) if SOFTPLUS else raw
    if LOADED_AS_MINUS_INF:
        return raw, dt
    return raw, tl.where(mask, dt, 0.0)


@triton.jit
def _channel_params(
    D_ptr, bias_ptr, param_rows, channel_mask, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, COMPUTE: tl.constexpr
):
    """(D, delta_bias) of the block's channels, zeros where absent."""
    # tl.full (a builtin) rather than tl.zeros (a jit function) also runs in the interpreter when triton was
    # imported before TRITON_INTERPRET was set.
    skip = tl.full(param_rows.shape, 0, COMPUTE)
    bias = tl.full(param_rows.shape, 0, COMPUTE)
    if HAS_D:
        skip = tl.load(D_ptr + param_rows, mask=channel_mask, other=0).to(COMPUTE)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + param_rows, mask=channel_mask, other=0).to(COMPUTE)
    return skip, bias


@triton.jit
def _aligned_length(length, LENGTH_ALIGN: tl.constexpr):
    """L, unchanged in value (LENGTH_ALIGN, a power of two, divides it), but known to the compiler as a multiple of
    LENGTH_ALIGN: token rows then start at such multiples, and loads and stores vectorise where L is not a multiple
    of 16 (Triton marks integer arguments divisible only by 16)."""
    return length // LENGTH_ALIGN * LENGTH_ALIGN


@triton.jit
def _group_rows(batch, direction, first, dim, num_dirs, groups, length, STATE: tl.constexpr):
    """Offset of row n = 0 of the B (or C) group of the block's channels; row n is at + n * length."""
    group = direction * groups + first // (dim // groups)
    return (batch * num_dirs * groups + group) * STATE * length


@triton.jit
def _direction_rows(
    batch, direction, first, channels, dim, length, chunk_stride, num_dirs, b_groups, c_groups, STATE: tl.constexpr
):
    """Row offsets of the block's channels in direction ``direction``: of A/D/delta_bias (K, D), of delta (Bt, K, D,
    L), of B's and C's row n = 0, and of the per-chunk tensors (Bt, K, D, n_chunks) (times N for states)."""
    param_rows = direction * dim + channels
    rows = (batch * num_dirs + direction) * dim + channels
    B_row0 = _group_rows(batch, direction, first, dim, num_dirs, b_groups, length, STATE)
    C_row0 = _group_rows(batch, direction, first, dim, num_dirs, c_groups, length, STATE)
    return param_rows, rows * length, B_row0, C_row0, rows * chunk_stride


@triton.jit
def _summarise_chunk(
    steps,
    values,
    AFTER: tl.constexpr,
    rows_ptr,
    A_ptr,
    param_rows,
    positions,
    valid,
    channel_mask,
    length,
    out_ptr,
    decay_sum_ptr,
    STATE: tl.constexpr,
    LAYOUT: tl.constexpr,
    FLIP: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """Chunk-parallel SUMMARY of a chunk as an affine map s -> exp(A * sum(steps)) * s + out: stores, per state
    index n, out_n = sum_t exp(A_n * sum of ``steps`` over the slots after t (AFTER) or before t) * values_t *
    row_n[t] (row_n: a B or C row at rows_ptr + n * length) at out_ptr + n, and sum(steps) at decay_sum_ptr.

    The exclusive sums are taken directly in scan order (no cancellation), so every exponent is <= 0."""
    tl.store(decay_sum_ptr, _sum_slots(steps, LAYOUT), mask=channel_mask)
    steps_excluded = _exclusive_sum(steps, AFTER, LAYOUT, FLIP)
    for n in tl.static_range(STATE):
        A_n = tl.load(A_ptr + param_rows * STATE + n, mask=channel_mask, other=0).to(COMPUTE) * LOG2E
        row_n = _load_slots(rows_ptr + n * length, positions, valid, LAYOUT).to(COMPUTE)
        weighted = _exp2(steps_excluded * _per_channel(A_n, LAYOUT)) * values * row_n
        tl.store(out_ptr + n, _sum_slots(weighted, LAYOUT), mask=channel_mask)


@triton.jit
def _scan_forward_kernel(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    index_ptr,
    out_ptr,
    states_ptr,
    local_ptr,
    decay_sum_ptr,
    direction,
    dim,
    length,
    cols,
    num_chunks,
    chunk_stride,
    num_dirs,
    b_groups,
    c_groups,
    segment_len,
    blocks_per_segment,
    STATE: tl.constexpr,
    BLOCK_D: tl.constexpr,
    CHUNK_LEN: tl.constexpr,
    LAYOUT: tl.constexpr,
    FLIP: tl.constexpr,
    P_PAD: tl.constexpr,
    VEC: tl.constexpr,
    LENGTH_ALIGN: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_INDEX: tl.constexpr,
    ACCUMULATE: tl.constexpr,
    MEAN: tl.constexpr,
    MODE: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """Grid: (row blocks,) for SEQUENTIAL, (row blocks, n_chunks of this direction) otherwise.

    SEQUENTIAL writes out and the state after every chunk into states; SUMMARY writes the state a chunk
    reaches from zero (into local) and its sum of dt (decay_sum); FROM_CARRY starts each chunk from
    states[chunk - 1] (chained by ``_carry_kernel``) and writes out.
    """
    length = _aligned_length(length, LENGTH_ALIGN)
    batch, first, segment_end = _rows_of_program(tl.program_id(0), dim, segment_len, blocks_per_segment, BLOCK_D)
    channels = first + tl.arange(0, BLOCK_D)
    channel_mask = channels < segment_end
    first_chunk, end_chunk = _chunk_range(num_chunks, MODE)
    # The recurrence leaves a chunk at its last slot in scan order.
    is_last_step = _per_slot(_end_slot(True, LAYOUT, FLIP, CHUNK_LEN, P_PAD), LAYOUT)
    # Row offsets of the shared (Bt, D, L) tensors; 64-bit since Bt * D * L may exceed 2**31.
    shared_rows = (batch * dim + channels) * length
    param_rows, delta_rows, B_row0, C_row0, chunk_rows = _direction_rows(
        batch, direction, first, channels, dim, length, chunk_stride, num_dirs, b_groups, c_groups, STATE
    )
    skip, bias = _channel_params(D_ptr, bias_ptr, param_rows, channel_mask, HAS_D, HAS_BIAS, COMPUTE)
    for chunk in range(first_chunk, end_chunk):
        positions, valid = _chunk_slots(
            index_ptr, chunk, length, cols, False, LAYOUT, FLIP, HAS_INDEX, CHUNK_LEN, P_PAD, VEC
        )
        mask = _per_channel(channel_mask, LAYOUT) & _per_slot(valid, LAYOUT)
        u = _load_rows(u_ptr, shared_rows, positions, valid, channel_mask, LAYOUT).to(COMPUTE)
        raw = _load_rows(delta_ptr, delta_rows, positions, valid, channel_mask, LAYOUT)
        _, dt = _step_sizes(raw, mask, _per_channel(bias, LAYOUT), SOFTPLUS)
        dtu = dt * u
        state_offsets = (chunk_rows + chunk) * STATE
        if MODE == SUMMARY:
            # State reached from zero: sum_t exp(A * sum of dt after t) * dt_t u_t B_t.
            _summarise_chunk(
                dt,
                dtu,
                True,
                B_ptr + B_row0,
                A_ptr,
                param_rows,
                positions,
                valid,
                channel_mask,
                length,
                local_ptr + state_offsets,
                decay_sum_ptr + chunk_rows + chunk,
                STATE,
                LAYOUT,
                FLIP,
                COMPUTE,
            )
        else:
            y = tl.full(dt.shape, 0, COMPUTE)
            entry_offsets = state_offsets - STATE
            for n in tl.static_range(STATE):
                A_n = tl.load(A_ptr + param_rows * STATE + n, mask=channel_mask, other=0).to(COMPUTE) * LOG2E
                B_n = _load_slots(B_ptr + B_row0 + n * length, positions, valid, LAYOUT).to(COMPUTE)
                C_n = _load_slots(C_ptr + C_row0 + n * length, positions, valid, LAYOUT).to(COMPUTE)
                h_n = tl.load(states_ptr + entry_offsets + n, mask=channel_mask & (chunk > 0), other=0).to(COMPUTE)
                decay = _exp2(dt * _per_channel(A_n, LAYOUT))
                hs = _chunk_scan(decay, dtu * B_n, h_n, False, LAYOUT, FLIP, CHUNK_LEN, P_PAD)
                y += hs * C_n
                if MODE == SEQUENTIAL:
                    # Masked slots have decay 1 and no input: the last slot holds the chunk's end state.
                    tl.store(states_ptr + state_offsets + n, _slot_value(hs, is_last_step, LAYOUT), mask=channel_mask)
            if HAS_D:
                y += _per_channel(skip, LAYOUT) * u
            if HAS_Z:
                z = _load_rows(z_ptr, shared_rows, positions, valid, channel_mask, LAYOUT).to(COMPUTE)
                y *= z * _sigmoid(z)
            if MEAN:
                y = y * (1.0 / tl.cast(num_dirs, COMPUTE))
            if ACCUMULATE:
                y += _load_rows(out_ptr, shared_rows, positions, valid, channel_mask, LAYOUT)
            _store_rows(out_ptr, shared_rows, positions, valid, channel_mask, y, LAYOUT)
            if MODE == SEQUENTIAL:
                # The next chunk reads the end state stored by another thread.
                tl.debug_barrier()


@triton.jit
def _carry_kernel(
    local_ptr,
    decay_sum_ptr,
    A_ptr,
    carried_ptr,
    num_rows,
    param_count,
    num_chunks,
    STATE: tl.constexpr,
    N_PAD: tl.constexpr,
    BLOCK_R: tl.constexpr,
    REVERSE: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """Chain per-chunk affine maps s -> exp(A * decay_sum[c]) * s + local[c] over the chunks of each row.

    Rows are the (Bt * K * D) channel rows; local, carried: (rows, n_chunks, N); decay_sum: (rows, n_chunks).
    Forward (states): carried[c] = the state after chunk c. REVERSE (state gradients): carried[c] = the value
    entering from chunk c + 1 (0 for the last chunk), i.e. the chain is read before chunk c is applied.
    Chunks past a direction's own count hold the identity map (local and decay_sum 0).
    """
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_mask = rows < num_rows
    states_n = tl.arange(0, N_PAD)
    mask = row_mask[:, None] & (states_n < STATE)[None, :]
    param_rows = (rows % param_count).to(tl.int64)
    A = tl.load(A_ptr + param_rows[:, None] * STATE + states_n[None, :], mask=mask, other=0).to(COMPUTE) * LOG2E
    chunk_rows = rows.to(tl.int64) * num_chunks
    value = tl.zeros((BLOCK_R, N_PAD), COMPUTE)
    for step in range(num_chunks):
        chunk = num_chunks - 1 - step if REVERSE else step
        offsets = (chunk_rows[:, None] + chunk) * STATE + states_n[None, :]
        if REVERSE:
            tl.store(carried_ptr + offsets, value, mask=mask)
        dt_sum = tl.load(decay_sum_ptr + chunk_rows + chunk, mask=row_mask, other=0).to(COMPUTE)
        local = tl.load(local_ptr + offsets, mask=mask, other=0).to(COMPUTE)
        value = _exp2(A * dt_sum[:, None]) * value + local
        if not REVERSE:
            tl.store(carried_ptr + offsets, value, mask=mask)


@triton.jit
def _scan_backward_kernel(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    index_ptr,
    dout_ptr,
    states_ptr,
    carry_ptr,
    decay_sum_ptr,
    du_ptr,
    ddelta_ptr,
    dB_ptr,
    dC_ptr,
    dz_ptr,
    dA_ptr,
    dD_ptr,
    dbias_ptr,
    direction,
    dim,
    length,
    cols,
    num_chunks,
    chunk_stride,
    num_dirs,
    b_groups,
    c_groups,
    segment_len,
    blocks_per_segment,
    STATE: tl.constexpr,
    BLOCK_D: tl.constexpr,
    CHUNK_LEN: tl.constexpr,
    LAYOUT: tl.constexpr,
    FLIP: tl.constexpr,
    P_PAD: tl.constexpr,
    VEC: tl.constexpr,
    LENGTH_ALIGN: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_INDEX: tl.constexpr,
    ACCUMULATE: tl.constexpr,
    MEAN: tl.constexpr,
    ATOMIC_BC: tl.constexpr,
    ROW_STEPS: tl.constexpr,
    MODE: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """Grid as the forward kernel's; one tile is one chunk.

    With dh_t the gradient of the state h_t, the reverse recurrence is dh_t = exp(dt_{t+1} A) dh_{t+1} + C_t dy_t,
    where t + 1 is the next slot in scan order (dt of padding slots is 0). carry[chunk] holds dh at the first
    slot of chunk + 1. SEQUENTIAL walks the chunks backwards and writes it itself; SUMMARY writes, per chunk, dh
    at its first slot from its own slots alone (into carry) and the sum of dt_{t+1} over it (decay_sum);
    FROM_CARRY reads carry as chained by ``_carry_kernel``. Each chunk recomputes its states from
    states[chunk - 1], the forward pass's state after the previous chunk. Partial sums of dA, dD and
    ddelta_bias are stored per (batch row, chunk); dB and dC are summed over the program's channels and added with
    one atomic per element when several programs share a group (ATOMIC_BC).
    """
    length = _aligned_length(length, LENGTH_ALIGN)
    batch, first, segment_end = _rows_of_program(
        tl.program_id(0), dim, segment_len, blocks_per_segment, BLOCK_D * ROW_STEPS
    )
    # ROW_STEPS > 1 (N = 1): the program walks ROW_STEPS blocks of BLOCK_D channels per chunk and sums their dB and
    # dC before one atomic add, instead of one per block.
    tl.static_assert(ROW_STEPS == 1 or STATE == 1)
    first_chunk, end_chunk = _chunk_range(num_chunks, MODE)
    # dh leaves a chunk (towards the previous one) at its first slot in scan order.
    is_first_step = _per_slot(_end_slot(False, LAYOUT, FLIP, CHUNK_LEN, P_PAD), LAYOUT)
    B_row0 = _group_rows(batch, direction, first, dim, num_dirs, b_groups, length, STATE)
    C_row0 = _group_rows(batch, direction, first, dim, num_dirs, c_groups, length, STATE)
    for chunk_step in range(first_chunk, end_chunk):
        chunk = chunk_step
        if MODE == SEQUENTIAL:
            chunk = num_chunks - 1 - chunk_step
        positions, valid = _chunk_slots(
            index_ptr, chunk, length, cols, False, LAYOUT, FLIP, HAS_INDEX, CHUNK_LEN, P_PAD, VEC
        )
        # dt of the token after each slot in scan order, which may sit in the next chunk.
        next_positions, next_valid = _chunk_slots(
            index_ptr, chunk, length, cols, True, LAYOUT, FLIP, HAS_INDEX, CHUNK_LEN, P_PAD, VEC
        )
        dB_sum = tl.full(_per_slot(positions, LAYOUT).shape, 0, COMPUTE)
        dC_sum = tl.full(_per_slot(positions, LAYOUT).shape, 0, COMPUTE)
        for row_step in range(ROW_STEPS):
            channels = first + row_step * BLOCK_D + tl.arange(0, BLOCK_D)
            channel_mask = channels < segment_end
            shared_rows = (batch * dim + channels) * length
            param_rows, delta_rows, _, _, chunk_rows = _direction_rows(
                batch, direction, first, channels, dim, length, chunk_stride, num_dirs, b_groups, c_groups, STATE
            )
            skip, bias = _channel_params(D_ptr, bias_ptr, param_rows, channel_mask, HAS_D, HAS_BIAS, COMPUTE)
            skip = _per_channel(skip, LAYOUT)
            bias = _per_channel(bias, LAYOUT)
            mask = _per_channel(channel_mask, LAYOUT) & _per_slot(valid, LAYOUT)
            next_raw = _load_rows(delta_ptr, delta_rows, next_positions, next_valid, channel_mask, LAYOUT)
            next_mask = _per_channel(channel_mask, LAYOUT) & _per_slot(next_valid, LAYOUT)
            _, next_dt = _step_sizes(next_raw, next_mask, bias, SOFTPLUS)
            dy = _load_rows(dout_ptr, shared_rows, positions, valid, channel_mask, LAYOUT).to(COMPUTE)
            if MEAN:
                dy = dy * (1.0 / tl.cast(num_dirs, COMPUTE))
            if HAS_Z:
                z = _load_rows(z_ptr, shared_rows, positions, valid, channel_mask, LAYOUT).to(COMPUTE)
                gate = _sigmoid(z)
                dout_gated = dy
                dy = dy * z * gate
            state_offsets = (chunk_rows + chunk) * STATE
            if MODE == SUMMARY:
                # dh at the chunk's first slot from its own slots: sum_t exp(A * sum_{first < s <= t} dt_s) C_t dy_t.
                _summarise_chunk(
                    next_dt,
                    dy,
                    False,
                    C_ptr + C_row0,
                    A_ptr,
                    param_rows,
                    positions,
                    valid,
                    channel_mask,
                    length,
                    carry_ptr + state_offsets,
                    decay_sum_ptr + chunk_rows + chunk,
                    STATE,
                    LAYOUT,
                    FLIP,
                    COMPUTE,
                )
            else:
                u = _load_rows(u_ptr, shared_rows, positions, valid, channel_mask, LAYOUT).to(COMPUTE)
                raw = _load_rows(delta_ptr, delta_rows, positions, valid, channel_mask, LAYOUT)
                dt_raw, dt = _step_sizes(raw, mask, bias, SOFTPLUS)
                dtu = dt * u
                y = tl.full(dt.shape, 0, COMPUTE)
                dh_B = tl.full(dt.shape, 0, COMPUTE)  # sum_n dh_n B_n
                ddt_decay = tl.full(dt.shape, 0, COMPUTE)  # sum_n dh_n A_n exp(dt A_n) h_{n, t-1}
                has_entry = channel_mask & (chunk > 0)
                has_next = channel_mask & (chunk < num_chunks - 1)
                for n in tl.static_range(STATE):
                    A_n = tl.load(A_ptr + param_rows * STATE + n, mask=channel_mask, other=0).to(COMPUTE)
                    A_tile = _per_channel(A_n, LAYOUT)
                    B_n = _load_slots(B_ptr + B_row0 + n * length, positions, valid, LAYOUT).to(COMPUTE)
                    C_n = _load_slots(C_ptr + C_row0 + n * length, positions, valid, LAYOUT).to(COMPUTE)
                    h_n = tl.load(states_ptr + state_offsets - STATE + n, mask=has_entry, other=0).to(COMPUTE)
                    dh_n = tl.load(carry_ptr + state_offsets + n, mask=has_next, other=0).to(COMPUTE)
                    drive = dtu * B_n
                    hs = _chunk_scan(_exp2(dt * (A_tile * LOG2E)), drive, h_n, False, LAYOUT, FLIP, CHUNK_LEN, P_PAD)
                    dhs = _chunk_scan(
                        _exp2(next_dt * (A_tile * LOG2E)), dy * C_n, dh_n, True, LAYOUT, FLIP, CHUNK_LEN, P_PAD
                    )
                    if HAS_Z:
                        y += hs * C_n
                    dC_n = tl.sum(hs * dy, axis=0, keep_dims=True)
                    dB_n = tl.sum(dhs * dtu, axis=0, keep_dims=True)
                    if ROW_STEPS > 1:
                        dB_sum += dB_n
                        dC_sum += dC_n
                    else:
                        _add_slots(dB_ptr + B_row0 + n * length, positions, valid, dB_n, ATOMIC_BC, LAYOUT)
                        _add_slots(dC_ptr + C_row0 + n * length, positions, valid, dC_n, ATOMIC_BC, LAYOUT)
                    # exp(dt_t A) h_{t-1} = h_t - drive_t.
                    decayed = dhs * (hs - drive)
                    tl.store(dA_ptr + state_offsets + n, _sum_slots(decayed * dt, LAYOUT), mask=channel_mask)
                    dh_B += dhs * B_n
                    ddt_decay += decayed * A_tile
                    if MODE == SEQUENTIAL:
                        # dh at this chunk's first slot enters the previous chunk.
                        entering = _slot_value(dhs, is_first_step, LAYOUT)
                        tl.store(carry_ptr + state_offsets - STATE + n, entering, mask=has_entry)
                ddt = dh_B * u + ddt_decay
                du = dh_B * dt
                if HAS_D:
                    du += skip * dy
                if HAS_Z:
                    if HAS_D:
                        y += skip * u
                    dz = dout_gated * y * gate * (1.0 + z * (1.0 - gate))
                    _store_rows(dz_ptr, shared_rows, positions, valid, channel_mask, dz, LAYOUT)
                if SOFTPLUS:
                    ddt = tl.where(dt_raw > 20.0, ddt, ddt * _sigmoid(dt_raw))
                ddt = tl.where(mask, ddt, 0.0)
                _store_rows(ddelta_ptr, delta_rows, positions, valid, channel_mask, ddt, LAYOUT)
                if ACCUMULATE:
                    du += _load_rows(du_ptr, shared_rows, positions, valid, channel_mask, LAYOUT)
                _store_rows(du_ptr, shared_rows, positions, valid, channel_mask, du, LAYOUT)
                if HAS_D:
                    tl.store(dD_ptr + chunk_rows + chunk, _sum_slots(dy * u, LAYOUT), mask=channel_mask)
                if HAS_BIAS:
                    tl.store(dbias_ptr + chunk_rows + chunk, _sum_slots(ddt, LAYOUT), mask=channel_mask)

        if ROW_STEPS > 1 and MODE != SUMMARY:
            _add_slots(dB_ptr + B_row0, positions, valid, dB_sum, ATOMIC_BC, LAYOUT)
            _add_slots(dC_ptr + C_row0, positions, valid, dC_sum, ATOMIC_BC, LAYOUT)
        if MODE == SEQUENTIAL:
            # The previous chunk reads dh stored by another thread.
            tl.debug_barrier()
