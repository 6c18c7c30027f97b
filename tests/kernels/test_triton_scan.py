"""The Triton backend against the sequential reference: outputs, last state and every gradient.

Without CUDA the kernels run in Triton's CPU interpreter: tests/conftest.py sets TRITON_INTERPRET=1 before
triton is imported (the interpreter is slow, so shapes stay tiny). On a GPU the same tests run compiled.
The "small-tiles", "chunk-parallel" and "channel-tiles" layouts shrink chunks to 8 tokens so that tiny sequences
span several chunks, with channel blocks that straddle no group but share groups (atomic dB/dC adds; N = 1
backward programs walk two blocks each); "chunk-parallel" runs one program per chunk (summary, carry and
from-carry launches) instead of one per channel block; "channel-tiles" runs every direction on the (channel,
token) tile kernels.
"""

from __future__ import annotations

import sys

import pytest
import torch

pytest.importorskip("triton")
if sys.platform != "linux" and not torch.cuda.is_available():
    pytest.skip("the Triton interpreter is only exercised on Linux", allow_module_level=True)

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

import visionssm.kernels.triton_scan.scan as triton_scan  # noqa: E402
from scan_problems import ScanProblem, make_problem  # noqa: E402
from visionssm.errors import BackendUnavailableError  # noqa: E402
from visionssm.kernels import multi_scan, selective_scan, selective_scan_chunked, selective_scan_ref  # noqa: E402
from visionssm.kernels.backends import resolve_backend  # noqa: E402
from visionssm.kernels.triton_scan import selective_scan_triton  # noqa: E402
from visionssm.kernels.triton_scan.kernels import _softplus  # noqa: E402
from visionssm.scans import available_scans, scan_plan  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
# Relative to max |reference|; 16-bit outputs and input gradients are rounded to 16 bits by both sides.
RTOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}


@pytest.fixture(params=["default", "small-tiles", "chunk-parallel", "channel-tiles"])
def layout(request, monkeypatch):
    """Default tiling, or chunks of 8 tokens with up to 4 channels per program, walked by one program per
    channel block (small-tiles, channel-tiles) or one program per chunk (chunk-parallel); channel-tiles runs every
    direction on the (channel, token) tile kernels, which by default serve only column orders; small-tiles runs
    column orders of up to 4 (padded) rows on state tiles of whole columns (STATE_TILE_COLUMNS)."""
    if request.param == "channel-tiles":
        monkeypatch.setattr(triton_scan, "STATE_TILES_FROM_N", 1 << 20)
    if request.param != "default":
        monkeypatch.setattr(triton_scan, "TILINGS", {64: triton_scan.Tiling(8, 4, 4, 2, 4)})
        # State tile kernels: chunks of two 4-token tiles, the forward's tile loop in 2 pipelining stages, its
        # programs walking 2 channel rows (1 where Bt * D is odd), B and C loaded in 2-token vectors.
        tiling = triton_scan.StateTiling(4, 1, 4, 1, forward_stages=2, backward_vector=2, forward_rows=2)
        monkeypatch.setattr(triton_scan, "STATE_TILINGS", {64: tiling})
        monkeypatch.setattr(triton_scan, "CHUNK_PARALLEL", request.param == "chunk-parallel")
        # N = 1 backward programs walk 2 channel blocks: with 3+ blocks per group they still share dB/dC atomically.
        monkeypatch.setattr(triton_scan, "BACKWARD_ROW_STEPS", 2)
        # Column directions of columns up to 4 (padded) on state tiles of whole columns.
        monkeypatch.setattr(triton_scan, "STATE_TILE_COLUMNS", request.param == "small-tiles")
    return request.param


def on_device(problem: ScanProblem) -> ScanProblem:
    """The same problem with leaf tensors on DEVICE."""
    moved = [None if t is None else t.detach().to(DEVICE).requires_grad_() for t in problem.args()[:-1]]
    return ScanProblem(*moved, problem.delta_softplus)


def outputs_and_grads(scan, problem: ScanProblem, seed: int = 1):
    """(out, last_state, gradients of every input) for a fixed random cotangent."""
    out, last_state = scan(*problem.args(), return_last_state=True)
    gen = torch.Generator().manual_seed(seed)
    cotangent = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.dtype).to(out.device)
    return out, last_state, torch.autograd.grad(out, problem.tensors(), cotangent)


def assert_near(actual: torch.Tensor, expected: torch.Tensor, rtol: float, name: str) -> None:
    """|actual - expected| <= rtol * max(max |expected|, 1e-3): relative, with a floor for gradients that are 0."""
    scale = max(expected.abs().max().item(), 1e-3)
    err = (actual.double() - expected.double()).abs().max().item()
    assert err <= rtol * scale, f"{name}: max abs error {err:.3e} > {rtol:.1e} x {scale:.3e}"


def assert_matches_reference(problem: ScanProblem, rtol: float, reference=selective_scan_ref) -> None:
    out, last, grads = outputs_and_grads(selective_scan_triton, problem)
    ref_out, ref_last, ref_grads = outputs_and_grads(reference, problem)
    assert out.dtype == problem.u.dtype and out.shape == ref_out.shape
    assert last.dtype == ref_last.dtype and last.shape == ref_last.shape and not last.requires_grad
    assert_near(out, ref_out, rtol, "out")
    assert_near(last, ref_last, rtol, "last_state")
    names = [name for name, t in zip(GRAD_NAMES, problem.args()) if t is not None]
    for name, grad, ref_grad, inp in zip(names, grads, ref_grads, problem.tensors()):
        assert grad.dtype == inp.dtype and grad.shape == inp.shape, name
        assert_near(grad, ref_grad, rtol, f"grad {name}")


ALL = dict(with_D=True, with_z=True, with_bias=True, softplus=True)
NONE = dict(with_D=False, with_z=False, with_bias=False, softplus=False)
CASES = [
    # dtype, batch, dim, N, L, groups, options
    (torch.float64, 2, 6, 2, 37, None, ALL),
    (torch.float64, 1, 4, 3, 21, 2, dict(with_z=False)),
    (torch.float32, 2, 4, 1, 1, None, ALL),
    (torch.float32, 1, 6, 16, 29, 3, NONE),
    (torch.float32, 2, 4, 2, 45, 1, dict(with_D=False, with_bias=False)),
    (torch.float32, 1, 2, 40, 23, None, ALL),  # N_PAD 64: four warps per state tile program on a GPU
    (torch.float16, 2, 4, 2, 37, None, ALL),
    (torch.float16, 1, 8, 1, 33, 4, dict(with_z=False, softplus=False)),
    (torch.bfloat16, 1, 4, 16, 19, 2, dict(with_z=False)),
    (torch.bfloat16, 2, 6, 1, 40, None, dict(with_bias=False)),
    (torch.bfloat16, 2, 6, 16, 3, 3, ALL),  # rows of one tile: several per forward program
]


@pytest.mark.parametrize(("dtype", "batch", "dim", "state", "length", "groups", "options"), CASES, ids=str)
def test_triton_matches_reference(layout, dtype, batch, dim, state, length, groups, options):
    problem = on_device(make_problem(batch, dim, state, length, groups=groups, dtype=dtype, **options))
    assert_matches_reference(problem, RTOL[dtype])


@pytest.mark.parametrize(("state", "length"), [(1, 3), (16, 3), (1, 37)], ids=["one-tile", "one-tile-N16", "long"])
def test_triton_without_last_state(layout, state, length):
    """Without return_last_state the forward skips the states that nothing reads (those of rows of one chunk):
    output and gradients still match the reference."""
    problem = on_device(make_problem(2, 4, state, length, groups=2, dtype=torch.float32, **ALL))
    cotangent = torch.randn(2, 4, length, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    for scan in (selective_scan_triton, selective_scan_ref):
        out = scan(*problem.args())
        grads = torch.autograd.grad(out, problem.tensors(), cotangent)
        if scan is selective_scan_triton:
            got_out, got_grads = out, grads
    assert_near(got_out, out, RTOL[torch.float32], "out")
    for name, grad, ref_grad in zip(GRAD_NAMES, got_grads, grads):
        assert_near(grad, ref_grad, RTOL[torch.float32], f"grad {name}")


def test_triton_softplus_threshold():
    """Raw deltas above 20 pass through softplus unchanged, as in torch and mamba_ssm."""
    u = torch.ones(1, 1, 4, dtype=torch.float64, device=DEVICE)
    delta = torch.tensor([[[25.0, 0.0, -30.0, 19.5]]], dtype=torch.float64, device=DEVICE)
    A = -torch.ones(1, 1, dtype=torch.float64, device=DEVICE)
    B = C = torch.ones(1, 1, 4, dtype=torch.float64, device=DEVICE)
    got = selective_scan_triton(u, delta, A, B, C, delta_softplus=True)
    torch.testing.assert_close(got, selective_scan_ref(u, delta, A, B, C, delta_softplus=True), rtol=1e-12, atol=0)


@triton.jit
def softplus_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr, ROUGH: tl.constexpr):
    """y = the scan kernels' softplus of x, (n,)."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + offsets, _softplus(tl.load(x_ptr + offsets, mask=offsets < n), ROUGH), mask=offsets < n)


# The interpreter evaluates both branches of the float64 form's tl.where, 0 / 0 included where exp(x) << 1.
@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
@pytest.mark.parametrize(
    "dtype, rough", [(torch.float32, False), (torch.float32, True), (torch.float64, False)], ids=["f32", "rough", "f64"]
)
def test_triton_softplus_accuracy(dtype, rough):
    """The kernels' softplus (a short atanh series in float32; ROUGH: the hardware log2, for 16-bit deltas) against
    torch's in float64, over every regime: exp(x) below float32 resolution, the bend near 0, large x and the
    threshold at 20."""
    x = torch.cat([torch.linspace(-40.0, 25.0, 20001, dtype=dtype), torch.tensor([20.0, 20.5], dtype=dtype)])
    x = x.to(DEVICE)
    y = torch.empty_like(x)
    softplus_kernel[(triton.cdiv(x.numel(), 1024),)](x, y, x.numel(), BLOCK=1024, ROUGH=rough)
    want = torch.nn.functional.softplus(x.double())
    # A GPU's float32 exp is 2^(x log2 e) in hardware: the rounding of that product alone puts up to |x| 2^-23 of
    # relative error into exp(x) (softplus(x) ~ exp(x) for x << 0); the interpreter's numpy exp has none of it.
    # ROUGH: log1p(t) ~ t below t = 2^-10 (relative error t / 2), the rounding of 1 + t and the hardware log2's
    # absolute 2^-22 above it.
    exp_error = x.double().abs() * 2.0**-22
    bound = {
        (torch.float32, False): 1e-6 + exp_error,
        (torch.float32, True): 2.0**-11 + exp_error,
        (torch.float64, False): torch.full_like(want, 1e-14),
    }[dtype, rough]
    assert ((y.double() - want).abs() / want <= bound).all()
    assert y[-2].item() == pytest.approx(float(want[-2]), rel=1e-6)
    assert torch.equal(y[x > 20.0], x[x > 20.0])
    # The forward kernels load masked deltas as -inf and rely on its softplus being exactly 0.
    ends = torch.tensor([-float("inf"), float("inf")], dtype=dtype, device=DEVICE)
    softplus_kernel[(1,)](ends, y, 2, BLOCK=2, ROUGH=rough)
    assert y[:2].tolist() == [0.0, float("inf")]


def test_triton_backend_selection(monkeypatch):
    u = torch.zeros(1, 1, 1, device=DEVICE)
    assert resolve_backend("triton", u) == "triton"
    assert resolve_backend("auto", u) == ("triton" if u.is_cuda else "torch")
    problem = on_device(make_problem(1, 2, 2, 9, dtype=torch.float64))
    torch.testing.assert_close(selective_scan(*problem.args(), backend="triton"), selective_scan_ref(*problem.args()))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(BackendUnavailableError, match="CUDA tensors"):
        resolve_backend("triton", torch.zeros(1, 1, 1))


def multi_scan_inputs(plan, dtype: torch.dtype, batch: int = 2, dim: int = 3, state: int = 2, seed: int = 0) -> dict:
    """Leaf tensors on DEVICE for ``multi_scan`` over ``plan``, in raster layout."""
    gen = torch.Generator().manual_seed(seed)
    num_dirs, spatial = plan.num_directions, plan.spatial_shape

    def leaf(*shape, scale=1.0, shift=0.0, dt=dtype):
        x = torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + shift
        return x.to(dt).to(DEVICE).requires_grad_()

    param_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    A = -torch.rand(num_dirs, dim, state, generator=gen, dtype=torch.float64) - 0.2
    return dict(
        u=leaf(batch, dim, *spatial),
        delta=leaf(batch, num_dirs, dim, *spatial, scale=0.5, shift=-1.0),
        A=A.to(param_dtype).to(DEVICE).requires_grad_(),
        B=leaf(batch, num_dirs, state, *spatial),
        C=leaf(batch, num_dirs, state, *spatial),
        D=leaf(num_dirs, dim, dt=param_dtype),
        delta_bias=leaf(num_dirs, dim, scale=0.2, dt=param_dtype),
    )


@pytest.mark.parametrize(
    ("name", "shape", "merge", "state"),
    [
        ("cross", (4, 5), "sum", 2),
        ("cross", (3, 7), "mean", 1),
        ("cross", (9, 2), "sum", 1),  # columns of 9 (16 padded) exceed an 8-token chunk: gathered there
        ("cross", (3, 12), "sum", 1),  # 12 columns: rows read in aligned runs of 4 (2 in 8-token chunks), last partial
        ("zigzag8", (3, 4), "mean", 2),
        ("hilbert", (4, 4), "sum", 1),
        ("cross3d", (2, 3, 4), "sum", 2),
        ("tri_orientation", (2, 2, 3), "mean", 2),
    ],
)
def test_fused_multi_scan_matches_composition(layout, name, shape, merge, state):
    """The fused multi-direction kernels against gather -> reference scan -> merge, float64."""
    plan = scan_plan(name, shape, merge=merge)
    inputs = multi_scan_inputs(plan, torch.float64, dim=5, state=state)
    cotangent = torch.randn(inputs["u"].shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    cotangent = cotangent.to(DEVICE)
    got = multi_scan(**inputs, plan=plan, backend="triton")
    want = multi_scan(**inputs, plan=plan, backend="reference")
    assert got.shape == want.shape and got.dtype == want.dtype
    assert_near(got, want, 1e-10, "out")
    got_grads = torch.autograd.grad(got, list(inputs.values()), cotangent)
    want_grads = torch.autograd.grad(want, list(inputs.values()), cotangent)
    for key, g, w in zip(inputs, got_grads, want_grads):
        assert_near(g, w, 1e-10, f"grad {key}")


@pytest.mark.parametrize(
    ("name", "shape"),
    [(name, (4, 6)) for name in available_scans(2)] + [(name, (2, 3, 4)) for name in available_scans(3)],
    ids=str,
)
def test_fused_multi_scan_every_scan_order(name, shape):
    """Every registered 2D and 3D order (default options) through the fused kernels, float64, N = 1."""
    plan = scan_plan(name, shape)
    inputs = multi_scan_inputs(plan, torch.float64, state=1)
    got = multi_scan(**inputs, plan=plan, backend="triton")
    want = multi_scan(**inputs, plan=plan, backend="reference")
    assert_near(got, want, 1e-10, "out")
    cotangent = torch.ones_like(got)
    leaves = list(inputs.values())
    for key, g, w in zip(
        inputs, torch.autograd.grad(got, leaves, cotangent), torch.autograd.grad(want, leaves, cotangent)
    ):
        assert_near(g, w, 1e-10, f"grad {key}")


@pytest.mark.parametrize("work", ["short-rows", "long-rows", "chunk-parallel"])
def test_fused_multi_scan_launches(monkeypatch, work):
    """Where programs own whole channel rows that fit one forward tile, all directions share one launch, forward
    and backward: those of a gathered order and those of the cross scan (its columns gathered on the state tile
    kernels). Longer rows and chunk-parallel work launch each direction (per phase), columns on the (channel,
    token) tile kernels."""
    chunk, tile = (16, 16) if work == "short-rows" else (16, 4) if work == "long-rows" else (8, 4)
    monkeypatch.setattr(triton_scan, "TILINGS", {64: triton_scan.Tiling(chunk, 4, 4, 2, 4)})
    monkeypatch.setattr(triton_scan, "STATE_TILINGS", {64: triton_scan.StateTiling(tile, 1, tile, 1)})
    monkeypatch.setattr(triton_scan, "CHUNK_PARALLEL", work == "chunk-parallel")
    launches = []
    for name in (
        "_directions_forward_kernel",
        "_directions_backward_kernel",
        "_state_forward_kernel",
        "_state_backward_kernel",
        "_scan_forward_kernel",
        "_scan_backward_kernel",
    ):
        monkeypatch.setattr(triton_scan, name, _CountedKernel(getattr(triton_scan, name), name, launches))
    for order in ("cross", "zigzag8"):
        plan = scan_plan(order, (3, 4))
        inputs = multi_scan_inputs(plan, torch.float64, state=1)
        launches.clear()
        got = multi_scan(**inputs, plan=plan, backend="triton")
        forward = list(launches)
        torch.autograd.grad(got, list(inputs.values()), torch.ones_like(got))
        backward = launches[len(forward) :]
        if work != "chunk-parallel":
            expected = 1 if work == "short-rows" else plan.num_directions
            assert forward == ["_directions_forward_kernel"] * expected, order
            assert backward == ["_directions_backward_kernel"] * expected, order
        elif order == "cross":
            # Summary and from-carry launches of each of the 4 directions (2 raster, 2 column).
            assert sorted(forward) == sorted(["_state_forward_kernel"] * 4 + ["_scan_forward_kernel"] * 4)
            assert sorted(backward) == sorted(["_state_backward_kernel"] * 4 + ["_scan_backward_kernel"] * 4)
        assert_near(got, multi_scan(**inputs, plan=plan, backend="reference"), 1e-10, order)


class _CountedKernel:
    """A Triton kernel whose launches (``kernel[grid](...)``) are recorded by name."""

    def __init__(self, kernel, name: str, launches: list[str]) -> None:
        self.kernel, self.name, self.launches = kernel, name, launches

    def __getitem__(self, grid):
        self.launches.append(self.name)
        return self.kernel[grid]


def test_fused_multi_scan_reads_structured_orders_without_their_index():
    """Raster, column and reversed orders are read from their shape; other orders go through the index."""
    from visionssm.kernels.triton_scan.multi import describe_directions

    cross = describe_directions(scan_plan("cross", (3, 7)).index)
    assert [(d.kind, d.flip, d.cols) for d in cross] == [
        ("linear", False, 1),
        ("transposed", False, 7),
        ("linear", True, 1),
        ("transposed", True, 7),
    ]
    tri = describe_directions(scan_plan("tri_orientation", (2, 3, 4)).index)
    assert [(d.kind, d.flip, d.cols) for d in tri] == [
        ("linear", False, 1),
        ("linear", True, 1),
        ("transposed", False, 12),
    ]
    assert {d.kind for d in describe_directions(scan_plan("zigzag8", (3, 4)).index)} == {"gather"}


def test_state_tile_kernels_serve_every_order_but_long_columns():
    """Raster, reversed and gathered directions run the (state, token) tile kernels at every N; column orders too,
    through their index, where rows fit one forward tile, else the (channel, token) tile kernels."""
    for state, kind, length, expected in [
        (16, "linear", 64, True),
        (2, "gather", 64, True),
        (1, "gather", 64, True),
        (1, "linear", 64, True),
        (16, "transposed", 64, False),
        (1, "transposed", 512, False),
        (16, "transposed", 32, True),
        (1, "transposed", 64, True),
    ]:
        geom = triton_scan._Geometry(2, 8, length, 1, state, 1, 1)
        index = torch.arange(length)
        launch = geom.launch(triton_scan.Direction(kind, cols=8, index=index))
        assert launch.state_tiles is expected, (state, kind, length)
        assert launch.has_index is (kind == "gather" or kind == "transposed" and expected), (state, kind, length)
    flipped = triton_scan._Geometry(2, 8, 64, 1, 4, 1, 1).launch(triton_scan.Direction("linear", flip=True))
    assert flipped.state_tiles and flipped.flip


def test_auto_multi_scan_fuses_only_where_measured_faster(monkeypatch):
    """backend="auto" on the Triton backend: fused kernels for N = 1 over orders read from their shape, composition
    otherwise; both match the reference."""
    import importlib

    import visionssm.kernels.triton_scan as triton_package

    assert triton_package.fused_by_default(scan_plan("cross", (3, 7)).index, 1)
    assert triton_package.fused_by_default(scan_plan("tri_orientation", (2, 3, 4)).index, 1)
    assert not triton_package.fused_by_default(scan_plan("cross", (3, 7)).index, 16)
    assert not triton_package.fused_by_default(scan_plan("zigzag8", (3, 4)).index, 1)
    fused_calls = []
    fused = triton_package.multi_scan_triton
    monkeypatch.setattr(
        triton_package, "multi_scan_triton", lambda *args, **kw: fused_calls.append(1) or fused(*args, **kw)
    )
    # As on a CUDA tensor, where "auto" resolves to the Triton backend (here its interpreter).
    multi_scan_module = importlib.import_module("visionssm.kernels.multi_scan")
    monkeypatch.setattr(multi_scan_module, "resolve_backend", lambda backend, u: "triton")
    for name, state, expect_fused in [("cross", 1, True), ("cross", 2, False), ("zigzag8", 1, False)]:
        plan = scan_plan(name, (3, 4))
        inputs = multi_scan_inputs(plan, torch.float64, state=state)
        fused_calls.clear()
        got = multi_scan(**inputs, plan=plan)
        assert bool(fused_calls) is expect_fused, (name, state)
        assert_near(got, multi_scan(**inputs, plan=plan, backend="reference"), 1e-10, f"{name} N={state}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_fused_multi_scan_low_precision_without_optional_parameters(dtype):
    plan = scan_plan("cross", (3, 5))
    inputs = multi_scan_inputs(plan, dtype, state=4)
    inputs.update(D=None, delta_bias=None)
    got = multi_scan(**inputs, plan=plan, delta_softplus=False, backend="triton")
    want = multi_scan(**inputs, plan=plan, delta_softplus=False, backend="reference")
    assert got.dtype == dtype
    assert_near(got, want, RTOL[dtype], "out")
    leaves = [v for v in inputs.values() if v is not None]
    cotangent = torch.ones_like(got)
    for key, g, w in zip(
        inputs, torch.autograd.grad(got, leaves, cotangent), torch.autograd.grad(want, leaves, cotangent)
    ):
        assert g.dtype == w.dtype
        assert_near(g, w, RTOL[dtype], f"grad {key}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="full-size chunks need compiled kernels")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_triton_several_default_chunks_on_gpu(dtype):
    """L = 5000 spans three 2048-token chunks with the default tiling."""
    problem = on_device(make_problem(2, 8, 16, 5000, groups=2, dtype=dtype))
    assert_matches_reference(problem, RTOL[dtype])


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU with about 16 GB free")
def test_triton_long_sequences_and_64bit_offsets_on_gpu():
    """L = 2**22 tokens, and a (1, 512, 2**22 + 3) bf16 problem whose offsets pass 2**31."""
    with torch.no_grad():
        problem = make_problem(1, 2, 4, 1 << 22, dtype=torch.float32, with_z=False)
        problem = ScanProblem(*[None if t is None else t.detach().cuda() for t in problem.args()[:-1]], True)
        want = selective_scan_chunked(*problem.args(), return_last_state=True)
        got = selective_scan_triton(*problem.args(), return_last_state=True)
        assert_near(got[0], want[0], 1e-4, "out")
        assert_near(got[1], want[1], 1e-4, "last_state")

        batch, dim, length = 1, 512, (1 << 22) + 3
        gen = torch.Generator(device="cuda").manual_seed(0)
        u = torch.randn(batch, dim, length, device="cuda", dtype=torch.bfloat16, generator=gen)
        delta = torch.randn(batch, dim, length, device="cuda", dtype=torch.bfloat16, generator=gen) * 0.5 - 1
        A = -torch.rand(dim, 1, device="cuda", generator=gen) - 0.1
        B, C = (torch.randn(batch, 1, length, device="cuda", dtype=torch.bfloat16, generator=gen) for _ in "BC")
        out, last = selective_scan_triton(u, delta, A, B, C, delta_softplus=True, return_last_state=True)
        tail = slice(dim - 2, dim)  # rows whose offsets pass 2**31
        want_out, want_last = selective_scan_chunked(
            u[:, tail], delta[:, tail], A[tail], B, C, delta_softplus=True, return_last_state=True
        )
        assert_near(out[:, tail], want_out, 3e-2, "out beyond 2**31")
        assert_near(last[:, tail], want_last, 1e-3, "last_state beyond 2**31")


@pytest.mark.parametrize(("shape", "state"), [((36, 40), 1), ((24, 14), 2)], ids=["3-chunks-N1", "N2"])
def test_fused_cross_scan_long_rows_default_tiling(monkeypatch, shape, state):
    """The default tiling where rows exceed a forward tile, column directions on state tiles of whole columns
    (STATE_TILE_COLUMNS; several tiles per chunk, a last chunk of fewer columns), against gather -> reference scan
    -> merge."""
    monkeypatch.setattr(triton_scan, "CHUNK_PARALLEL", False)
    monkeypatch.setattr(triton_scan, "STATE_TILE_COLUMNS", True)
    plan = scan_plan("cross", shape)
    inputs = multi_scan_inputs(plan, torch.float64, batch=1, dim=2, state=state)
    geom = triton_scan._Geometry(1, 2, shape[0] * shape[1], 4, state, 4, 4)
    column = triton_scan.Direction("transposed", cols=shape[1])
    assert geom.launch(column, geom.state_tiling.backward_tile).state_tiles
    cotangent = torch.randn(inputs["u"].shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = multi_scan(**inputs, plan=plan, backend="triton")
    want = multi_scan(**inputs, plan=plan, backend="reference")
    assert_near(got, want, 1e-10, "out")
    leaves = list(inputs.values())
    got_grads = torch.autograd.grad(got, leaves, cotangent.to(DEVICE))
    want_grads = torch.autograd.grad(want, leaves, cotangent.to(DEVICE))
    for key, g, w in zip(inputs, got_grads, want_grads):
        assert_near(g, w, 1e-10, f"grad {key}")
