"""nnU-Net-style convolution blocks used by U-Mamba's encoder and decoder (2D and 3D, channels-first).

- :class:`ConvNormAct`: conv (bias) -> InstanceNorm (affine) -> LeakyReLU(0.01) (optional).
- :class:`BasicBlockD`: nnU-Net residual block, identity shortcut: ``nonlin2(conv2(conv1(x)) + x)``.
- :class:`BasicResBlock`: U-Mamba's residual block with a strided 1x1 shortcut (the conv half of its conv + Mamba
  stages; the Mamba half is :class:`~visionssm.layers.mamba.MambaLayer`).
- :class:`UpsampleLayer`: nearest-neighbour upsampling then a 1x1 conv.

Module names follow nnU-Net / U-Mamba so that their state dicts load unchanged.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CONVS", "BasicBlockD", "BasicResBlock", "ConvNormAct", "UpsampleLayer"]

CONVS: dict[int, type[nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}
_NORMS: dict[int, type[nn.Module]] = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}


def _norm(spatial_dims: int, channels: int) -> nn.Module:
    return _NORMS[spatial_dims](channels, eps=1e-5, affine=True)


def _act() -> nn.Module:
    return nn.LeakyReLU(negative_slope=1e-2)


def _pad(kernel_size: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(k // 2 for k in kernel_size)


class ConvNormAct(nn.Module):
    """nnU-Net ``ConvDropoutNormReLU`` without dropout: ``conv`` (bias) -> ``norm`` -> ``nonlin`` (optional)."""

    def __init__(
        self, spatial_dims: int, cin: int, cout: int, kernel_size: tuple[int, ...], stride: tuple[int, ...], act: bool
    ) -> None:
        super().__init__()
        self.conv = CONVS[spatial_dims](cin, cout, kernel_size, stride=stride, padding=_pad(kernel_size))
        self.norm = _norm(spatial_dims, cout)
        self.nonlin: nn.Module = _act() if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.nonlin(self.norm(self.conv(x)))


class BasicBlockD(nn.Module):
    """nnU-Net residual block with an identity shortcut (stride 1, C -> C): ``nonlin2(conv2(conv1(x)) + x)``."""

    def __init__(self, spatial_dims: int, channels: int, kernel_size: tuple[int, ...]) -> None:
        super().__init__()
        ones = (1,) * spatial_dims
        self.conv1 = ConvNormAct(spatial_dims, channels, channels, kernel_size, ones, act=True)
        self.conv2 = ConvNormAct(spatial_dims, channels, channels, kernel_size, ones, act=False)
        self.skip = nn.Identity()
        self.nonlin2 = _act()

    def forward(self, x: Tensor) -> Tensor:
        return self.nonlin2(self.conv2(self.conv1(x)) + self.skip(x))


class BasicResBlock(nn.Module):
    """U-Mamba's ``BasicResBlock``: ``act2(norm2(conv2(act1(norm1(conv1(x))))) + conv3(x))``, conv3 a strided 1x1.

    Shapes: x (B, C_in, *S) -> (B, C_out, *S / stride).
    """

    def __init__(
        self,
        spatial_dims: int,
        cin: int,
        cout: int,
        kernel_size: tuple[int, ...],
        stride: tuple[int, ...],
        use_1x1conv: bool = True,
    ) -> None:
        super().__init__()
        conv = CONVS[spatial_dims]
        self.conv1 = conv(cin, cout, kernel_size, stride=stride, padding=_pad(kernel_size))
        self.norm1 = _norm(spatial_dims, cout)
        self.act1 = _act()
        self.conv2 = conv(cout, cout, kernel_size, padding=_pad(kernel_size))
        self.norm2 = _norm(spatial_dims, cout)
        self.act2 = _act()
        self.conv3 = conv(cin, cout, 1, stride=stride) if use_1x1conv else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        return self.act2(y + (self.conv3(x) if self.conv3 is not None else x))


class UpsampleLayer(nn.Module):
    """Nearest-neighbour upsampling by ``scale`` then a 1x1 conv (bias): (B, C_in, *S) -> (B, C_out, *S * scale)."""

    def __init__(self, spatial_dims: int, cin: int, cout: int, scale: tuple[int, ...]) -> None:
        super().__init__()
        self.conv = CONVS[spatial_dims](cin, cout, kernel_size=1)
        self.scale = tuple(int(s) for s in scale)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))
