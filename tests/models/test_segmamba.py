"""SegMamba (3D): published size, shapes, gradients, determinism, weights, the original's fixed quirks, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model_checks import assert_deterministic_and_round_trips
from visionssm.errors import BackendUnavailableError, InputError
from visionssm.layers.mamba import MambaLayer
from visionssm.layers.segmamba import GatedSpatialConv
from visionssm.models.registry import create, list_models, load_config
from visionssm.models.segmenters.segmamba import SegMamba

pytest.importorskip("monai")

PRESET = Path(__file__).resolve().parents[2] / "configs" / "models" / "segmamba_brats.yaml"
TINY = dict(in_channels=2, out_channels=3, depths=(2, 1, 1), feat_size=(4, 8, 16), hidden_size=16, d_state=2)
SIZE = (8, 8, 16)  # multiples of 2^3; the deepest map (1, 1, 2) has more than one voxel, as InstanceNorm needs


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _tiny(**kwargs):
    model = SegMamba(**dict(TINY, **kwargs))
    return model, torch.randn(1, model.in_channels, *SIZE)


# ---- published size ----------------------------------------------------------------------------------------------
def test_parameter_count_of_the_brats_configuration():
    """Spec models.md §4: the code's count at 4 -> 4 channels is 67,416,196 (encoder 15.7 M)."""
    with torch.device("meta"):
        model = SegMamba(in_channels=4, out_channels=4)
    assert _count(model) == 67_416_196
    assert abs(_count(model) / 1e6 - 67.42) / 67.42 < 0.02
    assert _count(model.vit) == 15_718_080


def test_preset_is_the_brats_configuration():
    with torch.device("meta"):
        model = load_config(PRESET)
    assert isinstance(model, SegMamba) and _count(model) == 67_416_196
    assert model.feat_size == (48, 96, 192, 384) and model.depths == (2, 2, 2, 2) and model.hidden_size == 768


def test_registered_as_a_segmenter():
    assert "segmamba" in list_models(task="segmentation")
    assert isinstance(create("segmamba", **TINY), SegMamba)


def test_state_dict_uses_the_original_names():
    with torch.device("meta"):
        model = SegMamba(in_channels=4, out_channels=4)
    keys = set(model.state_dict())
    for key in (
        "vit.downsample_layers.0.0.weight",
        "vit.downsample_layers.1.1.bias",
        "vit.gscs.0.proj.weight",
        "vit.gscs.3.proj4.bias",
        "vit.stages.0.1.norm.weight",
        "vit.stages.3.1.mamba.out_proj.weight",
        "vit.stages.0.0.mamba.in_proj.weight",
        "vit.stages.1.0.mamba.conv1d_b.weight",
        "vit.stages.2.0.mamba.A_s_log",
        "vit.stages.3.0.mamba.dt_proj_s.bias",
        "vit.mlps.0.fc1.weight",
        "vit.mlps.3.fc2.bias",
        "encoder1.layer.conv1.conv.weight",
        "encoder5.layer.conv3.conv.weight",
        "decoder5.transp_conv.conv.weight",
        "decoder2.conv_block.conv2.conv.weight",
        "decoder1.layer.conv1.conv.weight",
        "out.conv.conv.bias",
    ):
        assert key in keys, key


# ---- forward / backward ------------------------------------------------------------------------------------------
def test_forward_backward_shapes_finite_and_every_parameter_trained():
    """Every parameter gets a gradient, including the backward (``*_b``) and inter-slice (``*_s``) direction sets:
    mamba_ssm's non-fused path silently runs the forward direction only."""
    torch.manual_seed(0)
    model, x = _tiny()
    y = model(x)
    assert y.shape == (1, 3, *SIZE)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name.endswith(("conv1d_b.weight", "conv1d_s.weight", "x_proj_s.weight")):
            assert p.grad.abs().sum() > 0, name


def test_deterministic_with_seed_and_safetensors_round_trip(tmp_path):
    assert_deterministic_and_round_trips(_tiny, tmp_path)


def test_activation_checkpointing_gives_the_same_output_and_gradients():
    torch.manual_seed(0)
    model, x = _tiny()
    grads = []
    for flag in (False, True):
        model.vit.use_checkpoint = flag
        model.zero_grad()
        y = model(x)
        y.square().mean().backward()
        grads.append((y.detach(), model.vit.stages[0][0].mamba.A_s_log.grad.clone()))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6)


# ---- block internals (spec §15.2, §15.3) -------------------------------------------------------------------------
def test_gsc_sums_its_branches_and_adds_the_input():
    """The released code sums the two branches (the paper's figure shows a product) and adds a residual."""
    torch.manual_seed(0)
    gsc = GatedSpatialConv(3)
    x = torch.randn(2, 3, 4, 5, 6)

    def unit(conv, norm, t):
        return F.relu(norm(conv(t)))

    b1 = unit(gsc.proj2, gsc.norm2, unit(gsc.proj, gsc.norm, x))
    b2 = unit(gsc.proj3, gsc.norm3, x)
    assert torch.allclose(gsc(x), x + unit(gsc.proj4, gsc.norm4, b1 + b2), atol=1e-6)
    with torch.no_grad():
        gsc.proj4.weight.zero_()
        gsc.proj4.bias.zero_()
    assert torch.equal(gsc(x), x)  # fused branch silenced: only the residual is left


def test_tom_layers_are_residual_tri_orientation_mambas():
    model, _ = _tiny()
    layers = [m for m in model.modules() if isinstance(m, MambaLayer)]
    assert len(layers) == sum(TINY["depths"])
    for layer in layers:
        assert layer.residual and layer.mamba.scan == "tri_orientation" and layer.mamba.num_directions == 3
        assert layer.mamba.suffixes == ("", "_b", "_s") and layer.mamba.merge == "sum"


# ---- fixed quirks ------------------------------------------------------------------------------------------------
def test_inter_slice_scan_is_depth_fastest_on_any_grid():
    """The original chunk-interleaves with hard-coded nslices = [64, 32, 16, 8]: the (H, W, D) order only at a 128^3
    input (ns = D) and a crash when L % ns != 0. Ours is that axis order on every grid."""
    model, _ = _tiny()
    mixer = model.vit.stages[0][0].mamba
    index, _ = mixer.token_orders(12, (2, 2, 3), torch.device("cpu"))
    assert index[2].tolist() == [0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11]  # spec scans.md §9a, ns = D = 2
    D, H, W = 3, 5, 7  # L = 105 is not a multiple of stage 0's hard-coded 64 slices
    index, _ = mixer.token_orders(D * H * W, (D, H, W), torch.device("cpu"))
    expected = torch.arange(D * H * W).view(D, H, W).permute(1, 2, 0).reshape(-1)
    assert torch.equal(index[2], expected)
    L, ns = 64 * 4 * 4, 64  # at the original's own size (D = ns) both orders agree
    chunked = torch.stack(torch.arange(L).chunk(ns), dim=-1).flatten()
    index, _ = mixer.token_orders(L, (ns, 4, 4), torch.device("cpu"))
    assert torch.equal(index[2], chunked)


def test_out_block_follows_feat_size():
    """The original hard-codes ``UnetOutBlock(in_channels=48)``."""
    model, _ = _tiny()
    assert model.out.conv.conv.in_channels == TINY["feat_size"][0]
    assert model.out.conv.conv.out_channels == TINY["out_channels"]


def test_stage_count_follows_depths():
    """The original always builds 4 encoder stages whatever ``depths`` / ``feat_size`` say."""
    torch.manual_seed(0)
    model = SegMamba(in_channels=1, out_channels=2, depths=(1, 1), feat_size=(4, 8), hidden_size=8, d_state=2)
    assert len(model.vit.stages) == 2 and model.divisor == 4
    assert hasattr(model, "decoder3") and not hasattr(model, "decoder4")
    assert model(torch.randn(1, 1, 4, 8, 12)).shape == (1, 2, 4, 8, 12)
    with pytest.raises(InputError, match="one entry per stage"):
        SegMamba(depths=(2, 2, 2), feat_size=(48, 96, 192, 384))


def test_other_scan_orders():
    torch.manual_seed(0)
    model, x = _tiny(scan="bidirectional")
    assert model.vit.stages[0][0].mamba.num_directions == 2
    assert model(x).shape == (1, 3, *SIZE)


# ---- errors ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spatial_dims", [2, 1, 4])
def test_only_3d(spatial_dims):
    with pytest.raises(InputError, match=f"spatial_dims={spatial_dims}.*3D model"):
        SegMamba(spatial_dims=spatial_dims)


def test_bad_channels_and_sizes_are_input_errors():
    with pytest.raises(InputError, match="in_channels=0"):
        SegMamba(in_channels=0)
    model, x = _tiny()
    with pytest.raises(InputError, match=r"expected \(B, 2, D, H, W\)"):
        model(torch.randn(1, 4, *SIZE))
    with pytest.raises(InputError, match=r"expected \(B, 2, D, H, W\)"):
        model(x[0])
    with pytest.raises(InputError, match="multiples of 8"):
        model(torch.randn(1, 2, 8, 8, 12))
    with pytest.raises(InputError, match="more than one voxel"):  # InstanceNorm's error, named
        model(torch.randn(1, 2, 8, 8, 8))


def test_missing_monai_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "monai.networks.blocks", None)  # makes the import fail
    with pytest.raises(BackendUnavailableError, match=r"visionssm\[med\]"):
        SegMamba(**TINY)


# ---- torch.compile -----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_torch_compile_aot_eager():
    torch.manual_seed(0)
    model, x = _tiny()
    model.eval()
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, backend="aot_eager")
        assert torch.allclose(compiled(x), expected, atol=1e-5)
