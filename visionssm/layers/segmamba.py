"""SegMamba's convolutional encoder blocks: the gated spatial convolution (GSC) and the per-stage channel MLP.

Written from the paper (Xing et al., arXiv 2401.13560) and the published code (ge-xing/SegMamba,
``model_segmamba/segmamba.py``; spec models.md §4). Both are 3D, channels-first, and keep the original's submodule
names (``proj``, ``norm``, ``proj2``, ... / ``fc1``, ``fc2``) so its state dicts load 1:1.
"""

from __future__ import annotations

from torch import Tensor, nn

from visionssm.errors import InputError

__all__ = ["ChannelMlp", "GatedSpatialConv"]


class GatedSpatialConv(nn.Module):
    """SegMamba's gated spatial convolution (GSC), as in the released code::

        branch 1: conv3 -> IN -> ReLU -> conv3 -> IN -> ReLU
        branch 2: conv1 -> IN -> ReLU
        out = x + ReLU(IN(conv1(branch 1 + branch 2)))

    The branches are **summed** and fused by a 1x1x1 conv; the paper's figure shows a product and a 3x3x3 conv, but
    the released weights were trained with the code's version (spec §4, §15.2). Every conv has a bias; InstanceNorm3d
    has PyTorch's defaults (eps 1e-5, no affine parameters).

    Args:
        channels: C, input and output channels.

    Shapes: x (B, C, D, H, W) -> (B, C, D, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels < 1:
            raise InputError(f"GatedSpatialConv: channels={channels!r} must be positive")
        self.channels = channels
        self.proj = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm = nn.InstanceNorm3d(channels)
        self.nonliner = nn.ReLU()
        self.proj2 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm2 = nn.InstanceNorm3d(channels)
        self.nonliner2 = nn.ReLU()
        self.proj3 = nn.Conv3d(channels, channels, 1)
        self.norm3 = nn.InstanceNorm3d(channels)
        self.nonliner3 = nn.ReLU()
        self.proj4 = nn.Conv3d(channels, channels, 1)
        self.norm4 = nn.InstanceNorm3d(channels)
        self.nonliner4 = nn.ReLU()

    def extra_repr(self) -> str:
        return f"channels={self.channels}"

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[1] != self.channels:
            raise InputError(f"GatedSpatialConv: x has shape {tuple(x.shape)}, expected (B, {self.channels}, D, H, W)")
        x1 = self.nonliner(self.norm(self.proj(x)))
        x1 = self.nonliner2(self.norm2(self.proj2(x1)))
        x2 = self.nonliner3(self.norm3(self.proj3(x)))
        return x + self.nonliner4(self.norm4(self.proj4(x1 + x2)))


class ChannelMlp(nn.Module):
    """SegMamba's ``MlpChannel``: 1x1x1 conv C -> hidden, GELU, 1x1x1 conv hidden -> C (both with bias).

    Args:
        channels: C.
        hidden_channels: width of the hidden layer (SegMamba: 2 C).

    Shapes: x (B, C, D, H, W) -> (B, C, D, H, W).
    """

    def __init__(self, channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv3d(channels, hidden_channels, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv3d(hidden_channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))
