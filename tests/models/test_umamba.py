"""U-Mamba (Bot and Enc, 2D/3D): published sizes, shapes, gradients, determinism, weights, channel tokens, errors."""

from __future__ import annotations

import pytest
import torch

from model_checks import assert_deterministic_and_round_trips
from visionssm.errors import InputError
from visionssm.models.registry import create, list_models
from visionssm.models.segmenters.umamba import UMambaBot, UMambaEnc, checkpoint_filter_fn

TINY = dict(
    features_per_stage=(4, 8, 8), strides=(1, 2, 2), n_blocks_per_stage=2, n_conv_per_stage_decoder=2, d_state=2
)
KINDS = ["bot_2d", "bot_3d", "enc_2d", "enc_3d"]


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _tiny(kind: str, **kwargs):
    variant, dims = kind.split("_")
    size = (16, 16) if dims == "2d" else (8, 16, 8)
    cls = UMambaBot if variant == "bot" else UMambaEnc
    model = cls(spatial_dims=len(size), in_channels=2, out_channels=3, input_size=size, **dict(TINY, **kwargs))
    return model, torch.randn(2, 2, *size)


# ---- published sizes ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cls", "published"), [(UMambaBot, 42.1), (UMambaEnc, 42.8)])
def test_parameter_count_at_the_published_3d_plan(cls, published):
    """Spec models.md §3: 3D plan 32-64-128-256-320-320, 1 -> 14 channels, patch 128^3 -> 42.1 M / 42.8 M."""
    with torch.device("meta"):
        model = cls(spatial_dims=3, in_channels=1, out_channels=14, input_size=(128, 128, 128))
    assert model.features_per_stage == (32, 64, 128, 256, 320, 320)
    assert abs(_count(model) / 1e6 - published) / published < 0.02


def test_published_plan_stage_overrides_and_channel_tokens():
    with torch.device("meta"):
        model = UMambaEnc(spatial_dims=3, in_channels=1, out_channels=14, input_size=(128, 128, 128))
    assert model.n_blocks_per_stage == (2, 2, 2, 1, 1, 1)
    assert model.n_conv_per_stage_decoder == (2, 2, 2, 1, 1)
    assert model.channel_token == (False,) * 5 + (True,)  # 4^3 = 64 voxels <= 320 channels
    assert model.encoder.mamba_layers[-1].dim == 64 and model.encoder.mamba_layers[-2].dim == 320


def test_registered_as_segmenters():
    assert {"umamba_bot", "umamba_enc"} <= set(list_models(task="segmentation"))
    model = create("umamba_bot", spatial_dims=2, in_channels=1, out_channels=2, **TINY)
    assert isinstance(model, UMambaBot)


# ---- forward / backward -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_forward_backward_shapes_and_finite(kind):
    torch.manual_seed(0)
    model, x = _tiny(kind)
    y = model(x)
    assert y.shape == (x.shape[0], 3, *x.shape[2:])
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    # without deep supervision only the last seg layer is used (the others exist, as in the original)
    unused = {
        f"decoder.seg_layers.{j}.{p}" for j in range(len(model.decoder.seg_layers) - 1) for p in ("weight", "bias")
    }
    for name, p in model.named_parameters():
        assert (p.grad is None) == (name in unused), name
        assert p.grad is None or torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("kind", KINDS)
def test_deep_supervision_returns_every_level_full_resolution_first(kind):
    torch.manual_seed(0)
    model, x = _tiny(kind, deep_supervision=True)
    outputs = model(x)
    assert isinstance(outputs, list) and len(outputs) == 2
    assert outputs[0].shape == (2, 3, *x.shape[2:])
    assert outputs[1].shape == (2, 3, *(s // 2 for s in x.shape[2:]))


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_with_seed_and_safetensors_round_trip(kind, tmp_path):
    assert_deterministic_and_round_trips(lambda: _tiny(kind), tmp_path)


# ---- behaviour ---------------------------------------------------------------------------------------------------
def test_enc_channel_token_stage_on_a_small_grid():
    """A stage whose map has no more voxels than channels mixes channels as tokens (width = #voxels)."""
    torch.manual_seed(0)
    model = UMambaEnc(spatial_dims=2, in_channels=1, out_channels=2, input_size=(8, 8), **TINY)
    assert model.channel_token == (False, False, True)  # 2x2 = 4 <= 8 channels
    assert model.encoder.mamba_layers[2].channel_token and model.encoder.mamba_layers[2].dim == 4
    x = torch.randn(1, 1, 8, 8)
    assert model(x).shape == (1, 2, 8, 8)
    with pytest.raises(InputError, match="input_size"):
        model(torch.randn(1, 1, 16, 16))


def test_mamba_layers_have_no_residual_and_run_in_float32():
    model, _ = _tiny("bot_3d")
    assert not model.mamba_layer.residual and model.mamba_layer.force_float32
    model, _ = _tiny("enc_2d")
    assert all(not m.residual and m.force_float32 for m in model.encoder.mamba_layers)


def test_enc_needs_input_size():
    with pytest.raises(InputError, match="input_size"):
        UMambaEnc(spatial_dims=2, in_channels=1, out_channels=2, **TINY)


@pytest.mark.parametrize("kind", KINDS)
def test_bad_sizes_and_channels_are_input_errors(kind):
    model, x = _tiny(kind)
    with pytest.raises(InputError, match="multiples of"):
        model(x[..., :-2])
    with pytest.raises(InputError, match="input of shape"):
        model(torch.cat([x, x], dim=1))


def test_bad_stage_configuration_is_an_input_error():
    with pytest.raises(InputError, match="strides"):
        UMambaBot(spatial_dims=2, features_per_stage=(4, 8, 8), strides=(1, 2))


def test_state_dict_uses_the_original_names_and_filter_drops_duplicates():
    model, _ = _tiny("enc_3d")
    keys = set(model.state_dict())
    for key in (
        "encoder.stem.0.conv1.weight",
        "encoder.stem.0.conv3.bias",
        "encoder.stem.1.conv1.conv.weight",
        "encoder.stem.1.conv2.norm.weight",
        "encoder.stages.1.0.norm2.bias",
        "encoder.mamba_layers.0.mamba.A_log",
        "encoder.mamba_layers.2.norm.weight",
        "decoder.upsample_layers.0.conv.weight",
        "decoder.stages.1.0.conv3.weight",
        "decoder.seg_layers.1.bias",
    ):
        assert key in keys, key
    state = model.state_dict()
    original = dict(state)
    original["decoder.encoder.stem.0.conv1.weight"] = state["encoder.stem.0.conv1.weight"]
    original["encoder.stem.1.conv1.all_modules.0.weight"] = state["encoder.stem.1.conv1.conv.weight"]
    assert set(checkpoint_filter_fn({"network_weights": original})) == keys
