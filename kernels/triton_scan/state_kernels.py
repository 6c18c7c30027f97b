"""Triton kernels of the selective scan over (state, token) tiles: one channel row per program.

The kernels of ``kernels.py`` keep (channels, tokens) tiles of a whole chunk and run one scan per state index n:
with N = 16, sixteen scans per chunk, each crossing warps. Here a program owns one channel row of one direction
and walks its tokens in tiles of TILE_LEN slots, each an (N_PAD, TILE_LEN) register tile of every state index at
once: one ``tl.associative_scan`` along the slots per tile, the state carried from tile to tile in registers, the
output a sum over the state axis. Layouts, modes (SEQUENTIAL, SUMMARY, FROM_CARRY), the saved states (one per
chunk of CHUNK_LEN tokens, a multiple of TILE_LEN) and the partial sums of the backward pass are those of
``kernels.py``, so both kinds of kernel serve the directions of one multi-direction scan and share the carry pass.
At N = 1 the tile is one row of tokens, and one warp scans 128 or 256 of them without shared memory or barriers,
where the channel tile kernels spread a chunk over four warps.

Slots are in scan order: slot j of a tile holds scan step first_step + j, at memory position step (plain order),
L - 1 - step (FLIP: the reversed raster order, loaded from decreasing addresses) or index[step] (HAS_INDEX). Every
scan then runs forward along the slots: Triton lowers a reverse ``associative_scan`` with about ten times the
shuffles of a forward one. The backward recurrence, which runs against scan order, is scanned over tiles loaded in
reverse (slot j holding step first_step + TILE_LEN - 1 - j) and its result flipped once (``tl.flip``) into the
forward tiles' order.

Column orders (TRANSPOSED, SEQUENTIAL only: ``_columns_forward``, ``_columns_backward``) walk tiles of whole columns
instead, (N_PAD, P_PAD, TILE_LEN / P_PAD) in the layout of the (channel, token) kernels' column tiles (neighbouring
columns' rows are consecutive positions, read without an index), scanned with their ``_chunk_scan``; their chunks,
and so their saved states, are those kernels' too.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .kernels import (
    LOG2E,
    SEQUENTIAL,
    SUMMARY,
    TRANSPOSED,
    _aligned_length,
    _channel_params,
    _chunk_range,
    _chunk_scan,
    _column_slots,
    _end_slot,
    _exclusive_sum,
    _exp2,
    _group_rows,
    _linear_combine,
    _per_slot,
    _sigmoid,
    _slot_value,
    _step_sizes,
    _sum_slots,
    _widen,
)


@triton.jit
def _tile_slots(
    index_ptr,
    first_step,
    length,
    NEXT: tl.constexpr,
    REVERSED: tl.constexpr,
    FLIP: tl.constexpr,
    HAS_INDEX: tl.constexpr,
    TILE_LEN: tl.constexpr,
):
    """(memory positions (int64), valid), both (1, TILE_LEN), of the scan steps first_step + j of a tile (with
    REVERSED first_step + TILE_LEN - 1 - j), or with NEXT of the step after each of them.

    Token vectors are kept (1, TILE_LEN) rather than (TILE_LEN,), so that they share the register layout of the
    (N_PAD, TILE_LEN) tiles they meet (a 1D vector would be moved between layouts through shared memory)."""
    slots = tl.arange(0, TILE_LEN)[None, :]
    steps = first_step + (TILE_LEN - 1 - slots if REVERSED else slots) + (1 if NEXT else 0)
    valid = steps < length
    if FLIP:
        positions = length - 1 - steps
    elif HAS_INDEX:
        positions = tl.load(index_ptr + steps, mask=valid, other=0)
    else:
        positions = steps
    return positions.to(tl.int64), valid


@triton.jit
def _load_states(ptr, row_offset, positions, valid, state_mask, length, VECTOR: tl.constexpr = 0):
    """(N_PAD, TILE_LEN) tile of the N rows of a B or C group (row n at row_offset + n * length); 0 where masked.
    VECTOR > 0: loaded in vectors of at most that many tokens (Triton otherwise picks 16 bytes: 8 tokens in 16-bit
    types, which gives the tile another register layout than the float32 tiles it meets)."""
    rows = tl.arange(0, state_mask.shape[0])[:, None]
    offsets = row_offset + rows * length + positions
    if VECTOR > 0:
        offsets = tl.max_contiguous(offsets, [1, VECTOR])
    return tl.load(ptr + offsets, mask=state_mask & valid, other=0)


@triton.jit
def _store_states(ptr, row_offset, positions, valid, state_mask, length, values, ATOMIC: tl.constexpr):
    """Store (or atomically add) an (N_PAD, TILE_LEN) tile into the N rows of a dB or dC group."""
    offsets = row_offset + tl.arange(0, state_mask.shape[0])[:, None] * length + positions
    mask = state_mask & valid
    if ATOMIC:
        # Relaxed: the sums are read after the kernel, so no ordering (and no memory fences) is needed.
        tl.atomic_add(ptr + offsets, values, mask=mask, sem="relaxed")
    else:
        tl.store(ptr + offsets, values, mask=mask)


@triton.jit
def _tile_scan(decay, drive, entry, FROM_ZERO: tl.constexpr = False):
    """h = decay * h_prev + drive along the slots of an (N_PAD, TILE_LEN) tile, h_prev of slot 0 being ``entry``
    (N_PAD, 1), or 0 with FROM_ZERO. Returns h at every slot."""
    folded = drive
    if not FROM_ZERO:
        first = tl.arange(0, decay.shape[1])[None, :] == 0
        folded = tl.where(first, drive + decay * entry, drive)
    _, states = tl.associative_scan((decay, folded), 1, _linear_combine)
    return states


@triton.jit
def _last_slot(tile):
    """(N_PAD, 1) last column of an (N_PAD, TILE_LEN) tile (a masked sum)."""
    last = tl.arange(0, tile.shape[1])[None, :] == tile.shape[1] - 1
    return tl.sum(tl.where(last, tile, 0.0), axis=1, keep_dims=True)


@triton.jit
def _tile_summary(steps, values, rows, A2, AFTER: tl.constexpr):
    """(sum of steps, sum_t exp(A * sum of steps over the slots after t (AFTER) or before t) * values_t *
    rows[:, t]) of one tile: its affine map of the state, with no scan of the state (exponents <= 0 for steps >= 0).
    A2 = A * log2(e), (N_PAD, 1); steps, values (1, TILE_LEN); rows (N_PAD, TILE_LEN). Returns (a scalar,
    (N_PAD, 1)).

    The sums after t are taken as total - running sum (a forward scan, see the module docstring): with steps >= 0
    (softplus) rounding can leave them a few ulps below 0, which changes exp(A * sum) by as little."""
    inclusive = tl.cumsum(steps, axis=1)
    total = tl.sum(steps)
    excluded = total - inclusive if AFTER else inclusive - steps
    weights = _exp2(A2 * excluded)
    return total, tl.sum(weights * values * rows, axis=1, keep_dims=True)


@triton.jit
def _output_grad(
    dout_ptr,
    z_ptr,
    shared_row,
    positions,
    valid,
    num_dirs,
    HAS_Z: tl.constexpr,
    MEAN: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """(dy, the gradient entering the scan's output: dout, divided by K for MEAN, times the gate z * sigmoid(z)
    with HAS_Z; dout after MEAN; z; sigmoid(z)) at the given token positions, each (1, TILE_LEN). Without HAS_Z
    the last two are placeholders (dout)."""
    dout = tl.load(dout_ptr + shared_row + positions, mask=valid, other=0).to(COMPUTE)
    if MEAN:
        dout = dout * (1.0 / tl.cast(num_dirs, COMPUTE))
    z = dout
    gate = dout
    dy = dout
    if HAS_Z:
        z = tl.load(z_ptr + shared_row + positions, mask=valid, other=0).to(COMPUTE)
        gate = _sigmoid(z)
        dy = dout * z * gate
    return dy, dout, z, gate


@triton.jit
def _channel_rows(
    row,
    direction,
    length,
    chunk_stride,
    num_dirs,
    DIM: tl.constexpr,
    B_GROUPS: tl.constexpr,
    C_GROUPS: tl.constexpr,
    STATE: tl.constexpr,
):
    """Offsets of channel row ``row`` (= batch * DIM + channel) in direction ``direction``:
    (its row of A/D/delta_bias, of the shared (Bt, D, L) tensors, of delta, row n = 0 of its B group and of its C
    group, its row of the per-chunk tensors (times N for states))."""
    batch = (row // DIM).to(tl.int64)
    channel = row % DIM
    param_row = direction * DIM + channel
    direction_row = (batch * num_dirs + direction) * DIM + channel
    B_row0 = _group_rows(batch, direction, channel, DIM, num_dirs, B_GROUPS, length, STATE)
    C_row0 = _group_rows(batch, direction, channel, DIM, num_dirs, C_GROUPS, length, STATE)
    shared_row = (batch * DIM + channel) * length
    return param_row, shared_row, direction_row * length, B_row0, C_row0, direction_row * chunk_stride


@triton.jit
def _tile_count(chunk, length, CHUNK_LEN: tl.constexpr, TILE_LEN: tl.constexpr):
    """Tiles of the chunk that hold at least one token."""
    return tl.minimum(CHUNK_LEN // TILE_LEN, tl.cdiv(length - chunk * CHUNK_LEN, TILE_LEN))


@triton.jit
def _token_loads(
    u_ptr,
    delta_ptr,
    z_ptr,
    out_ptr,
    shared_row,
    delta_row,
    positions,
    valid,
    HAS_Z: tl.constexpr,
    ACCUMULATE: tl.constexpr,
    MINUS_INF: tl.constexpr,
):
    """What the forward reads of one channel row at the token positions of a tile, as loaded: (u, delta, z, out),
    z and out placeholders (u) without HAS_Z, ACCUMULATE. Masked deltas load as -inf with MINUS_INF (float32
    softplus makes their dt 0 without a select), else as 0."""
    u = tl.load(u_ptr + shared_row + positions, mask=valid, other=0)
    raw = tl.load(delta_ptr + delta_row + positions, mask=valid, other=float("-inf") if MINUS_INF else 0)
    z = u
    if HAS_Z:
        z = tl.load(z_ptr + shared_row + positions, mask=valid, other=0)
    out = u
    if ACCUMULATE:
        out = tl.load(out_ptr + shared_row + positions, mask=valid, other=0)
    return u, raw, z, out


@triton.jit
def _row_params(
    A_ptr,
    D_ptr,
    bias_ptr,
    param_row,
    present,
    state_n,
    state_mask,
    STATE: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """(A * log2(e) (N_PAD, 1), D, delta_bias) of a channel row, zeros where absent or not ``present`` (a scalar
    mask)."""
    A2 = tl.load(A_ptr + param_row * STATE + state_n, mask=state_mask & present, other=0).to(COMPUTE) * LOG2E
    skip, bias = _channel_params(D_ptr, bias_ptr, param_row, present, HAS_D, HAS_BIAS, COMPUTE)
    return A2, skip, bias


@triton.jit
def _forward_output(
    hs,
    C,
    u,
    skip,
    z,
    out,
    num_dirs,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    MEAN: tl.constexpr,
    ACCUMULATE: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """(1, TILE_LEN) output of a tile from its states hs and C (N_PAD, TILE_LEN): sum over n of h * C, plus D u,
    gated by z silu(z), divided by K for MEAN, added to out (earlier directions) with ACCUMULATE."""
    y = tl.sum(hs * C, axis=0, keep_dims=True)
    if HAS_D:
        y += skip * u
    if HAS_Z:
        z = z.to(COMPUTE)
        y *= z * _sigmoid(z)
    if MEAN:
        y = y * (1.0 / tl.cast(num_dirs, COMPUTE))
    if ACCUMULATE:
        y += out
    return y


@triton.jit
def _token_gradients(
    dhs,
    hs,
    drive,
    dt,
    dt_raw,
    u,
    B,
    A,
    dy,
    skip,
    valid,
    du_ptr,
    ddelta_ptr,
    shared_row,
    delta_row,
    positions,
    HAS_D: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    ACCUMULATE: tl.constexpr,
):
    """The token gradients of a tile from its dh (dhs) and recomputed states (hs), (N_PAD, slots...) each, with
    drive = dt u B and the token vectors (1, slots...): stores ddelta and du (added to du with ACCUMULATE).
    Returns (dh_t exp(dt_t A) h_{t-1} per state and slot, for dA; ddelta, 0 where masked, for ddelta_bias)."""
    # exp(dt_t A) h_{t-1} = h_t - drive_t.
    decayed = dhs * (hs - drive)
    dh_B = tl.sum(dhs * B, axis=0, keep_dims=True)
    ddt = dh_B * u + tl.sum(decayed * A, axis=0, keep_dims=True)
    du = dh_B * dt
    if HAS_D:
        du += skip * dy
    if SOFTPLUS:
        ddt = tl.where(dt_raw > 20.0, ddt, ddt * _sigmoid(dt_raw))
    ddt = tl.where(valid, ddt, 0.0)
    tl.store(ddelta_ptr + delta_row + positions, ddt.to(ddelta_ptr.dtype.element_ty), mask=valid)
    if ACCUMULATE:
        du += tl.load(du_ptr + shared_row + positions, mask=valid, other=0)
    tl.store(du_ptr + shared_row + positions, du.to(du_ptr.dtype.element_ty), mask=valid)
    return decayed, ddt


@triton.jit
def _column_tile_slots(
    tile, length, cols, NEXT: tl.constexpr, FLIP: tl.constexpr, P_PAD: tl.constexpr, Q_TILE: tl.constexpr
):
    """TRANSPOSED: (memory positions, valid), both (1, P_PAD, Q_TILE), of tile ``tile`` of Q_TILE whole columns
    of the (L / cols, cols) view, laid out as the (channel, token) kernels' column tiles (``_column_slots``), or
    with NEXT of the step after each slot. A tile row of neighbouring columns is a run of consecutive positions,
    so a warp's loads cover whole sectors."""
    positions, valid = _column_slots(
        tl.arange(0, P_PAD)[:, None], tl.arange(0, Q_TILE)[None, :], tile, length, cols, NEXT, FLIP, P_PAD, Q_TILE, 1
    )
    return positions[None, :, :], valid[None, :, :]


@triton.jit
def _columns_forward(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    out_ptr,
    states_ptr,
    param_row,
    shared_row,
    delta_row,
    B_row0,
    C_row0,
    chunk_row,
    length,
    cols,
    num_chunks,
    num_dirs,
    STATE: tl.constexpr,
    N_PAD: tl.constexpr,
    CHUNK_LEN: tl.constexpr,
    TILE_LEN: tl.constexpr,
    P_PAD: tl.constexpr,
    STORE_STATES: tl.constexpr,
    FLIP: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    ACCUMULATE: tl.constexpr,
    MEAN: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """SEQUENTIAL forward of one channel row in a column order (TRANSPOSED): tiles of Q_TILE = TILE_LEN / P_PAD
    whole columns, (N_PAD, P_PAD, Q_TILE) for the states, scanned down the columns and chained across them
    (``_chunk_scan``), the state carried from tile to tile. A chunk is CHUNK_LEN / P_PAD columns, as on the
    (channel, token) tiles, so both kernels keep the same states. Multi-direction scans have no gate z."""
    Q_TILE: tl.constexpr = TILE_LEN // P_PAD
    Q_CHUNK: tl.constexpr = CHUNK_LEN // P_PAD
    TILES: tl.constexpr = CHUNK_LEN // TILE_LEN
    state_n = tl.arange(0, N_PAD)[:, None, None]
    state_mask = state_n < STATE
    A2 = tl.load(A_ptr + param_row * STATE + state_n, mask=state_mask, other=0).to(COMPUTE) * LOG2E
    skip, bias = _channel_params(D_ptr, bias_ptr, param_row, True, HAS_D, HAS_BIAS, COMPUTE)
    last = _per_slot(_end_slot(True, TRANSPOSED, FLIP, TILE_LEN, P_PAD), TRANSPOSED)
    minus_inf: tl.constexpr = SOFTPLUS and tl.float32 == COMPUTE
    h = tl.full((N_PAD,), 0, COMPUTE)
    for chunk in range(num_chunks):
        tiles = tl.cdiv(tl.minimum(Q_CHUNK, cols - chunk * Q_CHUNK), Q_TILE)
        for tile in range(tiles):
            positions, valid = _column_tile_slots(chunk * TILES + tile, length, cols, False, FLIP, P_PAD, Q_TILE)
            u, raw, z, out = _token_loads(
                u_ptr, delta_ptr, z_ptr, out_ptr, shared_row, delta_row, positions, valid, False, ACCUMULATE, minus_inf
            )
            u = _widen(u, COMPUTE)
            _, dt = _step_sizes(raw, valid, bias, SOFTPLUS, minus_inf)
            B_offsets = B_row0 + state_n * length + positions
            B = _widen(tl.load(B_ptr + B_offsets, mask=state_mask & valid, other=0), COMPUTE)
            C_offsets = C_row0 + state_n * length + positions
            C = _widen(tl.load(C_ptr + C_offsets, mask=state_mask & valid, other=0), COMPUTE)
            hs = _chunk_scan(_exp2(dt * A2), dt * u * B, h, False, TRANSPOSED, FLIP, TILE_LEN, P_PAD)
            # Padding slots have decay 1 and no input: the last slot holds the tile's end state.
            h = _slot_value(hs, last, TRANSPOSED)
            y = _forward_output(hs, C, u, skip, z, out, num_dirs, HAS_D, False, MEAN, ACCUMULATE, COMPUTE)
            tl.store(out_ptr + shared_row + positions, y.to(out_ptr.dtype.element_ty), mask=valid)
        if STORE_STATES:
            state_vector = tl.arange(0, N_PAD)
            tl.store(states_ptr + (chunk_row + chunk) * STATE + state_vector, h, mask=state_vector < STATE)


@triton.jit
def _state_forward_kernel(
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
    length,
    num_chunks,
    chunk_stride,
    num_dirs,
    cols,
    DIM: tl.constexpr,
    B_GROUPS: tl.constexpr,
    C_GROUPS: tl.constexpr,
    STATE: tl.constexpr,
    N_PAD: tl.constexpr,
    CHUNK_LEN: tl.constexpr,
    TILE_LEN: tl.constexpr,
    LENGTH_ALIGN: tl.constexpr,
    LAYOUT: tl.constexpr,
    P_PAD: tl.constexpr,
    NUM_STAGES: tl.constexpr,
    ROWS: tl.constexpr,
    ONE_TILE: tl.constexpr,
    STORE_STATES: tl.constexpr,
    FLIP: tl.constexpr,
    HAS_INDEX: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    ACCUMULATE: tl.constexpr,
    MEAN: tl.constexpr,
    MODE: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """Grid: (Bt * D / ROWS,) for SEQUENTIAL, (Bt * D / ROWS, n_chunks) otherwise; same outputs as
    ``_scan_forward_kernel``. A program walks ROWS channel rows one after the other: short rows then share one
    program's launch and set-up.

    SEQUENTIAL writes out and the state after every chunk (unless STORE_STATES is off: one chunk and no last state
    asked for); SUMMARY the state a chunk reaches from zero (local) and its sum of dt (decay_sum); FROM_CARRY starts
    each chunk from states[chunk - 1] and writes out. ONE_TILE (SEQUENTIAL, L <= TILE_LEN): a row is one tile,
    scanned from a zero state with no loop over chunks or tiles."""
    length = _aligned_length(length, LENGTH_ALIGN)
    # State vectors are (N_PAD, 1), token vectors (1, TILE_LEN): both broadcast against the tiles' layout.
    state_n = tl.arange(0, N_PAD)[:, None]
    state_mask = state_n < STATE
    # The ROWS rows share their batch and B/C groups (ROWS divides the channels of a group): the offsets of the
    # first, found once, step by one row.
    first_param_row, first_shared_row, first_delta_row, B_row0, C_row0, first_chunk_row = _channel_rows(
        tl.program_id(0) * ROWS, direction, length, chunk_stride, num_dirs, DIM, B_GROUPS, C_GROUPS, STATE
    )
    if LAYOUT == TRANSPOSED:
        tl.static_assert(MODE == SEQUENTIAL and ROWS == 1 and not ONE_TILE and not HAS_Z)
        _columns_forward(
            u_ptr,
            delta_ptr,
            A_ptr,
            B_ptr,
            C_ptr,
            D_ptr,
            z_ptr,
            bias_ptr,
            out_ptr,
            states_ptr,
            first_param_row,
            first_shared_row,
            first_delta_row,
            B_row0,
            C_row0,
            first_chunk_row,
            length,
            cols,
            num_chunks,
            num_dirs,
            STATE,
            N_PAD,
            CHUNK_LEN,
            TILE_LEN,
            P_PAD,
            STORE_STATES,
            FLIP,
            HAS_D,
            HAS_BIAS,
            SOFTPLUS,
            ACCUMULATE,
            MEAN,
            COMPUTE,
        )
        return
    # Masked deltas as -inf: float32 softplus makes their dt 0 without a select.
    minus_inf: tl.constexpr = SOFTPLUS and tl.float32 == COMPUTE
    if ONE_TILE:
        # Rows of one tile share their token positions and their B and C tiles; the loads of the next row are
        # issued before the current one is computed, so that the program's loads overlap its arithmetic.
        positions, valid = _tile_slots(index_ptr, 0, length, False, False, FLIP, HAS_INDEX, TILE_LEN)
        B = _widen(_load_states(B_ptr, B_row0, positions, valid, state_mask, length), COMPUTE)
        C = _widen(_load_states(C_ptr, C_row0, positions, valid, state_mask, length), COMPUTE)
        tokens = _token_loads(
            u_ptr,
            delta_ptr,
            z_ptr,
            out_ptr,
            first_shared_row,
            first_delta_row,
            positions,
            valid,
            HAS_Z,
            ACCUMULATE,
            minus_inf,
        )
        params = _row_params(
            A_ptr, D_ptr, bias_ptr, first_param_row, True, state_n, state_mask, STATE, HAS_D, HAS_BIAS, COMPUTE
        )
        for row_step in range(ROWS):
            u, raw, z, out = tokens
            A2, skip, bias = params
            more = row_step + 1 < ROWS
            tokens = _token_loads(
                u_ptr,
                delta_ptr,
                z_ptr,
                out_ptr,
                first_shared_row + (row_step + 1) * length,
                first_delta_row + (row_step + 1) * length,
                positions,
                valid & more,
                HAS_Z,
                ACCUMULATE,
                minus_inf,
            )
            params = _row_params(
                A_ptr,
                D_ptr,
                bias_ptr,
                first_param_row + row_step + 1,
                more,
                state_n,
                state_mask,
                STATE,
                HAS_D,
                HAS_BIAS,
                COMPUTE,
            )
            u = _widen(u, COMPUTE)
            _, dt = _step_sizes(raw, valid, bias, SOFTPLUS, minus_inf)
            hs = _tile_scan(_exp2(dt * A2), dt * u * B, 0.0, True)
            y = _forward_output(hs, C, u, skip, z, out, num_dirs, HAS_D, HAS_Z, MEAN, ACCUMULATE, COMPUTE)
            shared_row = first_shared_row + row_step * length
            tl.store(out_ptr + shared_row + positions, y.to(out_ptr.dtype.element_ty), mask=valid)
            if STORE_STATES:
                # Masked slots have decay 1 and no input: the last slot holds the row's end state.
                state_offsets = (first_chunk_row + row_step * chunk_stride) * STATE + state_n
                tl.store(states_ptr + state_offsets, _last_slot(hs), mask=state_mask)
        return
    for row_step in range(ROWS):
        param_row = first_param_row + row_step
        shared_row = first_shared_row + row_step * length
        delta_row = first_delta_row + row_step * length
        chunk_row = first_chunk_row + row_step * chunk_stride
        A2, skip, bias = _row_params(
            A_ptr, D_ptr, bias_ptr, param_row, True, state_n, state_mask, STATE, HAS_D, HAS_BIAS, COMPUTE
        )
        first_chunk, end_chunk = _chunk_range(num_chunks, MODE)
        h = tl.full((N_PAD, 1), 0, COMPUTE)
        for chunk in range(first_chunk, end_chunk):
            if MODE == SUMMARY:
                h = tl.full((N_PAD, 1), 0, COMPUTE)
                dt_total = tl.full((), 0, COMPUTE)
            elif MODE != SEQUENTIAL:
                entry = states_ptr + (chunk_row + chunk - 1) * STATE + state_n
                h = tl.load(entry, mask=state_mask & (chunk > 0), other=0).to(COMPUTE)
            for tile in tl.range(_tile_count(chunk, length, CHUNK_LEN, TILE_LEN), num_stages=NUM_STAGES):
                positions, valid = _tile_slots(
                    index_ptr, chunk * CHUNK_LEN + tile * TILE_LEN, length, False, False, FLIP, HAS_INDEX, TILE_LEN
                )
                u, raw, z, out = _token_loads(
                    u_ptr,
                    delta_ptr,
                    z_ptr,
                    out_ptr,
                    shared_row,
                    delta_row,
                    positions,
                    valid,
                    HAS_Z,
                    ACCUMULATE,
                    minus_inf,
                )
                u = _widen(u, COMPUTE)
                _, dt = _step_sizes(raw, valid, bias, SOFTPLUS, minus_inf)
                dtu = dt * u
                B = _widen(_load_states(B_ptr, B_row0, positions, valid, state_mask, length), COMPUTE)
                if MODE == SUMMARY:
                    tile_dt, tile_input = _tile_summary(dt, dtu, B, A2, True)
                    h = _exp2(A2 * tile_dt) * h + tile_input
                    dt_total += tile_dt
                else:
                    C = _widen(_load_states(C_ptr, C_row0, positions, valid, state_mask, length), COMPUTE)
                    hs = _tile_scan(_exp2(dt * A2), dtu * B, h)
                    # Masked slots have decay 1 and no input: the last slot holds the tile's end state.
                    h = _last_slot(hs)
                    y = _forward_output(hs, C, u, skip, z, out, num_dirs, HAS_D, HAS_Z, MEAN, ACCUMULATE, COMPUTE)
                    tl.store(out_ptr + shared_row + positions, y.to(out_ptr.dtype.element_ty), mask=valid)
            state_offsets = (chunk_row + chunk) * STATE + state_n
            if MODE == SUMMARY:
                tl.store(local_ptr + state_offsets, h, mask=state_mask)
                tl.store(decay_sum_ptr + chunk_row + chunk, dt_total)
            elif MODE == SEQUENTIAL and STORE_STATES:
                tl.store(states_ptr + state_offsets, h, mask=state_mask)


@triton.jit
def _columns_backward(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    bias_ptr,
    dout_ptr,
    states_ptr,
    du_ptr,
    ddelta_ptr,
    dB_ptr,
    dC_ptr,
    dA_ptr,
    dD_ptr,
    dbias_ptr,
    param_row,
    shared_row,
    delta_row,
    B_row0,
    C_row0,
    chunk_row,
    length,
    cols,
    num_chunks,
    num_dirs,
    STATE: tl.constexpr,
    N_PAD: tl.constexpr,
    CHUNK_LEN: tl.constexpr,
    TILE_LEN: tl.constexpr,
    P_PAD: tl.constexpr,
    FLIP: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    ACCUMULATE: tl.constexpr,
    MEAN: tl.constexpr,
    ATOMIC_BC: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """SEQUENTIAL backward of one channel row in a column order (TRANSPOSED), on the tiles of ``_columns_forward``:
    as ``_state_backward_kernel``, the entry state of each tile of a chunk found first from the tiles' affine maps,
    then dh scanned against scan order tile by tile from the chunk's last (``_chunk_scan`` in reverse), carried in
    registers. dh_t takes dt of the step after t in scan order: the next tile row, or row 0 of the next column
    after the last padding row (padding slots have dt = 0 and pass dh on unchanged). Multi-direction scans have
    no gate z."""
    Q_TILE: tl.constexpr = TILE_LEN // P_PAD
    Q_CHUNK: tl.constexpr = CHUNK_LEN // P_PAD
    TILES: tl.constexpr = CHUNK_LEN // TILE_LEN
    state_n = tl.arange(0, N_PAD)[:, None, None]
    state_mask = state_n < STATE
    state_vector = tl.arange(0, N_PAD)
    A = tl.load(A_ptr + param_row * STATE + state_n, mask=state_mask, other=0).to(COMPUTE)
    A2 = A * LOG2E
    A2_vector = tl.load(A_ptr + param_row * STATE + state_vector, mask=state_vector < STATE, other=0)
    A2_vector = A2_vector.to(COMPUTE) * LOG2E
    skip, bias = _channel_params(D_ptr, bias_ptr, param_row, True, HAS_D, HAS_BIAS, COMPUTE)
    first = _per_slot(_end_slot(False, TRANSPOSED, FLIP, TILE_LEN, P_PAD), TRANSPOSED)
    tile_ids = tl.arange(0, TILES)[None, :]
    dh = tl.full((N_PAD,), 0, COMPUTE)
    for chunk_step in range(num_chunks):
        chunk = num_chunks - 1 - chunk_step
        state_offsets = (chunk_row + chunk) * STATE + state_vector
        tiles = tl.cdiv(tl.minimum(Q_CHUNK, cols - chunk * Q_CHUNK), Q_TILE)
        h = tl.load(states_ptr + state_offsets - STATE, mask=(state_vector < STATE) & (chunk > 0), other=0)
        h = h.to(COMPUTE)
        entries = tl.full((N_PAD, TILES), 0, COMPUTE)
        for tile in range(tiles):
            entries = tl.where(tile_ids == tile, h[:, None], entries)
            positions, valid = _column_tile_slots(chunk * TILES + tile, length, cols, False, FLIP, P_PAD, Q_TILE)
            u = tl.load(u_ptr + shared_row + positions, mask=valid, other=0).to(COMPUTE)
            raw = tl.load(delta_ptr + delta_row + positions, mask=valid, other=0)
            _, dt = _step_sizes(raw, valid, bias, SOFTPLUS)
            B = tl.load(B_ptr + B_row0 + state_n * length + positions, mask=state_mask & valid, other=0).to(COMPUTE)
            weights = _exp2(A2 * _exclusive_sum(dt, True, TRANSPOSED, FLIP))
            tile_input = _sum_slots(weights * (dt * u) * B, TRANSPOSED)
            h = _exp2(A2_vector * tl.sum(dt)) * h + tile_input
        dA_sum = tl.full((N_PAD,), 0, COMPUTE)
        dD_sum = tl.full((1, P_PAD, Q_TILE), 0, COMPUTE)
        dbias_sum = tl.full((1, P_PAD, Q_TILE), 0, COMPUTE)
        for tile_step in range(tiles):
            tile = chunk * TILES + tiles - 1 - tile_step
            positions, valid = _column_tile_slots(tile, length, cols, False, FLIP, P_PAD, Q_TILE)
            next_positions, next_valid = _column_tile_slots(tile, length, cols, True, FLIP, P_PAD, Q_TILE)
            next_raw = tl.load(delta_ptr + delta_row + next_positions, mask=next_valid, other=0)
            _, next_dt = _step_sizes(next_raw, next_valid, bias, SOFTPLUS)
            dy, _, _, _ = _output_grad(dout_ptr, dout_ptr, shared_row, positions, valid, num_dirs, False, MEAN, COMPUTE)
            C = tl.load(C_ptr + C_row0 + state_n * length + positions, mask=state_mask & valid, other=0).to(COMPUTE)
            dhs = _chunk_scan(_exp2(next_dt * A2), dy * C, dh, True, TRANSPOSED, FLIP, TILE_LEN, P_PAD)
            dh = _slot_value(dhs, first, TRANSPOSED)
            u = tl.load(u_ptr + shared_row + positions, mask=valid, other=0).to(COMPUTE)
            raw = tl.load(delta_ptr + delta_row + positions, mask=valid, other=0)
            dt_raw, dt = _step_sizes(raw, valid, bias, SOFTPLUS)
            dtu = dt * u
            B = tl.load(B_ptr + B_row0 + state_n * length + positions, mask=state_mask & valid, other=0).to(COMPUTE)
            h_entry = tl.sum(tl.where(tile_ids == tile - chunk * TILES, entries, 0.0), axis=1)
            drive = dtu * B
            hs = _chunk_scan(_exp2(dt * A2), drive, h_entry, False, TRANSPOSED, FLIP, TILE_LEN, P_PAD)
            bc_mask = state_mask & valid
            B_offsets = B_row0 + state_n * length + positions
            C_offsets = C_row0 + state_n * length + positions
            if ATOMIC_BC:
                tl.atomic_add(dB_ptr + B_offsets, dhs * dtu, mask=bc_mask, sem="relaxed")
                tl.atomic_add(dC_ptr + C_offsets, hs * dy, mask=bc_mask, sem="relaxed")
            else:
                tl.store(dB_ptr + B_offsets, dhs * dtu, mask=bc_mask)
                tl.store(dC_ptr + C_offsets, hs * dy, mask=bc_mask)
            decayed, ddt = _token_gradients(
                dhs,
                hs,
                drive,
                dt,
                dt_raw,
                u,
                B,
                A,
                dy,
                skip,
                valid,
                du_ptr,
                ddelta_ptr,
                shared_row,
                delta_row,
                positions,
                HAS_D,
                SOFTPLUS,
                ACCUMULATE,
            )
            dA_sum += _sum_slots(decayed * dt, TRANSPOSED)
            if HAS_D:
                dD_sum += dy * u
            dbias_sum += ddt
        tl.store(dA_ptr + state_offsets, dA_sum, mask=state_vector < STATE)
        if HAS_D:
            tl.store(dD_ptr + chunk_row + chunk, tl.sum(dD_sum))
        if HAS_BIAS:
            tl.store(dbias_ptr + chunk_row + chunk, tl.sum(dbias_sum))


@triton.jit
def _state_backward_kernel(
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
    length,
    num_chunks,
    chunk_stride,
    num_dirs,
    cols,
    DIM: tl.constexpr,
    B_GROUPS: tl.constexpr,
    C_GROUPS: tl.constexpr,
    STATE: tl.constexpr,
    N_PAD: tl.constexpr,
    CHUNK_LEN: tl.constexpr,
    TILE_LEN: tl.constexpr,
    BC_VECTOR: tl.constexpr,
    LENGTH_ALIGN: tl.constexpr,
    LAYOUT: tl.constexpr,
    P_PAD: tl.constexpr,
    FLIP: tl.constexpr,
    HAS_INDEX: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    ACCUMULATE: tl.constexpr,
    MEAN: tl.constexpr,
    ATOMIC_BC: tl.constexpr,
    MODE: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """Grid as the forward kernel's; same outputs and modes as ``_scan_backward_kernel``.

    dh_t = exp(dt_{t+1} A) dh_{t+1} + C_t dy_t runs against scan order, tile by tile from the chunk's last tile,
    carried in registers (from carry[chunk] in FROM_CARRY mode; SUMMARY stores dh at the chunk's first slot from
    its own slots into carry, and the sum of dt_{t+1} into decay_sum). The forward states a tile needs are
    recomputed from the state entering it: a first pass over the chunk's tiles (their affine maps, no scan) gives
    the entry state of each from states[chunk - 1], kept in registers as an (N_PAD, CHUNK_LEN / TILE_LEN) tile.
    Partial sums of dA, dD and ddelta_bias are stored per (channel row, chunk); dB and dC are added atomically
    when several channels share a B or C group (ATOMIC_BC)."""
    length = _aligned_length(length, LENGTH_ALIGN)
    param_row, shared_row, delta_row, B_row0, C_row0, chunk_row = _channel_rows(
        tl.program_id(0), direction, length, chunk_stride, num_dirs, DIM, B_GROUPS, C_GROUPS, STATE
    )
    if LAYOUT == TRANSPOSED:
        tl.static_assert(MODE == SEQUENTIAL and not HAS_Z)
        _columns_backward(
            u_ptr,
            delta_ptr,
            A_ptr,
            B_ptr,
            C_ptr,
            D_ptr,
            bias_ptr,
            dout_ptr,
            states_ptr,
            du_ptr,
            ddelta_ptr,
            dB_ptr,
            dC_ptr,
            dA_ptr,
            dD_ptr,
            dbias_ptr,
            param_row,
            shared_row,
            delta_row,
            B_row0,
            C_row0,
            chunk_row,
            length,
            cols,
            num_chunks,
            num_dirs,
            STATE,
            N_PAD,
            CHUNK_LEN,
            TILE_LEN,
            P_PAD,
            FLIP,
            HAS_D,
            HAS_BIAS,
            SOFTPLUS,
            ACCUMULATE,
            MEAN,
            ATOMIC_BC,
            COMPUTE,
        )
        return
    state_n = tl.arange(0, N_PAD)[:, None]
    state_mask = state_n < STATE
    A = tl.load(A_ptr + param_row * STATE + state_n, mask=state_mask, other=0).to(COMPUTE)
    A2 = A * LOG2E
    skip, bias = _channel_params(D_ptr, bias_ptr, param_row, True, HAS_D, HAS_BIAS, COMPUTE)
    TILES: tl.constexpr = CHUNK_LEN // TILE_LEN
    # Entry states of the chunk's tiles, one column per tile.
    tile_ids = tl.arange(0, TILES)[None, :]
    first_chunk, end_chunk = _chunk_range(num_chunks, MODE)
    dh = tl.full((N_PAD, 1), 0, COMPUTE)
    for chunk_step in range(first_chunk, end_chunk):
        chunk = num_chunks - 1 - chunk_step if MODE == SEQUENTIAL else chunk_step
        state_offsets = (chunk_row + chunk) * STATE + state_n
        tiles = _tile_count(chunk, length, CHUNK_LEN, TILE_LEN)
        if MODE == SUMMARY:
            dh = tl.full((N_PAD, 1), 0, COMPUTE)
            next_dt_total = tl.full((), 0, COMPUTE)
        else:
            if MODE != SEQUENTIAL:
                dh = tl.load(carry_ptr + state_offsets, mask=state_mask & (chunk < num_chunks - 1), other=0).to(COMPUTE)
            # Entry state of every tile of the chunk, from the forward pass's state after the previous chunk.
            h = tl.load(states_ptr + state_offsets - STATE, mask=state_mask & (chunk > 0), other=0).to(COMPUTE)
            entries = tl.full((N_PAD, TILES), 0, COMPUTE)
            for tile in range(tiles):
                entries = tl.where(tile_ids == tile, h, entries)
                positions, valid = _tile_slots(
                    index_ptr, chunk * CHUNK_LEN + tile * TILE_LEN, length, False, False, FLIP, HAS_INDEX, TILE_LEN
                )
                u = tl.load(u_ptr + shared_row + positions, mask=valid, other=0).to(COMPUTE)
                raw = tl.load(delta_ptr + delta_row + positions, mask=valid, other=0)
                _, dt = _step_sizes(raw, valid, bias, SOFTPLUS)
                B = _load_states(B_ptr, B_row0, positions, valid, state_mask, length, BC_VECTOR).to(COMPUTE)
                tile_dt, tile_input = _tile_summary(dt, dt * u, B, A2, True)
                h = _exp2(A2 * tile_dt) * h + tile_input
            # dA summed over each tile's slots as it goes (an (N_PAD, TILE_LEN) accumulator costs registers); dD
            # and ddelta_bias kept per slot, reduced over the slots once per chunk.
            dA_sum = tl.full((N_PAD, 1), 0, COMPUTE)
            dD_sum = tl.full((1, TILE_LEN), 0, COMPUTE)
            dbias_sum = tl.full((1, TILE_LEN), 0, COMPUTE)
        for tile_step in range(tiles):
            tile = tiles - 1 - tile_step
            first_step = chunk * CHUNK_LEN + tile * TILE_LEN
            positions, valid = _tile_slots(index_ptr, first_step, length, False, False, FLIP, HAS_INDEX, TILE_LEN)
            if MODE == SUMMARY:
                # dh at the tile's first slot from its own slots: sum_t exp(A * sum_{s < t} dt_{s+1}) C_t dy_t.
                next_positions, next_valid = _tile_slots(
                    index_ptr, first_step, length, True, False, FLIP, HAS_INDEX, TILE_LEN
                )
                next_raw = tl.load(delta_ptr + delta_row + next_positions, mask=next_valid, other=0)
                _, next_dt = _step_sizes(next_raw, next_valid, bias, SOFTPLUS)
                dy, _, _, _ = _output_grad(
                    dout_ptr, z_ptr, shared_row, positions, valid, num_dirs, HAS_Z, MEAN, COMPUTE
                )
                C = _load_states(C_ptr, C_row0, positions, valid, state_mask, length, BC_VECTOR).to(COMPUTE)
                tile_dt, tile_input = _tile_summary(next_dt, dy, C, A2, False)
                dh = _exp2(A2 * tile_dt) * dh + tile_input
                next_dt_total += tile_dt
            else:
                # dh_t = exp(dt_{t+1} A) dh_{t+1} + C_t dy_t, scanned over the tile's steps in reverse (slot j of
                # these tiles is step first_step + TILE_LEN - 1 - j), then flipped into the order of the others.
                # First, so that none of the forward tiles below is live across its scan (fewer registers).
                back_positions, back_valid = _tile_slots(
                    index_ptr, first_step, length, False, True, FLIP, HAS_INDEX, TILE_LEN
                )
                back_next, back_next_valid = _tile_slots(
                    index_ptr, first_step, length, True, True, FLIP, HAS_INDEX, TILE_LEN
                )
                back_raw = tl.load(delta_ptr + delta_row + back_next, mask=back_next_valid, other=0)
                _, back_next_dt = _step_sizes(back_raw, back_next_valid, bias, SOFTPLUS)
                back_dy, _, _, _ = _output_grad(
                    dout_ptr, z_ptr, shared_row, back_positions, back_valid, num_dirs, HAS_Z, MEAN, COMPUTE
                )
                back_C = _load_states(C_ptr, C_row0, back_positions, back_valid, state_mask, length, BC_VECTOR)
                back_C = back_C.to(COMPUTE)
                back_dhs = _tile_scan(_exp2(back_next_dt * A2), back_dy * back_C, dh)
                dh = _last_slot(back_dhs)
                dhs = tl.flip(back_dhs, 1)
                u = tl.load(u_ptr + shared_row + positions, mask=valid, other=0).to(COMPUTE)
                raw = tl.load(delta_ptr + delta_row + positions, mask=valid, other=0)
                dt_raw, dt = _step_sizes(raw, valid, bias, SOFTPLUS)
                dtu = dt * u
                B = _load_states(B_ptr, B_row0, positions, valid, state_mask, length, BC_VECTOR).to(COMPUTE)
                h_entry = tl.sum(tl.where(tile_ids == tile, entries, 0.0), axis=1, keep_dims=True)
                drive = dtu * B
                hs = _tile_scan(_exp2(dt * A2), drive, h_entry)
                dy, dout, z, gate = _output_grad(
                    dout_ptr, z_ptr, shared_row, positions, valid, num_dirs, HAS_Z, MEAN, COMPUTE
                )
                _store_states(dB_ptr, B_row0, positions, valid, state_mask, length, dhs * dtu, ATOMIC_BC)
                _store_states(dC_ptr, C_row0, positions, valid, state_mask, length, hs * dy, ATOMIC_BC)
                decayed, ddt = _token_gradients(
                    dhs,
                    hs,
                    drive,
                    dt,
                    dt_raw,
                    u,
                    B,
                    A,
                    dy,
                    skip,
                    valid,
                    du_ptr,
                    ddelta_ptr,
                    shared_row,
                    delta_row,
                    positions,
                    HAS_D,
                    SOFTPLUS,
                    ACCUMULATE,
                )
                dA_sum += tl.sum(decayed * dt, axis=1, keep_dims=True)
                dbias_sum += ddt
                if HAS_D:
                    dD_sum += dy * u
                if HAS_Z:
                    C = _load_states(C_ptr, C_row0, positions, valid, state_mask, length, BC_VECTOR).to(COMPUTE)
                    y = tl.sum(hs * C, axis=0, keep_dims=True)
                    if HAS_D:
                        y += skip * u
                    dz = dout * y * gate * (1.0 + z * (1.0 - gate))
                    tl.store(dz_ptr + shared_row + positions, dz.to(dz_ptr.dtype.element_ty), mask=valid)
        if MODE == SUMMARY:
            tl.store(carry_ptr + state_offsets, dh, mask=state_mask)
            tl.store(decay_sum_ptr + chunk_row + chunk, next_dt_total)
        else:
            tl.store(dA_ptr + state_offsets, dA_sum, mask=state_mask)
            if HAS_D:
                tl.store(dD_ptr + chunk_row + chunk, tl.sum(dD_sum))
            if HAS_BIAS:
                tl.store(dbias_ptr + chunk_row + chunk, tl.sum(dbias_sum))
