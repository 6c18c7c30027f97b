"""visionssm.layers: shapes, an independent slow path for SSMixer / VSSBlock, init, gradients, patch layers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from visionssm.errors import InputError
from visionssm.kernels import selective_scan_ref
from visionssm.layers import (
    ConvDownsample,
    LayerNormNd,
    PatchEmbed,
    PatchEmbedV2,
    PatchMerging,
    PointwiseLinear,
    SSMixer,
    VSSBlock,
)
from visionssm.scans import available_scans, scan_plan

SHAPES = {2: (5, 6), 3: (3, 4, 5)}
SQUARE = {2: (4, 4), 3: (2, 4, 4)}


def slow_mixer(m: SSMixer, x: torch.Tensor) -> torch.Tensor:
    """SSMixer written out by hand in float64: per-direction gather, x/dt projections, reference scan, scatter."""
    params = {name: p.detach().double() for name, p in m.named_parameters()}
    x = x.double()
    batch, _, *spatial = x.shape
    length = math.prod(spatial)
    xz = torch.einsum("oc,bcl->bol", params["in_proj.weight"], x.reshape(batch, -1, length))
    x_in, z = xz.chunk(2, dim=1) if m.with_z else (xz, None)
    conv = F.conv2d if m.spatial_dims == 2 else F.conv3d
    x_in = conv(
        x_in.reshape(batch, -1, *spatial),
        params["conv.weight"],
        params.get("conv.bias"),
        padding=m.conv.padding,
        groups=m.d_inner,
    )
    x_in = F.silu(x_in).reshape(batch, m.d_inner, length)
    plan = scan_plan(m.scan, spatial, **m.scan_options)
    R, N, D = m.dt_rank, m.d_state, m.d_inner
    total = torch.zeros(batch, D, length, dtype=torch.float64)
    for k in range(plan.num_directions):
        order = plan.index[k]
        u = x_in[..., order]  # (B, D, L) in direction k's order
        proj = params["x_proj_weight"][k] @ u  # (B, R + 2N, L)
        dt = params["dt_projs_weight"][k] @ proj[:, :R]
        y = selective_scan_ref(
            u,
            dt,
            -torch.exp(params["A_logs"][k * D : (k + 1) * D]),
            proj[:, R : R + N],
            proj[:, R + N :],
            params["Ds"][k * D : (k + 1) * D],
            delta_bias=params["dt_projs_bias"][k],
            delta_softplus=True,
        )
        back = torch.empty_like(y)
        back[..., order] = y
        total += back
    if plan.merge == "mean":
        total /= plan.num_directions
    y = F.layer_norm(total.transpose(1, 2), (D,), params["out_norm.weight"], params["out_norm.bias"], m.out_norm.eps)
    y = y.transpose(1, 2)
    if z is not None:
        y = y * F.silu(z)
    out = torch.einsum("oc,bcl->bol", params["out_proj.weight"], y)
    return out.reshape(batch, -1, *spatial)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("with_z", [True, False])
def test_mixer_matches_slow_path(spatial_dims, with_z):
    torch.manual_seed(0)
    scan = "cross" if spatial_dims == 2 else "cross3d"
    m = SSMixer(8, spatial_dims, d_state=3, ssm_ratio=1.5, with_z=with_z, scan=scan, backend="torch")
    x = torch.randn(2, 8, *SHAPES[spatial_dims])
    y = m(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    torch.testing.assert_close(y.double(), slow_mixer(m, x), atol=2e-5, rtol=1e-4)
    assert m.in_proj.out_features == (2 if with_z else 1) * m.d_inner


@pytest.mark.parametrize(
    ("spatial_dims", "scan"), [(nd, name) for nd in (2, 3) for name in available_scans(nd)], ids=lambda v: str(v)
)
def test_mixer_any_scan(spatial_dims, scan):
    torch.manual_seed(1)
    m = SSMixer(4, spatial_dims, d_state=2, ssm_ratio=1.0, scan=scan, conv_bias=False, backend="torch")
    assert m.num_directions == scan_plan(scan, SQUARE[spatial_dims]).num_directions
    assert m.x_proj_weight.shape == (m.num_directions, m.dt_rank + 2 * m.d_state, m.d_inner)
    x = torch.randn(1, 4, *SQUARE[spatial_dims])
    torch.testing.assert_close(m(x).double(), slow_mixer(m, x), atol=2e-5, rtol=1e-4)


def test_mixer_scan_options_and_runtime_shapes():
    m = SSMixer(4, 2, d_state=1, scan="cross", scan_options={"merge": "mean"}, backend="torch")
    x = torch.randn(1, 4, 3, 7)
    torch.testing.assert_close(m(x).double(), slow_mixer(m, x), atol=2e-5, rtol=1e-4)
    assert m(torch.randn(1, 4, 6, 2)).shape == (1, 4, 6, 2)  # another grid: the plan is built per input shape


def test_mixer_gradients_reach_every_parameter():
    torch.manual_seed(2)
    for spatial_dims in (2, 3):
        m = SSMixer(6, spatial_dims, d_state=2, backend="torch")
        x = torch.randn(2, 6, *SHAPES[spatial_dims], requires_grad=True)
        m(x).square().mean().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        for name, p in m.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_mixer_init():
    torch.manual_seed(3)
    m = SSMixer(40, 2, d_state=5, ssm_ratio=2.0, dt_min=1e-3, dt_max=0.1, dt_init_floor=1e-4)
    K, D, N, R = m.num_directions, m.d_inner, m.d_state, m.dt_rank
    assert (m.num_directions, m.d_inner, m.dt_rank) == (4, 80, 3)  # dt_rank = ceil(40 / 16)
    assert m.dt_projs_weight.shape == (K, D, R) and m.dt_projs_bias.shape == (K, D)
    dt = F.softplus(m.dt_projs_bias)
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    assert dt.log().std() > 0.5  # log-uniform over two decades, not a constant
    assert m.dt_projs_weight.abs().max() <= R**-0.5
    assert m.A_logs.shape == (K * D, N) and m.Ds.shape == (K * D,)
    torch.testing.assert_close(-torch.exp(m.A_logs), -torch.arange(1.0, N + 1).expand(K * D, N))
    assert torch.equal(m.Ds, torch.ones(K * D))
    assert m.A_logs._no_weight_decay and m.Ds._no_weight_decay
    assert m.A_logs.dtype == torch.float32
    bound = D**-0.5
    assert m.x_proj_weight.abs().max() <= bound


def test_mixer_options():
    m = SSMixer(16, 3, d_state=1, ssm_ratio=1.0, dt_rank=3, d_conv=1, scan="tri_orientation")
    assert m.conv is None and m.dt_rank == 3 and m.num_directions == 3
    assert m(torch.randn(1, 16, 2, 3, 4)).shape == (1, 16, 2, 3, 4)
    m = SSMixer(16, 2, conv_bias=False)
    assert m.conv.bias is None
    with pytest.raises(InputError):
        SSMixer(16, 4)
    with pytest.raises(InputError):
        SSMixer(16, 2, dt_rank=0)
    with pytest.raises(InputError):
        SSMixer(16, 2)(torch.randn(1, 16, 2, 3, 4))  # 3D input to a 2D mixer


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_block_matches_definition(spatial_dims):
    torch.manual_seed(4)
    scan = "cross" if spatial_dims == 2 else "cross3d"
    block = VSSBlock(8, spatial_dims, drop_path=0.3, mlp_ratio=2.0, d_state=1, scan=scan, backend="torch").eval()
    x = torch.randn(2, 8, *SHAPES[spatial_dims])
    h = x + block.mixer(block.norm(x))  # drop path is the identity in eval mode
    mlp = block.mlp
    hidden = F.layer_norm(h.movedim(1, -1), (8,), block.norm2.weight, block.norm2.bias, 1e-5)
    direct = mlp.fc2(F.gelu(mlp.fc1(hidden)))  # the MLP written out without timm's module
    torch.testing.assert_close(block(x), h + direct.movedim(-1, 1), atol=1e-6, rtol=1e-5)
    assert VSSBlock(8, spatial_dims, mlp_ratio=0, scan=scan).mlp is None


def test_block_drop_path_train_vs_eval():
    torch.manual_seed(5)
    block = VSSBlock(8, 2, drop_path=0.5, d_state=1, backend="torch")
    x = torch.randn(16, 8, 4, 4)
    block.train()
    y_train = block(x)
    block.eval()
    assert not torch.allclose(y_train, block(x))  # some samples dropped in training
    y_train.sum().backward()


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_layer_norm_nd(spatial_dims):
    norm = LayerNormNd(6)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(2, 6, *SHAPES[spatial_dims])
    ref = F.layer_norm(x.movedim(1, -1), (6,), norm.weight, norm.bias, norm.eps).movedim(-1, 1)
    torch.testing.assert_close(norm(x), ref)
    assert norm(torch.randn(3, 6)).shape == (3, 6)


def test_pointwise_linear():
    lin = PointwiseLinear(5, 7)
    x = torch.randn(2, 5, 3, 4, 2)
    torch.testing.assert_close(lin(x), F.linear(x.movedim(1, -1), lin.weight, lin.bias).movedim(-1, 1))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_patch_layers_shapes(spatial_dims):
    spatial = (8, 12) if spatial_dims == 2 else (8, 8, 12)
    x = torch.randn(2, 3, *spatial)
    assert PatchEmbed(3, 16, 4, spatial_dims)(x).shape == (2, 16, *(s // 4 for s in spatial))
    assert PatchEmbedV2(3, 16, 4, spatial_dims)(x).shape == (2, 16, *(s // 4 for s in spatial))
    odd = torch.randn(2, 4, *(s - 1 for s in spatial))  # odd sizes: padded (merging) or ceil (conv s2 p1)
    expect = tuple(math.ceil((s - 1) / 2) for s in spatial)
    assert PatchMerging(4, spatial_dims=spatial_dims)(odd).shape == (2, 8, *expect)
    assert ConvDownsample(4, spatial_dims=spatial_dims)(odd).shape == (2, 8, *expect)
    merging = PatchMerging(4, 6, spatial_dims=spatial_dims)
    assert merging.reduction.weight.shape == (6, 2**spatial_dims * 4)
    with pytest.raises(InputError):
        PatchEmbedV2(3, 16, 2, spatial_dims)


def test_patch_merging_gather_order_2d():
    """The 4C vector at (i, j) is [x(2i,2j), x(2i+1,2j), x(2i,2j+1), x(2i+1,2j+1)] (VMamba's PatchMerging2D)."""
    merging = PatchMerging(2, spatial_dims=2)
    merging.norm = torch.nn.Identity()
    merging.reduction = torch.nn.Identity()
    x = torch.arange(2 * 16, dtype=torch.float32).view(1, 2, 4, 4)
    y = merging(x)  # (1, 8, 2, 2)
    expected = torch.cat([x[..., 0::2, 0::2], x[..., 1::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 1::2]], dim=1)
    torch.testing.assert_close(y, expected)


def test_patch_merging_gather_order_3d():
    merging = PatchMerging(1, spatial_dims=3)
    merging.norm = torch.nn.Identity()
    merging.reduction = torch.nn.Identity()
    x = torch.arange(8, dtype=torch.float32).view(1, 1, 2, 2, 2)
    # first spatial axis (depth) fastest: offsets (d, h, w) = (0,0,0), (1,0,0), (0,1,0), (1,1,0), (0,0,1), ...
    expected = [x[0, 0, d, h, w] for w in (0, 1) for h in (0, 1) for d in (0, 1)]
    torch.testing.assert_close(merging(x).flatten(), torch.stack(expected))
