"""Triton kernels of the fused selective scan (S6): forward, backward, and the chunk-carry pass between them.

Every kernel handles a plain scan (K = 1 direction, tokens in memory order) and a multi-direction scan (K
directions that read their tokens through an index map and add their outputs into one raster-order tensor).
Layouts, all contiguous (Bt = batch, D = channels, L = tokens, N = state size, n_chunks = ceil(L / CHUNK_LEN)):

- u, z, out, dout, du, dz: (Bt, D, L), shared by the K directions;
- delta, ddelta: (Bt, K, D, L); A: (K, D, N); D, delta_bias: (K, D);
- B, C, dB, dC: (Bt, K * G, N, L): channel d of direction k uses group k * G + d // (D // G);
- index: (K, L), index[k, t] = memory position of the t-th token of direction k (multi scans only);
  the K outputs are summed, or averaged (MEAN);
- states: (Bt, K, D, n_chunks, N), the state after each chunk, the only thing the forward pass keeps;
- per-chunk partial sums of the backward pass: dA (Bt, K, D, n_chunks, N), dD and ddelta_bias (Bt, K, D, n_chunks).

A program owns BLOCK_D channels of one batch row that share their B and C groups (so a B or C row is loaded
once for all of them) and works on (BLOCK_D, CHUNK_LEN) register tiles, one chunk at a time and one state index n
after the other: per n, the chunk's recurrence h_t = exp(dt_t A_n) h_{t-1} + dt_t u_t B_{n,t} is one
``tl.associative_scan`` along the tokens, with the state carried in folded into the first token.

Work is split in one of two ways (MODE):

- SEQUENTIAL: a program walks all chunks of its channels in order (forward) or in reverse (backward),
  carrying the state (or its gradient) in registers. Enough when Bt * D gives every SM several programs.
- Chunk-parallel, when there are few rows and long sequences (3D volumes): SUMMARY programs, one per chunk,
  reduce their chunk to an affine map of the state (its decay exp(A * sum dt) and its input, a plain sum
  of decayed inputs: no scan), ``_carry_kernel`` chains those maps over the chunks, and FROM_CARRY programs,
  one per chunk, start from the carried state. Multi-direction scans then add into the output with atomics.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)

# Work splits (the MODE argument); kernels read only constexpr globals.
SEQUENTIAL = tl.constexpr(0)
SUMMARY = tl.constexpr(1)
FROM_CARRY = tl.constexpr(2)


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
def _rows_of_program(work, dim, segment_len, blocks_per_segment, BLOCK_D: tl.constexpr):
    """(batch row, first channel, channel offsets, channel mask) of row block ``work``."""
    blocks_per_row = (dim // segment_len) * blocks_per_segment
    batch = work // blocks_per_row
    rest = work % blocks_per_row
    segment = rest // blocks_per_segment
    first = segment * segment_len + (rest % blocks_per_segment) * BLOCK_D
    channels = first + tl.arange(0, BLOCK_D)
    return batch.to(tl.int64), first, channels, channels < (segment + 1) * segment_len


@triton.jit
def _work_range(num_dirs, num_chunks, MODE: tl.constexpr):
    """(first direction, end direction, first chunk, end chunk) of this program."""
    if MODE == SEQUENTIAL:
        return 0, num_dirs, 0, num_chunks
    item = tl.program_id(1)
    direction = item // num_chunks
    chunk = item % num_chunks
    return direction, direction + 1, chunk, chunk + 1


@triton.jit
def _token_positions(index_ptr, direction, steps, step_mask, length, HAS_INDEX: tl.constexpr):
    """Memory positions (int64) of the tokens at ``steps`` of ``direction``."""
    if HAS_INDEX:
        return tl.load(index_ptr + direction * length + steps, mask=step_mask, other=0).to(tl.int64)
    return steps.to(tl.int64)


@triton.jit
def _step_sizes(delta_ptr, rows, positions, mask, bias, SOFTPLUS: tl.constexpr, COMPUTE: tl.constexpr):
    """delta + bias (raw) and softplus of it (dt), 0 where masked so that masked tokens keep the state."""
    raw = tl.load(delta_ptr + rows[:, None] + positions[None, :], mask=mask, other=0).to(COMPUTE)
    raw = raw + bias[:, None]
    dt = _softplus(raw) if SOFTPLUS else raw
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
def _group_rows(batch, direction, first, dim, num_dirs, groups, length, STATE: tl.constexpr):
    """Offset of row n = 0 of the B (or C) group of the block's channels; row n is at + n * length."""
    group = direction * groups + first // (dim // groups)
    return (batch * num_dirs * groups + group) * STATE * length


@triton.jit
def _direction_rows(
    batch, direction, first, channels, dim, length, num_chunks, num_dirs, b_groups, c_groups, STATE: tl.constexpr
):
    """Row offsets of the block's channels in direction ``direction``: of A/D/delta_bias (K, D), of delta (Bt, K, D,
    L), of B's and C's row n = 0, and of the per-chunk tensors (Bt, K, D, n_chunks) (times N for states)."""
    param_rows = direction * dim + channels
    rows = (batch * num_dirs + direction) * dim + channels
    B_row0 = _group_rows(batch, direction, first, dim, num_dirs, b_groups, length, STATE)
    C_row0 = _group_rows(batch, direction, first, dim, num_dirs, c_groups, length, STATE)
    return param_rows, rows * length, B_row0, C_row0, rows * num_chunks


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
    dim,
    length,
    num_chunks,
    num_dirs,
    b_groups,
    c_groups,
    segment_len,
    blocks_per_segment,
    STATE: tl.constexpr,
    BLOCK_D: tl.constexpr,
    CHUNK_LEN: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_INDEX: tl.constexpr,
    ACCUMULATE: tl.constexpr,
    ATOMIC_OUT: tl.constexpr,
    MEAN: tl.constexpr,
    MODE: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """Grid: (row blocks,) for SEQUENTIAL, (row blocks, K * n_chunks) otherwise; one tile is one chunk.

    SEQUENTIAL writes out and the state after every chunk into states; SUMMARY writes the state a chunk
    reaches from zero (into local) and its sum of dt (decay_sum); FROM_CARRY starts each chunk from
    states[chunk - 1] (chained by ``_carry_kernel``) and writes out.
    """
    batch, first, channels, channel_mask = _rows_of_program(
        tl.program_id(0), dim, segment_len, blocks_per_segment, BLOCK_D
    )
    first_dir, end_dir, first_chunk, end_chunk = _work_range(num_dirs, num_chunks, MODE)
    steps_in_chunk = tl.arange(0, CHUNK_LEN)
    is_first_step = (steps_in_chunk == 0)[None, :]
    is_last_step = (steps_in_chunk == CHUNK_LEN - 1)[None, :]
    # Row offsets of the shared (Bt, D, L) tensors; 64-bit since Bt * D * L may exceed 2**31.
    shared_rows = (batch * dim + channels) * length
    for direction in range(first_dir, end_dir):
        param_rows, delta_rows, B_row0, C_row0, chunk_rows = _direction_rows(
            batch, direction, first, channels, dim, length, num_chunks, num_dirs, b_groups, c_groups, STATE
        )
        skip, bias = _channel_params(D_ptr, bias_ptr, param_rows, channel_mask, HAS_D, HAS_BIAS, COMPUTE)
        for chunk in range(first_chunk, end_chunk):
            steps = chunk * CHUNK_LEN + steps_in_chunk
            step_mask = steps < length
            mask = channel_mask[:, None] & step_mask[None, :]
            positions = _token_positions(index_ptr, direction, steps, step_mask, length, HAS_INDEX)
            shared_offsets = shared_rows[:, None] + positions[None, :]
            u = tl.load(u_ptr + shared_offsets, mask=mask, other=0).to(COMPUTE)
            _, dt = _step_sizes(delta_ptr, delta_rows, positions, mask, bias, SOFTPLUS, COMPUTE)
            dtu = dt * u
            state_offsets = (chunk_rows + chunk) * STATE
            if MODE == SUMMARY:
                # State reached from zero: sum_t exp(A * sum of dt after t) * dt_t u_t B_t, with the exclusive
                # suffix sums taken directly (no cancellation) and exponents <= 0.
                dt_later = tl.cumsum(dt, axis=1, reverse=True) - dt
                for n in tl.static_range(STATE):
                    A_n = tl.load(A_ptr + param_rows * STATE + n, mask=channel_mask, other=0).to(COMPUTE) * LOG2E
                    B_n = tl.load(B_ptr + B_row0 + n * length + positions, mask=step_mask, other=0).to(COMPUTE)
                    weighted = tl.exp2(dt_later * A_n[:, None]) * dtu * B_n[None, :]
                    tl.store(local_ptr + state_offsets + n, tl.sum(weighted, axis=1), mask=channel_mask)
                tl.store(decay_sum_ptr + chunk_rows + chunk, tl.sum(dt, axis=1), mask=channel_mask)
            else:
                y = tl.zeros((BLOCK_D, CHUNK_LEN), COMPUTE)
                entry_offsets = state_offsets - STATE
                for n in tl.static_range(STATE):
                    A_n = tl.load(A_ptr + param_rows * STATE + n, mask=channel_mask, other=0).to(COMPUTE) * LOG2E
                    B_n = tl.load(B_ptr + B_row0 + n * length + positions, mask=step_mask, other=0).to(COMPUTE)
                    C_n = tl.load(C_ptr + C_row0 + n * length + positions, mask=step_mask, other=0).to(COMPUTE)
                    h_n = tl.load(states_ptr + entry_offsets + n, mask=channel_mask & (chunk > 0), other=0).to(COMPUTE)
                    decay = tl.exp2(dt * A_n[:, None])
                    drive = dtu * B_n[None, :]
                    drive = tl.where(is_first_step, drive + decay * h_n[:, None], drive)
                    _, hs = tl.associative_scan((decay, drive), 1, _linear_combine)
                    y += hs * C_n[None, :]
                    if MODE == SEQUENTIAL:
                        # Masked tokens have decay 1 and no input: the last slot holds the chunk's end state.
                        end_offsets = state_offsets[:, None] + n + 0 * steps_in_chunk[None, :]
                        tl.store(states_ptr + end_offsets, hs, mask=channel_mask[:, None] & is_last_step)
                if HAS_D:
                    y += skip[:, None] * u
                if HAS_Z:
                    z = tl.load(z_ptr + shared_offsets, mask=mask, other=0).to(COMPUTE)
                    y *= z * _sigmoid(z)
                if MEAN:
                    y = y / num_dirs
                if ATOMIC_OUT:
                    tl.atomic_add(out_ptr + shared_offsets, y, mask=mask)
                else:
                    if ACCUMULATE:
                        y += tl.load(out_ptr + shared_offsets, mask=mask, other=0)
                    tl.store(out_ptr + shared_offsets, y.to(out_ptr.dtype.element_ty), mask=mask)
                if MODE == SEQUENTIAL:
                    # The next chunk reads the end state stored by another thread; the next direction visits
                    # the same output positions from other threads.
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
        value = tl.exp2(A * dt_sum[:, None]) * value + local
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
    dim,
    length,
    num_chunks,
    num_dirs,
    b_groups,
    c_groups,
    segment_len,
    blocks_per_segment,
    STATE: tl.constexpr,
    BLOCK_D: tl.constexpr,
    CHUNK_LEN: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_INDEX: tl.constexpr,
    ACCUMULATE: tl.constexpr,
    ATOMIC_OUT: tl.constexpr,
    MEAN: tl.constexpr,
    ATOMIC_BC: tl.constexpr,
    MODE: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """Grid as the forward kernel's; one tile is one chunk.

    With dh_t the gradient of the state h_t, the reverse recurrence is dh_t = exp(dt_{t+1} A) dh_{t+1} + C_t dy_t.
    carry[chunk] holds dh at the first token of chunk + 1. SEQUENTIAL walks the chunks backwards and writes it
    itself; SUMMARY writes, per chunk, dh at its first token from its own tokens alone (into carry) and the sum
    of dt_{t+1} over it (decay_sum); FROM_CARRY reads carry as chained by ``_carry_kernel``. Each chunk
    recomputes its states from states[chunk - 1], the forward pass's state after the previous chunk. Partial
    sums of dA, dD and ddelta_bias are stored per (batch row, chunk); dB and dC are summed over the block's
    channels and added with one atomic per element when several blocks share a group (ATOMIC_BC).
    """
    batch, first, channels, channel_mask = _rows_of_program(
        tl.program_id(0), dim, segment_len, blocks_per_segment, BLOCK_D
    )
    first_dir, end_dir, first_chunk, end_chunk = _work_range(num_dirs, num_chunks, MODE)
    steps_in_chunk = tl.arange(0, CHUNK_LEN)
    is_first_step = (steps_in_chunk == 0)[None, :]
    is_last_step = (steps_in_chunk == CHUNK_LEN - 1)[None, :]
    shared_rows = (batch * dim + channels) * length
    for direction in range(first_dir, end_dir):
        param_rows, delta_rows, B_row0, C_row0, chunk_rows = _direction_rows(
            batch, direction, first, channels, dim, length, num_chunks, num_dirs, b_groups, c_groups, STATE
        )
        skip, bias = _channel_params(D_ptr, bias_ptr, param_rows, channel_mask, HAS_D, HAS_BIAS, COMPUTE)
        for chunk_step in range(first_chunk, end_chunk):
            chunk = chunk_step
            if MODE == SEQUENTIAL:
                chunk = num_chunks - 1 - chunk_step
            steps = chunk * CHUNK_LEN + steps_in_chunk
            step_mask = steps < length
            mask = channel_mask[:, None] & step_mask[None, :]
            positions = _token_positions(index_ptr, direction, steps, step_mask, length, HAS_INDEX)
            shared_offsets = shared_rows[:, None] + positions[None, :]
            # dt of the following token, which may sit in the next chunk.
            next_steps = steps + 1
            next_mask = next_steps < length
            next_positions = _token_positions(index_ptr, direction, next_steps, next_mask, length, HAS_INDEX)
            next_tokens = channel_mask[:, None] & next_mask[None, :]
            _, next_dt = _step_sizes(delta_ptr, delta_rows, next_positions, next_tokens, bias, SOFTPLUS, COMPUTE)
            dy = tl.load(dout_ptr + shared_offsets, mask=mask, other=0).to(COMPUTE)
            if MEAN:
                dy = dy / num_dirs
            if HAS_Z:
                z = tl.load(z_ptr + shared_offsets, mask=mask, other=0).to(COMPUTE)
                gate = _sigmoid(z)
                dout_gated = dy
                dy = dy * z * gate
            state_offsets = (chunk_rows + chunk) * STATE
            if MODE == SUMMARY:
                # dh at the chunk's first token from its own tokens: sum_t exp(A * sum_{first < s <= t} dt_s) C_t dy_t.
                dt_before = tl.cumsum(next_dt, axis=1) - next_dt
                for n in tl.static_range(STATE):
                    A_n = tl.load(A_ptr + param_rows * STATE + n, mask=channel_mask, other=0).to(COMPUTE) * LOG2E
                    C_n = tl.load(C_ptr + C_row0 + n * length + positions, mask=step_mask, other=0).to(COMPUTE)
                    weighted = tl.exp2(dt_before * A_n[:, None]) * C_n[None, :] * dy
                    tl.store(carry_ptr + state_offsets + n, tl.sum(weighted, axis=1), mask=channel_mask)
                tl.store(decay_sum_ptr + chunk_rows + chunk, tl.sum(next_dt, axis=1), mask=channel_mask)
            else:
                u = tl.load(u_ptr + shared_offsets, mask=mask, other=0).to(COMPUTE)
                dt_raw, dt = _step_sizes(delta_ptr, delta_rows, positions, mask, bias, SOFTPLUS, COMPUTE)
                dtu = dt * u
                y = tl.zeros((BLOCK_D, CHUNK_LEN), COMPUTE)
                dh_B = tl.zeros((BLOCK_D, CHUNK_LEN), COMPUTE)  # sum_n dh_n B_n
                ddt_decay = tl.zeros((BLOCK_D, CHUNK_LEN), COMPUTE)  # sum_n dh_n A_n exp(dt A_n) h_{n, t-1}
                has_entry = channel_mask & (chunk > 0)
                has_next = channel_mask & (chunk < num_chunks - 1)
                for n in tl.static_range(STATE):
                    A_n = tl.load(A_ptr + param_rows * STATE + n, mask=channel_mask, other=0).to(COMPUTE)
                    B_n = tl.load(B_ptr + B_row0 + n * length + positions, mask=step_mask, other=0).to(COMPUTE)
                    C_n = tl.load(C_ptr + C_row0 + n * length + positions, mask=step_mask, other=0).to(COMPUTE)
                    h_n = tl.load(states_ptr + state_offsets - STATE + n, mask=has_entry, other=0).to(COMPUTE)
                    dh_n = tl.load(carry_ptr + state_offsets + n, mask=has_next, other=0).to(COMPUTE)
                    decay = tl.exp2(dt * (A_n * LOG2E)[:, None])
                    next_decay = tl.exp2(next_dt * (A_n * LOG2E)[:, None])
                    drive = dtu * B_n[None, :]
                    _, hs = tl.associative_scan(
                        (decay, tl.where(is_first_step, drive + decay * h_n[:, None], drive)), 1, _linear_combine
                    )
                    dy_C = dy * C_n[None, :]
                    _, dhs = tl.associative_scan(
                        (next_decay, tl.where(is_last_step, dy_C + next_decay * dh_n[:, None], dy_C)),
                        1,
                        _linear_combine,
                        reverse=True,
                    )
                    if HAS_Z:
                        y += hs * C_n[None, :]
                    dC_n = tl.sum(hs * dy, axis=0)
                    dB_n = tl.sum(dhs * dtu, axis=0)
                    if ATOMIC_BC:
                        tl.atomic_add(dB_ptr + B_row0 + n * length + positions, dB_n, mask=step_mask)
                        tl.atomic_add(dC_ptr + C_row0 + n * length + positions, dC_n, mask=step_mask)
                    else:
                        tl.store(dB_ptr + B_row0 + n * length + positions, dB_n, mask=step_mask)
                        tl.store(dC_ptr + C_row0 + n * length + positions, dC_n, mask=step_mask)
                    # exp(dt_t A) h_{t-1} = h_t - drive_t.
                    decayed = dhs * (hs - drive)
                    tl.store(dA_ptr + state_offsets + n, tl.sum(decayed * dt, axis=1), mask=channel_mask)
                    dh_B += dhs * B_n[None, :]
                    ddt_decay += decayed * A_n[:, None]
                    if MODE == SEQUENTIAL:
                        # dh at this chunk's first token enters the previous chunk.
                        first_offsets = state_offsets[:, None] - STATE + n + 0 * steps_in_chunk[None, :]
                        tl.store(carry_ptr + first_offsets, dhs, mask=has_entry[:, None] & is_first_step)
                ddt = dh_B * u + ddt_decay
                du = dh_B * dt
                if HAS_D:
                    du += skip[:, None] * dy
                if HAS_Z:
                    if HAS_D:
                        y += skip[:, None] * u
                    dz = dout_gated * y * gate * (1.0 + z * (1.0 - gate))
                    tl.store(dz_ptr + shared_offsets, dz.to(dz_ptr.dtype.element_ty), mask=mask)
                if SOFTPLUS:
                    ddt = tl.where(dt_raw > 20.0, ddt, ddt * _sigmoid(dt_raw))
                ddt = tl.where(mask, ddt, 0.0)
                delta_offsets = delta_rows[:, None] + positions[None, :]
                tl.store(ddelta_ptr + delta_offsets, ddt.to(ddelta_ptr.dtype.element_ty), mask=mask)
                if ATOMIC_OUT:
                    tl.atomic_add(du_ptr + shared_offsets, du, mask=mask)
                else:
                    if ACCUMULATE:
                        du += tl.load(du_ptr + shared_offsets, mask=mask, other=0)
                    tl.store(du_ptr + shared_offsets, du.to(du_ptr.dtype.element_ty), mask=mask)
                if HAS_D:
                    tl.store(dD_ptr + chunk_rows + chunk, tl.sum(dy * u, axis=1), mask=channel_mask)
                if HAS_BIAS:
                    tl.store(dbias_ptr + chunk_rows + chunk, tl.sum(ddt, axis=1), mask=channel_mask)
                if MODE == SEQUENTIAL:
                    # The previous chunk reads dh stored by another thread; the next direction adds into du at
                    # the same positions from other threads.
                    tl.debug_barrier()
