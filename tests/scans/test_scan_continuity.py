"""Continuity of the snakes and Hilbert curves, checked from raster coordinates, and the classic Hilbert curve."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from visionssm.scans import scan_plan


def manhattan_steps(plan) -> np.ndarray:
    """(K, L - 1) Manhattan distances between consecutive tokens, from np.unravel_index coordinates."""
    coords = np.stack(np.unravel_index(plan.index.numpy(), plan.spatial_shape))  # (ndim, K, L)
    return np.abs(np.diff(coords, axis=-1)).sum(axis=0)


def assert_continuous(plan):
    steps = manhattan_steps(plan)
    assert (steps == 1).all(), f"{plan.name} on {plan.spatial_shape}: {(steps != 1).sum()} non-unit steps"
    assert plan.num_jumps() == (0,) * plan.num_directions


SHAPES_2D = list(itertools.product(range(1, 18), repeat=2))


@pytest.mark.parametrize("name", ["snake", "zigzag8", "hilbert"])
def test_2d_continuous_on_all_shapes_up_to_17(name):
    for shape in SHAPES_2D:
        assert_continuous(scan_plan(name, shape))


def test_hilbert3d_continuous_on_all_boxes_up_to_17():
    for shape in itertools.product(range(1, 18), repeat=3):
        assert_continuous(scan_plan("hilbert3d", shape))


def test_snake3d_continuous_on_all_boxes_up_to_9():
    for shape in itertools.product(range(1, 10), repeat=3):
        assert_continuous(scan_plan("snake3d", shape, axis_orders=("dhw", "wdh", "hwd")))


@pytest.mark.parametrize("shape", [(31, 31, 31), (33, 20, 7), (2, 40, 41), (64, 3, 50), (1, 45, 46)])
def test_hilbert3d_continuous_on_larger_boxes(shape):
    assert_continuous(scan_plan("hilbert3d", shape))


@settings(max_examples=30, deadline=None)
@given(shape=st.tuples(st.integers(1, 128), st.integers(1, 128)))
def test_hilbert_continuous_on_random_rectangles(shape):
    assert_continuous(scan_plan("hilbert", shape))


@settings(max_examples=20, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 17)] * 3))
def test_3d_curves_continuous_on_random_boxes(shape):
    assert_continuous(scan_plan("hilbert3d", shape))
    assert_continuous(scan_plan("snake3d", shape))


def classic_hilbert_d2xy(n: int, d: int) -> tuple[int, int]:
    """Textbook Hilbert-curve decoding (distance d -> (x, y)) on an n x n grid, n a power of two."""
    x = y = 0
    s = 1
    while s < n:
        rx = 1 & (d // 2)
        ry = 1 & (d ^ rx)
        if ry == 0:
            if rx == 1:
                x, y = s - 1 - x, s - 1 - y
            x, y = y, x
        x, y = x + s * rx, y + s * ry
        d //= 4
        s *= 2
    return x, y


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32, 64])
def test_power_of_two_square_is_the_classic_hilbert_curve(n):
    expected = [x * n + y for x, y in (classic_hilbert_d2xy(n, d) for d in range(n * n))]  # x = row, y = column
    assert scan_plan("hilbert", (n, n)).index[0].tolist() == expected


@pytest.mark.parametrize("shape", [(16, 16), (32, 32), (8, 8, 8), (16, 16, 16)])
def test_power_of_two_curve_fills_aligned_blocks_one_at_a_time(shape):
    # The Hilbert property: at every scale s, each aligned s x s (x s) block is one contiguous run of the curve.
    name = "hilbert" if len(shape) == 2 else "hilbert3d"
    coords = np.stack(np.unravel_index(scan_plan(name, shape).index[0].numpy(), shape))  # (ndim, L)
    size = 2
    while size <= shape[0]:
        block = np.ravel_multi_index(tuple(coords // size), tuple(n // size for n in shape))
        assert (np.diff(block) != 0).sum() == block.max()  # every block entered exactly once
        size *= 2


def test_step_lengths_match_coordinates():
    for name, shape in [("jpeg_zigzag", (5, 7)), ("zorder", (6, 5)), ("cross3d", (3, 4, 5)), ("atrous", (9, 8))]:
        plan = scan_plan(name, shape)
        np.testing.assert_array_equal(plan.step_lengths().numpy(), manhattan_steps(plan))
        coords = np.stack(np.unravel_index(plan.index.numpy(), shape))
        euclidean = np.sqrt((np.diff(coords, axis=-1) ** 2).sum(axis=0))
        np.testing.assert_allclose(plan.step_lengths("euclidean").numpy(), euclidean)
        assert plan.num_jumps() == tuple((manhattan_steps(plan) > 1).sum(axis=1))


def test_raster_jumps_once_per_row():
    assert scan_plan("cross", (5, 7)).num_jumps() == (4, 6, 4, 6)
