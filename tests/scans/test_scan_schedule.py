"""Per-layer schedules against their definitions (ZigMa: path i mod 8; Mamba-ND: order (i // 2) mod n, odd reversed)."""

import numpy as np
import pytest

from visionssm.errors import InputError
from visionssm.scans import ScanSpec, layer_schedule, scan_plan


@pytest.mark.parametrize("depth", [8, 12])
def test_zigma_uses_path_i_mod_8(depth):
    specs = layer_schedule("zigma", depth)
    assert len(specs) == depth
    paths = scan_plan("zigzag8", (6, 5)).index
    for i, spec in enumerate(specs):
        assert spec == ScanSpec("zigzag8", {"directions": (i % 8,)})
        plan = spec.plan((6, 5))
        assert plan.num_directions == 1 and plan.index[0].tolist() == paths[i % 8].tolist()


def axis_order_gather(shape, order, reverse):
    """Raster of the grid with axes nested in ``order`` (slowest first), reversed if asked."""
    gather = np.arange(int(np.prod(shape))).reshape(shape).transpose(order).reshape(-1)
    return gather[::-1] if reverse else gather


@pytest.mark.parametrize(
    "depth, shape, orders",
    [
        (8, (4, 6), [(0, 1), (1, 0)]),  # H then W (Mamba-ND 2D: 'h w', 'w h')
        (12, (3, 4, 5), [(0, 1, 2), (0, 2, 1), (2, 1, 0)]),  # 't l h w', 't l w h', 'w h t l'
    ],
)
def test_mamba_nd_cycles_axis_orders_and_reverses_odd_layers(depth, shape, orders):
    specs = layer_schedule("mamba_nd", depth)
    assert len(specs) == depth
    for i, spec in enumerate(specs):
        expected = axis_order_gather(shape, orders[(i // 2) % len(orders)], reverse=i % 2 == 1)
        assert spec.plan(shape).index[0].tolist() == expected.tolist()


def test_mamba_nd_labels_3d():
    labels = [spec.plan((2, 3, 4)).directions[0] for spec in layer_schedule("mamba_nd", 6)]
    assert labels == ["dhw", "dhw_rev", "dwh", "dwh_rev", "whd", "whd_rev"]


def test_spec_plans_are_the_cached_plans():
    spec = layer_schedule("zigma", 3)[2]
    assert spec.plan((8, 8)) is scan_plan("zigzag8", (8, 8), directions=(2,))
    assert hash(spec) == hash(ScanSpec("zigzag8", (("directions", (2,)),)))


def test_unknown_schedule_and_bad_depth():
    with pytest.raises(InputError, match="'zigzag'"):
        layer_schedule("zigzag", 4)
    with pytest.raises(InputError, match="depth=-1"):
        layer_schedule("zigma", -1)
    assert layer_schedule("mamba_nd", 0) == []
