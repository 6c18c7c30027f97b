"""``selective_scan``: the S6 operator with mamba_ssm's signature, dispatched to a backend."""

from __future__ import annotations

from torch import Tensor

from ._inputs import check_scan_inputs
from .backends import backend_function, resolve_backend


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    backend: str = "auto",
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan (S6), compatible with ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``.

    For every batch b, channel d, state n and token t (group g = d // (D // G))::

        delta = softplus(delta + delta_bias)         (bias and softplus optional)
        h_t   = exp(delta_t * A[d, n]) * h_{t-1} + delta_t * B[g, n, t] * u_t
        y_t   = sum_n C[g, n, t] * h_t[n] + D[d] * u_t      (then * silu(z_t) when z is given)

    Args:
        u: (Bt, D, L) input; float32, float16 or bfloat16 (float64 for exact checks).
        delta: (Bt, D, L) step sizes.
        A: (D, N) real state matrix.
        B, C: (Bt, N, L), or (Bt, G, N, L) with G dividing D.
        D: (D,) skip weight. z: (Bt, D, L) gate. delta_bias: (D,).
        delta_softplus: apply softplus to delta + delta_bias.
        return_last_state: also return the final state (Bt, D, N); it carries no gradient.
        backend: "auto", "reference", "torch", "triton" or "mamba_ssm" ("auto" reads VISIONSSM_SCAN_BACKEND,
            else picks "triton" for CUDA tensors when triton is installed, "torch" otherwise).

    Returns:
        out (Bt, D, L) in u's dtype, or (out, last_state) with the state in float32. The state and all
        accumulations are float32 in every backend, whatever the input dtype.
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    scan = backend_function(resolve_backend(backend, u))
    return scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
