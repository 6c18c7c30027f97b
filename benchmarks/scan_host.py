"""Host-side cost of one Triton selective-scan call: the launch code with every kernel replaced by a no-op.

    python benchmarks/scan_host.py            # CPU tensors, no GPU needed

Short launches (VMamba-T stage 3 at N = 1 takes 0.1 ms on an H200) are bound by this Python work when they are
not captured in a CUDA graph. Triton's own launcher (binding and specialising the arguments: tens of
microseconds per launch on the H200 machines' host) is not included.
"""

from __future__ import annotations

import argparse
import time

import torch

import visionssm.kernels.triton_scan.scan as triton_scan

KERNELS = (
    "_state_forward_kernel",
    "_state_backward_kernel",
    "_scan_forward_kernel",
    "_scan_backward_kernel",
    "_carry_kernel",
)


class _NoLaunch:
    """Stands in for a Triton kernel: ``kernel[grid](...)`` does nothing."""

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    for name in KERNELS:
        setattr(triton_scan, name, _NoLaunch())
    triton_scan.check_device = lambda u: None
    inputs = dict(
        u=torch.randn(1, 4, 16),
        delta=torch.randn(1, 4, 16),
        A=-torch.rand(4, 1),
        B=torch.randn(1, 4, 1, 16),
        C=torch.randn(1, 4, 1, 16),
        D=torch.ones(4),
        delta_bias=torch.zeros(4),
        delta_softplus=True,
    )
    with torch.no_grad():
        for _ in range(100):
            triton_scan.selective_scan_triton(**inputs)
        start = time.perf_counter()
        for _ in range(args.calls):
            triton_scan.selective_scan_triton(**inputs)
    per_call = (time.perf_counter() - start) / args.calls
    print(f"plain forward, N = 1, torch {torch.__version__}: {per_call * 1e6:.1f} us of host work per call")


if __name__ == "__main__":
    main()
