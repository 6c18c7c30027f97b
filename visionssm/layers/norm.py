"""Channels-first LayerNorm for 2D and 3D feature maps."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class LayerNormNd(nn.LayerNorm):
    """LayerNorm over the channel axis of a channels-first tensor, for any number of spatial axes.

    The parameters are those of ``nn.LayerNorm(num_channels)`` (``weight``, ``bias`` of shape (C,)), so state dicts
    of channels-last LayerNorms (VMamba ``ln``) and of timm's ``LayerNorm2d`` (VMamba ``ln2d``) load unchanged.

    Shapes: x (B, C, *spatial) -> (B, C, *spatial); *spatial may be empty, (H, W) or (D, H, W).
    """

    def __init__(self, num_channels: int, eps: float = 1e-5, elementwise_affine: bool = True) -> None:
        super().__init__(num_channels, eps=eps, elementwise_affine=elementwise_affine)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:  # (B, C): nothing to move
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        y = F.layer_norm(x.movedim(1, -1), self.normalized_shape, self.weight, self.bias, self.eps)
        return y.movedim(-1, 1)
