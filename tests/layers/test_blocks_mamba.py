"""visionssm.layers.VimBlock against Vim's bimamba-v2 block written out by hand (hustvl/Vim, mamba_simple.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from visionssm.errors import InputError
from visionssm.kernels import selective_scan
from visionssm.layers import VimBlock
from visionssm.models.flops import count_flops, scan_flops

DIM = 8  # d_inner 16, dt_rank 1


def vim_inner(p: dict[str, torch.Tensor], suffix: str, xz: torch.Tensor, d_conv: int, R: int) -> torch.Tensor:
    """Vim's ``mamba_inner_fn_no_out_proj`` for one direction: xz (B, 2 Di, L) -> y (B, Di, L), in xz's order."""
    x, z = xz.chunk(2, dim=1)
    dim, length = x.shape[1:]
    N = p[f"A{suffix}_log"].shape[1]
    x = F.silu(F.conv1d(x, p[f"conv1d{suffix}.weight"], p[f"conv1d{suffix}.bias"], padding=d_conv - 1, groups=dim))
    x = x[..., :length]  # causal: the first L outputs of the conv padded on both sides
    dt, B, C = torch.split(p[f"x_proj{suffix}.weight"] @ x, [R, N, N], dim=1)
    return selective_scan(
        x,
        p[f"dt_proj{suffix}.weight"] @ dt,
        -torch.exp(p[f"A{suffix}_log"]),
        B,
        C,
        p[f"D{suffix}"],
        z=z,
        delta_bias=p[f"dt_proj{suffix}.bias"],
        delta_softplus=True,
        backend="reference",
    )


def vim_block(block: VimBlock, x: torch.Tensor) -> torch.Tensor:
    """Vim's Block (first layer: residual = x) + the bimamba v2 mixer, both directions written with flips."""
    p = dict(block.mixer.named_parameters())
    m = block.mixer
    xz = (block.norm(x) @ p["in_proj.weight"].T).transpose(1, 2)  # (B, 2 Di, L)
    out = vim_inner(p, "", xz, m.d_conv, m.dt_rank)
    out_b = vim_inner(p, "_b", xz.flip(-1), m.d_conv, m.dt_rank)
    y = (out + out_b.flip(-1)) / 2  # if_divide_out=True
    return x + y.transpose(1, 2) @ p["out_proj.weight"].T


def make(seed: int = 0, **kwargs) -> VimBlock:
    torch.manual_seed(seed)
    block = VimBlock(DIM, backend=kwargs.pop("backend", "reference"), **kwargs)
    with torch.no_grad():  # move the norm, A_log and D off their structured init so that a mix-up shows
        for name, p in block.named_parameters():
            if name.startswith(("norm", "mixer.A", "mixer.D")):
                p.add_(0.3 * torch.rand_like(p))
    return block


@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("norm", ["rms", "layer"])
def test_vim_block_matches_hand_forward(backend, norm):
    block = make(backend=backend, norm=norm).double()
    x = torch.randn(2, 13, DIM, dtype=torch.float64)
    torch.testing.assert_close(block(x), vim_block(block, x), rtol=1e-9, atol=1e-9)


def test_vim_block_gradients_match_hand_backward():
    block = make().double()
    x = torch.randn(2, 9, DIM, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 9, DIM, dtype=torch.float64)
    params = [x, *block.parameters()]
    ours = torch.autograd.grad((block(x) * weights).sum(), params)
    hand = torch.autograd.grad((vim_block(block, x) * weights).sum(), params)
    for name, a, b in zip(["x", *(n for n, _ in block.named_parameters())], ours, hand):
        assert a.abs().sum() > 0, name  # every parameter, both directions included, gets a gradient
        # rtol 1e-6: the mixer hands A, D and the dt bias to the scan in float32 (their gradients come back in it)
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9, msg=name)


def test_vim_block_names_and_size_are_vims():
    """Vim-Ti layer (embed_dim 192, d_state 16, bimamba v2, RMSNorm): parameter names and count from Vim's code."""
    block = VimBlock(192)
    names = {n for n, _ in block.named_parameters()}
    per_direction = {"conv1d{}.weight", "conv1d{}.bias", "x_proj{}.weight", "dt_proj{}.weight", "dt_proj{}.bias"}
    expected = {"norm.weight", "mixer.in_proj.weight", "mixer.out_proj.weight"}
    for s in ("", "_b"):
        expected |= {f"mixer.{n.format(s)}" for n in per_direction} | {f"mixer.A{s}_log", f"mixer.D{s}"}
    assert names == expected
    # in_proj 192 * 768 + out_proj 384 * 192 + norm 192, and per direction conv 384 * 4 + 384, x_proj 384 * (12 + 32),
    # dt_proj 12 * 384 + 384, A_log 384 * 16, D 384: 24 such layers are 6.77 M of Vim-Ti's 7 M.
    per_dir = 384 * 5 + 384 * 44 + 12 * 384 + 384 + 384 * 16 + 384
    assert sum(p.numel() for p in block.parameters()) == 192 * 768 + 384 * 192 + 192 + 2 * per_dir


def test_residual_in_fp32_under_autocast():
    block, plain = make(residual_in_fp32=True), make(residual_in_fp32=False)
    x = torch.randn(2, 7, DIM).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
        assert plain(x).dtype == torch.bfloat16  # without the flag the residual stream follows autocast
        torch.testing.assert_close(out, block(x.float()))  # the norm sees the input in its weight's dtype, as in Vim
    assert out.dtype == torch.float32


def test_drop_path_drops_the_mixer_branch():
    block = make(drop_path=1.0)
    x = torch.randn(2, 7, DIM)
    torch.testing.assert_close(block.train()(x), x)
    assert not torch.allclose(block.eval()(x), x)


def test_sum_merge_and_mixer_kwargs():
    block = make(merge="sum", d_state=4, expand=1, dt_rank=3)
    assert (block.mixer.merge, block.mixer.d_state, block.mixer.d_inner, block.mixer.dt_rank) == ("sum", 4, DIM, 3)
    assert block(torch.randn(1, 5, DIM)).shape == (1, 5, DIM)


def test_input_errors():
    with pytest.raises(InputError, match="norm="):
        VimBlock(DIM, norm="batch")
    with pytest.raises(InputError, match=r"expected \(B, L, 8\)"):
        make()(torch.randn(2, DIM, 4, 4))


def test_flops_count_both_scans_once():
    """count_flops adds each MambaMixer call's scan analytically, over both directions (2 * d_inner channels)."""
    block = make()
    x = torch.randn(2, 10, DIM)
    _, parts = count_flops(block, x, breakdown=True)
    assert parts["scan"] == scan_flops(2, 10, 2 * block.mixer.d_inner, block.mixer.d_state)
