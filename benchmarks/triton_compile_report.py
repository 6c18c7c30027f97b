"""Compile the Triton scan kernels for sm_90 on a machine without a GPU and report what the compiler made of them.

    python benchmarks/triton_compile_report.py                      # state tile kernels, N = 16, candidate tilings
    python benchmarks/triton_compile_report.py --tilings 32/1 128/4 --dtype bfloat16 --state 16
    python benchmarks/triton_compile_report.py --channel-tiles --state 1 --chunk 1024   # (channel, token) kernels

Per kernel and work split: registers per thread, stack (spilled) bytes, shared memory, the SASS instruction
mix (barriers, shuffles, special-function ops, global loads and their 128-bit share, atomics, local-memory
spills), and the warp instructions the kernel's innermost loops issue per (state, token) element: the issue
work per element, which bounds a latency-free run at about elements x that / (SMs x 4 schedulers x clock).
No timing: these numbers say whether a variant is worth a GPU run, not how fast it is. Integer arguments
divisible by 16 are marked so, as Triton's launcher does for the benchmark shapes (L = 262144, D = 96), which
is what lets loads vectorise.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
from collections import Counter

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

import visionssm.kernels.triton_scan.kernels as channel_kernels
import visionssm.kernels.triton_scan.scan as triton_scan
import visionssm.kernels.triton_scan.state_kernels as state_kernels

TARGET = GPUTarget("cuda", 90, 32)
SHOWN = ["BAR", "SHFL", "MUFU", "LDG", "LDG.128", "STG", "RED", "LDL", "STL", "LDS", "STS"]
# Runtime integers of a SegMamba stage-1 launch (one direction).
INTS = dict(
    direction=0,
    dim=96,
    length=262144,
    cols=1,
    num_chunks=128,
    chunk_stride=128,
    num_dirs=1,
    b_groups=3,
    c_groups=3,
    segment_len=96,
    blocks_per_segment=96,
)
TOKEN_POINTERS = ("u_ptr", "delta_ptr", "B_ptr", "C_ptr", "z_ptr", "dout_ptr", "ddelta_ptr", "dz_ptr", "out_ptr")


def compile_sm90(
    kernel, constants: dict, num_warps: int, token_type: str, max_registers: int | None = None
) -> triton.compiler.CompiledKernel:
    """Compile ``kernel`` for sm_90 with ``constants`` as its constexprs, token tensors of ``token_type``, at most
    ``max_registers`` registers per thread (ptxas's -maxnreg)."""
    signature, attrs = {}, {}
    for i, name in enumerate(kernel.arg_names):
        if name in constants:
            signature[name] = "constexpr"
            continue
        if name.endswith("_ptr"):
            signature[name] = "*i64" if name == "index_ptr" else token_type if name in TOKEN_POINTERS else "*fp32"
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            signature[name] = "i32"
            if INTS.get(name, 1) % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    source = ASTSource(fn=kernel, signature=signature, constexprs=constants, attrs=attrs)
    return triton.compile(source, target=TARGET, options={"num_warps": num_warps, "maxnreg": max_registers})


def summarise(compiled, warps: int, elements: int) -> str:
    """One line: registers, stack, shared memory and the instruction mix of the compiled kernel, and the warp
    instructions its innermost loops (or, without loops, the whole kernel) issue per (state, token) element, for
    ``elements`` elements per loop trip."""
    tools = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        usage = subprocess.run([f"{tools}/cuobjdump", "--dump-resource-usage", cubin.name], capture_output=True)
        sass = subprocess.run([f"{tools}/cuobjdump", "--dump-sass", cubin.name], capture_output=True)
    found = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+)", usage.stdout.decode())
    ops: Counter[str] = Counter()
    for line in sass.stdout.decode().splitlines():
        match = re.match(r"\s+/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", line)
        if match:
            parts = match.group(1).split(".")
            ops[parts[0]] += 1
            if parts[0] == "LDG" and "128" in parts:
                ops["LDG.128"] += 1
            if parts[0] in ("REDG", "RED", "ATOMG"):
                ops["RED"] += 1
    regs, stack, shared = found.groups() if found else ("?", "?", "?")
    mix = " ".join(f"{name} {ops[name]}" for name in SHOWN if ops[name])
    loops = innermost_loops(sass.stdout.decode()) or [sum(ops.values())]
    per_element = sum(loops) * warps / elements
    return f"regs {regs:>3} stack {stack:>4} smem {shared:>5} | {mix} | {per_element:.2f} per element"


def innermost_loops(sass: str) -> list[int]:
    """Instruction counts of the loops (backward branches) that contain no other loop, in code order: the work
    of one tile (state tile kernels) or one chunk (channel tile kernels) per warp."""
    address = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z])")
    branch = re.compile(r"/\*([0-9a-f]{4,})\*/.*\bBRA (?:`\()?(0x[0-9a-f]+|\.L_x_\d+)")
    addresses = [int(m.group(1), 16) for m in map(address.search, sass.splitlines()) if m]
    spans = []
    for m in map(branch.search, sass.splitlines()):
        if m and m.group(2).startswith("0x") and int(m.group(2), 16) < int(m.group(1), 16):
            spans.append((int(m.group(2), 16), int(m.group(1), 16)))
    inner = [(lo, hi) for lo, hi in spans if not any(lo <= a < b <= hi and (a, b) != (lo, hi) for a, b in spans)]
    return [sum(lo <= a <= hi for a in addresses) for lo, hi in sorted(inner)]


def common_flags(state: int, mode: int, compute, flip: bool = False) -> dict:
    return dict(
        STATE=state,
        HAS_D=True,
        HAS_Z=False,
        HAS_BIAS=True,
        SOFTPLUS=True,
        HAS_INDEX=False,
        ACCUMULATE=False,
        MEAN=False,
        MODE=mode,
        COMPUTE=compute,
        FLIP=flip,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tilings", nargs="+", default=["32/1", "32/2", "64/1", "64/2", "128/4"], help="TILE/WARPS")
    parser.add_argument("--state", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--channel-tiles", action="store_true", help="the (channel, token) kernels instead")
    parser.add_argument("--max-registers", type=int, help="backward: registers per thread at most (ptxas spills)")
    parser.add_argument("--stages", type=int, default=1, help="state tile forward: software-pipelining stages")
    parser.add_argument("--bc-vector", type=int, default=0, help="state tile backward: B, C tokens per vector load")
    parser.add_argument("--length", type=int, default=INTS["length"], help="L (SegMamba stage 1 by default)")
    parser.add_argument("--flip", action="store_true", help="the reversed raster order (FLIP) instead of the raster")
    args = parser.parse_args()
    INTS["length"] = args.length
    length_align = triton_scan._Geometry(1, 1, args.length, 1, args.state, 1, 1).length_align
    token_type = {"float32": "*fp32", "bfloat16": "*bf16", "float16": "*fp16"}[args.dtype]
    modes = {"sequential": 0, "summary": 1, "from-carry": 2}
    order = "reversed raster" if args.flip else "raster"
    print(f"triton {triton.__version__}, sm_90, N = {args.state}, {args.dtype}, chunk {args.chunk}, {order} order")
    for mode_name, mode in modes.items():
        flags = common_flags(args.state, mode, tl.float32, args.flip)
        if args.channel_tiles:
            # The warps of the tiling table entry that serves this N.
            tiling = triton_scan._Geometry(1, 1, args.chunk, 1, args.state, 1, 1).tiling
            flags.update(BLOCK_D=1, CHUNK_LEN=args.chunk, LAYOUT=0, P_PAD=1, VEC=1, LENGTH_ALIGN=length_align)
            for label, kernel, extra, warps in [
                ("forward", channel_kernels._scan_forward_kernel, {}, tiling.forward_warps),
                (
                    "backward",
                    channel_kernels._scan_backward_kernel,
                    dict(ATOMIC_BC=True, ROW_STEPS=1),
                    tiling.backward_warps,
                ),
            ]:
                compiled = compile_sm90(kernel, {**flags, **extra}, warps, token_type)
                report = summarise(compiled, warps, args.state * args.chunk)
                print(f"{label:8} {mode_name:10} {warps:>2}w      {report}", flush=True)
            continue
        flags.update(
            N_PAD=triton.next_power_of_2(args.state),
            CHUNK_LEN=args.chunk,
            LENGTH_ALIGN=length_align,
            DIM=INTS["dim"],
            B_GROUPS=INTS["b_groups"],
            C_GROUPS=INTS["c_groups"],
            LAYOUT=0,
            P_PAD=1,
        )
        for tiling in args.tilings:
            tile, warps = (int(x) for x in tiling.split("/"))
            for label, kernel, extra, max_registers in [
                (
                    "forward",
                    state_kernels._state_forward_kernel,
                    dict(
                        NUM_STAGES=args.stages,
                        ROWS=1,
                        ONE_TILE=mode == 0 and args.length <= tile,
                        STORE_STATES=args.length > args.chunk,
                    ),
                    None,
                ),
                (
                    "backward",
                    state_kernels._state_backward_kernel,
                    dict(ATOMIC_BC=True, BC_VECTOR=args.bc_vector),
                    args.max_registers,
                ),
            ]:
                constants = {**flags, **extra, "TILE_LEN": tile}
                compiled = compile_sm90(kernel, constants, warps, token_type, max_registers)
                report = summarise(compiled, warps, args.state * tile)
                print(f"{label:8} {mode_name:10} {tiling:8} {report}", flush=True)


if __name__ == "__main__":
    main()
