"""The worked examples of spec/scans.md, reproduced exactly.

Step grids: cell (i, j) holds the step at which the token (i, j) is visited, i.e. ``plan.inverse[k]`` reshaped.
Gather lists: ``plan.index[k]``.
"""

import numpy as np
import pytest

from visionssm.scans import scan_plan


def grids(text: str) -> np.ndarray:
    """Parse side-by-side 4x4 step grids (one row of text per grid row) into (K, 4, 4)."""
    rows = [list(map(int, line.split())) for line in text.strip().splitlines()]
    return np.array(rows).reshape(4, -1, 4).transpose(1, 0, 2)


def step_grids(name: str, **options) -> np.ndarray:
    return scan_plan(name, (4, 4), **options).inverse.numpy().reshape(-1, 4, 4)


CROSS = grids("""
 0  1  2  3      0  4  8 12     15 14 13 12     15 11  7  3
 4  5  6  7      1  5  9 13     11 10  9  8     14 10  6  2
 8  9 10 11      2  6 10 14      7  6  5  4     13  9  5  1
12 13 14 15      3  7 11 15      3  2  1  0     12  8  4  0
""")

ZIGZAG_P0_P3 = grids("""
 0  1  2  3      0  7  8 15      3  2  1  0     15  8  7  0
 7  6  5  4      1  6  9 14      4  5  6  7     14  9  6  1
 8  9 10 11      2  5 10 13     11 10  9  8     13 10  5  2
15 14 13 12      3  4 11 12     12 13 14 15     12 11  4  3
""")
ZIGZAG_P4_P7 = grids("""
15 14 13 12      3  4 11 12     12 13 14 15     12 11  4  3
 8  9 10 11      2  5 10 13     11 10  9  8     13 10  5  2
 7  6  5  4      1  6  9 14      4  5  6  7     14  9  6  1
 0  1  2  3      0  7  8 15      3  2  1  0     15  8  7  0
""")

SNAKE = grids("""
 0  1  2  3     15 14 13 12      0  7  8 15     15  8  7  0
 7  6  5  4      8  9 10 11      1  6  9 14     14  9  6  1
 8  9 10 11      7  6  5  4      2  5 10 13     13 10  5  2
15 14 13 12      0  1  2  3      3  4 11 12     12 11  4  3
""")

# MambaAD view 0: scan, zorder, zigzag (JPEG); the Hilbert grid is gilbert's visiting order (spec section 6).
MAMBAAD_SCAN_ZORDER_JPEG = grids("""
 0  1  2  3      0  1  4  5      0  1  5  6
 7  6  5  4      2  3  6  7      2  4  7 12
 8  9 10 11      8  9 12 13      3  8 11 13
15 14 13 12     10 11 14 15      9 10 14 15
""")
GILBERT = grids("""
 0  3  4  5
 1  2  7  6
14 13  8  9
15 12 11 10
""")

WINDOW2 = grids("""
 0  1  4  5     15 14 11 10
 2  3  6  7     13 12  9  8
 8  9 12 13      7  6  3  2
10 11 14 15      5  4  1  0
""")


def test_cross_routes():
    np.testing.assert_array_equal(step_grids("cross"), CROSS)


def test_bidirectional_is_route0_and_route2():
    np.testing.assert_array_equal(step_grids("bidirectional"), CROSS[[0, 2]])


def test_zigzag8_paths():
    np.testing.assert_array_equal(step_grids("zigzag8"), np.concatenate([ZIGZAG_P0_P3, ZIGZAG_P4_P7]))


def test_zigzag8_reverse_pairs_on_even_square():
    index = scan_plan("zigzag8", (4, 4)).index.numpy()
    for a, b in [(0, 4), (1, 3), (2, 6), (5, 7)]:
        np.testing.assert_array_equal(index[a], index[b][::-1])


def test_snake_o1_to_o4():
    np.testing.assert_array_equal(step_grids("snake"), SNAKE)


def test_mambaad_curves():
    np.testing.assert_array_equal(step_grids("snake")[0], MAMBAAD_SCAN_ZORDER_JPEG[0])
    np.testing.assert_array_equal(step_grids("zorder")[0], MAMBAAD_SCAN_ZORDER_JPEG[1])
    np.testing.assert_array_equal(step_grids("jpeg_zigzag")[0], MAMBAAD_SCAN_ZORDER_JPEG[2])


def test_hilbert_is_gilbert_visiting_order():
    np.testing.assert_array_equal(step_grids("hilbert"), GILBERT)


def test_window2_and_flip():
    np.testing.assert_array_equal(step_grids("window", window=2, reverse=True), WINDOW2)


def test_window3_drops_localmamba_pad_tokens():
    # LocalMamba pads 4x4 to 6x6 for K=3; ours keeps the same windows without the pads.
    index = scan_plan("window", (4, 4), window=3).index.numpy()[0]
    expected = [0, 1, 2, 4, 5, 6, 8, 9, 10] + [3, 7, 11] + [12, 13, 14] + [15]
    np.testing.assert_array_equal(index, expected)


def test_atrous_polyphase_matches_asp_vmunet_and_es2d_blocks():
    row, col = scan_plan("atrous", (4, 4)).index.numpy()
    # ASP-VMUNet v2 sub-grids x[i::2, j::2] row-major, in row-major phase order.
    np.testing.assert_array_equal(row, [0, 2, 8, 10] + [1, 3, 9, 11] + [4, 6, 12, 14] + [5, 7, 13, 15])
    # EfficientVMamba ES2D routes r1 = [4, 12, 6, 14] and r3 = [5, 13, 7, 15] are column-major phases.
    np.testing.assert_array_equal(col, [0, 8, 2, 10] + [4, 12, 6, 14] + [1, 9, 3, 11] + [5, 13, 7, 15])


CROSS3D_12_ON_2_2_3 = {
    "dhw": list(range(12)),
    "dwh": [0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11],
    "hdw": [0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11],
    "hwd": [0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11],
    "wdh": [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11],
    "whd": [0, 6, 3, 9, 1, 7, 4, 10, 2, 8, 5, 11],
}


def test_cross3d_12_on_2_2_3():
    plan = scan_plan("cross3d_12", (2, 2, 3))
    gathers = dict(zip(plan.directions, plan.index.numpy().tolist()))
    for order, expected in CROSS3D_12_ON_2_2_3.items():
        assert gathers[order] == expected
        assert gathers[f"{order}_rev"] == expected[::-1]
    assert plan.directions[:6] == tuple(CROSS3D_12_ON_2_2_3)


def test_cross3d_orders_on_2_2_3():
    plan = scan_plan("cross3d", (2, 2, 3))
    assert plan.directions == ("dhw", "hdw", "whd", "dhw_rev", "hdw_rev", "whd_rev")
    for label, row in zip(plan.directions[:3], plan.index.numpy().tolist()):
        assert row == CROSS3D_12_ON_2_2_3[label]


def test_segmamba_inter_slice_scan_on_2_2_3():
    # SegMamba's chunk interleave with ns = 2 = D.
    index = scan_plan("tri_orientation", (2, 2, 3)).index.numpy()
    np.testing.assert_array_equal(index[0], np.arange(12))
    np.testing.assert_array_equal(index[1], np.arange(12)[::-1])
    np.testing.assert_array_equal(index[2], [0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11])


@pytest.mark.parametrize(
    "layer, expected",
    [
        (2, [0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11]),  # Mamba-ND 't l w h'
        (4, [0, 6, 3, 9, 1, 7, 4, 10, 2, 8, 5, 11]),  # Mamba-ND 'w h t l'
    ],
)
def test_mamba_nd_orders_on_2_2_3(layer, expected):
    np.testing.assert_array_equal(scan_plan("mamba_nd", (2, 2, 3), layer=layer).index.numpy()[0], expected)
