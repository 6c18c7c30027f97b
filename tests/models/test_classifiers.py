"""Image classifiers VMambaClassifier, RSMamba, MedMamba: shapes, gradients, seeds, weights, sizes, fixed quirks."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

from visionssm.errors import InputError  # noqa: E402
from visionssm.models.classifiers import MedMamba, RSMamba, VMambaClassifier  # noqa: E402
from visionssm.models.classifiers.medmamba import channel_shuffle  # noqa: E402
from visionssm.models.registry import create, list_models  # noqa: E402

# CI-sized configurations and inputs, 2D and 3D.
TINY = {
    "vmamba_2d": (lambda: VMambaClassifier(out_channels=4, dims=8, depths=(1, 1), drop_path_rate=0.0), (2, 3, 16, 16)),
    "vmamba_3d": (
        lambda: VMambaClassifier(3, in_channels=1, out_channels=4, dims=8, depths=(1, 1), drop_path_rate=0.0),
        (1, 1, 16, 16, 16),
    ),
    "rsmamba_2d": (
        lambda: RSMamba(out_channels=4, img_size=16, embed_dim=16, depth=2, patch_size=4, patch_stride=2),
        (2, 3, 16, 16),
    ),
    "rsmamba_3d": (
        lambda: RSMamba(
            3, in_channels=1, out_channels=4, img_size=8, embed_dim=16, depth=2, patch_size=4, patch_stride=2
        ),
        (2, 1, 8, 8, 8),
    ),
    "medmamba_2d": (
        lambda: MedMamba(out_channels=4, dims=8, depths=(1, 1), d_state=4, drop_path_rate=0.0),
        (2, 3, 16, 16),
    ),
    "medmamba_3d": (
        lambda: MedMamba(3, in_channels=1, out_channels=4, dims=8, depths=(1, 1), d_state=4, drop_path_rate=0.0),
        (2, 1, 8, 8, 8),
    ),
}

# Published sizes in M (models.md §9-§11, §16): (builder on the meta device, published, source).
PUBLISHED = {
    "rsmamba_b": (lambda: RSMamba(out_channels=21), 6.4),  # paper Table II
    "rsmamba_l": (lambda: RSMamba(out_channels=21, embed_dim=256, depth=36), 16.2),
    "rsmamba_h": (lambda: RSMamba(out_channels=21, embed_dim=320, depth=48), 33.1),
    "medmamba_t": (lambda: MedMamba(out_channels=6), 14.46),  # counted from the published code, 6 classes
    "medmamba_t_1000": (lambda: MedMamba(out_channels=1000), 15.22),
    "medmamba_s": (lambda: MedMamba(out_channels=6, variant="small"), 18.63),
    "medmamba_b": (lambda: MedMamba(out_channels=6, variant="base"), 39.86),
    "vmamba_tiny": (lambda: VMambaClassifier(variant="tiny"), 30),  # README, 1000 classes
    "vmamba_small": (lambda: VMambaClassifier(variant="small"), 50),
    "vmamba_base": (lambda: VMambaClassifier(variant="base"), 89),
    "vmamba_vanilla_tiny": (lambda: VMambaClassifier(variant="vanilla_tiny"), 23),
}


def build(name: str, seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    factory, shape = TINY[name]
    return factory(), torch.randn(shape)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", TINY)
def test_forward_backward(name):
    model, x = build(name)
    y = model(x)
    assert y.shape == (x.shape[0], 4)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", TINY)
def test_deterministic_with_seed(name):
    (a, x), (b, _) = build(name, seed=3), build(name, seed=3)
    a.eval(), b.eval()
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
        torch.testing.assert_close(a(x), a(x), rtol=0, atol=0)  # repeated eval calls agree (RSMamba's shuffle too)


@pytest.mark.parametrize("name", TINY)
def test_safetensors_round_trip(name, tmp_path):
    model, x = build(name, seed=1)
    other, _ = build(name, seed=2)
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file(model.state_dict(), str(path))
    other.load_state_dict(safetensors_torch.load_file(str(path)))
    model.eval(), other.eval()
    with torch.no_grad():
        torch.testing.assert_close(other(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", PUBLISHED)
def test_parameter_counts_match_published(name):
    factory, published = PUBLISHED[name]
    with torch.device("meta"):  # no memory, no init cost: just count
        params = count(factory()) / 1e6
    assert abs(params - published) / published < 0.02, params


def test_registered_and_created_by_name():
    assert {"vmamba_classifier", "rsmamba", "medmamba"} <= set(list_models(task="classification"))
    model = create("medmamba", out_channels=3, dims=8, depths=(1,), d_state=2)
    assert isinstance(model, MedMamba) and model(torch.randn(1, 3, 8, 8)).shape == (1, 3)


@pytest.mark.parametrize("name", ["rsmamba_2d", "medmamba_2d", "vmamba_2d"])
def test_no_head_returns_pooled_features(name):
    model, x = build(name)
    model.reset_classifier(0) if hasattr(model, "reset_classifier") else setattr(model, "head", torch.nn.Identity())
    assert model(x).shape == (x.shape[0], model.num_features)


# ---- VMambaClassifier ---------------------------------------------------------------------------------------------
def test_vmamba_classifier_is_the_timm_preset():
    timm = pytest.importorskip("timm")
    import visionssm.models.backbones  # noqa: F401  (timm registrations)

    with torch.device("meta"):
        ours = VMambaClassifier(in_channels=1, out_channels=7, variant="tiny")
        ref = timm.create_model("visionssm_vmamba_tiny", in_chans=1, num_classes=7)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert ours.in_chans == 1 and ours.num_classes == 7 and ours.variant == "tiny"


def test_vmamba_classifier_rejects_bad_arguments():
    with pytest.raises(InputError, match="variant='huge'"):
        VMambaClassifier(variant="huge")
    with pytest.raises(InputError, match="in_channels/out_channels"):
        VMambaClassifier(num_classes=3)


# ---- RSMamba ------------------------------------------------------------------------------------------------------
def test_rsmamba_eval_shuffle_is_fixed_and_seeded():
    """The original re-draws the shuffle at eval (models.md §15.3); ours is fixed per layer, from ``shuffle_seed``."""
    model, x = build("rsmamba_2d")
    model.eval()
    with torch.no_grad():
        first = model(x)
        torch.testing.assert_close(model(x), first, rtol=0, atol=0)
        order = model.shuffle_order(0, 64, x.device)
        assert torch.equal(order, model.shuffle_order(0, 64, x.device))
        assert sorted(order.tolist()) == list(range(64)) and not torch.equal(order, torch.arange(64))
        model.shuffle_seed = 7  # another seed: other permutations, other outputs
        assert not torch.equal(model.shuffle_order(0, 64, x.device), order)
        assert not torch.allclose(model(x), first)
        model.shuffle_seed, model.eval_shuffle = 0, "random"  # the original behaviour, on request
        torch.manual_seed(0)
        a = model(x)
        assert not torch.allclose(model(x), a)


def test_rsmamba_training_shuffle_follows_the_global_seed():
    model, x = build("rsmamba_2d")
    outputs = []
    for _ in range(2):
        torch.manual_seed(5)
        outputs.append(model(x))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


def test_rsmamba_paths_and_gate():
    model, x = build("rsmamba_2d")
    assert len(model.gates) == 2 and model.gates[0].weight.shape == (3, 3 * 16)
    plain = RSMamba(out_channels=4, img_size=16, embed_dim=16, depth=2, patch_size=4, patch_stride=2, scan="forward")
    assert len(plain.gates) == 0 and plain(x).shape == (2, 4)
    with pytest.raises(InputError, match="scan="):
        RSMamba(scan=("forward", "sideways"))


def test_rsmamba_grid_and_position_embedding():
    """224^2, k 16, s 8 with end padding -> 28 x 28 tokens; other sizes resize the position embedding."""
    model = RSMamba(out_channels=2, img_size=224, embed_dim=8, depth=1)
    assert model.grid_size == (28, 28) and model.pos_embed.shape == (1, 784, 8)
    tokens, grid = model._embed(torch.randn(1, 3, 224, 224))
    assert grid == (28, 28) and tokens.shape == (1, 784, 8)
    small, x = build("rsmamba_2d")
    assert small(torch.randn(1, 3, 24, 20)).shape == (1, 4)  # grid (12, 10) instead of (8, 8)
    with pytest.raises(InputError, match="expected"):
        small(torch.randn(1, 1, 16, 16))


# ---- MedMamba -----------------------------------------------------------------------------------------------------
def test_channel_shuffle_interleaves_the_halves():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_medmamba_block_structure():
    model = MedMamba(out_channels=6)
    block = model.stages[0][0]
    assert block.mixer.d_model == 48 and block.mixer.d_inner == 96 and block.mixer.d_state == 16
    assert block.mixer.with_z and block.mixer.num_directions == 4
    assert [type(m).__name__ for m in block.conv_branch] == [
        "BatchNorm2d", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "ReLU"
    ]  # fmt: skip
    assert len(model.stages) == 4 and [len(s) for s in model.stages] == [3, 3, 5, 2]  # blocks (+ PatchMerging)


def test_medmamba_odd_sizes_use_every_pixel():
    """The original's PatchMerging2D crops an odd map (36 px -> 9 patches -> 4, the 9th row and column dropped); ours
    zero-pads (9 -> 5), so those pixels reach the head."""
    torch.manual_seed(0)
    model = MedMamba(out_channels=3, dims=8, depths=(1, 1), d_state=2).eval()
    x = torch.randn(1, 3, 36, 36)
    with torch.no_grad():
        assert model.forward_features(x).shape == (1, 16, 5, 5)
    # Without blocks before the first merge the 9th patch row reaches the head only through the padded merge.
    merge_first = MedMamba(out_channels=3, dims=8, depths=(0, 1), d_state=2).eval()
    changed = x.clone()
    changed[:, :, 32:] += 1.0  # only the pixels of the 9th patch row
    with torch.no_grad():
        assert not torch.allclose(merge_first(x), merge_first(changed))


# ---- torch.compile ------------------------------------------------------------------------------------------------
def _compile_smoke(name: str) -> None:
    model, x = build(name)
    model.eval()
    compiled = torch.compile(model, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


def test_compile_smoke_rsmamba():  # about 7 s on 2 cores
    _compile_smoke("rsmamba_2d")


@pytest.mark.slow  # 40-75 s on 2 cores (the N-D cross-scan plans and conv stems trace slowly)
@pytest.mark.parametrize("name", ["vmamba_2d", "medmamba_2d"])
def test_compile_smoke_slow(name):
    _compile_smoke(name)
