"""Triton kernels of the fused selective scan (S6): one forward and one backward kernel.

Both kernels handle a plain scan (K = 1 direction, tokens in memory order) and a multi-direction scan
(K directions that read their tokens through an index map and add their outputs into one raster-order
tensor). Layouts, all contiguous (Bt = batch, D = channels, L = tokens, N = state size):

- u, z, out, dout, du, dz: (Bt, D, L), shared by the K directions;
- delta, ddelta: (Bt, K, D, L); A, dA: (K, D, N); D, delta_bias: (K, D);
- B, C, dB, dC: (Bt, K * G, N, L): channel d of direction k uses group k * G + d // (D // G);
- index: (K, L), index[k, t] = memory position of the t-th token of direction k (multi scans only);
  the K outputs are summed, or averaged (MEAN);
- states: (Bt, K, D, n_chunks, N): the state after each chunk of CHUNK_LEN tokens, the only thing
  the forward pass keeps for the backward pass.

One program owns BLOCK_D channels of one batch row that share their B and C groups, so B and C are
loaded once per tile of BLOCK_L tokens for all BLOCK_D channels. The state of the block is a
(BLOCK_D, N_PAD) register tile; each tile of tokens is solved with ``tl.associative_scan`` on
(decay, input) pairs, then the state carried in from the previous tile is folded in.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _linear_combine(decay_first, value_first, decay_second, value_second):
    """Compose h -> decay_first * h + value_first with h -> decay_second * h + value_second."""
    return decay_second * decay_first, decay_second * value_first + value_second


@triton.jit
def _softplus(x):
    """softplus with torch's threshold 20; log1p(e) computed exactly as log(1 + e) * e / ((1 + e) - 1)."""
    e = tl.exp(x)
    one_plus = 1.0 + e
    log1p = tl.where(one_plus == 1.0, e, tl.log(one_plus) * e / (one_plus - 1.0))
    return tl.where(x > 20.0, x, log1p)


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _block_of_program(work, dim, segment_len, blocks_per_segment, BLOCK_D: tl.constexpr):
    """(batch row, first channel, channel offsets, channel mask) of work item ``work``."""
    blocks_per_row = (dim // segment_len) * blocks_per_segment
    batch = work // blocks_per_row
    rest = work % blocks_per_row
    segment = rest // blocks_per_segment
    first = segment * segment_len + (rest % blocks_per_segment) * BLOCK_D
    channels = first + tl.arange(0, BLOCK_D)
    return batch.to(tl.int64), first, channels, channels < (segment + 1) * segment_len


@triton.jit
def _token_positions(index_ptr, direction, steps, step_mask, length, HAS_INDEX: tl.constexpr):
    """Memory positions (int64) of the tokens at ``steps`` of ``direction``."""
    if HAS_INDEX:
        return tl.load(index_ptr + direction * length + steps, mask=step_mask, other=0).to(tl.int64)
    return steps.to(tl.int64)


@triton.jit
def _step_sizes(delta_ptr, row_offsets, positions, mask, bias, SOFTPLUS: tl.constexpr, COMPUTE: tl.constexpr):
    """delta + bias (raw) and softplus of it (dt), 0 where masked so that masked tokens keep the state."""
    raw = tl.load(delta_ptr + row_offsets[:, None] + positions[None, :], mask=mask, other=0).to(COMPUTE)
    raw = raw + bias[:, None]
    dt = _softplus(raw) if SOFTPLUS else raw
    return raw, tl.where(mask, dt, 0.0)


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
    dim,
    length,
    num_chunks,
    num_dirs,
    b_groups,
    c_groups,
    segment_len,
    blocks_per_segment,
    STATE: tl.constexpr,
    N_PAD: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_L: tl.constexpr,
    CHUNK_LEN: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_INDEX: tl.constexpr,
    ACCUMULATE: tl.constexpr,
    MEAN: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """Grid: (Bt * blocks of BLOCK_D channels,). Writes out (or adds into it) and the chunk-end states."""
    batch, first, channels, channel_mask = _block_of_program(
        tl.program_id(0), dim, segment_len, blocks_per_segment, BLOCK_D
    )
    states_n = tl.arange(0, N_PAD)
    state_mask = channel_mask[:, None] & (states_n < STATE)[None, :]
    steps_in_tile = tl.arange(0, BLOCK_L)
    is_last_step = (steps_in_tile == BLOCK_L - 1)[None, None, :]
    num_tiles = tl.cdiv(length, BLOCK_L)
    tiles_per_chunk: tl.constexpr = CHUNK_LEN // BLOCK_L
    # Row offsets of the shared (Bt, D, L) tensors; 64-bit since Bt * D * L may exceed 2**31.
    shared_rows = (batch * dim + channels) * length
    for direction in range(num_dirs):
        param_rows = direction * dim + channels
        A = tl.load(A_ptr + param_rows[:, None] * STATE + states_n[None, :], mask=state_mask, other=0).to(COMPUTE)
        bias = tl.zeros((BLOCK_D,), COMPUTE)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + param_rows, mask=channel_mask, other=0).to(COMPUTE)
        skip = tl.zeros((BLOCK_D,), COMPUTE)
        if HAS_D:
            skip = tl.load(D_ptr + param_rows, mask=channel_mask, other=0).to(COMPUTE)
        delta_rows = ((batch * num_dirs + direction) * dim + channels) * length
        group_B = direction * b_groups + first // (dim // b_groups)
        group_C = direction * c_groups + first // (dim // c_groups)
        B_rows = ((batch * num_dirs * b_groups + group_B) * STATE + states_n) * length
        C_rows = ((batch * num_dirs * c_groups + group_C) * STATE + states_n) * length
        state_rows = ((batch * num_dirs + direction) * dim + channels) * num_chunks
        h = tl.zeros((BLOCK_D, N_PAD), COMPUTE)
        for tile in range(num_tiles):
            steps = tile * BLOCK_L + steps_in_tile
            step_mask = steps < length
            mask = channel_mask[:, None] & step_mask[None, :]
            positions = _token_positions(index_ptr, direction, steps, step_mask, length, HAS_INDEX)
            u = tl.load(u_ptr + shared_rows[:, None] + positions[None, :], mask=mask, other=0).to(COMPUTE)
            _, dt = _step_sizes(delta_ptr, delta_rows, positions, mask, bias, SOFTPLUS, COMPUTE)
            bc_mask = (states_n < STATE)[:, None] & step_mask[None, :]
            B = tl.load(B_ptr + B_rows[:, None] + positions[None, :], mask=bc_mask, other=0).to(COMPUTE)
            C = tl.load(C_ptr + C_rows[:, None] + positions[None, :], mask=bc_mask, other=0).to(COMPUTE)
            decay = tl.exp(dt[:, None, :] * A[:, :, None])  # (BLOCK_D, N_PAD, BLOCK_L)
            drive = (dt * u)[:, None, :] * B[None, :, :]
            decay_prefix, drive_prefix = tl.associative_scan((decay, drive), 2, _linear_combine)
            hs = decay_prefix * h[:, :, None] + drive_prefix
            # Masked tokens have decay 1 and no input, so the last slot holds the state after the last real token.
            h = tl.sum(tl.where(is_last_step, hs, 0.0), axis=2)
            y = tl.sum(hs * C[None, :, :], axis=1)
            if HAS_D:
                y += skip[:, None] * u
            if HAS_Z:
                z = tl.load(z_ptr + shared_rows[:, None] + positions[None, :], mask=mask, other=0).to(COMPUTE)
                y *= z * _sigmoid(z)
            out_offsets = out_ptr + shared_rows[:, None] + positions[None, :]
            if MEAN:
                y = y / num_dirs
            if ACCUMULATE:
                y += tl.load(out_offsets, mask=mask, other=0)
            tl.store(out_offsets, y.to(out_ptr.dtype.element_ty), mask=mask)
            if ((tile + 1) % tiles_per_chunk == 0) | (tile == num_tiles - 1):
                chunk = tile // tiles_per_chunk
                state_offsets = (state_rows[:, None] + chunk) * STATE + states_n[None, :]
                tl.store(states_ptr + state_offsets, h, mask=state_mask)
        if ACCUMULATE:
            # The next direction visits the same positions in another order, i.e. from other threads.
            tl.debug_barrier()


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
    scratch_ptr,
    du_ptr,
    ddelta_ptr,
    dB_ptr,
    dC_ptr,
    dz_ptr,
    dA_ptr,
    dD_ptr,
    dbias_ptr,
    dim,
    length,
    num_chunks,
    num_dirs,
    b_groups,
    c_groups,
    segment_len,
    blocks_per_segment,
    num_work,
    STATE: tl.constexpr,
    N_PAD: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_L: tl.constexpr,
    CHUNK_LEN: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_INDEX: tl.constexpr,
    ACCUMULATE: tl.constexpr,
    MEAN: tl.constexpr,
    ATOMIC_BC: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """Grid: (programs,), each looping over work items (batch row, channel block), chunks in reverse.

    Per chunk, a first pass re-runs the forward recurrence from the saved chunk-start state and writes
    the state entering each tile into this program's scratch slots (tiles of a chunk, BLOCK_D, N_PAD);
    a second pass walks the tiles backwards, recomputes h from the tile's entry state, and runs the
    reverse scan dh_t = exp(dt_{t+1} A) dh_{t+1} + C_t dy_t. Per-batch-row partial sums of dA, dD and
    ddelta_bias are stored (no atomics); dB and dC are summed over the block's channels in registers
    and added with one atomic per element when several blocks share a group (ATOMIC_BC).
    """
    program = tl.program_id(0)
    num_programs = tl.num_programs(0)
    tiles_per_chunk: tl.constexpr = CHUNK_LEN // BLOCK_L
    states_n = tl.arange(0, N_PAD)
    local_channels = tl.arange(0, BLOCK_D)
    num_tiles = tl.cdiv(length, BLOCK_L)
    scratch_slots = tl.minimum(num_tiles, tiles_per_chunk)
    scratch_base = scratch_ptr + program.to(tl.int64) * scratch_slots * (BLOCK_D * N_PAD)
    scratch_tile = local_channels[:, None] * N_PAD + states_n[None, :]
    steps_in_tile = tl.arange(0, BLOCK_L)
    is_first_step = (steps_in_tile == 0)[None, None, :]
    is_last_step = (steps_in_tile == BLOCK_L - 1)[None, None, :]
    for work in range(program, num_work, num_programs):
        batch, first, channels, channel_mask = _block_of_program(work, dim, segment_len, blocks_per_segment, BLOCK_D)
        state_mask = channel_mask[:, None] & (states_n < STATE)[None, :]
        shared_rows = (batch * dim + channels) * length
        for direction in range(num_dirs):
            param_rows = direction * dim + channels
            A_offsets = param_rows[:, None] * STATE + states_n[None, :]
            A = tl.load(A_ptr + A_offsets, mask=state_mask, other=0).to(COMPUTE)
            bias = tl.zeros((BLOCK_D,), COMPUTE)
            if HAS_BIAS:
                bias = tl.load(bias_ptr + param_rows, mask=channel_mask, other=0).to(COMPUTE)
            skip = tl.zeros((BLOCK_D,), COMPUTE)
            if HAS_D:
                skip = tl.load(D_ptr + param_rows, mask=channel_mask, other=0).to(COMPUTE)
            delta_rows = ((batch * num_dirs + direction) * dim + channels) * length
            group_B = direction * b_groups + first // (dim // b_groups)
            group_C = direction * c_groups + first // (dim // c_groups)
            B_rows = ((batch * num_dirs * b_groups + group_B) * STATE + states_n) * length
            C_rows = ((batch * num_dirs * c_groups + group_C) * STATE + states_n) * length
            state_rows = ((batch * num_dirs + direction) * dim + channels) * num_chunks
            dA = tl.zeros((BLOCK_D, N_PAD), COMPUTE)
            dD = tl.zeros((BLOCK_D,), COMPUTE)
            dbias = tl.zeros((BLOCK_D,), COMPUTE)
            # dh at the first token of the tile after the current one.
            dh_next = tl.zeros((BLOCK_D, N_PAD), COMPUTE)
            for chunk_from_end in range(num_chunks):
                chunk = num_chunks - 1 - chunk_from_end
                first_tile = chunk * tiles_per_chunk
                end_tile = tl.minimum(first_tile + tiles_per_chunk, num_tiles)
                entry_offsets = (state_rows[:, None] + chunk - 1) * STATE + states_n[None, :]
                h = tl.load(states_ptr + entry_offsets, mask=state_mask & (chunk > 0), other=0).to(COMPUTE)
                # Pass 1: the state entering each tile of the chunk.
                for tile in range(first_tile, end_tile):
                    tl.store(scratch_base + (tile - first_tile) * (BLOCK_D * N_PAD) + scratch_tile, h)
                    steps = tile * BLOCK_L + steps_in_tile
                    step_mask = steps < length
                    mask = channel_mask[:, None] & step_mask[None, :]
                    positions = _token_positions(index_ptr, direction, steps, step_mask, length, HAS_INDEX)
                    u = tl.load(u_ptr + shared_rows[:, None] + positions[None, :], mask=mask, other=0).to(COMPUTE)
                    _, dt = _step_sizes(delta_ptr, delta_rows, positions, mask, bias, SOFTPLUS, COMPUTE)
                    bc_mask = (states_n < STATE)[:, None] & step_mask[None, :]
                    B = tl.load(B_ptr + B_rows[:, None] + positions[None, :], mask=bc_mask, other=0).to(COMPUTE)
                    decay = tl.exp(dt[:, None, :] * A[:, :, None])
                    drive = (dt * u)[:, None, :] * B[None, :, :]
                    # A scan rather than tl.reduce: the combine is not commutative.
                    decay_prefix, drive_prefix = tl.associative_scan((decay, drive), 2, _linear_combine)
                    h = tl.sum(tl.where(is_last_step, decay_prefix * h[:, :, None] + drive_prefix, 0.0), axis=2)
                tl.debug_barrier()
                # Pass 2: tiles in reverse order.
                for tile_from_end in range(end_tile - first_tile):
                    tile = end_tile - 1 - tile_from_end
                    h_entry = tl.load(scratch_base + (tile - first_tile) * (BLOCK_D * N_PAD) + scratch_tile)
                    steps = tile * BLOCK_L + steps_in_tile
                    step_mask = steps < length
                    mask = channel_mask[:, None] & step_mask[None, :]
                    positions = _token_positions(index_ptr, direction, steps, step_mask, length, HAS_INDEX)
                    shared_offsets = shared_rows[:, None] + positions[None, :]
                    u = tl.load(u_ptr + shared_offsets, mask=mask, other=0).to(COMPUTE)
                    dt_raw, dt = _step_sizes(delta_ptr, delta_rows, positions, mask, bias, SOFTPLUS, COMPUTE)
                    bc_mask = (states_n < STATE)[:, None] & step_mask[None, :]
                    B = tl.load(B_ptr + B_rows[:, None] + positions[None, :], mask=bc_mask, other=0).to(COMPUTE)
                    C = tl.load(C_ptr + C_rows[:, None] + positions[None, :], mask=bc_mask, other=0).to(COMPUTE)
                    decay = tl.exp(dt[:, None, :] * A[:, :, None])
                    dtu = dt * u
                    drive = dtu[:, None, :] * B[None, :, :]
                    decay_prefix, drive_prefix = tl.associative_scan((decay, drive), 2, _linear_combine)
                    hs = decay_prefix * h_entry[:, :, None] + drive_prefix

                    dy = tl.load(dout_ptr + shared_offsets, mask=mask, other=0).to(COMPUTE)
                    if MEAN:
                        dy = dy / num_dirs
                    if HAS_Z:
                        y = tl.sum(hs * C[None, :, :], axis=1)
                        if HAS_D:
                            y += skip[:, None] * u
                        z = tl.load(z_ptr + shared_offsets, mask=mask, other=0).to(COMPUTE)
                        gate = _sigmoid(z)
                        dz = dy * y * gate * (1.0 + z * (1.0 - gate))
                        tl.store(dz_ptr + shared_offsets, dz.to(dz_ptr.dtype.element_ty), mask=mask)
                        dy = dy * z * gate
                    if HAS_D:
                        dD += tl.sum(dy * u, axis=1)

                    # Reverse scan with the decay of the following token (which may sit in the next tile).
                    next_steps = steps + 1
                    next_mask = next_steps < length
                    next_positions = _token_positions(index_ptr, direction, next_steps, next_mask, length, HAS_INDEX)
                    _, next_dt = _step_sizes(
                        delta_ptr,
                        delta_rows,
                        next_positions,
                        channel_mask[:, None] & next_mask[None, :],
                        bias,
                        SOFTPLUS,
                        COMPUTE,
                    )
                    next_decay = tl.exp(next_dt[:, None, :] * A[:, :, None])
                    decay_suffix, dh_suffix = tl.associative_scan(
                        (next_decay, C[None, :, :] * dy[:, None, :]), 2, _linear_combine, reverse=True
                    )
                    dhs = dh_suffix + decay_suffix * dh_next[:, :, None]
                    dh_next = tl.sum(tl.where(is_first_step, dhs, 0.0), axis=2)

                    dC_tile = tl.sum(hs * dy[:, None, :], axis=0)  # (N_PAD, BLOCK_L)
                    dB_tile = tl.sum(dhs * dtu[:, None, :], axis=0)
                    bc_offsets = B_rows[:, None] + positions[None, :]
                    if ATOMIC_BC:
                        tl.atomic_add(dB_ptr + bc_offsets, dB_tile, mask=bc_mask)
                        tl.atomic_add(dC_ptr + C_rows[:, None] + positions[None, :], dC_tile, mask=bc_mask)
                    else:
                        tl.store(dB_ptr + bc_offsets, dB_tile, mask=bc_mask)
                        tl.store(dC_ptr + C_rows[:, None] + positions[None, :], dC_tile, mask=bc_mask)
                    # dh_t * exp(dt_t A) * h_{t-1}, with exp(dt_t A) * h_{t-1} = h_t - drive_t.
                    decayed = dhs * (hs - drive)
                    dA += tl.sum(decayed * dt[:, None, :], axis=2)
                    dh_B = tl.sum(dhs * B[None, :, :], axis=1)  # (BLOCK_D, BLOCK_L)
                    ddt = dh_B * u + tl.sum(decayed * A[:, :, None], axis=1)
                    du = dh_B * dt
                    if HAS_D:
                        du += skip[:, None] * dy
                    if SOFTPLUS:
                        ddt = tl.where(dt_raw > 20.0, ddt, ddt * _sigmoid(dt_raw))
                    ddt = tl.where(mask, ddt, 0.0)
                    if HAS_BIAS:
                        dbias += tl.sum(ddt, axis=1)
                    delta_offsets = delta_rows[:, None] + positions[None, :]
                    tl.store(ddelta_ptr + delta_offsets, ddt.to(ddelta_ptr.dtype.element_ty), mask=mask)
                    if ACCUMULATE:
                        du += tl.load(du_ptr + shared_offsets, mask=mask, other=0)
                    tl.store(du_ptr + shared_offsets, du.to(du_ptr.dtype.element_ty), mask=mask)
                # The next chunk's pass 1 overwrites the scratch slots read above.
                tl.debug_barrier()
            # Partial sums per batch row: (Bt, K, D, N) and (Bt, K, D), summed over Bt by the caller.
            partial_rows = (batch * num_dirs + direction) * dim + channels
            tl.store(dA_ptr + partial_rows[:, None] * STATE + states_n[None, :], dA, mask=state_mask)
            if HAS_D:
                tl.store(dD_ptr + partial_rows, dD, mask=channel_mask)
            if HAS_BIAS:
                tl.store(dbias_ptr + partial_rows, dbias, mask=channel_mask)
