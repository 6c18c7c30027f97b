"""Run one case of the issue-3 speed targets twice (a warm-up that compiles, then the profiled call) for ncu.

    ncu --clock-control none --launch-skip 2 --launch-count 2 -k regex:_state_backward_kernel \\
        --section SpeedOfLight --section Occupancy --section WarpStateStats \\
        python benchmarks/scan_profile.py segmamba_s1_bwd

Cases (shapes of ``benchmarks/scan_gpu.py``'s plain S6, float32 unless ``--dtype``):

- ``vmamba_s1_fwd``, ``vmamba_s3_fwd``: N = 1 forward (one launch of ``_scan_forward_kernel`` per call);
- ``segmamba_s1_fwd``: N = 16 forward (chunk-parallel: summary, carry, then from-carry launches);
- ``segmamba_s1_bwd``: N = 16 backward (a warm-up forward, then two ``_state_backward_kernel`` launches per
  backward: chunk summaries and the pass from the carried states).

Each case runs its call twice, so ``--launch-skip`` = launches of that kernel per call skips the warm-up.

    python benchmarks/scan_profile.py vmamba_s3_fwd --dtype bfloat16 --host-calls 200

times instead that many eager forward calls (autograd recording, as scan_gpu.py's eager forward): the host's
microseconds per call (no synchronisation in the loop) against the wall time with the GPU's work, and then the
functions that take the host's time (cProfile, a second run).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import torch
from triton_scan_gpu import make_inputs

from visionssm.kernels.triton_scan import selective_scan_triton

# name: (batch, K, dim, N, L)
SHAPES = {
    "vmamba_s1": (64, 4, 96, 1, 3136),
    "vmamba_s3": (64, 4, 384, 1, 196),
    "segmamba_s1": (2, 3, 96, 16, 262144),
}
CASES = ["vmamba_s1_fwd", "vmamba_s3_fwd", "segmamba_s1_fwd", "segmamba_s1_bwd"]


def host_time(inputs: dict, calls: int) -> None:
    """Print the host's and the wall clock's microseconds per eager forward call, then a cProfile of the calls."""
    leaves = {k: v.detach().requires_grad_() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    for _ in range(20):
        selective_scan_triton(**leaves)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        selective_scan_triton(**leaves)
    host = time.perf_counter() - start
    torch.cuda.synchronize()
    wall = time.perf_counter() - start
    print(f"{calls} eager forward calls: host {host / calls * 1e6:.1f} us per call, wall {wall / calls * 1e6:.1f} us")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        selective_scan_triton(**leaves)
    torch.cuda.synchronize()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(14)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=CASES)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--host-calls", type=int, default=0, help="instead time this many eager forward calls")
    args = parser.parse_args()
    shape_name, phase = args.case.rsplit("_", 1)
    batch, num_dirs, dim, state, length = SHAPES[shape_name]
    inputs = make_inputs(batch, num_dirs * dim, state, length, getattr(torch, args.dtype), False, groups=num_dirs)
    if args.host_calls:
        host_time(inputs, args.host_calls)
    elif phase == "fwd":
        with torch.no_grad():
            for _ in range(2):
                selective_scan_triton(**inputs)
    else:
        leaves = {k: v.detach().requires_grad_() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        out = selective_scan_triton(**leaves)
        cotangent = torch.randn_like(out)
        grads = [v for v in leaves.values() if isinstance(v, torch.Tensor)]
        for _ in range(2):
            torch.autograd.grad(out, grads, cotangent, retain_graph=True)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
