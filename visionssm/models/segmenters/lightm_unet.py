"""LightM-UNet: a lightweight U-Net with residual vision Mamba (RVM) layers (Liao et al., arXiv 2403.05246).

Our implementation, written from the paper and the published code (MrBlankness/LightM-UNet, Apache-2.0,
``lightm-unet/nnunetv2/nets/LightMUNet.py`` as fixed on 2024-03-29, d2bed4a: DWConv stem, ``ResUpBlock`` decoder),
for 2D images and 3D volumes, channels-first. The nnU-Net trainer builds it with ``init_filters=32``,
``blocks_down=(1, 2, 2, 4)``, ``blocks_up=(1, 1, 1)``.

Architecture (C = init_filters, levels i = 0..3 with channels C * 2^i)::

    convInit: DWConv (depthwise k3 + pointwise, no bias)          (B, C_in, *S) -> (B, C, *S)
    down_layers[i]: [i > 0: RVM (C 2^(i-1) -> C 2^i) + MaxPool s2] + blocks_down[i] x ResMambaBlock
        ResMambaBlock: x + RVM(ReLU(GN(RVM(ReLU(GN(x))))))
        RVM (:class:`visionssm.layers.ResidualVisionMamba`): Linear(LN(Mamba(LN(x)) + skip_scale * x)) per token
    up level j = 0..2: conv 1x1 (halve channels, no bias) -> upsample x2 (bi/trilinear, not trainable)
        -> + skip (additive) -> blocks_up[j] x ResUpBlock: ReLU(GN(DWConv(ReLU(GN(x))) + skip_scale * x))
    conv_final: GN -> ReLU -> DWConv 1x1 (depthwise 1x1 + pointwise, with bias) -> (B, out_channels, *S)

GroupNorm has 8 groups; Mamba has d_state 16, d_conv 4, expand 2 on the raster-flattened tokens (one direction).
Module names (``convInit``, ``down_layers``, ``up_samples``, ``up_layers``, ``conv_final``, the MONAI ``.conv``
wrappers, mamba_ssm parameter names) follow the original so its state dicts load 1:1.

Parameter count: the code gives 5.01 M (2D) / 5.02 M (3D), not the paper's 1.09 M / 1.87 M (spec models.md §2, §15;
LightM-UNet issue #30). Sizes must be multiples of 2^(len(blocks_down) - 1) (8 with the published depths); others
raise :class:`~visionssm.errors.InputError` (the original fails in a skip addition).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from visionssm.errors import InputError
from visionssm.layers import ResidualVisionMamba
from visionssm.layers.ssm import check_spatial_dims
from visionssm.models.registry import register

__all__ = ["LightMUNet", "ResMambaBlock", "ResUpBlock"]

_CONVS: dict[int, type[nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}
_POOLS: dict[int, type[nn.Module]] = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_RASTER = (None, 1, "raster", "raster3d")


def _conv(spatial_dims: int, cin: int, cout: int, kernel_size: int = 1, groups: int = 1, bias: bool = False):
    """A convolution wrapped as ``.conv`` (MONAI ``Convolution(conv_only=True)`` layout), 'same' padding."""
    conv = _CONVS[spatial_dims](cin, cout, kernel_size, padding=kernel_size // 2, groups=groups, bias=bias)
    return nn.Sequential(OrderedDict(conv=conv))


def dwconv(spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = False):
    """Depthwise-separable conv: depthwise k (C_in -> C_in) then pointwise (C_in -> C_out)."""
    return nn.Sequential(
        _conv(spatial_dims, in_channels, in_channels, kernel_size, groups=in_channels, bias=bias),
        _conv(spatial_dims, in_channels, out_channels, 1, bias=bias),
    )


class ResMambaBlock(nn.Module):
    """``x + RVM(ReLU(GN(RVM(ReLU(GN(x))))))`` with two RVM layers of width C.

    Shapes: x (B, C, *spatial) -> (B, C, *spatial).
    """

    def __init__(self, spatial_dims: int, channels: int, num_groups: int = 8, **rvm_kwargs: Any) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, channels)
        self.norm2 = nn.GroupNorm(num_groups, channels)
        self.act = nn.ReLU()
        self.conv1 = ResidualVisionMamba(spatial_dims, channels, channels, **rvm_kwargs)
        self.conv2 = ResidualVisionMamba(spatial_dims, channels, channels, **rvm_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(self.act(self.norm1(x)))
        y = self.conv2(self.act(self.norm2(y)))
        return y + x


class ResUpBlock(nn.Module):
    """``ReLU(GN(DWConv(ReLU(GN(x))) + skip_scale * x))``, ``skip_scale`` a learnable scalar (init 1).

    Shapes: x (B, C, *spatial) -> (B, C, *spatial).
    """

    def __init__(self, spatial_dims: int, channels: int, num_groups: int = 8, kernel_size: int = 3) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, channels)
        self.norm2 = nn.GroupNorm(num_groups, channels)
        self.act = nn.ReLU()
        self.conv = dwconv(spatial_dims, channels, channels, kernel_size)
        self.skip_scale = nn.Parameter(torch.ones(1))

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(self.act(self.norm1(x))) + self.skip_scale * x
        return self.act(self.norm2(y))


@register("lightm_unet", "segmentation")
class LightMUNet(nn.Module):
    """LightM-UNet for 2D images or 3D volumes (MONAI-style arguments).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels (segmentation heads).
        init_filters: channels of the first level (nnU-Net trainer: 32; the class default of the original: 8).
        blocks_down: ResMambaBlocks per encoder level.
        blocks_up: ResUpBlocks per decoder level, deepest first; ``len(blocks_up) == len(blocks_down) - 1``.
        num_groups: GroupNorm groups (8).
        dropout_prob: dropout after the stem (None: none).
        d_state, d_conv, expand: Mamba sizes (16, 4, 2).
        scan: token order of every Mamba: "raster" (the original's, one direction; also "raster3d", 1 or None),
            or any direction spec of :class:`visionssm.layers.MambaMixer` ("bidirectional", a scan name, ...).
        force_float32: run the Mamba layers in float32 with autocast off.
        backend: selective-scan backend.

    Shapes: x (B, in_channels, *S), S = (H, W) or (D, H, W), each a multiple of 2^(len(blocks_down) - 1)
    -> logits (B, out_channels, *S).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        init_filters: int = 32,
        blocks_down: Sequence[int] = (1, 2, 2, 4),
        blocks_up: Sequence[int] = (1, 1, 1),
        num_groups: int = 8,
        dropout_prob: float | None = None,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        scan: int | str | None = "raster",
        force_float32: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        blocks_down, blocks_up = tuple(blocks_down), tuple(blocks_up)
        if len(blocks_up) != len(blocks_down) - 1:
            raise InputError(
                f"LightMUNet: blocks_up={blocks_up} needs len(blocks_down) - 1 = {len(blocks_down) - 1} entries"
            )
        if init_filters % num_groups:
            raise InputError(f"LightMUNet: init_filters={init_filters} must be a multiple of num_groups={num_groups}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.init_filters = init_filters
        self.blocks_down = blocks_down
        self.blocks_up = blocks_up
        self.scan = scan
        self.divisor = 2 ** (len(blocks_down) - 1)
        directions = 1 if scan in _RASTER else scan
        rvm_kwargs = dict(
            d_state=d_state,
            d_conv=d_conv,
            expand=expand,
            directions=directions,
            force_float32=force_float32,
            backend=backend,
        )
        self.convInit = dwconv(spatial_dims, in_channels, init_filters)
        self.dropout: nn.Module = nn.Dropout(dropout_prob) if dropout_prob is not None else nn.Identity()
        self.down_layers = nn.ModuleList()
        for i, depth in enumerate(blocks_down):
            channels = init_filters * 2**i
            down: nn.Module = nn.Identity()
            if i > 0:
                down = nn.Sequential(
                    ResidualVisionMamba(spatial_dims, channels // 2, channels, **rvm_kwargs),
                    _POOLS[spatial_dims](kernel_size=2, stride=2),
                )
            blocks = [ResMambaBlock(spatial_dims, channels, num_groups, **rvm_kwargs) for _ in range(depth)]
            self.down_layers.append(nn.Sequential(down, *blocks))
        mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self.up_layers, self.up_samples = nn.ModuleList(), nn.ModuleList()
        n_up = len(blocks_up)
        for j, depth in enumerate(blocks_up):
            channels = init_filters * 2 ** (n_up - j)
            self.up_layers.append(
                nn.Sequential(*(ResUpBlock(spatial_dims, channels // 2, num_groups) for _ in range(depth)))
            )
            self.up_samples.append(
                nn.Sequential(
                    _conv(spatial_dims, channels, channels // 2, 1),
                    nn.Upsample(scale_factor=2, mode=mode, align_corners=False),
                )
            )
        self.conv_final = nn.Sequential(
            nn.GroupNorm(num_groups, init_filters),
            nn.ReLU(),
            dwconv(spatial_dims, init_filters, out_channels, kernel_size=1, bias=True),
        )

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            axes = "D, H, W" if self.spatial_dims == 3 else "H, W"
            raise InputError(f"LightMUNet: input of shape {tuple(x.shape)}, expected (B, {self.in_channels}, {axes})")
        if any(size % self.divisor for size in x.shape[2:]):
            raise InputError(
                f"LightMUNet: input of shape {tuple(x.shape)}: spatial sizes must be multiples of {self.divisor}"
            )

    def encode(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x (B, C_in, *S) -> (deepest features, [level 0 .. deepest] features (B, C 2^i, *S / 2^i))."""
        x = self.dropout(self.convInit(x))
        features = []
        for down in self.down_layers:
            x = down(x)
            features.append(x)
        return x, features

    def decode(self, x: Tensor, features: Sequence[Tensor]) -> Tensor:
        """Deepest features and the encoder's features (shallow first) -> logits (B, out_channels, *S)."""
        skips = list(features)[::-1]
        for j, (up, layer) in enumerate(zip(self.up_samples, self.up_layers)):
            x = layer(up(x) + skips[j + 1])
        return self.conv_final(x)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        x, features = self.encode(x)
        return self.decode(x, features)
