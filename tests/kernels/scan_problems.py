"""Random selective-scan problems and comparison helpers shared by the kernel tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch

PARAM_DTYPE = torch.float32


@dataclass
class ScanProblem:
    """Inputs of one selective_scan call; ``tensors()`` lists the ones that take gradients."""

    u: torch.Tensor
    delta: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor
    D: torch.Tensor | None
    z: torch.Tensor | None
    delta_bias: torch.Tensor | None
    delta_softplus: bool

    def args(self) -> tuple:
        return (self.u, self.delta, self.A, self.B, self.C, self.D, self.z, self.delta_bias, self.delta_softplus)

    def tensors(self) -> list[torch.Tensor]:
        return [t for t in self.args()[:-1] if t is not None]


def make_problem(
    batch: int,
    dim: int,
    state: int,
    length: int,
    groups: int | None = None,
    dtype: torch.dtype = torch.float32,
    with_D: bool = True,
    with_z: bool = True,
    with_bias: bool = True,
    softplus: bool = True,
    seed: int = 0,
) -> ScanProblem:
    """A random problem; ``groups=None`` gives 3-D B/C (Bt, N, L), else (Bt, G, N, L).

    Activations use ``dtype``; A, D and delta_bias stay float32 (float64 when dtype is float64),
    as parameters do in a model.
    """
    gen = torch.Generator().manual_seed(seed)
    param_dtype = torch.float64 if dtype == torch.float64 else PARAM_DTYPE

    def randn(*shape, scale=1.0, shift=0.0, dt=dtype):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + shift).to(dt).requires_grad_()

    bc_shape = (batch, state, length) if groups is None else (batch, groups, state, length)
    A = (-torch.exp(torch.rand(dim, state, generator=gen, dtype=torch.float64) * 1.5)).to(param_dtype)
    return ScanProblem(
        u=randn(batch, dim, length),
        delta=randn(batch, dim, length, scale=0.5, shift=-1.0 if softplus else 0.3),
        A=A.requires_grad_(),
        B=randn(*bc_shape),
        C=randn(*bc_shape),
        D=randn(dim, dt=param_dtype) if with_D else None,
        z=randn(batch, dim, length) if with_z else None,
        delta_bias=randn(dim, scale=0.3, dt=param_dtype) if with_bias else None,
        delta_softplus=softplus,
    )


def outputs_and_grads(scan, problem: ScanProblem, seed: int = 1):
    """Run ``scan`` and backpropagate a fixed random cotangent: (out, last_state, grads)."""
    out, last_state = scan(*problem.args(), return_last_state=True)
    gen = torch.Generator().manual_seed(seed)
    cotangent = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(device=out.device, dtype=out.dtype)
    grads = torch.autograd.grad(out, problem.tensors(), cotangent)
    return out, last_state, grads


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, rtol: float, name: str) -> None:
    """|actual - expected| <= rtol * max|expected| (+ a floor), elementwise, with a useful message."""
    actual, expected = actual.double(), expected.double()
    scale = expected.abs().max().item() + 1e-12
    err = (actual - expected).abs().max().item()
    assert err <= rtol * scale, f"{name}: max abs error {err:.3e} > {rtol:.1e} x max |expected| {scale:.3e}"
