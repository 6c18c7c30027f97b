"""AtrousMambaBCD: atrous-window scans in the encoder, Siamese weights, shapes, inputs, weights and checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")
pytest.importorskip("safetensors.torch")
yaml = pytest.importorskip("yaml")

from model_checks import assert_deterministic_and_round_trips  # noqa: E402
from visionssm.errors import InputError  # noqa: E402
from visionssm.layers import SSMixer  # noqa: E402
from visionssm.models import create, list_models  # noqa: E402
from visionssm.models.backbones.vmamba import VMamba  # noqa: E402
from visionssm.models.change import AtrousMambaBCD  # noqa: E402
from visionssm.models.registry import build_from_config  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "models"
TINY = dict(dims=16, depths=(1, 1, 2, 1), decoder_channels=16, ssm_ratio=1.0)


def _pair(size: int = 64, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(batch, 3, size, size), torch.randn(batch, 3, size, size)


def test_registered_and_preset():
    assert "atrous_mamba_bcd" in list_models(task="change_detection")
    model = create("atrous_mamba_bcd", out_channels=3, **TINY)
    assert isinstance(model, AtrousMambaBCD) and model.head.out_channels == 3
    config = yaml.safe_load((CONFIGS / "atrous_mamba_bcd_tiny.yaml").read_text())
    with torch.device("meta"):
        preset = build_from_config(config, source="atrous_mamba_bcd_tiny")
    params = sum(p.numel() for p in preset.parameters()) / 1e6
    assert params == pytest.approx(31.61, abs=0.01)  # MambaBCD-T's 32.61 M less the encoder's 2 of 4 S6 sets
    assert preset.encoder_rates == [[1, 2], [1, 2], [1, 2, 3, 1], [1, 2]]


def test_forward_backward():
    torch.manual_seed(0)
    model = AtrousMambaBCD(**TINY)
    x1, x2 = _pair()
    y = model(x1, x2)
    assert y.shape == (2, 2, 64, 64) and torch.isfinite(y).all()
    y.float().logsumexp(1).mean().backward()
    bad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not bad


def test_deterministic_and_round_trips(tmp_path):
    def build():
        return AtrousMambaBCD(**TINY), torch.randn(1, 2, 3, 32, 32)

    assert_deterministic_and_round_trips(build, tmp_path)


def test_encoder_mixers_use_atrous_window_plans():
    model = AtrousMambaBCD(atrous_rates=(1, 3), atrous_window=5, **TINY)
    assert model.encoder_rates == [[1], [1], [1, 3], [1]]
    for stage, rates in zip(model.encoder.stages, model.encoder_rates):
        for block, rate in zip(stage.blocks, rates):
            plan = block.mixer.plan_for((12, 12))
            assert plan.name == "atrous" and plan.num_directions == 2
            assert plan.directions == (f"dilated_window_r{rate}_w5", f"dilated_window_r{rate}_w5_rev")
            assert torch.equal(plan.index[1], plan.index[0].flip(0))
    # Rate 3: consecutive tokens inside a window row are 3 pixels apart.
    plan = model.encoder.stages[2].blocks[1].mixer.plan_for((12, 12))
    assert plan.index[0, :3].tolist() == [0, 3, 6]
    decoder = [m for m in model.decoder.modules() if isinstance(m, SSMixer)]
    assert len(decoder) == 12 and all(m.scan == "cross" for m in decoder)


def test_siamese_branches_share_weights():
    torch.manual_seed(0)
    model = AtrousMambaBCD(**TINY).eval()
    assert not any("t1" in n or "t2" in n for n, _ in model.named_parameters())  # one encoder, no per-date copies
    x1, x2 = _pair(32, 1)
    with torch.no_grad():
        pre, post = model.encode_pair(x1, x2)
        alone_pre, alone_post = model.encode(x1), model.encode(x2)
        swapped, straight = model(x2, x1), model(x1, x2)
    for a, b in zip(pre + post, alone_pre + alone_post):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert not torch.equal(swapped, straight)  # the decoder knows which date is which


def test_input_layouts_and_errors():
    torch.manual_seed(0)
    model = AtrousMambaBCD(**TINY).eval()
    x1, x2 = torch.randn(1, 3, 48, 40), torch.randn(1, 3, 48, 40)  # not multiples of 32 or of the window
    with torch.no_grad():
        two = model(x1, x2)
        stacked = model(torch.stack([x1, x2], dim=1))
    assert two.shape == (1, 2, 48, 40)
    torch.testing.assert_close(two, stacked, rtol=0, atol=0)
    with pytest.raises(InputError, match=r"\(1, 3, 48, 40\) vs \(1, 3, 32, 32\)"):
        model(x1, torch.randn(1, 3, 32, 32))
    with pytest.raises(InputError, match=r"\(B, 2, C, H, W\)"):
        model(x1)
    with pytest.raises(InputError, match="spatial_dims=3"):
        AtrousMambaBCD(spatial_dims=3, **TINY)
    for bad in ((), (0, 1), [1.5], (True,)):
        with pytest.raises(InputError, match="atrous_rates"):
            AtrousMambaBCD(atrous_rates=bad, **TINY)
    with pytest.raises(InputError, match="window"):
        AtrousMambaBCD(atrous_window=0, **TINY)


def test_loads_cross_scan_vmamba_checkpoint():
    """ImageNet VMamba weights (4 directions) load; our 2 directions take the row-major set and its reversal."""
    torch.manual_seed(0)
    model = AtrousMambaBCD(**TINY)
    source = VMamba(dims=16, depths=(1, 1, 2, 1), ssm_ratio=1.0, num_classes=10).state_dict()
    model.load_encoder_checkpoint({"model": source})
    mixer = model.encoder.stages[2].blocks[1].mixer
    prefix = "stages.2.blocks.1.mixer."
    torch.testing.assert_close(mixer.x_proj_weight, source[prefix + "x_proj_weight"][[0, 2]])
    torch.testing.assert_close(mixer.A_logs, source[prefix + "A_logs"].view(4, mixer.d_inner, -1)[[0, 2]].flatten(0, 1))
    torch.testing.assert_close(model.encoder.patch_embed.conv1.weight, source["patch_embed.conv1.weight"])
    model.load_encoder_checkpoint(model.encoder.state_dict())  # our own 2-direction layout loads unchanged
    with pytest.raises(InputError, match="unexpected keys"):
        model.load_encoder_checkpoint(VMamba(dims=16, depths=(1, 1, 3, 1), ssm_ratio=1.0).state_dict())


@pytest.mark.slow
def test_torch_compile_smoke():
    torch.manual_seed(0)
    model = AtrousMambaBCD(**TINY).eval()
    x = torch.randn(1, 2, 3, 32, 32)
    compiled = torch.compile(model, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-5)
