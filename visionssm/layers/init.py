"""Weight initialisation shared by the VMamba family of models."""

from __future__ import annotations

from torch import nn


def init_linear_and_layernorm(module: nn.Module) -> None:
    """VMamba's rule, applied with ``model.apply``: truncated normal (std 0.02) for every Linear weight with zero
    bias, LayerNorm weight 1 and bias 0; every other module keeps the initialisation it was built with."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
