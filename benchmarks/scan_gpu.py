"""GPU benchmark of the selective scan: backend "triton" against mamba_ssm's CUDA kernel and backend "torch".

Issue 3. One run on one GPU times, per shape (batch, K, dim, N, L) and dtype:

- plain S6, K directions as K*dim channels with B/C in K groups (VMamba's layout): u, delta (Bt, K*dim, L) and
  B, C (Bt, K, N, L) in the dtype; A (K*dim, N), D and delta_bias (K*dim,) in float32; delta_softplus=True;
  gradients of all seven. Methods: ``selective_scan(..., backend="triton")``; mamba_ssm's ``selective_scan_cuda``
  (built here from the sdist, called through a small autograd.Function of this file); ``backend="torch"``
  (skipped above ``--torch-limit-s`` per fwd+bwd call, above 2^31 state elements, or when out of memory).
- the multi-direction scan on the shape's plan ("cross", "tri_orientation" or "bidirectional"):
  unfused = PyTorch cross-scan copy of u (``scan_tokens``: K gathered copies, (Bt, K*dim, L)) -> mamba_ssm ->
  PyTorch merge (``merge_tokens``: inverse gather + sum). delta, B and C enter the unfused pipeline already in scan
  order, as VMamba's x_proj makes them from the copied u, so it is not charged for permuting them.
  fused = ``multi_scan(u, delta, A, B, C, plan, D, delta_bias, backend="triton")`` on raster-layout inputs.

Timing: each call runs between two CUDA events, after the L2 cache is flushed by zeroing a buffer twice its size;
the median over 3..100 calls (about ``--seconds`` in all) after warm-up calls is reported. Forward = one call with
autograd recording (the training forward). Plain backward = ``torch.autograd.grad`` alone on a retained graph
(not fwd+bwd minus fwd). Multi: forward, and forward + ``torch.autograd.grad`` timed together.

Bytes that must move (spec kernels.md §3.5/§7), s = bytes per element of the input dtype, E = Bt*K*dim*L,
G = Bt*K*N*L (B and C counted once per group), R = Bt*dim*L (one raster copy of u):

    plain forward   s * (3E + 2G)           read u, delta, B, C; write out
    plain backward  s * (5E + 4G)           read u, delta, B, C, dout; write du, ddelta, dB, dC
    multi forward   s * (2R + E + 2G)       read u once for all K directions, delta, B, C; write the merged out
    multi backward  s * (3R + 2E + 4G)      read u, delta, B, C, dout (R); write du (R), ddelta, dB, dC

Effective GB/s = those bytes / median time. Copy bandwidth = 2 * nbytes / time of ``dst.copy_(src)`` on 1 GiB.
Before timing, every method is checked against the float64 reference on small shapes (max |x - ref| / max |ref|
over the output and over each gradient); a method that fails is not timed.

    MAX_JOBS=16 python benchmarks/scan_gpu.py --out results.json   # GPU: builds mamba (~140 s, cached), then times
    python benchmarks/scan_gpu.py --from-json results.json --write  # re-render; --write updates docs/benchmarks.md
    python benchmarks/scan_gpu.py --smoke      # tiny shapes on any machine (CPU too); never touches the docs
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import statistics
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from report import DOC, write_block
from visionssm.kernels import multi_scan, selective_scan
from visionssm.scans import ScanPlan, merge_tokens, scan_plan, scan_tokens

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TOLERANCE = {torch.float32: 1e-3, torch.float16: 1e-2, torch.bfloat16: 3e-2}  # max relative error of the check
TORCH_MAX_STATES = 2**31  # Bt*K*dim*L*N above which backend "torch" is not even tried
# nvcc flags of mamba_ssm 2.3.2.post1's setup.py (l.225-245) without "-std=c++17" (torch >= 2.10 needs C++20 and
# adds it), "--ptxas-options=-v" (log noise) and "--threads 4" (one target only); -gencode is added per GPU.
NVCC_FLAGS = (
    "-O3 -U__CUDA_NO_HALF_OPERATORS__ -U__CUDA_NO_HALF_CONVERSIONS__ -U__CUDA_NO_BFLOAT16_OPERATORS__ "
    "-U__CUDA_NO_BFLOAT16_CONVERSIONS__ -U__CUDA_NO_BFLOAT162_OPERATORS__ -U__CUDA_NO_BFLOAT162_CONVERSIONS__ "
    "--expt-relaxed-constexpr --expt-extended-lambda --use_fast_math -lineinfo"
)

ScanFn = Callable[..., Tensor]  # (u, delta, A, B, C, D, delta_bias) -> out
Factory = Callable[[ScanPlan], ScanFn]  # a multi-direction method, given its plan


@dataclass(frozen=True)
class Shape:
    name: str
    label: str
    batch: int
    dirs: int
    dim: int
    state: int
    scan: str
    grid: tuple[int, ...]

    @property
    def length(self) -> int:
        return math.prod(self.grid)

    @property
    def dims(self) -> str:
        return f"({self.batch}, {self.dirs}, {self.dim}, {self.state}, {self.length})"

    def nbytes(self, size: int) -> dict[str, int]:
        """Bytes that must move (module docstring) for elements of ``size`` bytes."""
        r = self.batch * self.dim * self.length
        e, g = r * self.dirs, self.batch * self.dirs * self.state * self.length
        multi = (2 * r + e + 2 * g) + (3 * r + 2 * e + 4 * g)  # forward + backward
        return {"fwd": size * (3 * e + 2 * g), "bwd": size * (5 * e + 4 * g), "multi": size * multi}


SHAPES = (
    Shape("vmamba_s1", "VMamba-T stage 1", 64, 4, 96, 1, "cross", (56, 56)),
    Shape("vmamba_s3", "VMamba-T stage 3", 64, 4, 384, 1, "cross", (14, 14)),
    Shape("vmamba_s1_n16", "VMamba-T stage 1, N 16", 64, 4, 96, 16, "cross", (56, 56)),
    Shape("segmamba_s1", "SegMamba 3D stage 1", 2, 3, 96, 16, "tri_orientation", (64, 64, 64)),
    Shape("segmamba_s2", "SegMamba 3D stage 2", 2, 3, 192, 16, "tri_orientation", (32, 32, 32)),
    Shape("vim_s", "Vim-S", 64, 2, 768, 16, "bidirectional", (1, 197)),
)
SMOKE_SHAPES = (
    Shape("smoke_cross", "smoke 2D cross", 2, 4, 8, 1, "cross", (8, 8)),
    Shape("smoke_tri", "smoke 3D tri-orientation", 1, 3, 8, 4, "tri_orientation", (4, 4, 4)),
    Shape("smoke_bidir", "smoke bidirectional", 2, 2, 16, 4, "bidirectional", (1, 37)),
)
CHECK_GRIDS = {"cross": (6, 5), "tri_orientation": (3, 4, 5), "bidirectional": (1, 37)}
PLAIN_LABELS = {"triton": "triton", "mamba_ssm": "mamba_ssm CUDA", "torch": "torch"}
MULTI_LABELS = {"unfused_mamba": "unfused: copy -> mamba_ssm -> merge", "fused_triton": "fused: multi_scan triton"}
MULTI_LABELS.update(unfused_torch="unfused: copy -> torch -> merge", fused_torch="multi_scan torch")  # --smoke


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def short(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:200] if lines else ''}"


# ------------------------------------------------------------------------------------------------ methods
def build_mamba(sdist: Path, build_dir: Path, arch: str, verbose: bool = False) -> ModuleType:
    """Extract the sdist and build only its ``selective_scan_cuda`` extension for sm_<arch> (cached by torch)."""
    if "CUDA_HOME" not in os.environ and Path("/usr/local/cuda/bin/nvcc").exists():
        os.environ["CUDA_HOME"] = "/usr/local/cuda"  # read by cpp_extension on import
    os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 4))
    from torch.utils import cpp_extension

    src = build_dir / "src"
    cpp = next(src.glob("*/csrc/selective_scan/selective_scan.cpp"), None)
    if cpp is None:
        if not sdist.is_file():
            raise FileNotFoundError(f"mamba_ssm sdist not found at {sdist} (pass --mamba-sdist)")
        src.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as tar:
            tar.extractall(src, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        cpp = next(src.glob("*/csrc/selective_scan/selective_scan.cpp"))
    ext_dir = build_dir / f"sm_{arch}"
    ext_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    log(
        f"building selective_scan_cuda for sm_{arch} in {ext_dir} (MAX_JOBS={os.environ['MAX_JOBS']}, "
        f"CUDA_HOME={cpp_extension.CUDA_HOME}); cached builds load at once"
    )
    module = cpp_extension.load(
        name="selective_scan_cuda",
        sources=[str(cpp), *sorted(str(p) for p in cpp.parent.glob("*.cu"))],
        extra_cflags=["-O3"],
        extra_cuda_cflags=[*NVCC_FLAGS.split(), "-gencode", f"arch=compute_{arch},code=sm_{arch}"],
        extra_include_paths=[str(cpp.parent)],
        build_directory=str(ext_dir),
        verbose=verbose,
    )
    log(f"selective_scan_cuda ready after {time.perf_counter() - start:.0f} s")
    return module


class _MambaScan(torch.autograd.Function):
    """mamba_ssm's CUDA kernels without z: fwd -> (out, x, ...); bwd -> (du, ddelta, dA, dB, dC, dD, ddelta_bias)."""

    @staticmethod
    def forward(ctx, ext, u, delta, A, B, C, D, delta_bias):
        out, chunk_states = ext.fwd(u, delta, A, B, C, D, None, delta_bias, True)[:2]
        ctx.ext = ext
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, chunk_states)
        return out

    @staticmethod
    def backward(ctx, dout):
        u, delta, A, B, C, D, delta_bias, chunk_states = ctx.saved_tensors
        # (..., dout, x, out (only with z), dz (only with z), delta_softplus, recompute_out_z)
        grads = ctx.ext.bwd(
            u, delta, A, B, C, D, None, delta_bias, dout.contiguous(), chunk_states, None, None, True, False
        )
        return (None, *grads[:7])


def mamba_scan(ext: ModuleType) -> ScanFn:
    return lambda u, delta, A, B, C, D, bias: _MambaScan.apply(ext, u, delta, A, B, C, D, bias)


def backend_scan(backend: str) -> ScanFn:
    return lambda u, delta, A, B, C, D, bias: selective_scan(
        u, delta, A, B, C, D, delta_bias=bias, delta_softplus=True, backend=backend
    )


def unfused(scan: ScanFn, plan: ScanPlan) -> ScanFn:
    """Cross-scan copy of u -> scan (delta, B, C already in scan order) -> inverse gather + sum."""

    def run(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, bias: Tensor) -> Tensor:
        batch, dim = u.shape[:2]
        u_seq = scan_tokens(u, plan).reshape(batch, plan.num_directions * dim, plan.length)
        y = scan(u_seq, delta, A, B, C, D, bias)
        return merge_tokens(y.view(batch, plan.num_directions, dim, plan.length), plan)

    return run


def fused(backend: str, plan: ScanPlan) -> ScanFn:
    return lambda u, delta, A, B, C, D, bias: multi_scan(u, delta, A, B, C, plan, D, bias, backend=backend)


# ------------------------------------------------------------------------------------------------ inputs
def plain_inputs(shape: Shape, dtype: torch.dtype, device: torch.device, seed: int = 0) -> list[Tensor]:
    """Leaves (u, delta, A, B, C, D, delta_bias) in VMamba's layout; softplus(delta + bias) is about 0.05."""
    gen = torch.Generator(device=device).manual_seed(seed)
    batch, channels, state, length = shape.batch, shape.dirs * shape.dim, shape.state, shape.length

    def randn(*size: int) -> Tensor:
        return torch.randn(*size, generator=gen, device=device)

    u = randn(batch, channels, length).to(dtype)
    delta = randn(batch, channels, length).mul_(0.5).sub_(3.0).to(dtype)
    A = -torch.exp(torch.rand(channels, state, generator=gen, device=device) * 2.0)
    B, C = (randn(batch, shape.dirs, state, length).to(dtype) for _ in range(2))
    D, bias = torch.ones(channels, device=device), randn(channels) * 0.1
    return [t.requires_grad_() for t in (u, delta, A, B, C, D, bias)]


def raster_inputs(shape: Shape, plain: list[Tensor], seed: int = 1) -> list[Tensor]:
    """multi_scan's raster layout: a new u (Bt, dim, *grid), the other six as views of the plain leaves."""
    u0, delta, A, B, C, D, bias = (t.detach() for t in plain)
    gen = torch.Generator(device=u0.device).manual_seed(seed)
    k, batch, dim, grid = shape.dirs, shape.batch, shape.dim, shape.grid
    u = torch.randn(batch, dim, *grid, generator=gen, device=u0.device).to(u0.dtype)
    delta, B, C = (t.view(batch, k, -1, *grid) for t in (delta, B, C))
    return [t.requires_grad_() for t in (u, delta, A.view(k, dim, -1), B, C, D.view(k, dim), bias.view(k, dim))]


def in_scan_order(x: Tensor, plan: ScanPlan) -> Tensor:
    """(Bt, K, C, *grid) -> (Bt, K, C, L) with each direction's tokens in its scan order (differentiable)."""
    flat = x.reshape(*x.shape[:3], plan.length)
    return flat.gather(-1, plan.index[None, :, None, :].expand(*x.shape[:3], plan.length))


# ------------------------------------------------------------------------------------------------ timing
class Timer:
    """Median milliseconds of a callable: CUDA events with an L2 flush before each call (wall clock on CPU)."""

    def __init__(self, device: torch.device, seconds: float) -> None:
        self.device, self.seconds, self.cuda = device, seconds, device.type == "cuda"
        l2 = torch.cuda.get_device_properties(device).L2_cache_size if self.cuda else 0
        self.flush = torch.empty(max(2 * l2, 1 << 20) // 4, device=device) if self.cuda else None

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def __call__(self, fn: Callable[[], object]) -> float:
        fn()  # first call: Triton compiles, allocator warms up
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        reps = min(100, max(3, int(self.seconds / max(time.perf_counter() - start, 1e-6))))
        for _ in range(min(reps, 5)):
            fn()
        times = []
        for _ in range(reps):
            if self.cuda:
                self.flush.zero_()
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record()
                fn()
                end.record()
                times.append((begin, end))
            else:
                start = time.perf_counter()
                fn()
                times.append((time.perf_counter() - start) * 1e3)
        self.sync()
        return statistics.median(t if isinstance(t, float) else t[0].elapsed_time(t[1]) for t in times)

    def graphed(self, fn: Callable[[], object]) -> float:
        """Median milliseconds of replays of a CUDA graph of ``fn``: its device time without the host-side cost of
        launching it (Python, autograd, Triton's launcher), which short calls cannot hide."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):  # compile, fill caches, warm the allocator outside the capture
                fn()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return self(graph.replay)


def copy_bandwidth(timer: Timer, nbytes: int) -> float:
    """GB/s of ``dst.copy_(src)`` counting bytes read and written."""
    src = torch.ones(nbytes // 4, device=timer.device)
    dst = torch.empty_like(src)
    return 2 * nbytes / timer(lambda: dst.copy_(src)) / 1e6


def measure(fn: ScanFn, inputs: list[Tensor], timer: Timer, multi: bool, limit_s: float | None) -> dict:
    """{"fwd_ms", "bwd_ms"} (plain) or {"fwd_ms", "fwd_bwd_ms"} (multi), or {"note": why not}."""
    try:
        with torch.no_grad():
            dout = torch.randn_like(fn(*inputs))
        if limit_s is not None:  # probe one fwd+bwd call of a slow method before timing it
            timer.sync()
            start = time.perf_counter()
            torch.autograd.grad(fn(*inputs), inputs, dout)
            timer.sync()
            if (took := time.perf_counter() - start) > limit_s:
                return {"note": f"skipped ({took:.1f} s per fwd+bwd call)"}
        result = {"fwd_ms": timer(lambda: fn(*inputs))}
        if timer.cuda and not multi:
            try:
                with torch.no_grad():
                    result["fwd_graph_ms"] = timer.graphed(lambda: fn(*inputs))
            except Exception as err:  # a method that cannot be captured keeps its eager timings
                log(f"graph capture failed: {short(err)}")
        if multi:
            result["fwd_bwd_ms"] = timer(lambda: torch.autograd.grad(fn(*inputs), inputs, dout))
        else:
            out = fn(*inputs)
            result["bwd_ms"] = timer(lambda: torch.autograd.grad(out, inputs, dout, retain_graph=True))
        return result
    except torch.cuda.OutOfMemoryError:
        return {"note": "skipped (out of GPU memory)"}
    except Exception as err:  # a failing method is reported in its row; the others still run
        return {"note": f"failed: {short(err)}"}
    finally:
        if timer.cuda:
            torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------ correctness
def max_rel_errors(fn: ScanFn, inputs: list[Tensor], ref_fn: ScanFn) -> tuple[float, float]:
    """(output error, worst gradient error) of fn against ref_fn run in float64 on the same values."""
    ref_inputs = [t.detach().double().requires_grad_() for t in inputs]
    ref = ref_fn(*ref_inputs)
    dout = torch.randn(ref.shape, generator=torch.Generator(ref.device).manual_seed(2), device=ref.device).double()
    ref_grads = torch.autograd.grad(ref, ref_inputs, dout)
    out = fn(*inputs)
    grads = torch.autograd.grad(out, inputs, dout.to(out.dtype))

    def rel(x: Tensor, r: Tensor) -> float:
        return ((x.double() - r).abs().max() / r.abs().max().clamp_min(1e-30)).item()

    return rel(out, ref), max(rel(g, r) for g, r in zip(grads, ref_grads))


def multi_case(key: str, factory: Factory, plan: ScanPlan, dtype: torch.dtype) -> tuple[ScanFn, list[Tensor]]:
    """A multi method on raster inputs; the unfused one gets delta/B/C put in scan order first (differentiably)."""
    s = Shape("check", "check", 2, plan.num_directions, 4, 2, plan.name, plan.spatial_shape)
    raster, run = raster_inputs(s, plain_inputs(s, dtype, plan.index.device)), factory(plan)
    if not key.startswith("unfused"):
        return run, raster

    def from_raster(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, bias: Tensor) -> Tensor:
        ordered = [in_scan_order(t, plan) for t in (delta, B, C)]
        return run(u, ordered[0].flatten(1, 2), A.flatten(0, 1), *ordered[1:], D.flatten(), bias.flatten())

    return from_raster, raster


def check(methods: dict, shapes: list[Shape], dtype: torch.dtype, device: torch.device, smoke: bool) -> tuple:
    """Check every method on small shapes; returns rows and, per method that must not be timed, why not."""
    rows, broken, name = [], {}, str(dtype).removeprefix("torch.")
    small = Shape("check", "check", 2, 2, 8, 4, "bidirectional", (1, 300 if smoke else 2100))  # 2 chunks of 2048
    plans = {s.scan: scan_plan(s.scan, CHECK_GRIDS.get(s.scan, s.grid)).to(device) for s in shapes}.values()
    for key, fn in methods.items():
        if isinstance(fn, str):
            broken[key] = fn
            continue
        try:
            if key in PLAIN_LABELS:
                cases = [(small.dims, fn, plain_inputs(small, dtype, device), backend_scan("reference"))]
            else:
                cases = [
                    (f"{p.name} {p.spatial_shape}", *multi_case(key, fn, p, dtype), fused("reference", p))
                    for p in plans
                ]
            for label, case_fn, inputs, ref_fn in cases:
                out_err, grad_err = max_rel_errors(case_fn, inputs, ref_fn)
                ok = max(out_err, grad_err) <= TOLERANCE[dtype]
                rows.append(dict(method=key, dtype=name, case=label, out_err=out_err, grad_err=grad_err, ok=ok))
                rows[-1]["tolerance"] = TOLERANCE[dtype]
                if not ok:
                    broken[key] = f"n/a: failed the check on {label} (max rel err {max(out_err, grad_err):.1e})"
        except Exception as err:
            broken[key] = f"n/a: {short(err)}"
            rows.append(dict(method=key, dtype=name, case="-", out_err=None, grad_err=None, ok=False, note=broken[key]))
    return rows, broken


# ------------------------------------------------------------------------------------------------ runs
def time_shape(shape: Shape, dtype: torch.dtype, methods: dict, broken: dict, timer: Timer, limit_s: float) -> tuple:
    """Plain and multi rows of one shape and dtype."""
    name, nbytes = str(dtype).removeprefix("torch."), shape.nbytes(torch.empty(0, dtype=dtype).element_size())
    plan = scan_plan(shape.scan, shape.grid).to(timer.device)
    base = {"shape": shape.name, "label": shape.label, "dims": shape.dims, "dtype": name, "scan": shape.scan}
    states = shape.batch * shape.dirs * shape.dim * shape.length * shape.state
    inputs = plain_inputs(shape, dtype, timer.device)
    raster = raster_inputs(shape, inputs)
    plain, multi, unfused_ms = [], [], None
    for key, fn in methods.items():
        is_torch, is_multi = key.endswith("torch"), key in MULTI_LABELS
        if key in broken:
            result = {"note": broken[key]}
        elif is_torch and states > TORCH_MAX_STATES:
            result = {"note": f"skipped ({states:.1e} state elements)"}
        else:
            args = (raster if key.startswith("fused") else [raster[0], *inputs[1:]]) if is_multi else inputs
            result = measure(fn(plan) if is_multi else fn, args, timer, is_multi, limit_s if is_torch else None)
        if "fwd_bwd_ms" in result:
            result["fwd_bwd_gbs"] = nbytes["multi"] / result["fwd_bwd_ms"] / 1e6
            if unfused_ms is None and key.startswith("unfused"):
                unfused_ms = result["fwd_bwd_ms"]
            if unfused_ms is not None:
                result["speedup"] = unfused_ms / result["fwd_bwd_ms"]
        elif "bwd_ms" in result:
            result.update({f"{p}_gbs": nbytes[p] / result[f"{p}_ms"] / 1e6 for p in ("fwd", "bwd")})
            if "fwd_graph_ms" in result:
                result["fwd_graph_gbs"] = nbytes["fwd"] / result["fwd_graph_ms"] / 1e6
        (multi if is_multi else plain).append({**base, "method": key, **result})
        log(f"{shape.name} {name} {key}:", *(f"{k}={v:.4g}" if isinstance(v, float) else v for k, v in result.items()))
    return plain, multi


def targets(plain: list[dict], multi: list[dict], copy_gbs: float, dtypes: list[str]) -> list[str]:
    """The PASS/FAIL lines of issue 3 (defined on an H100)."""

    def find(rows: list[dict], shape: str, dtype: str, method: str) -> dict:
        row = next((r for r in rows if (r["shape"], r["dtype"], r["method"]) == (shape, dtype, method)), None)
        return row or {"note": f"{shape} not run"}

    lines = []
    for dtype in dtypes:
        fu, un = find(multi, "vmamba_s1", dtype, "fused_triton"), find(multi, "vmamba_s1", dtype, "unfused_mamba")
        if "fwd_bwd_ms" in fu and "fwd_bwd_ms" in un:
            ratio = un["fwd_bwd_ms"] / fu["fwd_bwd_ms"]
            lines.append(
                f"{'PASS' if ratio >= 1.5 else 'FAIL'} fused cross-scan+S6+merge fwd+bwd, VMamba-T stage 1, "
                f"{dtype}: {ratio:.2f}x faster than unfused (target >= 1.5x)"
            )
        else:
            lines.append(f"n/a  fused vs unfused fwd+bwd, VMamba-T stage 1, {dtype}: {fu.get('note') or un['note']}")
        tr, ma = find(plain, "segmamba_s1", dtype, "triton"), find(plain, "segmamba_s1", dtype, "mamba_ssm")
        for phase in ("fwd", "bwd"):
            if f"{phase}_ms" in tr and f"{phase}_ms" in ma:
                t, m = tr[f"{phase}_ms"], ma[f"{phase}_ms"]
                lines.append(
                    f"{'PASS' if t <= m else 'FAIL'} plain S6 {phase}, SegMamba stage 1 N16, {dtype}: triton "
                    f"{t:.3f} ms vs mamba_ssm {m:.3f} ms ({m / t:.2f}x; target >= 1.00x)"
                )
            else:
                lines.append(f"n/a  plain S6 {phase}, SegMamba stage 1, {dtype}: {tr.get('note') or ma['note']}")
        for shape in ("vmamba_s1", "vmamba_s3"):
            row = find(plain, shape, dtype, "triton")
            if "fwd_gbs" in row:
                # The kernel's bandwidth is judged on its device time (graph replay); the eager call is shown too.
                kernel_gbs = row.get("fwd_graph_gbs", row["fwd_gbs"])
                share = kernel_gbs / copy_gbs
                eager = f"; eager call {row['fwd_gbs']:.0f} GB/s = {row['fwd_gbs'] / copy_gbs:.0%}"
                lines.append(
                    f"{'PASS' if share >= 0.7 else 'FAIL'} N=1 forward, {shape}, {dtype}: triton "
                    f"{kernel_gbs:.0f} GB/s = {share:.0%} of copy {copy_gbs:.0f} GB/s"
                    f"{' (graph replay' + eager + ')' if 'fwd_graph_gbs' in row else ''} (target >= 70%)"
                )
            else:
                lines.append(f"n/a  N=1 forward, {shape}, {dtype}: {row['note']}")
    return lines


# ------------------------------------------------------------------------------------------------ report
def fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.1e}"


def gbs(x: float, copy: float) -> str:
    return f"{x:.0f} ({x / copy:.0%})" if x >= 10 else f"{x:.2g} ({x / copy:.0%})"


def cut(note: str) -> str:
    return note if len(note) <= 100 else note[:99] + "…"


def status(check_row: dict) -> str:
    return cut(check_row.get("note", "")) or (
        "ok" if check_row["ok"] else f"FAIL (tolerance {check_row['tolerance']:.0e})"
    )


def row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def table(title: str, header: list[str], rows: list[str]) -> list[str]:
    return ["", title, "", row(*header), "|" + "---|" * len(header), *rows]


def timings(r: dict, copy: float, plain: bool) -> list[str]:
    """The timing cells of a plain (five) or multi (four) row, or its note (cut to 100 characters) and blanks."""
    if "note" in r:
        return [cut(r["note"]), "", "", ""] + ([""] if plain else [])
    if "bwd_ms" in r:
        graph = f"{r['fwd_graph_ms']:.3f}, {gbs(r['fwd_graph_gbs'], copy)}" if "fwd_graph_ms" in r else "—"
        return [f"{r['fwd_ms']:.3f}", gbs(r["fwd_gbs"], copy), graph, f"{r['bwd_ms']:.3f}", gbs(r["bwd_gbs"], copy)]
    speedup = f"{r['speedup']:.2f}x" if "speedup" in r else "—"
    return [f"{r['fwd_ms']:.3f}", f"{r['fwd_bwd_ms']:.3f}", gbs(r["fwd_bwd_gbs"], copy), speedup]


def report(meta: dict, checks: list[dict], plain: list[dict], multi: list[dict], target_lines: list[str]) -> list[str]:
    """The markdown block: setup, correctness, plain and multi timings, targets."""
    copy = meta["copy_gbs"]
    clock = "CUDA events around each call, L2 flushed before each" if meta["cuda_timing"] else "wall clock (CPU)"
    lines = [
        f"Device: {meta['device']}; torch {meta['torch']} (CUDA {meta['cuda']}), triton {meta['triton']}; "
        f"mamba_ssm: {meta['mamba']}; {meta['date']}.",
        f"Command: `{meta['command']}`.",
        f"Measured device-to-device copy: **{copy:.0f} GB/s** (2 x {meta['copy_bytes'] / 2**20:.0f} MiB / time of "
        "`dst.copy_(src)`).",
        f"Timing: {clock}; median of 3..100 calls after warm-up. Forward with autograd recording; plain backward = "
        "`torch.autograd.grad` alone on a retained graph; multi fwd+bwd = forward + `torch.autograd.grad` in one call. "
        "Graph replay: the plain forward (no autograd) captured in a CUDA graph, its replays timed the same way: the "
        "device time without the host-side cost of the call.",
        "Bytes that must move (s = input dtype bytes, E = Bt·K·dim·L, G = Bt·K·N·L, R = Bt·dim·L): plain fwd "
        "s(3E + 2G), plain bwd s(5E + 4G); multi fwd s(2R + E + 2G), multi bwd s(3R + 2E + 4G). GB/s = bytes / time.",
    ]
    lines += table(
        "Correctness against the float64 reference (max |x − ref| / max |ref| over the output and each gradient):",
        ["method", "dtype", "case", "output", "gradients", "status"],
        [row(r["method"], r["dtype"], r["case"], fmt(r["out_err"]), fmt(r["grad_err"]), status(r)) for r in checks],
    )
    lines += table(
        "Plain S6 (K directions as K·dim channels, B/C in K groups, delta_softplus):",
        [
            "shape",
            "(Bt, K, dim, N, L)",
            "dtype",
            "method",
            "fwd ms",
            "fwd GB/s (% of copy)",
            "fwd graph replay: ms, GB/s",
            "bwd ms",
            "bwd GB/s",
        ],
        [row(r["label"], r["dims"], r["dtype"], PLAIN_LABELS[r["method"]], *timings(r, copy, True)) for r in plain],
    )
    lines += table(
        "Multi-direction scan + merge (unfused: u copied K times; delta/B/C given in scan order):",
        ["shape", "scan", "dtype", "method", "fwd ms", "fwd+bwd ms", "fwd+bwd GB/s", "fwd+bwd speed-up"],
        [row(r["label"], r["scan"], r["dtype"], MULTI_LABELS[r["method"]], *timings(r, copy, False)) for r in multi],
    )
    return [*lines, "", "Targets (defined on an H100):", "", *[f"- {t}" for t in target_lines]]


# ------------------------------------------------------------------------------------------------ main
def select_shapes(names: list[str]) -> list[Shape]:
    chosen = []
    for name in names:
        picked = [s for s in SHAPES if name in ("all", s.name, s.name.split("_")[0])]
        if not picked:
            raise SystemExit(f"unknown shape {name!r}: use all, vmamba, segmamba, vim or {[s.name for s in SHAPES]}")
        chosen += [s for s in picked if s not in chosen]
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["all"], help="all, vmamba, segmamba, vim or shape names")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=list(DTYPES))
    parser.add_argument("--mamba-sdist", type=Path, default=Path(".whl/mamba_ssm-2.3.2.post1.tar.gz"))
    parser.add_argument("--build-dir", type=Path, default=Path("/tmp/mamba_build"))
    parser.add_argument("--cuda-arch", help="build for sm_ARCH, e.g. 90 (default: the GPU's)")
    parser.add_argument("--build-only", action="store_true", help="build selective_scan_cuda and exit")
    parser.add_argument("--skip-mamba", action="store_true")
    parser.add_argument("--seconds", type=float, default=0.5, help="time spent per measurement")
    parser.add_argument("--torch-limit-s", type=float, default=1.0, help="skip 'torch' above this per fwd+bwd")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, no mamba_ssm; runs on CPU too")
    parser.add_argument("--write", action="store_true", help=f"update the scan_gpu block of {DOC}")
    parser.add_argument("--out", type=Path, help="also write the raw results as JSON")
    parser.add_argument("--from-json", type=Path, help="only re-render (and --write) the report of an --out file")
    args = parser.parse_args()
    if args.from_json:  # e.g. results brought back from the GPU machine
        data = json.loads(args.from_json.read_text())
        lines = report(data["meta"], data["checks"], data["plain"], data["multi"], data["targets"])
        print("\n".join(lines))
        if args.write:
            write_block("scan_gpu", "Selective scan on GPU (`benchmarks/scan_gpu.py`)", lines)
        return
    if args.smoke and args.write:
        parser.error("--smoke never writes docs/benchmarks.md; drop --write")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not (args.smoke or args.build_only):
        parser.error("no CUDA device: run with --smoke on this machine")
    arch = args.cuda_arch or (
        "".join(map(str, torch.cuda.get_device_capability(device))) if device.type == "cuda" else None
    )
    if args.build_only:
        if arch is None:
            parser.error("--build-only without a GPU needs --cuda-arch")
        build_mamba(args.mamba_sdist, args.build_dir, arch, verbose=True)
        return
    shapes, dtypes = list(SMOKE_SHAPES) if args.smoke else select_shapes(args.shapes), [DTYPES[d] for d in args.dtypes]

    ext, mamba = None, "not used (--smoke)" if args.smoke else "n/a: --skip-mamba"
    if not (args.smoke or args.skip_mamba):
        try:
            ext = build_mamba(args.mamba_sdist, args.build_dir, arch)
            mamba = f"selective_scan_cuda of {args.mamba_sdist.name}, built for sm_{arch}"
        except Exception as err:
            mamba = f"n/a: build failed: {short(err)}"
            log(str(err))
    # Plain methods are scan functions, multi-direction ones (keys of MULTI_LABELS) take the plan; a string says why
    # a method cannot run.
    methods: dict[str, ScanFn | Factory | str] = {"triton": backend_scan("triton")}
    methods["mamba_ssm"] = mamba_scan(ext) if ext else mamba
    methods["torch"] = backend_scan("torch")
    methods["unfused_mamba"] = (lambda plan: unfused(mamba_scan(ext), plan)) if ext else mamba
    methods["fused_triton"] = lambda plan: fused("triton", plan)
    if args.smoke:  # exercise the multi-direction code paths without mamba_ssm or triton
        methods["unfused_torch"] = lambda plan: unfused(backend_scan("torch"), plan)
        methods["fused_torch"] = lambda plan: fused("torch", plan)

    timer = Timer(device, 0.05 if args.smoke else args.seconds)
    copy_bytes = (8 << 20) if args.smoke else (1 << 30)
    copy_gbs = copy_bandwidth(timer, copy_bytes)
    log(f"copy bandwidth {copy_gbs:.0f} GB/s on {device}")
    meta = {"device": torch.cuda.get_device_name(device) if timer.cuda else f"CPU ({os.cpu_count()} cores)"}
    meta.update(torch=torch.__version__, cuda=torch.version.cuda, mamba=mamba, date=datetime.date.today().isoformat())
    meta.update(copy_gbs=copy_gbs, copy_bytes=copy_bytes, cuda_timing=timer.cuda)
    meta["command"] = shlex.join(["python", "benchmarks/scan_gpu.py", *sys.argv[1:]])
    checks, plain, multi = [], [], []

    def results() -> dict:
        order = {s.name: i for i, s in enumerate(shapes)}  # rows by shape; sorting is stable, dtypes stay in order
        plain.sort(key=lambda r: order[r["shape"]])
        multi.sort(key=lambda r: order[r["shape"]])
        meta["triton"] = getattr(sys.modules.get("triton"), "__version__", "not imported")
        target_lines = targets(plain, multi, copy_gbs, args.dtypes)
        return {"meta": meta, "checks": checks, "plain": plain, "multi": multi, "targets": target_lines}

    for dtype, name in zip(dtypes, args.dtypes):
        rows, broken = check(methods, shapes, dtype, device, args.smoke)
        checks += rows
        for r in rows:
            log(f"check {r['method']} {name} {r['case']}:", fmt(r["out_err"]), fmt(r["grad_err"]), status(r))
        for shape in shapes:
            shape_plain, shape_multi = time_shape(shape, dtype, methods, broken, timer, args.torch_limit_s)
            plain += shape_plain
            multi += shape_multi
            if args.out:  # after every shape, so that a run cut short still leaves its results
                args.out.write_text(json.dumps(results(), indent=1))
    data = results()
    lines = report(data["meta"], checks, plain, multi, data["targets"])
    print("\n".join(lines))
    if args.write:
        write_block("scan_gpu", "Selective scan on GPU (`benchmarks/scan_gpu.py`)", lines)


if __name__ == "__main__":
    main()
