"""multi_scan against an explicit loop over directions with the reference backend."""

from __future__ import annotations

import pytest
import torch

from visionssm.errors import InputError
from visionssm.kernels import multi_scan, selective_scan_ref
from visionssm.scans import available_scans, scan_plan

SHAPES = {2: (5, 6), 3: (3, 4, 5)}


def loop_over_directions(u, delta, A, B, C, plan, D, delta_bias, softplus):
    """Gather each direction by hand, scan it with the reference, scatter back and merge."""
    batch, dim, *spatial = u.shape
    num_dirs, length = plan.index.shape
    merged = torch.zeros(batch, dim, length, dtype=torch.float64)
    for k in range(num_dirs):
        order = plan.index[k]
        y = selective_scan_ref(
            u.reshape(batch, dim, length)[..., order],
            delta[:, k].reshape(batch, dim, length)[..., order],
            A[k],
            B[:, k].reshape(batch, -1, length)[..., order],
            C[:, k].reshape(batch, -1, length)[..., order],
            None if D is None else D[k],
            delta_bias=None if delta_bias is None else delta_bias[k],
            delta_softplus=softplus,
        )
        back = torch.empty_like(y)
        back[..., order] = y
        merged += back.double()
    if plan.merge == "mean":
        merged /= num_dirs
    return merged.view(batch, dim, *spatial).to(u.dtype)


def make_inputs(plan, batch=2, dim=3, state=2, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    num_dirs = plan.num_directions
    spatial = plan.spatial_shape

    def randn(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=gen, dtype=dtype) * scale + shift).requires_grad_()

    return dict(
        u=randn(batch, dim, *spatial),
        delta=randn(batch, num_dirs, dim, *spatial, scale=0.5, shift=-1.0),
        A=(-torch.rand(num_dirs, dim, state, generator=gen, dtype=dtype) - 0.2).requires_grad_(),
        B=randn(batch, num_dirs, state, *spatial),
        C=randn(batch, num_dirs, state, *spatial),
        D=randn(num_dirs, dim),
        delta_bias=randn(num_dirs, dim, scale=0.2),
    )


@pytest.mark.parametrize(
    ("name", "ndim"), [(name, ndim) for ndim in (2, 3) for name in available_scans(ndim)], ids=lambda x: str(x)
)
@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_multi_scan_matches_loop_for_every_scan_name(name, ndim, backend):
    plan = scan_plan(name, SHAPES[ndim])
    inputs = make_inputs(plan)
    got = multi_scan(**inputs, plan=plan, backend=backend)
    want = loop_over_directions(**inputs, plan=plan, softplus=True)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("merge", ["sum", "mean"])
def test_multi_scan_gradients_match_loop(merge):
    plan = scan_plan("cross", (4, 5), merge=merge)
    inputs = make_inputs(plan, dim=2, state=3)
    cotangent = torch.randn(2, 2, 4, 5, dtype=torch.float64)
    got = torch.autograd.grad(multi_scan(**inputs, plan=plan, backend="torch"), list(inputs.values()), cotangent)
    want = torch.autograd.grad(
        loop_over_directions(**inputs, plan=plan, softplus=True), list(inputs.values()), cotangent
    )
    for name, g, w in zip(inputs, got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9, msg=lambda m, name=name: f"grad {name}: {m}")


def test_multi_scan_float32_and_optional_parameters():
    plan = scan_plan("hilbert", (7, 9))
    inputs = make_inputs(plan, dtype=torch.float32)
    inputs.update(D=None, delta_bias=None)
    got = multi_scan(**inputs, plan=plan, delta_softplus=False)
    want = loop_over_directions(**inputs, plan=plan, softplus=False)
    assert got.dtype == torch.float32 and got.shape == inputs["u"].shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("key", "shape", "message"),
    [
        ("u", (2, 3, 5, 7), "u has shape"),
        ("delta", (2, 3, 3, 5, 6), "delta has shape"),
        ("B", (2, 4, 2, 30), "B has shape"),
        ("A", (4, 3, 5), "A has shape"),
        ("D", (3,), "D has shape"),
    ],
)
def test_multi_scan_rejects_mismatched_shapes(key, shape, message):
    plan = scan_plan("cross", (5, 6))
    inputs = make_inputs(plan)
    inputs[key] = torch.zeros(shape, dtype=torch.float64)
    with pytest.raises(InputError, match=message):
        multi_scan(**inputs, plan=plan)
