"""Every plan is a set of permutations with correct inverses, and gather/merge agree with plain loops."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visionssm.scans import available_scans, merge_tokens, scan_plan, scan_tokens

CONFIGS_2D = [
    ("raster", {}),
    ("raster", {"reverse": True}),
    ("bidirectional", {}),
    ("cross", {}),
    ("snake", {}),
    ("zigzag8", {}),
    ("zorder", {}),
    ("jpeg_zigzag", {"reverse": True}),
    ("hilbert", {"reverse": True}),
    ("window", {}),
    ("window", {"window": 2}),
    ("window", {"window": 3, "merge": "mean"}),
    ("atrous", {}),
    ("atrous", {"stride": 3}),
    ("atrous", {"rate": 2, "window": 3}),
    ("atrous", {"rate": 3}),
    ("mamba_nd", {}),
]
CONFIGS_3D = [
    ("raster3d", {}),
    ("raster3d", {"reverse": True}),
    ("tri_orientation", {}),
    ("cross3d", {}),
    ("cross3d_12", {"merge": "mean"}),
    ("snake3d", {}),
    ("snake3d", {"axis_orders": ("whd", "hdw")}),
    ("hilbert3d", {"reverse": True}),
    ("mamba_nd", {}),
]
SHAPES_2D = list(itertools.product(range(1, 18), repeat=2))
SHAPES_3D = list(itertools.product((1, 2, 3, 5, 8, 17), repeat=3))


def test_configs_cover_every_name():
    assert {name for name, _ in CONFIGS_2D} == set(available_scans(2))
    assert {name for name, _ in CONFIGS_3D} == set(available_scans(3))


def check_plan(plan, shape):
    index, inverse = plan.index.numpy(), plan.inverse.numpy()
    length = int(np.prod(shape))
    assert plan.spatial_shape == tuple(shape) and plan.length == length
    assert index.dtype == np.int64 and plan.index.is_contiguous() and plan.inverse.is_contiguous()
    assert index.shape == (len(plan.directions), length) == (plan.num_directions, length)
    steps = np.broadcast_to(np.arange(length), index.shape)
    np.testing.assert_array_equal(np.sort(index, axis=1), steps)  # each row is a permutation
    np.testing.assert_array_equal(np.take_along_axis(inverse, index, axis=1), steps)  # inverse[index[t]] == t


def check_round_trip(plan, shape):
    x = torch.randn(2, 3, *shape, dtype=torch.float64)
    merged = merge_tokens(scan_tokens(x, plan), plan)
    expected = x if plan.merge == "mean" else plan.num_directions * x
    torch.testing.assert_close(merged, expected)


@pytest.mark.parametrize("name, options", CONFIGS_2D, ids=lambda v: str(v))
def test_2d_plans_on_all_shapes_up_to_17(name, options):
    for shape in SHAPES_2D:
        plan = scan_plan(name, shape, **options)
        check_plan(plan, shape)
        check_round_trip(plan, shape)


@pytest.mark.parametrize("name, options", CONFIGS_3D, ids=lambda v: str(v))
def test_3d_plans_on_box_grid(name, options):
    for shape in SHAPES_3D:
        plan = scan_plan(name, shape, **options)
        check_plan(plan, shape)
        check_round_trip(plan, shape)


@settings(max_examples=25, deadline=None)
@given(config=st.sampled_from(CONFIGS_2D), shape=st.tuples(st.integers(1, 64), st.integers(1, 64)))
def test_2d_plans_on_random_shapes(config, shape):
    name, options = config
    check_plan(scan_plan(name, shape, **options), shape)


@settings(max_examples=25, deadline=None)
@given(config=st.sampled_from(CONFIGS_3D), shape=st.tuples(*[st.integers(1, 17)] * 3))
def test_3d_plans_on_random_shapes(config, shape):
    name, options = config
    plan = scan_plan(name, shape, **options)
    check_plan(plan, shape)
    check_round_trip(plan, shape)


def loop_scan(x, index):
    """(B, C, *spatial), (K, L) -> (B, K, C, L), one token at a time."""
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    out = torch.empty(x.shape[0], index.shape[0], x.shape[1], index.shape[1], dtype=x.dtype)
    for k, t in itertools.product(range(index.shape[0]), range(index.shape[1])):
        out[:, k, :, t] = flat[:, :, index[k, t]]
    return out


def loop_merge(y, index, shape):
    """(B, K, C, L) -> (B, C, *spatial) by adding every token at its raster position."""
    out = torch.zeros(y.shape[0], y.shape[2], index.shape[1], dtype=y.dtype)
    for k, t in itertools.product(range(index.shape[0]), range(index.shape[1])):
        out[:, :, index[k, t]] += y[:, k, :, t]
    return out.reshape(y.shape[0], y.shape[2], *shape)


@pytest.mark.parametrize(
    "name, options, shape",
    [
        ("cross", {}, (5, 3)),
        ("zigzag8", {}, (3, 4)),
        ("hilbert", {"reverse": True}, (6, 5)),
        ("atrous", {"rate": 2, "window": 2}, (5, 7)),
        ("cross3d_12", {}, (2, 3, 4)),
        ("hilbert3d", {}, (3, 4, 5)),
    ],
)
def test_scan_and_merge_match_loops(name, options, shape):
    plan = scan_plan(name, shape, **options)
    index = plan.index.numpy()
    x = torch.randn(2, 3, *shape, dtype=torch.float64)
    torch.testing.assert_close(scan_tokens(x, plan), loop_scan(x, index))
    y = torch.randn(2, plan.num_directions, 3, plan.length, dtype=torch.float64)
    torch.testing.assert_close(merge_tokens(y, plan), loop_merge(y, index, shape))
    mean_plan = scan_plan(name, shape, merge="mean", **options)
    torch.testing.assert_close(merge_tokens(y, mean_plan), loop_merge(y, index, shape) / plan.num_directions)


def test_sum_merge_is_the_adjoint_of_scan():
    # <scan(x), y> == <x, merge(y)>: the gradient of scan_tokens is merge_tokens and vice versa.
    plan = scan_plan("snake", (7, 9))
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 4, 3, 63, dtype=torch.float64)
    (scan_tokens(x, plan) * y).sum().backward()
    torch.testing.assert_close(x.grad, merge_tokens(y, plan))
    torch.testing.assert_close((scan_tokens(x, plan) * y).sum(), (x * merge_tokens(y, plan)).sum())


def test_output_layout_and_dtype():
    plan = scan_plan("cross", (4, 6))
    x = torch.randn(2, 5, 4, 6).to(torch.bfloat16)
    tokens = scan_tokens(x, plan)
    assert tokens.shape == (2, 4, 5, 24) and tokens.is_contiguous() and tokens.dtype == torch.bfloat16
    assert merge_tokens(tokens, plan).shape == (2, 5, 4, 6)
