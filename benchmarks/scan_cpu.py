"""CPU benchmark of the selective-scan backends: "torch" (chunked) against "reference" (sequential).

Target (issue 2): at batch 1, dim 96, N 16, L 32768 in float32 on 2 CPU cores, "torch" is at least
10x faster than "reference" in the forward pass and in forward + backward.

    python benchmarks/scan_cpu.py                 # print the table
    python benchmarks/scan_cpu.py --write         # also update docs/benchmarks.md

Times are the median of ``--repeats`` runs after one warm-up run (the reference, which takes
seconds per run, is timed ``--reference-repeats`` times).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from report import DOC, write_block
from visionssm.kernels import selective_scan


def make_inputs(batch: int, dim: int, state: int, length: int, seed: int = 0) -> list[torch.Tensor]:
    """Random S6 inputs as in a Mamba layer: raw delta around softplus^-1(0.01..0.1), stable A."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, dim, length, generator=gen)
    delta = torch.randn(batch, dim, length, generator=gen) * 0.5 - 3.0
    A = -torch.exp(torch.rand(dim, state, generator=gen) * 2.0)
    B = torch.randn(batch, state, length, generator=gen)
    C = torch.randn(batch, state, length, generator=gen)
    D = torch.ones(dim)
    return [t.requires_grad_() for t in (u, delta, A, B, C, D)]


def time_backend(backend: str, inputs: list[torch.Tensor], repeats: int) -> tuple[float, float, torch.Tensor]:
    """Median forward and forward+backward seconds, and the forward output."""

    def forward() -> torch.Tensor:
        u, delta, A, B, C, D = inputs
        return selective_scan(u, delta, A, B, C, D, delta_softplus=True, backend=backend)

    def forward_backward() -> None:
        forward().sum().backward()
        for t in inputs:
            t.grad = None

    with torch.no_grad():
        out = forward()
    forward_backward()
    fwd, fwd_bwd = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            forward()
        fwd.append(time.perf_counter() - start)
        start = time.perf_counter()
        forward_backward()
        fwd_bwd.append(time.perf_counter() - start)
    return statistics.median(fwd), statistics.median(fwd_bwd), out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=(1, 96, 16, 32768), metavar=("BATCH", "DIM", "N", "L"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference-repeats", type=int, default=2)
    parser.add_argument("--write", action="store_true", help=f"update the table in {DOC}")
    args = parser.parse_args()
    inputs = make_inputs(*args.shape)
    ref_fwd, ref_fb, ref_out = time_backend("reference", inputs, args.reference_repeats)
    fast_fwd, fast_fb, fast_out = time_backend("torch", inputs, args.repeats)
    rel_err = ((fast_out - ref_out).abs().max() / ref_out.abs().max()).item()
    batch, dim, state, length = args.shape
    lines = [
        f"Device: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} "
        f"threads), Python {platform.python_version()}; {datetime.date.today().isoformat()}.",
        f"Shape: batch {batch}, dim {dim}, N {state}, L {length}, float32, delta_softplus, D skip. "
        "Median of repeated runs after a warm-up.",
        "",
        "| backend | forward (s) | forward + backward (s) | speed-up fwd | speed-up fwd+bwd |",
        "|---|---|---|---|---|",
        f"| reference | {ref_fwd:.3f} | {ref_fb:.3f} | 1.0x | 1.0x |",
        f"| torch | {fast_fwd:.3f} | {fast_fb:.3f} | {ref_fwd / fast_fwd:.1f}x | {ref_fb / fast_fb:.1f}x |",
        "",
        f"Max |torch - reference| / max |reference| on the forward output: {rel_err:.1e}.",
        "Reproduce: `.venv/bin/python benchmarks/scan_cpu.py --write`.",
    ]
    print("\n".join(lines))
    if args.write:
        write_block("scan_cpu", "Selective scan on CPU (`benchmarks/scan_cpu.py`)", lines)


if __name__ == "__main__":
    main()
