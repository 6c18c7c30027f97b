"""GPU benchmark of the Triton selective scan against the chunked torch backend.

    python benchmarks/triton_scan_gpu.py                   # default tiling, table of shapes
    python benchmarks/triton_scan_gpu.py --sweep --budget-s 90   # also time other tilings
    python benchmarks/triton_scan_gpu.py --direction-kinds        # fused scan cost per direction kind
    python benchmarks/triton_scan_gpu.py --fused-vs-composed "S1"  # fused multi_scan against gather -> scan -> merge
    python benchmarks/triton_scan_gpu.py --launch-sharing --backward-max-registers 96  # cross scan launch arrangements
    python benchmarks/triton_scan_gpu.py --state-sweep --budget-s 200   # state tile work splits, N = 16 and 1
    python benchmarks/triton_scan_gpu.py --state-sweep --only N1        # the shapes whose name ends with N1

Times are medians from ``triton.testing.do_bench`` (forward under no_grad; forward + backward with a
fixed cotangent). "GB/s" counts the forward's compulsory traffic: u, delta, out (and z) once each.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch
import triton
import triton.testing

import visionssm.kernels.triton_scan.scan as triton_scan
from visionssm.kernels import multi_scan, selective_scan_chunked
from visionssm.kernels.triton_scan import multi_scan_triton, selective_scan_triton
from visionssm.scans import merge_tokens, scan_plan, scan_tokens

# name, batch, dim, N, L, dtype, with z, time the torch backend too
SHAPES = [
    ("VMamba-T S1 (N=1)", 32, 384, 1, 3136, torch.bfloat16, False, True),
    ("VMamba-T S3 (N=1)", 128, 1536, 1, 196, torch.bfloat16, False, False),
    ("Mamba N=16 + z", 8, 1536, 16, 2048, torch.bfloat16, True, True),
    ("Mamba N=16 fp32", 8, 768, 16, 4096, torch.float32, False, False),
    ("N=64", 4, 512, 64, 1024, torch.float32, False, False),
]

# Alternatives to the default per-N table: (name, tiling applied to every N, chunk-parallel or None for auto).
Tiling = triton_scan.Tiling
TILINGS = [
    ("default", None, None),
    ("1024/4w", Tiling(1024, 1, 4, 1, 4), None),
    ("1024/2ch", Tiling(1024, 2, 4, 2, 8), None),
    ("2048/8-16w", Tiling(2048, 1, 8, 1, 16), None),
    ("2048 chunk-par", Tiling(2048, 1, 8, 1, 16), True),
]


def make_inputs(batch, dim, state, length, dtype, with_z, seed=0, groups=None):
    """Inputs of a plain scan; B and C shared by all channels, or in ``groups`` groups (the K directions of a
    multi-direction scan)."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    bc_shape = (batch, state, length) if groups is None else (batch, groups, state, length)

    def randn(*shape, scale=1.0, shift=0.0, dt=dtype):
        return (torch.randn(*shape, device="cuda", generator=gen) * scale + shift).to(dt)

    return dict(
        u=randn(batch, dim, length),
        delta=randn(batch, dim, length, scale=0.5, shift=-3.0),
        A=-torch.exp(torch.rand(dim, state, device="cuda", generator=gen) * 2.0),
        B=randn(*bc_shape),
        C=randn(*bc_shape),
        D=torch.ones(dim, device="cuda"),
        z=randn(batch, dim, length) if with_z else None,
        delta_bias=torch.zeros(dim, device="cuda"),
        delta_softplus=True,
    )


def time_scan(scan: Callable, inputs: dict) -> tuple[float, float]:
    """(forward ms, forward + backward ms)."""
    with torch.no_grad():
        forward = triton.testing.do_bench(lambda: scan(**inputs), warmup=25, rep=100)
    leaves = {k: v.detach().requires_grad_() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    cotangent = torch.randn_like(leaves["u"])

    def step():
        scan(**leaves).backward(cotangent)

    both = triton.testing.do_bench(
        step, warmup=10, rep=100, grad_to_none=[v for v in leaves.values() if isinstance(v, torch.Tensor)]
    )
    return forward, both


def composed_multi_scan(u, delta, A, B, C, plan, D, delta_bias):
    """Gathered copies -> one Triton scan over K * D channels -> inverse gather and merge (the unfused path)."""
    batch, dim = u.shape[:2]
    num_dirs, length = plan.index.shape

    def directed(x):  # (Bt, K, c, *spatial) -> (Bt, K, c, L)
        flat = x.reshape(batch, num_dirs, -1, length)
        return flat.gather(-1, plan.index[None, :, None, :].expand(batch, num_dirs, flat.shape[2], length))

    y = selective_scan_triton(
        scan_tokens(u, plan).reshape(batch, num_dirs * dim, length),
        directed(delta).reshape(batch, num_dirs * dim, length),
        A.reshape(num_dirs * dim, -1),
        directed(B),
        directed(C),
        D.reshape(-1),
        delta_bias=delta_bias.reshape(-1),
        delta_softplus=True,
    )
    return merge_tokens(y.view(batch, num_dirs, dim, length), plan)


def multi_inputs(
    batch: int, dim: int, grid: tuple[int, ...], state: int, dtype: torch.dtype, num_dirs: int = 4
) -> dict:
    """Leaf tensors of a multi_scan over ``grid``, raster layout."""
    gen = torch.Generator(device="cuda").manual_seed(0)

    def randn(*shape, scale=1.0, shift=0.0, dt=dtype):
        return (torch.randn(*shape, device="cuda", generator=gen) * scale + shift).to(dt).requires_grad_()

    return dict(
        u=randn(batch, dim, *grid),
        delta=randn(batch, num_dirs, dim, *grid, scale=0.5, shift=-3.0),
        A=(-torch.exp(torch.rand(num_dirs, dim, state, device="cuda", generator=gen))).requires_grad_(),
        B=randn(batch, num_dirs, state, *grid),
        C=randn(batch, num_dirs, state, *grid),
        D=randn(num_dirs, dim, dt=torch.float32),
        delta_bias=randn(num_dirs, dim, dt=torch.float32),
    )


def time_multi_scan(batch: int, dim: int, side: int, state: int, dtype: torch.dtype, sweep: bool) -> None:
    """Fused multi_scan (per tiling when ``sweep``) against the gather -> scan -> merge composition."""
    plan = scan_plan("cross", (side, side)).to("cuda")
    inputs = multi_inputs(batch, dim, (side, side), state, dtype, plan.num_directions)
    cotangent = torch.randn_like(inputs["u"])
    leaves = list(inputs.values())
    fused = lambda: multi_scan(**inputs, plan=plan, backend="triton")  # noqa: E731
    runs = [("fused", fused, (None, None))]
    if sweep:
        runs += [(f"fused {name}", fused, tables) for name, *tables in TILINGS[1:]]
    runs.append(("gather+scan+merge", lambda: composed_multi_scan(**inputs, plan=plan), (None, None)))
    for label, scan, tables in runs:
        set_tiling(*tables)
        with torch.no_grad():
            forward = triton.testing.do_bench(scan, warmup=25, rep=100)
        both = triton.testing.do_bench(lambda scan=scan: scan().backward(cotangent), rep=100, grad_to_none=leaves)
        shape = f"{batch}x{dim}x{side}x{side} N={state}"
        print(f"multi_scan cross {shape} {label:28} fwd {forward:.3f} ms, f+b {both:.3f} ms", flush=True)
    set_tiling(None, None)


def time_direction_kinds(batch: int, dim: int, side: int, state: int, dtype: torch.dtype, gather: bool) -> None:
    """Fused multi_scan over 4 copies of one direction kind each: where the cross-scan's fused time goes (cross =
    raster + reversed raster + column + reversed column); ``gather``: column orders read through their index on the
    state tile kernels."""
    triton_scan.GATHER_TRANSPOSED_FROM_N = 1 if gather else DEFAULT_GATHER_TRANSPOSED_FROM_N
    length = side * side
    raster = torch.arange(length, device="cuda")
    column = raster.view(side, side).t().reshape(-1)
    kinds = {"raster": raster, "reversed raster": raster.flip(0), "column": column, "reversed column": column.flip(0)}
    inputs = multi_inputs(batch, dim, (side, side), state, dtype)
    cotangent = torch.randn_like(inputs["u"])
    leaves = list(inputs.values())
    for label, row in kinds.items():
        index = row.expand(4, length).contiguous()
        scan = lambda index=index: multi_scan_triton(**inputs, index=index, merge="sum")  # noqa: E731
        with torch.no_grad():
            forward = triton.testing.do_bench(scan, warmup=25, rep=100)
        both = triton.testing.do_bench(lambda scan=scan: scan().backward(cotangent), rep=100, grad_to_none=leaves)
        shape = f"{batch}x{dim}x{side}x{side} N={state} {str(dtype)[6:]}{' gathered' if gather else ''}"
        print(f"4 x {label:16} {shape} fwd {forward:.3f} ms, f+b {both:.3f} ms", flush=True)
    triton_scan.GATHER_TRANSPOSED_FROM_N = DEFAULT_GATHER_TRANSPOSED_FROM_N


# name, batch, dim, N, scan order, grid: multi-direction cases of benchmarks/scan_gpu.py
FUSED_VS_COMPOSED = [
    ("VMamba-T S1 cross", 64, 96, 1, "cross", (56, 56)),
    ("VMamba-T S3 cross", 64, 384, 1, "cross", (14, 14)),
    ("VMamba-T S1 N16 cross", 64, 96, 16, "cross", (56, 56)),
    ("SegMamba S2 tri", 2, 192, 16, "tri_orientation", (32, 32, 32)),
    ("SegMamba S1 tri", 2, 96, 16, "tri_orientation", (64, 64, 64)),
    ("Vim-S bidirectional", 64, 768, 16, "bidirectional", (1, 197)),
]


def time_fused_and_composed(name: str, inputs: dict, plan, state: int, dtype: torch.dtype) -> None:
    """Print forward (no grad) and forward + backward ms of the fused multi_scan and of the composition."""
    cotangent = torch.randn_like(inputs["u"])
    leaves = list(inputs.values())
    runs = {
        "fused": lambda: multi_scan(**inputs, plan=plan, backend="triton"),
        "gather+scan+merge": lambda: composed_multi_scan(**inputs, plan=plan),
    }
    for label, scan in runs.items():
        with torch.no_grad():
            forward = triton.testing.do_bench(scan, warmup=10, rep=60)
        both = triton.testing.do_bench(
            lambda scan=scan: scan().backward(cotangent), warmup=5, rep=60, grad_to_none=leaves
        )
        times = f"fwd {forward:8.3f} ms, f+b {both:8.3f} ms"
        print(f"{name:22} N={state:<2} {str(dtype)[6:]:9} {label:18} {times}", flush=True)


def time_fused_vs_composed(only: str) -> None:
    """The cases of FUSED_VS_COMPOSED whose name contains ``only``, float32 and bfloat16."""
    for name, batch, dim, state, scan, grid in FUSED_VS_COMPOSED:
        if only in name:
            plan = scan_plan(scan, grid).to("cuda")
            for dtype in (torch.float32, torch.bfloat16):
                inputs = multi_inputs(batch, dim, grid, state, dtype, plan.num_directions)
                time_fused_and_composed(name, inputs, plan, state, dtype)


LAUNCH_ARRANGEMENTS = {
    "one launch": dict(shares_launches=True, gathers_columns=True, column_tiles=False),
    "one launch, column tiles": dict(shares_launches=True, gathers_columns=False, column_tiles=True),
    "columns on tiles": dict(shares_launches=True, gathers_columns=False, column_tiles=False),
    "per direction, column tiles": dict(shares_launches=False, gathers_columns=False, column_tiles=True),
    "one per direction": dict(shares_launches=False, gathers_columns=False, column_tiles=False),
}
"""Launch arrangements of the fused multi_scan compared by ``time_launch_arrangements``: the ``_Geometry``
properties each forces (shares_launches: SEQUENTIAL directions of one kernel family share a launch; gathers_columns:
column directions are read through their index on the state tile kernels, the family of the other directions;
column_tiles: where not gathered, they run on state tiles of whole columns, the same family; else on (channel,
token) tiles)."""


def time_launch_arrangements(name: str, inputs: dict, plan, dtype: torch.dtype) -> None:
    """Print, per LAUNCH_ARRANGEMENTS entry, the fused multi_scan's forward device time (CUDA graph replay of the
    no-grad forward) and eager forward + backward (best of 2 each) and its Triton launches per forward; "(default)"
    marks the arrangement the geometry picks."""
    leaves = list(inputs.values())
    cotangent = torch.randn_like(inputs["u"])
    batch, dim, *grid = inputs["u"].shape
    state, num_dirs = inputs["A"].shape[-1], plan.num_directions
    geom = triton_scan._Geometry(batch, dim, math.prod(grid), num_dirs, state, num_dirs, num_dirs)
    default = {key: getattr(geom, key) for key in LAUNCH_ARRANGEMENTS["one launch"]}

    def forward():
        with torch.no_grad():
            return multi_scan(**inputs, plan=plan, backend="triton")

    def forward_backward():
        return torch.autograd.grad(multi_scan(**inputs, plan=plan, backend="triton"), leaves, cotangent)

    properties = {key: getattr(triton_scan._Geometry, key) for key in default}
    for label, forced in LAUNCH_ARRANGEMENTS.items():
        for key, value in forced.items():
            setattr(triton_scan._Geometry, key, property(lambda self, value=value: value))
        forward_backward()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
            forward()
            torch.cuda.synchronize()
        # The Triton scan kernels, named _<what>_kernel (not PyTorch's own kernels, such as a dtype conversion).
        launches = sum(event.count for event in profile.key_averages() if event.key.startswith("_"))
        graph_us = 1e3 * min(triton.testing.do_bench_cudagraph(forward, rep=25) for _ in range(2))
        both = min(triton.testing.do_bench(forward_backward, warmup=3, rep=30) for _ in range(2))
        times = f"fwd graph {graph_us:7.1f} us, f+b {both:7.3f} ms, {launches} forward launches"
        label += " (default)" if forced == default else ""
        print(f"{name:18} {str(dtype)[6:]:9} {label:28} {times}", flush=True)
        for key, value in properties.items():
            setattr(triton_scan._Geometry, key, value)


def time_launch_sharing(backward_max_registers: int | None) -> None:
    """The launch arrangements of the fused cross scan at VMamba-T stages 3 and 1 (N = 1), the N = 1 state tile
    backward capped at ``backward_max_registers`` (None: the tiling's cap)."""
    default_tiling = triton_scan.STATE_TILINGS[1]
    if backward_max_registers is not None:
        triton_scan.STATE_TILINGS[1] = default_tiling._replace(backward_max_registers=backward_max_registers)
    for name, batch, dim, side, dtype in [
        ("VMamba-T S3 cross", 64, 384, 14, torch.bfloat16),
        ("VMamba-T S1 cross", 64, 96, 56, torch.float32),
        ("VMamba-T S3 cross", 64, 384, 14, torch.float32),
        ("VMamba-T S1 cross", 64, 96, 56, torch.bfloat16),
    ]:
        plan = scan_plan("cross", (side, side)).to("cuda")
        inputs = multi_inputs(batch, dim, (side, side), 1, dtype, plan.num_directions)
        time_launch_arrangements(name, inputs, plan, dtype)
    triton_scan.STATE_TILINGS[1] = default_tiling


# name, batch, channels (K * dim), N, L, B/C groups (K): the plain shapes of benchmarks/scan_gpu.py
STATE_SHAPES = [
    ("SegMamba 3D S1", 2, 3 * 96, 16, 262144, 3),
    ("SegMamba 3D S2", 2, 3 * 192, 16, 32768, 3),
    ("VMamba-T S1 N16", 64, 4 * 96, 16, 3136, 4),
    ("Vim-S", 64, 2 * 768, 16, 197, 2),
    ("VMamba-T S1 N1", 64, 4 * 96, 1, 3136, 4),
    ("VMamba-T S3 N1", 64, 4 * 384, 1, 196, 4),
]

# (label, state tiling, chunk-parallel: None = by size, Tiling for this N or None) per N; "channel tiles" runs the
# shape on the kernels of kernels.py, a StateTiling on the state tile kernels (state_kernels.py) for that N; the
# Tiling sets the chunk (saved states) of both and the channel kernels' work split.
StateTiling = triton_scan.StateTiling
STATE_SWEEP = {
    16: [
        ("default", None, None, None),
        ("32/1w <= 168, 16-byte B/C", StateTiling(32, 1, 32, 1, 168), None, None),
        ("32/1w <= 184", StateTiling(32, 1, 32, 1, 184, backward_vector=4), None, None),
        ("32/1w uncapped", StateTiling(32, 1, 32, 1, backward_vector=4), None, None),
    ],
    1: [
        ("default", None, None, None),
        ("channel tiles", "channel", None, None),
        ("256/1w 2 stages, 1 row", StateTiling(256, 1, 128, 1, None, 2), None, None),
        ("256/1w 2 stages, 8 rows", StateTiling(256, 1, 128, 1, None, 2, forward_rows=8), None, None),
    ],
}


def set_state_tiling(state: int, tiling: StateTiling | str | None, parallel: bool | None, chunked=None) -> None:
    """Use a tiling for N = ``state`` (None: the defaults; "channel": the (channel, token) kernels), and
    ``chunked`` (a Tiling) as the TILINGS entry that serves it."""
    triton_scan.STATE_TILES_FROM_N = DEFAULT_STATE_TILES_FROM_N
    triton_scan.STATE_TILINGS = DEFAULT_STATE_TILINGS
    triton_scan.TILINGS = DEFAULT_TILINGS
    if tiling == "channel":
        triton_scan.STATE_TILES_FROM_N = state + 1
    elif tiling is not None:
        triton_scan.STATE_TILES_FROM_N = min(state, DEFAULT_STATE_TILES_FROM_N)
        triton_scan.STATE_TILINGS = {**DEFAULT_STATE_TILINGS, state: tiling}
    if chunked is not None:
        serving = min(k for k in DEFAULT_TILINGS if k >= state)
        triton_scan.TILINGS = {**DEFAULT_TILINGS, serving: chunked}
    triton_scan.CHUNK_PARALLEL = parallel


GRADIENT_INPUTS = ("u", "delta", "B", "C")


def max_rel_error(inputs: dict, dtype: torch.dtype) -> float:
    """Max relative error of the output and the u, delta, B, C gradients of the Triton scan on the first 2048
    tokens of ``inputs`` (inputs in ``dtype``), against the float64 chunked torch backend."""

    def leaf(key, value, to):
        if not isinstance(value, torch.Tensor):
            return value
        value = value[..., :2048] if key in GRADIENT_INPUTS else value
        return value.detach().to(to if key in GRADIENT_INPUTS else torch.float32).requires_grad_()

    def run(scan, to):
        args = {k: leaf(k, v, to) for k, v in inputs.items()}
        if to == torch.float64:
            args = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in args.items()}
        out = scan(**args)
        return [out, *torch.autograd.grad(out, [args[k] for k in GRADIENT_INPUTS], torch.ones_like(out))]

    want = run(selective_scan_chunked, torch.float64)
    got = run(selective_scan_triton, dtype)
    return max(((g.double() - w).abs().max() / w.abs().max()).item() for g, w in zip(got, want))


def time_forward_backward(inputs: dict) -> tuple[float, float]:
    """(forward ms: replays of a CUDA graph of the no_grad forward, so short kernels are timed without the host's
    launch cost; backward ms: torch.autograd.grad on a retained graph)."""
    with torch.no_grad():
        forward = triton.testing.do_bench_cudagraph(lambda: selective_scan_triton(**inputs), rep=50)
    inputs = {k: v.detach().requires_grad_() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    leaves = [v for v in inputs.values() if isinstance(v, torch.Tensor)]
    out = selective_scan_triton(**inputs)
    cotangent = torch.randn_like(out)
    backward = triton.testing.do_bench(
        lambda: torch.autograd.grad(out, leaves, cotangent, retain_graph=True), warmup=5, rep=50
    )
    return forward, backward


def state_sweep(dtypes: list[torch.dtype], budget_s: float, only: str) -> None:
    """Forward and backward of the plain shapes per tiling of their N, each checked against the float64 chunked
    torch backend on its first 2048 tokens."""
    start = time.perf_counter()
    print(f"{'shape':18} {'dtype':9} {'tiling':24} {'fwd ms':>8} {'bwd ms':>8} {'max rel err':>12}")
    for dtype in dtypes:
        for name, batch, channels, state, length, groups in STATE_SHAPES:
            if not name.endswith(only):
                continue
            inputs = make_inputs(batch, channels, state, length, dtype, False, groups=groups)
            for label, tiling, parallel, chunked in STATE_SWEEP[state]:
                if time.perf_counter() - start > budget_s:
                    print("budget spent", flush=True)
                    set_state_tiling(state, None, None)
                    return
                set_state_tiling(state, tiling, parallel, chunked)
                err = max_rel_error(inputs, dtype)
                forward, backward = time_forward_backward(inputs)
                print(f"{name:18} {str(dtype)[6:]:9} {label:24} {forward:8.3f} {backward:8.3f} {err:12.2e}", flush=True)
    set_state_tiling(state, None, None)


DEFAULT_TILINGS = triton_scan.TILINGS
DEFAULT_STATE_TILINGS = triton_scan.STATE_TILINGS
DEFAULT_STATE_TILES_FROM_N = triton_scan.STATE_TILES_FROM_N
DEFAULT_GATHER_TRANSPOSED_FROM_N = triton_scan.GATHER_TRANSPOSED_FROM_N


def set_tiling(tiling: Tiling | None, parallel: bool | None) -> None:
    """Use one tiling for every N (None: the default table) and force or forbid chunk-parallel launches."""
    triton_scan.TILINGS = DEFAULT_TILINGS if tiling is None else {1 << 20: tiling}
    triton_scan.CHUNK_PARALLEL = parallel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="store_true", help="also time the tilings in TILINGS")
    parser.add_argument("--multi-only", action="store_true", help="time only multi_scan")
    parser.add_argument(
        "--direction-kinds",
        action="store_true",
        help="time only the fused scan per direction kind (VMamba-T S1, N = 1 and 16)",
    )
    parser.add_argument(
        "--fused-vs-composed",
        metavar="NAME",
        nargs="?",
        const="",
        help="time only the fused multi_scan against gather -> scan -> merge (cases whose name contains NAME)",
    )
    parser.add_argument(
        "--launch-sharing",
        action="store_true",
        help="time only the fused cross scan in each of LAUNCH_ARRANGEMENTS",
    )
    parser.add_argument(
        "--backward-max-registers",
        type=int,
        help="launch sharing: cap the N = 1 state tile backward at this many registers per thread",
    )
    parser.add_argument("--state-sweep", action="store_true", help="time only the state tilings (N = 16 and 1)")
    parser.add_argument("--only", default="", help="state sweep: only the shapes whose name ends with this")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], help="state sweep: these dtypes")
    parser.add_argument("--budget-s", type=float, default=120.0, help="stop sweeping after this many seconds")
    args = parser.parse_args()
    props = torch.cuda.get_device_properties(0)
    print(f"{props.name}, torch {torch.__version__}, triton {triton.__version__}")
    header = f"{'shape':24} {'tiling':14} {'fwd ms':>8} {'GB/s':>6} {'fwd+bwd ms':>11}"
    print(f"{header} {'torch fwd':>10} {'torch f+b':>10}")
    start = time.perf_counter()
    if args.fused_vs_composed is not None:
        time_fused_vs_composed(args.fused_vs_composed)
        return
    if args.launch_sharing:
        time_launch_sharing(args.backward_max_registers)
        return
    if args.state_sweep:
        state_sweep([getattr(torch, name) for name in args.dtypes], args.budget_s, args.only)
        return
    if args.direction_kinds:
        for dtype in (torch.float32, torch.bfloat16):
            time_direction_kinds(64, 96, 56, 1, dtype, gather=False)
            for gather in (False, True):
                time_direction_kinds(64, 96, 56, 16, dtype, gather)
        return
    for name, batch, dim, state, length, dtype, with_z, with_torch in [] if args.multi_only else SHAPES:
        inputs = make_inputs(batch, dim, state, length, dtype, with_z)
        traffic = batch * dim * length * inputs["u"].element_size() * (5 if with_z else 3)
        torch_times = time_scan(selective_scan_chunked, inputs) if with_torch else (float("nan"),) * 2
        for tiling, *tables in TILINGS if args.sweep else TILINGS[:1]:
            if tiling != "default" and time.perf_counter() - start > args.budget_s:
                break
            set_tiling(*tables)
            forward, both = time_scan(selective_scan_triton, inputs)
            print(
                f"{name:24} {tiling:14} {forward:8.3f} {traffic / forward / 1e6:6.0f} {both:11.3f} "
                f"{torch_times[0]:10.3f} {torch_times[1]:10.3f}",
                flush=True,
            )
        set_tiling(None, None)
    time_multi_scan(32, 96, 56, 1, torch.bfloat16, sweep=False)
    time_multi_scan(32, 192, 28, 16, torch.bfloat16, sweep=args.sweep)


if __name__ == "__main__":
    main()
