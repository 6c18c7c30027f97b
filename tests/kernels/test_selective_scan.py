"""selective_scan: the reference against a scalar loop, and every backend against the reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import visionssm.kernels.torch_scan as torch_scan
from scan_problems import assert_close_scaled, make_problem, outputs_and_grads
from visionssm.errors import BackendUnavailableError, InputError
from visionssm.kernels import selective_scan, selective_scan_chunked, selective_scan_ref
from visionssm.kernels.backends import resolve_backend

GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def scalar_loop_scan(p) -> tuple[list, list]:
    """The S6 definition written with Python scalars only (float64), independent of any tensor code."""
    u, delta, A = p.u.double().tolist(), p.delta.double().tolist(), p.A.double().tolist()
    B, C = p.B.double(), p.C.double()
    if B.dim() == 3:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    B, C = B.tolist(), C.tolist()
    batch, dim, length, state = len(u), len(u[0]), len(u[0][0]), len(A[0])
    per_group = dim // len(B[0])
    out = [[[0.0] * length for _ in range(dim)] for _ in range(batch)]
    last = [[[0.0] * state for _ in range(dim)] for _ in range(batch)]
    for b in range(batch):
        for d in range(dim):
            g = d // per_group
            h = [0.0] * state
            for t in range(length):
                dt = delta[b][d][t] + (p.delta_bias[d].item() if p.delta_bias is not None else 0.0)
                if p.delta_softplus:
                    dt = dt if dt > 20 else math.log1p(math.exp(dt))
                y = 0.0
                for n in range(state):
                    h[n] = math.exp(dt * A[d][n]) * h[n] + dt * B[b][g][n][t] * u[b][d][t]
                    y += C[b][g][n][t] * h[n]
                if p.D is not None:
                    y += p.D[d].item() * u[b][d][t]
                if p.z is not None:
                    zt = p.z[b, d, t].item()
                    y *= zt / (1 + math.exp(-zt))
                out[b][d][t] = y
            last[b][d] = h
    return out, last


@pytest.mark.parametrize(
    ("groups", "options"),
    [
        (None, dict(with_D=True, with_z=True, with_bias=True, softplus=True)),
        (2, dict(with_D=False, with_z=False, with_bias=False, softplus=False)),
        (4, dict(with_D=True, with_z=False, with_bias=True, softplus=True)),
    ],
)
def test_reference_matches_scalar_definition(groups, options):
    p = make_problem(2, 4, 3, 9, groups=groups, dtype=torch.float64, **options)
    out, last = selective_scan_ref(*p.args(), return_last_state=True)
    expected_out, expected_last = scalar_loop_scan(p)
    torch.testing.assert_close(out, torch.tensor(expected_out, dtype=torch.float64))
    torch.testing.assert_close(last, torch.tensor(expected_last, dtype=torch.float64))


def test_reference_softplus_and_output_dtype():
    p = make_problem(1, 2, 2, 5, dtype=torch.bfloat16, with_z=False)
    out, last = selective_scan_ref(*p.args(), return_last_state=True)
    assert out.dtype == torch.bfloat16 and last.dtype == torch.float32
    assert last.shape == (1, 2, 2)


@pytest.fixture(params=[None, 700], ids=["one-block", "many-blocks"])
def block_elements(request, monkeypatch):
    """Run the chunked backend with its default block size, and with blocks of a few sub-chunks."""
    if request.param is not None:
        monkeypatch.setattr(torch_scan, "BLOCK_STATE_ELEMENTS", request.param)
    return request.param


CASES = [
    # batch, dim, N, L, groups, options
    (2, 4, 1, 1, None, {}),
    (2, 4, 1, 33, None, dict(with_z=False)),
    (1, 6, 4, 47, 3, dict(with_bias=False)),
    (2, 8, 16, 65, 2, dict(softplus=False, with_D=False)),
    (3, 4, 16, 129, 1, {}),
    (1, 2, 4, 301, None, dict(with_z=False, with_bias=False, softplus=False)),
]


@pytest.mark.parametrize(("batch", "dim", "state", "length", "groups", "options"), CASES)
def test_torch_backend_matches_reference_float64(block_elements, batch, dim, state, length, groups, options):
    p = make_problem(batch, dim, state, length, groups=groups, dtype=torch.float64, **options)
    ref = outputs_and_grads(selective_scan_ref, p)
    fast = outputs_and_grads(selective_scan_chunked, p)
    torch.testing.assert_close(fast[0], ref[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fast[1], ref[1], rtol=1e-10, atol=1e-10)
    names = [n for n, t in zip(GRAD_NAMES, p.args()) if t is not None]
    for name, g_fast, g_ref in zip(names, fast[2], ref[2]):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-9, atol=1e-9, msg=lambda m, name=name: f"grad {name}: {m}")


@pytest.mark.parametrize(
    ("dtype", "rtol"), [(torch.float32, 2e-5), (torch.bfloat16, 2e-2), (torch.float16, 4e-3)], ids=str
)
@pytest.mark.parametrize(("state", "groups", "length"), [(1, None, 97), (4, 2, 51), (16, 1, 130)])
def test_torch_backend_matches_reference_low_precision(block_elements, dtype, rtol, state, groups, length):
    """Same 16/32-bit inputs through both backends: float32 state everywhere, so results agree closely."""
    p = make_problem(2, 4, state, length, groups=groups, dtype=dtype)
    ref = outputs_and_grads(selective_scan_ref, p)
    fast = outputs_and_grads(selective_scan_chunked, p)
    assert fast[0].dtype == dtype and fast[1].dtype == torch.float32
    assert_close_scaled(fast[0], ref[0], rtol, "out")
    assert_close_scaled(fast[1], ref[1], rtol, "last_state")
    names = [n for n, t in zip(GRAD_NAMES, p.args()) if t is not None]
    for name, g_fast, g_ref, inp in zip(names, fast[2], ref[2], p.tensors()):
        assert g_fast.dtype == inp.dtype
        assert_close_scaled(g_fast, g_ref, rtol, f"grad {name}")


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 2),
    groups_and_dim=st.sampled_from([(None, 2), (1, 3), (2, 4), (3, 6)]),
    state=st.sampled_from([1, 2, 4, 16]),
    length=st.integers(1, 90),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    block_elements=st.sampled_from([None, 200, 3000]),
    seed=st.integers(0, 2**16),
)
def test_torch_backend_property(batch, groups_and_dim, state, length, flags, block_elements, seed):
    groups, dim = groups_and_dim
    with_D, with_z, with_bias, softplus = flags
    p = make_problem(batch, dim, state, length, groups, torch.float64, with_D, with_z, with_bias, softplus, seed)
    original = torch_scan.BLOCK_STATE_ELEMENTS
    torch_scan.BLOCK_STATE_ELEMENTS = block_elements or original
    try:
        fast = outputs_and_grads(selective_scan_chunked, p)
    finally:
        torch_scan.BLOCK_STATE_ELEMENTS = original
    ref = outputs_and_grads(selective_scan_ref, p)
    for got, want in zip((fast[0], fast[1], *fast[2]), (ref[0], ref[1], *ref[2])):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_torch_backend_gradcheck():
    p = make_problem(1, 2, 2, 6, groups=1, dtype=torch.float64)

    def fn(*tensors):
        u, delta, A, B, C, D, z, bias = tensors
        return selective_scan_chunked(u, delta, A, B, C, D, z, bias, True)

    assert torch.autograd.gradcheck(fn, tuple(p.tensors()))


def closed_form_constant(decay: float, drive: float, length: int) -> torch.Tensor:
    """h_t = decay h_{t-1} + drive from h_{-1} = 0, in float64: drive (1 - decay^(t+1)) / (1 - decay)."""
    t = torch.arange(length, dtype=torch.float64)
    return drive * -torch.expm1((t + 1) * math.log(decay)) / -math.expm1(math.log(decay))


@pytest.mark.parametrize("log_decay", [-1e-6, -0.3, -60.0], ids=["slow-decay", "moderate", "instant-reset"])
def test_two_million_tokens_stay_accurate(log_decay):
    """L = 2,000,000 (cumulative log-decay down to -1.2e8): no overflow, float32 accuracy kept."""
    length, state = 2_000_000, 2
    dt = 0.5
    u = torch.full((1, 1, length), 1.0)
    delta = torch.full((1, 1, length), dt)
    A = torch.full((1, state), log_decay / dt)
    B = torch.ones(1, state, length)
    C = torch.ones(1, state, length)
    out, last = selective_scan(u, delta, A, B, C, return_last_state=True, backend="torch")
    # The decay the scan can represent is float32's exp(dt * A); the closed form uses that same value.
    decay = torch.exp(delta[0, 0, 0] * A[0, 0]).item()
    expected = state * closed_form_constant(decay, dt, length)
    assert torch.isfinite(out).all()
    assert_close_scaled(out[0, 0], expected, 1e-4, "out")
    assert_close_scaled(last[0, 0], expected[-1:].expand(state) / state, 1e-4, "last_state")


def test_long_random_sequence_matches_float64_reference_of_same_inputs():
    """A varied long sequence (many blocks): float32 chunked scan vs the float64 reference."""
    p32 = make_problem(1, 2, 4, 20_000, groups=1, with_z=False)
    p64 = make_problem(1, 2, 4, 20_000, groups=1, dtype=torch.float64, with_z=False)
    with torch.no_grad():
        fast = selective_scan_chunked(*p32.args())
        ref = selective_scan_ref(*p64.args())
    assert_close_scaled(fast, ref, 1e-5, "out")


def test_backend_selection(monkeypatch):
    u = torch.zeros(1, 1, 1)
    assert resolve_backend("auto", u) == "torch"
    monkeypatch.setenv("VISIONSSM_SCAN_BACKEND", "reference")
    assert resolve_backend("auto", u) == "reference"
    assert resolve_backend("torch", u) == "torch"
    monkeypatch.setenv("VISIONSSM_SCAN_BACKEND", "nonsense")
    with pytest.raises(InputError, match="nonsense"):
        resolve_backend("auto", u)
    with pytest.raises(InputError, match="unknown scan backend 'fast'"):
        resolve_backend("fast", u)
    with pytest.raises(BackendUnavailableError):
        resolve_backend("mamba_ssm", u)


def test_auto_backend_agrees_with_reference():
    p = make_problem(1, 3, 2, 12, dtype=torch.float64)
    torch.testing.assert_close(selective_scan(*p.args()), selective_scan(*p.args(), backend="reference"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.update(u=a["u"][0]), "u has shape"),
        (lambda a: a.update(delta=a["delta"][..., :-1]), "delta has shape"),
        (lambda a: a.update(A=a["A"][:-1]), "A has shape"),
        (lambda a: a.update(B=a["B"][:, :, :1]), "B has shape"),
        (lambda a: a.update(C=torch.zeros(1, 5, 2, 7)), "5 groups, which does not divide dim = 4"),
        (lambda a: a.update(C=torch.zeros(1, 2, 2, 7)), "B has 1 group\\(s\\) but C has 2"),
        (lambda a: a.update(D=torch.zeros(3)), "D has shape"),
        (lambda a: a.update(z=torch.zeros(1, 4, 6)), "z has shape"),
        (lambda a: a.update(delta_bias=torch.zeros(4, 1)), "delta_bias has shape"),
        (lambda a: a.update(u=torch.zeros(1, 4, 7, dtype=torch.int64)), "u has dtype"),
        (lambda a: a.update(u=torch.zeros(1, 4, 0), delta=torch.zeros(1, 4, 0)), "empty sequence"),
    ],
)
def test_bad_inputs_raise_input_error(change, message):
    args = dict(
        u=torch.zeros(1, 4, 7),
        delta=torch.zeros(1, 4, 7),
        A=-torch.ones(4, 2),
        B=torch.zeros(1, 2, 7),
        C=torch.zeros(1, 2, 7),
        D=torch.zeros(4),
        z=torch.zeros(1, 4, 7),
        delta_bias=torch.zeros(4),
    )
    change(args)
    with pytest.raises(InputError, match=message):
        selective_scan(**args)


def test_softplus_threshold_matches_torch():
    """Large raw deltas pass through unchanged (softplus threshold 20), as in mamba_ssm."""
    u = torch.ones(1, 1, 3, dtype=torch.float64)
    delta = torch.tensor([[[25.0, 0.0, -30.0]]], dtype=torch.float64)
    A = -torch.ones(1, 1, dtype=torch.float64)
    B = C = torch.ones(1, 1, 3, dtype=torch.float64)
    out = selective_scan(u, delta, A, B, C, delta_softplus=True, backend="torch")
    dt = F.softplus(delta[0, 0])
    h0 = dt[0]
    h1 = torch.exp(-dt[1]) * h0 + dt[1]
    h2 = torch.exp(-dt[2]) * h1 + dt[2]
    torch.testing.assert_close(out[0, 0], torch.stack([h0, h1, h2]))
