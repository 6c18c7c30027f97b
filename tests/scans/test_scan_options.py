"""Window and atrous structure, generic options, caching, devices and error messages."""

import itertools

import numpy as np
import pytest
import torch

from visionssm.errors import InputError
from visionssm.scans import scan_plan, scan_tokens


def coords(plan, k=0):
    """Row and column of each token of direction k, in visiting order."""
    return np.divmod(plan.index[k].numpy(), plan.spatial_shape[1])


def runs(labels) -> list:
    """Labels of the maximal runs of equal consecutive labels."""
    return [label for label, _ in itertools.groupby(labels)]


@pytest.mark.parametrize("shape, size", [((14, 14), 7), ((16, 13), 7), ((9, 5), 2), ((5, 11), 4), ((3, 3), 8)])
def test_window_tokens_form_one_run_per_window(shape, size):
    i, j = coords(scan_plan("window", shape, window=size))
    windows = list(zip(i // size, j // size))
    assert runs(windows) == sorted(set(windows))  # each window once, windows in raster order
    for window in set(windows):
        members = [(a, b) for a, b, w in zip(i, j, windows) if w == window]
        assert len(members) <= size * size
        assert members == sorted(members)  # raster order inside the window


@pytest.mark.parametrize("shape, stride", [((14, 14), 2), ((7, 9), 2), ((10, 11), 3), ((2, 5), 4)])
def test_atrous_phases_are_contiguous_blocks(shape, stride):
    plan = scan_plan("atrous", shape, stride=stride)
    for k, (outer, inner) in enumerate([(0, 1), (1, 0)]):  # phase_row: (i%s, j%s) row-major; phase_col transposed
        ij = coords(plan, k)
        phases = list(zip(ij[outer] % stride, ij[inner] % stride))
        assert runs(phases) == sorted(set(phases))
        cells = list(zip(ij[outer], ij[inner]))
        for phase in set(phases):
            members = [c for c, p in zip(cells, phases) if p == phase]
            assert members == sorted(members)  # sub-grid row-major (column-major for phase_col)


def test_atrous_dilated_windows():
    shape, rate, size = (13, 10), 2, 3
    i, j = coords(scan_plan("atrous", shape, rate=rate, window=size))
    phases = list(zip(i % rate, j % rate))
    assert runs(phases) == sorted(set(phases))
    for phase in set(phases):
        sub_i, sub_j = zip(*[(a // rate, b // rate) for a, b, p in zip(i, j, phases) if p == phase])
        windows = [(a // size, b // size) for a, b in zip(sub_i, sub_j)]
        assert runs(windows) == sorted(set(windows))


def test_reverse_appends_reversed_copies():
    plan = scan_plan("hilbert", (6, 7), reverse=True)
    assert plan.directions == ("hilbert", "hilbert_rev")
    assert plan.index[1].tolist() == plan.index[0].tolist()[::-1]
    assert scan_plan("raster", (3, 4), reverse=True).index.tolist() == scan_plan("bidirectional", (3, 4)).index.tolist()


def test_directions_keeps_rows_in_given_order():
    full = scan_plan("cross", (3, 5))
    picked = scan_plan("cross", (3, 5), directions=(3, 1))
    assert picked.directions == ("col_rev", "col")
    assert picked.index.tolist() == full.index[[3, 1]].tolist()
    assert scan_plan("raster", (3, 5), reverse=True, directions=(1,)).directions == ("row_rev",)


def test_snake3d_axis_orders():
    plan = scan_plan("snake3d", (3, 4, 5), axis_orders=("whd", "dhw"))
    assert plan.directions == ("snake_whd", "snake_dhw", "snake_whd_rev", "snake_dhw_rev")
    d, h, w = np.unravel_index(plan.index[0].numpy(), (3, 4, 5))
    assert runs(w) == list(range(5))  # w slowest
    assert list(zip(d[:4], h[:4])) == [(0, 0), (1, 0), (2, 0), (2, 1)]  # d fastest, turning back after each line


def test_plans_are_cached_and_device_copies_too():
    plan = scan_plan("cross", (5, 6))
    assert scan_plan("cross", [5, 6]) is plan
    assert scan_plan("cross", (np.int64(5), 6)) is plan
    assert scan_plan("cross", (5, 6), merge="mean") is not plan
    assert scan_plan("cross", (5, 6), directions=[0, 1]) is scan_plan("cross", (5, 6), directions=(0, 1))
    assert plan.to("cpu") is plan and plan.to(torch.device("cpu")) is plan
    assert (plan.num_directions, plan.length, plan.ndim) == (4, 30, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_device_copy_is_cached_per_device():
    plan = scan_plan("hilbert", (9, 9))
    on_gpu = plan.to("cuda")
    assert on_gpu is plan.to("cuda:0") and on_gpu.index.is_cuda and on_gpu.to("cpu") is plan
    x = torch.randn(2, 3, 9, 9, device="cuda")
    assert scan_tokens(x, plan).device == x.device


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: scan_plan("spiral", (4, 4)), ["'spiral'"]),
        (lambda: scan_plan("cross", (4, 4), windw=3), ["'cross'", "windw"]),
        (lambda: scan_plan("window", (4, 4), window=0), ["window=0"]),
        (lambda: scan_plan("window", (4, 4), window=2.5), ["window=2.5"]),
        (lambda: scan_plan("cross", (4, 4), reverse=True), ["'cross'", "reverse"]),
        (lambda: scan_plan("zigzag8", (4, 4), reverse=True), ["'zigzag8'", "reverse"]),
        (lambda: scan_plan("cross", (4, 4), directions=(4,)), ["directions=(4,)"]),
        (lambda: scan_plan("cross", (4, 4), directions=(1, 1)), ["directions=(1, 1)"]),
        (lambda: scan_plan("cross", (4, 4), merge="max"), ["merge='max'"]),
        (lambda: scan_plan("cross", (4, 0)), ["(4, 0)"]),
        (lambda: scan_plan("cross", (4, 4, 4)), ["'cross'", "(4, 4, 4)"]),
        (lambda: scan_plan("hilbert3d", (4, 4)), ["'hilbert3d'", "(4, 4)"]),
        (lambda: scan_plan("atrous", (4, 4), stride=2, rate=2), ["stride=2", "rate=2"]),
        (lambda: scan_plan("atrous", (4, 4), window=3), ["window=3"]),
        (lambda: scan_plan("snake3d", (2, 2, 2), axis_orders=("dhx",)), ["'dhx'"]),
        (lambda: scan_plan("mamba_nd", (4, 4), layer=-1), ["layer=-1"]),
        (lambda: scan_tokens(torch.zeros(1, 2, 4, 5), scan_plan("cross", (4, 4))), ["(1, 2, 4, 5)"]),
    ],
)
def test_bad_input_raises_input_error_naming_the_value(call, words):
    with pytest.raises(InputError) as error:
        call()
    assert isinstance(error.value, ValueError)
    for word in words:
        assert word in str(error.value)
