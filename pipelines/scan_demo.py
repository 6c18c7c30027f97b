"""The demo job: every scan order and the selective-scan backends on a small synthetic image.

Until the segmentation pipeline lands, ``make demo`` (``visionssm demo``) runs this: it builds each
scan order over a 32 x 32 phantom (and a 3D box), reports the locality of each order, runs the
cross-scan ``multi_scan`` with every CPU backend, and checks the fast path against the reference.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from visionssm.errors import InputError
from visionssm.kernels import multi_scan, selective_scan
from visionssm.scans import available_scans, scan_plan


@dataclass(frozen=True)
class OrderSummary:
    name: str
    spatial_shape: tuple[int, ...]
    directions: int
    mean_step: float
    jumps: int


@dataclass(frozen=True)
class BackendRun:
    backend: str
    seconds: float
    relative_error: float  # max |out - reference| / max |reference|


@dataclass(frozen=True)
class DemoResult:
    orders: list[OrderSummary]
    multi_scan_runs: list[BackendRun]
    scan_runs: list[BackendRun]
    scan_shape: tuple[int, int, int, int]


def phantom(size: int = 32) -> torch.Tensor:
    """(1, 1, size, size): a bright disk on a left-to-right ramp, values in [0, 2]."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = ((rows - size / 2) ** 2 + (cols - size / 3) ** 2 < (size / 4) ** 2).float()
    return (disk + cols / (size - 1)).view(1, 1, size, size)


def _summarise_orders(shape_2d: tuple[int, int], shape_3d: tuple[int, int, int]) -> list[OrderSummary]:
    summaries = []
    for shape in (shape_2d, shape_3d):
        for name in available_scans(len(shape)):
            plan = scan_plan(name, shape)
            summaries.append(
                OrderSummary(
                    name,
                    shape,
                    plan.num_directions,
                    plan.step_lengths("euclidean").mean().item(),
                    sum(plan.num_jumps()),
                )
            )
    return summaries


def _relative_error(out: torch.Tensor, reference: torch.Tensor) -> float:
    return ((out - reference).abs().max() / reference.abs().max()).item()


def _timed(fn) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def run_demo(size: int = 32, channels: int = 8, state_size: int = 4, seed: int = 0) -> DemoResult:
    """Run the demo on CPU; deterministic for a given seed."""
    if size < 2:
        raise InputError(f"demo: --size must be at least 2, got {size}")
    generator = torch.Generator().manual_seed(seed)
    image = phantom(size)
    plan = scan_plan("cross", (size, size))
    directions = plan.num_directions
    # A fixed random projection of the phantom stands in for a layer's input and parameters.
    u = image * torch.randn(1, channels, 1, 1, generator=generator)
    delta = torch.randn(1, directions, channels, size, size, generator=generator) - 2.0
    A = -torch.rand(directions, channels, state_size, generator=generator) - 0.5
    B = torch.randn(1, directions, state_size, size, size, generator=generator)
    C = torch.randn(1, directions, state_size, size, size, generator=generator)
    reference, ref_seconds = _timed(lambda: multi_scan(u, delta, A, B, C, plan, backend="reference"))
    fast, fast_seconds = _timed(lambda: multi_scan(u, delta, A, B, C, plan, backend="torch"))
    multi_runs = [
        BackendRun("reference", ref_seconds, 0.0),
        BackendRun("torch", fast_seconds, _relative_error(fast, reference)),
    ]

    scan_shape = (1, 96, 16, 4096)
    batch, dim, state, length = scan_shape
    u1 = torch.randn(batch, dim, length, generator=generator)
    delta1 = torch.randn(batch, dim, length, generator=generator)
    A1 = -torch.rand(dim, state, generator=generator)
    B1 = torch.randn(batch, state, length, generator=generator)
    C1 = torch.randn(batch, state, length, generator=generator)

    def scan(backend: str) -> torch.Tensor:
        return selective_scan(u1, delta1, A1, B1, C1, delta_softplus=True, backend=backend)

    ref1, ref1_seconds = _timed(lambda: scan("reference"))
    fast1, fast1_seconds = _timed(lambda: scan("torch"))
    scan_runs = [
        BackendRun("reference", ref1_seconds, 0.0),
        BackendRun("torch", fast1_seconds, _relative_error(fast1, ref1)),
    ]
    return DemoResult(_summarise_orders((size, size), (8, 8, 8)), multi_runs, scan_runs, scan_shape)
