"""backend="mamba_ssm" against the reference, wherever mamba_ssm's CUDA extension imports (GPU machines)."""

from __future__ import annotations

import pytest
import torch

from scan_problems import assert_close_scaled, make_problem, outputs_and_grads
from visionssm.kernels import backend_status, selective_scan, selective_scan_ref

MAMBA_READY = torch.cuda.is_available() and any(s.name == "mamba_ssm" and s.available for s in backend_status())
pytestmark = pytest.mark.skipif(not MAMBA_READY, reason="needs a GPU and mamba_ssm's selective_scan_cuda extension")


def on_cuda(problem):
    for field in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias"):
        tensor = getattr(problem, field)
        if tensor is not None:
            setattr(problem, field, tensor.detach().cuda().requires_grad_())
    return problem


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)], ids=str)
@pytest.mark.parametrize(("state", "groups", "length"), [(1, None, 301), (16, 2, 2500)])
def test_mamba_ssm_backend_matches_reference(dtype, rtol, state, groups, length):
    problem = on_cuda(make_problem(2, 8, state, length, groups=groups, dtype=dtype))

    def mamba(*args, return_last_state):
        return selective_scan(*args, return_last_state=return_last_state, backend="mamba_ssm")

    ref = outputs_and_grads(selective_scan_ref, problem)
    got = outputs_and_grads(mamba, problem)
    for name, g, r in zip(("out", "last_state", "grads"), got[:2], ref[:2]):
        assert_close_scaled(g, r, rtol, name)
    for g, r in zip(got[2], ref[2]):
        assert_close_scaled(g, r, rtol, "grad")
