"""torch.compile on the layers, at sizes where traced and eager strides can disagree (size-1 grids)."""

from __future__ import annotations

import torch

from visionssm.layers import SSMixer


def test_mixer_compiles_on_a_1x1_grid():
    """Regression: on a 1x1 grid the torch scan's tiles have only size-1 token axes, and tracing its ``out=`` writes
    into the reused flat workspace failed at run time with "view size is not compatible" (d_state > 1)."""
    torch.manual_seed(0)
    mixer = SSMixer(4, spatial_dims=2, d_state=2, backend="torch")
    x = torch.randn(2, 4, 1, 1, requires_grad=True)
    compiled = torch.compile(mixer, backend="aot_eager")
    y = compiled(x)
    (grad,) = torch.autograd.grad(y.square().sum(), x)
    (expected_grad,) = torch.autograd.grad(mixer(x).square().sum(), x)
    torch.testing.assert_close(y, mixer(x))
    torch.testing.assert_close(grad, expected_grad)
