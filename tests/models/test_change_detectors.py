"""ChangeMamba change detectors (MambaBCD, MambaSCD, MambaBDA): sizes, inputs, token arrangements, weights."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")
yaml = pytest.importorskip("yaml")

from visionssm.errors import InputError  # noqa: E402
from visionssm.models.backbones.vmamba import VMamba  # noqa: E402
from visionssm.models.change.mamba_cd import (  # noqa: E402
    BDAOutput,
    MambaBCD,
    MambaBDA,
    MambaSCD,
    SCDOutput,
    arrange_tokens,
    split_tokens,
)
from visionssm.models.registry import build_from_config, create, list_models  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "models"
TINY = dict(dims=16, depths=(1, 1, 1, 1), decoder_channels=16, ssm_ratio=1.0)
CLASSES = [MambaBCD, MambaSCD, MambaBDA]

# Parameters counted from MambaCD's code with its released configs (models.md §6 / §16), in M.
PUBLISHED = {
    "mamba_bcd_tiny": 32.61,
    "mamba_bcd_small": 54.00,
    "mamba_bcd_base": 92.40,
    "mamba_scd_tiny": 37.13,
    "mamba_scd_small": 58.51,
    "mamba_scd_base": 97.03,
    "mamba_bda_tiny": 34.87,
    "mamba_bda_small": 56.26,
    "mamba_bda_base": 94.72,
}


def _outputs(y):
    return list(y) if isinstance(y, tuple) else [y]


def test_registered():
    names = set(list_models(task="change_detection"))
    assert {"mamba_bcd", "mamba_scd", "mamba_bda"} <= names
    model = create("mamba_bcd", out_channels=3, **TINY)
    assert isinstance(model, MambaBCD) and model.head.out_channels == 3


@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_preset_parameter_counts(preset):
    """Every published config as a YAML preset, built on the meta device (counting only): within 2 % of the code."""
    config = yaml.safe_load((CONFIGS / f"{preset}.yaml").read_text())
    with torch.device("meta"):
        model = build_from_config(config, source=preset)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(params - PUBLISHED[preset]) / PUBLISHED[preset] < 0.02, params
    if preset == "mamba_bcd_tiny":  # the encoder alone (models.md §6: 27.99 M)
        encoder = sum(p.numel() for m in (model.encoder, model.encoder_norms) for p in m.parameters()) / 1e6
        assert encoder == pytest.approx(27.99, abs=0.01)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_forward_backward_deterministic(cls):
    x1, x2 = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        model = cls(**TINY).eval()
        with torch.no_grad():
            outs.append(_outputs(model(x1, x2)))
    expected_channels = {MambaBCD: [2], MambaSCD: [2, 7, 7], MambaBDA: [2, 5]}[cls]
    assert [o.shape for o in outs[0]] == [(2, c, 64, 64) for c in expected_channels]
    for a, b in zip(*outs):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    model.train()
    sum(o.float().logsumexp(1).mean() for o in _outputs(model(x1, x2))).backward()
    bad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not bad


def test_output_types():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 3, 32, 32)
    with torch.no_grad():
        scd = MambaSCD(semantic_classes=4, **TINY).eval()(x)
        bda = MambaBDA(**TINY).eval()(x)
    assert isinstance(scd, SCDOutput) and scd.semantic_t2.shape == (1, 4, 32, 32)
    assert isinstance(bda, BDAOutput) and bda.localization.shape == (1, 2, 32, 32) and bda.damage.shape[1] == 5


def test_input_layouts_and_errors():
    torch.manual_seed(0)
    model = MambaBCD(**TINY).eval()
    x1, x2 = torch.randn(2, 3, 48, 40), torch.randn(2, 3, 48, 40)  # not multiples of 32
    with torch.no_grad():
        two = model(x1, x2)
        stacked = model(torch.stack([x1, x2], dim=1))  # TorchGeo's (T, C, H, W) per sample
    assert two.shape == (2, 2, 48, 40)
    torch.testing.assert_close(two, stacked, rtol=0, atol=0)
    with pytest.raises(InputError, match=r"\(2, 3, 48, 40\) vs \(2, 3, 32, 32\)"):
        model(x1, torch.randn(2, 3, 32, 32))
    with pytest.raises(InputError, match=r"\(B, 2, C, H, W\)"):
        model(x1)
    with pytest.raises(InputError, match=r"expected \(B, 3, H, W\)"):
        model(torch.randn(1, 1, 32, 32), torch.randn(1, 1, 32, 32))
    for bad in (dict(spatial_dims=3), dict(variant="huge")):
        with pytest.raises(InputError):
            MambaBCD(**TINY, **bad)


def test_token_arrangements():
    pre = torch.arange(6.0).view(1, 1, 2, 3)
    post = -pre - 1
    cross = arrange_tokens(pre, post, "cross")
    assert cross.shape == (1, 1, 2, 6)
    torch.testing.assert_close(cross[0, 0, 0], torch.tensor([0.0, -1, 1, -2, 2, -3]))  # dates alternate in a row
    sequential = arrange_tokens(pre, post, "sequential")
    torch.testing.assert_close(sequential[0, 0, :, :3], pre[0, 0])  # T1 on the left, T2 on the right
    torch.testing.assert_close(sequential[0, 0, :, 3:], post[0, 0])
    assert arrange_tokens(pre, post, "parallel").shape == (1, 2, 2, 3)
    for mode in ("cross", "sequential"):
        a, b = split_tokens(arrange_tokens(pre, post, mode), mode)
        torch.testing.assert_close(a, pre)
        torch.testing.assert_close(b, post)
    with pytest.raises(InputError):
        arrange_tokens(pre, post, "diagonal")


def test_quirk_token_grids_follow_input_device_and_dtype():
    """Quirk 1: the original builds the H x 2W grids with ``torch.empty(...).cuda()`` (CUDA-only, float32)."""
    for dtype, device in ((torch.float64, "cpu"), (torch.bfloat16, "cpu"), (torch.float32, "meta")):
        pre = torch.randn(1, 2, 3, 3, dtype=dtype, device=device)
        for mode in ("parallel", "cross", "sequential"):
            grid = arrange_tokens(pre, pre, mode)
            assert grid.dtype == dtype and grid.device == pre.device
    torch.manual_seed(0)
    model = MambaBCD(**TINY).eval()  # and the whole model runs on the CPU
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32))
    assert y.shape == (1, 2, 32, 32) and torch.isfinite(y).all()


def test_quirk_encoder_checkpoint_depth_drift_is_an_error(caplog):
    """Quirk 2: the Tiny ckpt has one more stage-3 block than the config; MambaCD drops it silently (strict=False)."""
    torch.manual_seed(0)
    model = MambaBCD(**TINY)
    extra = VMamba(dims=16, depths=(1, 1, 2, 1), ssm_ratio=1.0, num_classes=10).state_dict()
    with pytest.raises(InputError, match=r"unexpected keys \['stages\.2\.blocks\.1\."):
        model.load_encoder_checkpoint(extra)
    with caplog.at_level(logging.WARNING, logger="visionssm"):
        model.load_encoder_checkpoint(extra, strict=False)
    assert "stages.2.blocks.1" in caplog.text
    torch.testing.assert_close(
        model.encoder.stages[2].blocks[0].mixer.Ds, torch.as_tensor(extra["stages.2.blocks.0.mixer.Ds"])
    )

    source = VMamba(dims=16, depths=(1, 1, 1, 1), ssm_ratio=1.0, num_classes=10)  # same depths: loads exactly
    model.load_encoder_checkpoint({"model": source.state_dict()})
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = source.eval().forward_intermediates(x, intermediates_only=True)
        got = model.eval().encoder.forward_intermediates(x, intermediates_only=True)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_siamese_encoder_is_shared():
    torch.manual_seed(0)
    model = MambaSCD(**TINY).eval()
    x1, x2 = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        pre, post = model.encode_pair(x1, x2)
        alone = model.encode(x2)
        swapped = model(x2, x1)
        straight = model(x1, x2)
        new_t2 = model(x1, torch.randn(1, 3, 32, 32))
        new_t1 = model(torch.randn(1, 3, 32, 32), x2)
    for a, b in zip(post, alone):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert [f.shape[1] for f in pre] == [16, 32, 64, 128]
    # Each semantic map depends on its own date only; the change map on both, in order.
    torch.testing.assert_close(new_t2.semantic_t1, straight.semantic_t1, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(new_t1.semantic_t2, straight.semantic_t2, atol=1e-5, rtol=1e-4)
    assert not torch.equal(swapped.change, straight.change)  # the decoder is order-aware (T1 vs T2 positions)


def test_scan_option_reaches_every_mixer():
    model = MambaBCD(scan="snake", **TINY).eval()
    mixers = [m for m in model.modules() if m.__class__.__name__ == "SSMixer"]
    assert len(mixers) == 4 + 12 and all(m.scan == "snake" for m in mixers)
    assert model(torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)).shape == (1, 2, 32, 32)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_safetensors_round_trip(tmp_path, cls):
    torch.manual_seed(0)
    model = cls(**TINY).eval()
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file(model.state_dict(), str(path))
    torch.manual_seed(1)
    clone = cls(**TINY).eval()
    clone.load_state_dict(safetensors_torch.load_file(str(path)))
    x = torch.randn(1, 2, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(_outputs(model(x)), _outputs(clone(x))):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_torch_compile_smoke(cls):
    torch.manual_seed(0)
    model = cls(**TINY).eval()
    x = torch.randn(1, 2, 3, 32, 32)
    compiled = torch.compile(model, backend="aot_eager")
    with torch.no_grad():
        for a, b in zip(_outputs(compiled(x)), _outputs(model(x))):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
