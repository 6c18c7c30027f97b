"""FLOP counting in VMamba's convention: multiply-accumulates of matmuls and convolutions, plus analytic terms.

VMamba's published GFLOPs (e.g. 4.9 G for VMamba-T at 224x224) come from fvcore (``VSSM.flops`` in
``classification/models/vmamba.py``), which counts one multiply-add as **one** FLOP (MACs) for linear / conv / matmul /
einsum, counts LayerNorm as 5 FLOPs per element (4 without affine) and adds each selective scan analytically as
``9 * B * L * D * N + B * D * L`` (albertgu's formula, state-spaces/mamba issue #110, with the D skip and without z;
``D`` here is every scanned channel, i.e. K * d_inner for K directions). Element-wise ops (activations, residual adds,
gating) are not counted.

:func:`count_flops` reproduces that convention: ``torch.utils.flop_counter.FlopCounterMode`` counts matmuls and
convolutions with a multiply-add as 2 FLOPs, so its total is halved; LayerNorms and scans are added from forward
hooks on ``nn.LayerNorm``, :class:`visionssm.layers.SSMixer` and :class:`visionssm.layers.MambaMixer` (the Mamba-1
mixer of U-Mamba, LightM-UNet, SegMamba and RSMamba: one scan per call over its K * d_inner channels). Global average
pooling (fvcore: one FLOP per input element, ~0.04 MFLOP for VMamba-T) and norms other than LayerNorm are not
counted.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from visionssm.layers import MambaMixer, SSMixer

__all__ = ["count_flops", "scan_flops"]


def scan_flops(batch: int, length: int, channels: int, d_state: int, with_d: bool = True, with_z: bool = False) -> int:
    """Analytic FLOPs of one selective scan over (batch, channels, length) with state size ``d_state``."""
    flops = 9 * batch * length * channels * d_state
    if with_d:
        flops += batch * channels * length
    if with_z:
        flops += batch * channels * length
    return flops


def count_flops(model: nn.Module, input: Tensor, breakdown: bool = False) -> int | tuple[int, dict[str, int]]:
    """FLOPs of one forward pass of ``model`` on ``input``, in VMamba's (fvcore, MAC) convention.

    Args:
        model: any module; SSMixer / MambaMixer scans and LayerNorms inside it are counted analytically.
        input: the input batch (FLOPs scale with its batch size).
        breakdown: also return ``{"matmul_conv": ..., "layernorm": ..., "scan": ...}``.

    Returns:
        Total FLOPs (int), or (total, breakdown).
    """
    counts = {"matmul_conv": 0, "layernorm": 0, "scan": 0}

    def on_mixer_core(module: SSMixer, args: tuple[Any, ...], output: Tensor) -> None:
        batch, _, *spatial = args[0].shape
        length = math.prod(spatial)
        counts["scan"] += scan_flops(batch, length, module.num_directions * module.d_inner, module.d_state)

    def on_token_mixer(module: MambaMixer, args: tuple[Any, ...], output: Tensor) -> None:
        batch, length, _ = args[0].shape  # tokens (B, L, d_model)
        counts["scan"] += scan_flops(batch, length, module.num_directions * module.d_inner, module.d_state)

    def on_norm(module: nn.LayerNorm, args: tuple[Any, ...], output: Tensor) -> None:
        counts["layernorm"] += args[0].numel() * (5 if module.elementwise_affine else 4)

    hooks = []
    for module in model.modules():
        if isinstance(module, SSMixer):
            hooks.append(module.register_forward_hook(on_mixer_core))  # the scan runs over the input's grid
        if isinstance(module, MambaMixer):
            hooks.append(module.register_forward_hook(on_token_mixer))
        if isinstance(module, nn.LayerNorm):
            hooks.append(module.register_forward_hook(on_norm))
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(input)
    finally:
        for hook in hooks:
            hook.remove()
    counts["matmul_conv"] = counter.get_total_flops() // 2
    total = sum(counts.values())
    return (total, counts) if breakdown else total
