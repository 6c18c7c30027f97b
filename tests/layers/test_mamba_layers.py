"""visionssm.layers.mamba: MambaMixer / MambaLayer / ResidualVisionMamba against forwards written out by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from visionssm.errors import InputError
from visionssm.kernels import selective_scan_ref
from visionssm.layers.mamba import MambaLayer, MambaMixer, ResidualVisionMamba
from visionssm.scans import scan_plan

D_MODEL = 8  # d_inner 16, dt_rank 1
MAMBA_NAMES = ("conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight", "dt_proj.bias", "A_log", "D")


def params64(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().double() for name, p in m.named_parameters()}


def one_direction(p: dict[str, torch.Tensor], suffix: str, u: torch.Tensor, z: torch.Tensor, d_conv: int, R: int):
    """One Mamba-1 direction on (B, Di, L) sequences already in its token order: causal conv, projections, S6."""
    dim, length = u.shape[1], u.shape[2]
    A_log = p[f"A{suffix}_log"]
    N = A_log.shape[1]
    u = F.conv1d(F.pad(u, (d_conv - 1, 0)), p[f"conv1d{suffix}.weight"], p[f"conv1d{suffix}.bias"], groups=dim)
    u = F.silu(u)
    assert u.shape[-1] == length
    proj = p[f"x_proj{suffix}.weight"] @ u  # (B, R + 2N, L)
    dt = p[f"dt_proj{suffix}.weight"] @ proj[:, :R]
    return selective_scan_ref(
        u,
        dt,
        -torch.exp(A_log),
        proj[:, R : R + N],
        proj[:, R + N :],
        p[f"D{suffix}"],
        z=z,
        delta_bias=p[f"dt_proj{suffix}.bias"],
        delta_softplus=True,
    )


def hand_mixer(m: MambaMixer, x: torch.Tensor, orders: list[torch.Tensor] | None, merge: str = "sum"):
    """MambaMixer in float64 from its parameters: per direction gather, one_direction, scatter back, merge."""
    p = params64(m)
    x = x.double()
    batch, length, _ = x.shape
    xz = (x @ p["in_proj.weight"].T).transpose(1, 2)  # (B, 2 Di, L)
    x_in, z = xz.chunk(2, dim=1)
    orders = orders or [torch.arange(length)]
    total = torch.zeros_like(x_in)
    for order, suffix in zip(orders, m.suffixes, strict=True):
        y = one_direction(p, suffix, x_in[..., order], z[..., order], m.d_conv, m.dt_rank)
        back = torch.empty_like(y)
        back[..., order] = y  # scatter: token t of this direction sits at raster position order[t]
        total = total + back
    if merge == "mean":
        total = total / len(orders)
    return total.transpose(1, 2) @ p["out_proj.weight"].T


def make(seed: int = 0, **kwargs) -> MambaMixer:
    torch.manual_seed(seed)
    m = MambaMixer(D_MODEL, backend=kwargs.pop("backend", "reference"), **kwargs)
    with torch.no_grad():  # move A_log and D off their structured init so that a mix-up of directions shows
        for name, p in m.named_parameters():
            if name.startswith(("A", "D")):
                p.add_(0.3 * torch.rand_like(p))
    return m


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_unidirectional_matches_hand_forward(backend):
    m = make(backend=backend)
    x = torch.randn(2, 11, D_MODEL)
    expected = hand_mixer(m, x, None)
    torch.testing.assert_close(m(x).double(), expected, rtol=1e-4, atol=2e-5)
    torch.testing.assert_close(m.double()(x.double()), expected, rtol=1e-6, atol=1e-6)


def test_unidirectional_is_causal():
    m = make()
    x = torch.randn(1, 12, D_MODEL)
    t = 7
    x2 = x.clone()
    x2[:, t] += torch.randn(D_MODEL)
    y, y2 = m(x), m(x2)
    torch.testing.assert_close(y[:, :t], y2[:, :t], rtol=0, atol=0)
    assert (y[:, t] - y2[:, t]).abs().max() > 1e-4
    assert (y[:, t + 1 :] - y2[:, t + 1 :]).abs().max() > 1e-6  # later tokens do see it


@pytest.mark.parametrize("merge", ["sum", "mean"])
@pytest.mark.parametrize("directions", [2, "bidirectional"])
def test_bidirectional_is_forward_plus_flipped_backward(merge, directions):
    m = make(directions=directions, merge=merge).double()
    assert m.suffixes == ("", "_b")
    x = torch.randn(2, 9, D_MODEL, dtype=torch.float64)
    p = params64(m)
    x_in, z = (x @ p["in_proj.weight"].T).transpose(1, 2).chunk(2, dim=1)
    y_f = one_direction(p, "", x_in, z, m.d_conv, m.dt_rank)
    y_b = one_direction(p, "_b", x_in.flip(-1), z.flip(-1), m.d_conv, m.dt_rank)
    y = y_f + y_b.flip(-1)
    if merge == "mean":
        y = y / 2  # Vim's if_divide_out
    expected = y.transpose(1, 2) @ p["out_proj.weight"].T
    torch.testing.assert_close(m(x), expected, rtol=1e-6, atol=1e-6)
    # The bidirectional mixer needs no grid, but accepts one of matching size.
    torch.testing.assert_close(m(x, (3, 3)), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 4), (3, 4, 5), (1, 2, 7)])
def test_tri_orientation_is_sum_over_three_orders(shape):
    m = make(directions="tri_orientation").double()
    assert m.suffixes == ("", "_b", "_s")
    length = math.prod(shape)
    x = torch.randn(2, length, D_MODEL, dtype=torch.float64)
    index = scan_plan("tri_orientation", shape).index
    expected = hand_mixer(m, x, list(index), "sum")
    torch.testing.assert_close(m(x, shape), expected, rtol=1e-6, atol=1e-6)
    # The third order is the (H, W, D) axis order: depth fastest. This holds for any shape (3*4*5 = 60 is not a
    # multiple-of-nslices trick: SegMamba's chunk interleave would need L % D == 0 and D = nslices).
    grid = torch.arange(length).view(shape)
    assert torch.equal(index[2], grid.permute(1, 2, 0).reshape(-1))
    assert torch.equal(index[1], torch.arange(length).flip(0))


def test_tri_orientation_equals_segmamba_interleave_when_nslices_is_depth():
    """SegMamba v3: seq_s[p * ns + s] = seq[s * (L / ns) + p] with ns = D; spec scans §9a (2,2,3), ns=2."""
    shape, ns = (2, 2, 3), 2
    length = math.prod(shape)
    seq = torch.arange(length)
    interleaved = torch.stack(seq.chunk(ns), dim=-1).flatten()
    assert interleaved.tolist() == [0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11]
    assert torch.equal(scan_plan("tri_orientation", shape).index[2], interleaved)


def test_named_scan_numbers_its_directions():
    m = make(directions="cross").double()
    assert m.suffixes == ("", "_1", "_2", "_3")
    assert {"conv1d_3.weight", "A_3_log", "D_3", "x_proj_3.weight", "dt_proj_3.bias"} <= set(m.state_dict())
    shape = (3, 4)
    x = torch.randn(1, 12, D_MODEL, dtype=torch.float64)
    expected = hand_mixer(m, x, list(scan_plan("cross", shape).index), "sum")
    torch.testing.assert_close(m(x, shape), expected, rtol=1e-6, atol=1e-6)


def test_parameter_counts_match_mamba_formula():
    d_model, d_state, d_conv, expand = 192, 16, 4, 2
    d_inner, R = expand * d_model, math.ceil(d_model / 16)
    conv1d = d_inner * d_conv + d_inner
    x_proj = d_inner * (R + 2 * d_state)
    dt_proj = R * d_inner + d_inner
    A_log, D = d_inner * d_state, d_inner
    per_direction = conv1d + x_proj + dt_proj + A_log + D
    shared = 2 * d_inner * d_model + d_inner * d_model  # in_proj, out_proj (no bias)
    assert per_direction == 30_336  # Vim-T: "adds 30,336 params per layer" for the backward set (spec scans §3)

    def count(m):
        return sum(p.numel() for p in m.parameters())

    uni = count(MambaMixer(d_model, d_state, d_conv, expand))
    assert uni == shared + per_direction == 251_520
    assert count(MambaMixer(d_model, d_state, d_conv, expand, directions="bidirectional")) - uni == 30_336
    assert count(MambaMixer(d_model, d_state, d_conv, expand, directions="tri_orientation")) - uni == 2 * 30_336


def test_state_dict_names_are_mamba_ssm_names():
    keys = set(MambaMixer(D_MODEL).state_dict())
    assert keys == {"in_proj.weight", "out_proj.weight", *MAMBA_NAMES}
    keys_v3 = set(MambaMixer(D_MODEL, directions="tri_orientation").state_dict())
    for suffix in ("_b", "_s"):
        for name in MAMBA_NAMES:
            if name in ("A_log", "D"):
                name = f"A{suffix}_log" if name == "A_log" else f"D{suffix}"
            else:
                module, attr = name.split(".")
                name = f"{module}{suffix}.{attr}"
            assert name in keys_v3
    assert set(MambaMixer(D_MODEL, bias=True).state_dict()) >= {"in_proj.bias", "out_proj.bias"}


def test_init():
    torch.manual_seed(0)
    dt_min, dt_max = 0.002, 0.05
    m = MambaMixer(64, d_state=8, directions="bidirectional", dt_min=dt_min, dt_max=dt_max, dt_init_floor=1e-4)
    for suffix in m.suffixes:
        dt_proj = getattr(m, f"dt_proj{suffix}")
        bound = m.dt_rank**-0.5
        assert dt_proj.weight.abs().max() <= bound
        assert dt_proj.weight.abs().max() > 0.5 * bound  # uniform over the whole range, not a small default init
        dt = F.softplus(dt_proj.bias.detach().double())
        assert dt.min() >= dt_min * (1 - 1e-5) and dt.max() <= dt_max * (1 + 1e-5)
        # log-uniform: about half the samples below the geometric mean
        assert 0.3 < (dt < math.sqrt(dt_min * dt_max)).double().mean() < 0.7
        A_log, D = getattr(m, f"A{suffix}_log"), getattr(m, f"D{suffix}")
        assert A_log.dtype == torch.float32 and D.dtype == torch.float32
        torch.testing.assert_close(A_log, torch.log(torch.arange(1.0, 9.0)).expand(m.d_inner, 8))
        assert torch.equal(D, torch.ones(m.d_inner))
        assert A_log._no_weight_decay and D._no_weight_decay
    # floor: dt_min below the floor is clamped up to it
    floored = MambaMixer(16, dt_min=1e-6, dt_max=2e-6, dt_init_floor=1e-4)
    torch.testing.assert_close(F.softplus(floored.dt_proj.bias.detach()), torch.full((32,), 1e-4))


@pytest.mark.parametrize("directions", [1, "bidirectional", "tri_orientation"])
def test_backends_torch_and_reference_agree(directions):
    shape = (2, 3, 4)
    x = torch.randn(2, 24, D_MODEL, requires_grad=True)
    outputs, grads = [], []
    for backend in ("reference", "torch"):
        m = make(directions=directions, backend=backend)
        y = m(x, shape)
        (g,) = torch.autograd.grad(y.square().sum(), x)
        outputs.append(y)
        grads.append(g)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "module",
    [
        lambda: MambaMixer(D_MODEL, directions="tri_orientation", backend="torch"),
        lambda: MambaLayer(D_MODEL, 3, directions="tri_orientation", residual=True, backend="torch"),
        lambda: ResidualVisionMamba(3, D_MODEL, 5, directions="bidirectional", backend="torch"),
    ],
)
def test_gradients_reach_every_parameter(module):
    torch.manual_seed(0)
    m = module()
    shape = (2, 3, 4)
    x = torch.randn(2, 24, D_MODEL) if isinstance(m, MambaMixer) else torch.randn(2, D_MODEL, *shape)
    y = m(x, shape) if isinstance(m, MambaMixer) else m(x)
    y.square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("residual", [False, True])
def test_mamba_layer_is_norm_then_mixer(spatial_dims, residual):
    torch.manual_seed(1)
    layer = MambaLayer(D_MODEL, spatial_dims, directions=1, residual=residual, backend="reference").double()
    with torch.no_grad():
        layer.norm.weight.uniform_(0.5, 1.5)
        layer.norm.bias.uniform_(-0.2, 0.2)
    shape = (4, 5) if spatial_dims == 2 else (2, 3, 4)
    x = torch.randn(2, D_MODEL, *shape, dtype=torch.float64)
    tokens = x.reshape(2, D_MODEL, -1).transpose(1, 2)
    normed = F.layer_norm(tokens, (D_MODEL,), layer.norm.weight.detach(), layer.norm.bias.detach(), 1e-5)
    expected = hand_mixer(layer.mamba, normed, None).transpose(1, 2).reshape(x.shape)
    if residual:
        expected = expected + x
    torch.testing.assert_close(layer(x), expected, rtol=1e-6, atol=1e-6)


def test_mamba_layer_tri_orientation_segmamba_style():
    torch.manual_seed(2)
    shape = (3, 4, 5)  # L = 60 with depth 3: any shape works
    layer = MambaLayer(D_MODEL, 3, directions="tri_orientation", residual=True, backend="reference").double()
    x = torch.randn(1, D_MODEL, *shape, dtype=torch.float64)
    tokens = x.reshape(1, D_MODEL, -1).transpose(1, 2)
    normed = F.layer_norm(tokens, (D_MODEL,), eps=1e-5)
    orders = list(scan_plan("tri_orientation", shape).index)
    expected = hand_mixer(layer.mamba, normed, orders).transpose(1, 2).reshape(x.shape) + x
    torch.testing.assert_close(layer(x), expected, rtol=1e-6, atol=1e-6)


def test_mamba_layer_channel_tokens():
    """U-Mamba Enc: sequence = channels, token vector = the flattened map (prod(spatial) == dim)."""
    torch.manual_seed(3)
    channels, shape = 6, (2, 2, 2)
    layer = MambaLayer(8, 3, channel_token=True, backend="reference").double()
    x = torch.randn(2, channels, *shape, dtype=torch.float64)
    normed = F.layer_norm(x.reshape(2, channels, 8), (8,), eps=1e-5)
    expected = hand_mixer(layer.mamba, normed, None).reshape(x.shape)
    torch.testing.assert_close(layer(x), expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(InputError, match="prod"):
        layer(torch.randn(2, channels, 2, 2, 3, dtype=torch.float64))
    with pytest.raises(InputError, match="channel_token"):
        MambaLayer(8, 3, directions="tri_orientation", channel_token=True)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_residual_vision_mamba_matches_lightm_unet_formula(spatial_dims):
    torch.manual_seed(4)
    rvm = ResidualVisionMamba(spatial_dims, D_MODEL, 12, backend="reference").double()
    with torch.no_grad():
        rvm.skip_scale.fill_(0.7)
        rvm.norm.weight.uniform_(0.5, 1.5)
    assert set(dict(rvm.named_children())) == {"norm", "mamba", "proj"}
    shape = (4, 5) if spatial_dims == 2 else (2, 3, 4)
    x = torch.randn(2, D_MODEL, *shape, dtype=torch.float64)
    tokens = x.reshape(2, D_MODEL, -1).transpose(1, 2)
    w, b = rvm.norm.weight.detach(), rvm.norm.bias.detach()
    y = hand_mixer(rvm.mamba, F.layer_norm(tokens, (D_MODEL,), w, b, 1e-5), None) + 0.7 * tokens
    y = F.layer_norm(y, (D_MODEL,), w, b, 1e-5) @ rvm.proj.weight.detach().T + rvm.proj.bias.detach()
    expected = y.transpose(1, 2).reshape(2, 12, *shape)
    out = rvm(x)
    assert out.shape == (2, 12, *shape)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


def test_force_float32_under_autocast():
    layer = MambaLayer(D_MODEL, 2, force_float32=True, backend="torch")
    x = torch.randn(1, D_MODEL, 3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x.bfloat16())
        plain = MambaLayer(D_MODEL, 2, backend="torch")(x)
    assert out.dtype == torch.float32
    assert plain.dtype == torch.bfloat16  # without the flag, activations follow autocast
    torch.testing.assert_close(out, layer(x.bfloat16().float()))


def test_force_float32_on_meta():
    """Meta tensors (sizes and FLOPs of full models) have no autocast to turn off: the layer runs without it."""
    with torch.device("meta"):
        layer = MambaLayer(D_MODEL, 2, force_float32=True, backend="torch")
        out = layer(torch.empty(1, D_MODEL, 3, 4, dtype=torch.bfloat16))
    assert out.device.type == "meta" and out.shape == (1, D_MODEL, 3, 4) and out.dtype == torch.float32


def test_input_errors():
    tri = MambaMixer(D_MODEL, directions="tri_orientation")
    x = torch.randn(1, 24, D_MODEL)
    with pytest.raises(InputError, match="spatial_shape"):
        tri(x)
    with pytest.raises(InputError, match="positions"):
        tri(x, (2, 3, 5))
    with pytest.raises(InputError, match="unknown scan"):
        MambaMixer(D_MODEL, directions="no_such_scan")
    with pytest.raises(InputError, match="merge"):
        MambaMixer(D_MODEL, merge="max")
    with pytest.raises(InputError, match="spatial_dims"):
        MambaMixer(D_MODEL, directions="mamba_nd")
    with pytest.raises(InputError):
        MambaMixer(D_MODEL, directions=3)
    with pytest.raises(InputError, match="expected"):
        MambaMixer(D_MODEL)(torch.randn(1, 5, D_MODEL + 1))
    with pytest.raises(InputError, match="channels"):
        MambaLayer(D_MODEL, 2)(torch.randn(1, D_MODEL + 1, 3, 3))
