"""U-Mamba: nnU-Net residual U-Nets with Mamba layers (Ma, Li, Wang, arXiv 2401.04722).

Our implementation, written from the paper and the published code (bowang-lab/U-Mamba, Apache-2.0,
``umamba/nnunetv2/nets/UMamba{Bot,Enc}_{2d,3d}.py`` after the 2024-03-27 rewrite; spec models.md §3), for 2D
images and 3D volumes, channels-first, with MONAI argument names plus nnU-Net's plans-style stage configuration.

Architecture (n stages, C_s = features_per_stage[s])::

    encoder.stem: BasicResBlock(C_in -> C_0, stride 1, 1x1 shortcut) + (n_blocks[0] - 1) x BasicBlockD
    encoder.stages[s]: BasicResBlock(C_{s-1} -> C_s, stride strides[s], 1x1 shortcut) + (n_blocks[s] - 1) x BasicBlockD
        UMambaEnc: each stage is followed by encoder.mamba_layers[s] (the stage output is the skip)
    UMambaBot: mamba_layer on the deepest features only
    decoder stage j (deepest first): UpsampleLayer (nearest x stride, then 1x1 conv C_{s+1} -> C_s) -> concat skip
        -> BasicResBlock(2 C_s -> C_s, 1x1 shortcut) + (n_conv_decoder[j] - 1) x BasicBlockD -> seg_layers[j] 1x1

    BasicResBlock: act(norm2(conv2(act(norm1(conv1(x))))) + conv3(x))   (conv3: 1x1 with the block's stride)
    BasicBlockD:   nonlin2(conv2(conv1(x)) + x), conv1 = conv-norm-act, conv2 = conv-norm (nnU-Net residual block)

Every conv has a bias; norms are InstanceNorm (eps 1e-5, affine); activations LeakyReLU(0.01); convs are
He-initialised (nnU-Net ``InitWeights_He(1e-2)``). As in the original, the deeper half of the encoder stages gets one
block (``n_blocks_per_stage[s] = 1`` for s >= ceil(n / 2)) and decoder entries ``j >= ceil((n - 1) / 2 + 0.5)`` get
one conv, whatever was passed.

The Mamba layers (:class:`visionssm.layers.MambaLayer`) are LayerNorm -> Mamba-1 (d_state 16, d_conv 4, expand 2) on
the raster-flattened map, **without residual**, run in float32 with autocast off (spec §15.2, §15.5). UMambaEnc
switches a stage to channel tokens (sequence = channels, token = the flattened map) when
prod(feature map) <= channels, so it needs ``input_size`` (the training patch size) and, when some stage uses
channel tokens, inputs of exactly that size.

Module names follow the original (``encoder.stem``, ``encoder.stages``, ``encoder.mamba_layers``, ``mamba_layer``,
``decoder.upsample_layers``, ``decoder.stages``, ``decoder.seg_layers``, ``conv1/norm1/conv3``, nnU-Net's
``conv1.conv`` / ``conv1.norm``, mamba_ssm names); :func:`checkpoint_filter_fn` drops the original's duplicate keys
(``decoder.encoder.*``, ``*.all_modules.*``) so its state dicts load.

Parameter counts at the 3D plan 32-64-128-256-320-320, 1 -> 14 channels, patch 128^3: UMambaBot 42.1 M,
UMambaEnc 42.8 M (spec §3; tests/models/test_umamba.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from visionssm.errors import InputError
from visionssm.layers.mamba import MambaLayer
from visionssm.layers.residual import CONVS, BasicBlockD, BasicResBlock, UpsampleLayer
from visionssm.layers.ssm import check_spatial_dims
from visionssm.models.registry import register

__all__ = ["UMambaBot", "UMambaEnc", "checkpoint_filter_fn"]

PUBLISHED_FEATURES = (32, 64, 128, 256, 320, 320)


def _stage(spatial_dims: int, cin: int, cout: int, kernel: tuple[int, ...], stride: tuple[int, ...], n: int):
    return nn.Sequential(
        BasicResBlock(spatial_dims, cin, cout, kernel, stride),
        *(BasicBlockD(spatial_dims, cout, kernel) for _ in range(n - 1)),
    )


def _per_stage(value: Any, n: int, name: str, owner: str) -> list[Any]:
    if isinstance(value, int):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise InputError(f"{owner}: {name}={value} needs one entry per stage ({n})")
    return value


def _per_axis(value: Any, spatial_dims: int, name: str, owner: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * spatial_dims
    value = tuple(int(v) for v in value)
    if len(value) != spatial_dims:
        raise InputError(f"{owner}: {name} entry {value} needs {spatial_dims} axes")
    return value


class _UMamba(nn.Module):
    """Shared construction (encoder convs, decoder, init, checks) of :class:`UMambaBot` and :class:`UMambaEnc`."""

    _mamba_in_encoder = False

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 14,
        features_per_stage: Sequence[int] = PUBLISHED_FEATURES,
        strides: Sequence[int | Sequence[int]] = (1, 2, 2, 2, 2, 2),
        kernel_sizes: int | Sequence[int | Sequence[int]] = 3,
        n_blocks_per_stage: int | Sequence[int] = 2,
        n_conv_per_stage_decoder: int | Sequence[int] = 2,
        deep_supervision: bool = False,
        input_size: Sequence[int] | None = None,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        force_float32: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.spatial_dims = check_spatial_dims(spatial_dims)
        features = [int(c) for c in features_per_stage]
        n = len(features)
        if n < 2:
            raise InputError(f"{name}: features_per_stage={features} needs at least 2 stages")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features_per_stage = tuple(features)
        self.strides = tuple(
            _per_axis(s, spatial_dims, "strides", name) for s in _per_stage(strides, n, "strides", name)
        )
        self.kernel_sizes = tuple(
            _per_axis(k, spatial_dims, "kernel_sizes", name) for k in _per_stage(kernel_sizes, n, "kernel_sizes", name)
        )
        blocks = _per_stage(n_blocks_per_stage, n, "n_blocks_per_stage", name)
        dec = _per_stage(n_conv_per_stage_decoder, n - 1, "n_conv_per_stage_decoder", name)
        for s in range(math.ceil(n / 2), n):  # the original's override: deeper half gets one block
            blocks[s] = 1
        for s in range(math.ceil((n - 1) / 2 + 0.5), n - 1):
            dec[s] = 1
        self.n_blocks_per_stage = tuple(blocks)
        self.n_conv_per_stage_decoder = tuple(dec)
        self.deep_supervision = deep_supervision
        self.divisor = tuple(math.prod(s[a] for s in self.strides) for a in range(spatial_dims))
        self.input_size = None if input_size is None else _per_axis(input_size, spatial_dims, "input_size", name)
        self._mamba_kwargs = dict(
            d_state=d_state, d_conv=d_conv, expand=expand, force_float32=force_float32, backend=backend
        )

        self.encoder = nn.Module()
        self.encoder.stem = _stage(
            spatial_dims, in_channels, features[0], self.kernel_sizes[0], (1,) * spatial_dims, blocks[0]
        )
        stages, cin = [], features[0]
        for s in range(n):
            stages.append(_stage(spatial_dims, cin, features[s], self.kernel_sizes[s], self.strides[s], blocks[s]))
            cin = features[s]
        self.encoder.stages = nn.ModuleList(stages)

        self.decoder = nn.Module()
        ups, dstages, heads = [], [], []
        for j in range(n - 1):  # deepest first
            below, skip = features[n - 1 - j], features[n - 2 - j]
            ups.append(UpsampleLayer(spatial_dims, below, skip, self.strides[n - 1 - j]))
            dstages.append(
                _stage(spatial_dims, 2 * skip, skip, self.kernel_sizes[n - 2 - j], (1,) * spatial_dims, dec[j])
            )
            heads.append(CONVS[spatial_dims](skip, out_channels, 1))
        self.decoder.upsample_layers = nn.ModuleList(ups)
        self.decoder.stages = nn.ModuleList(dstages)
        self.decoder.seg_layers = nn.ModuleList(heads)

    def _init_weights(self) -> None:
        """nnU-Net ``InitWeights_He(1e-2)`` on the 2D/3D convs (not on Mamba's conv1d / linears)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(module.weight, a=1e-2)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _check_input(self, x: Tensor) -> None:
        name = type(self).__name__
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            axes = "D, H, W" if self.spatial_dims == 3 else "H, W"
            raise InputError(f"{name}: input of shape {tuple(x.shape)}, expected (B, {self.in_channels}, {axes})")
        if any(size % d for size, d in zip(x.shape[2:], self.divisor)):
            raise InputError(
                f"{name}: input of shape {tuple(x.shape)}: spatial sizes must be multiples of {self.divisor}"
            )

    def encode(self, x: Tensor) -> list[Tensor]:
        """x (B, C_in, *S) -> the skips of every stage, shallowest first (the last one after any Mamba layer)."""
        x = self.encoder.stem(x)
        skips = []
        for s, stage in enumerate(self.encoder.stages):
            x = stage(x)
            if self._mamba_in_encoder:
                x = self.encoder.mamba_layers[s](x)
            skips.append(x)
        return skips

    def decode(self, skips: Sequence[Tensor]) -> Tensor | list[Tensor]:
        """Skips (shallowest first) -> logits (B, out_channels, *S), or with deep supervision a list of logits,
        full resolution first."""
        x, outputs = skips[-1], []
        last = len(self.decoder.stages) - 1
        for j, (up, stage) in enumerate(zip(self.decoder.upsample_layers, self.decoder.stages)):
            x = stage(torch.cat((up(x), skips[-(j + 2)]), dim=1))
            if self.deep_supervision:
                outputs.append(self.decoder.seg_layers[j](x))
            elif j == last:
                outputs.append(self.decoder.seg_layers[-1](x))
        outputs = outputs[::-1]
        return outputs if self.deep_supervision else outputs[0]


@register("umamba_bot", "segmentation")
class UMambaBot(_UMamba):
    """U-Mamba_Bot: nnU-Net residual U-Net with one Mamba layer on the bottleneck features.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: classes (segmentation heads).
        features_per_stage: channels per stage (nnU-Net: ``min(32 * 2^s, 320)`` in 3D, 512 cap in 2D).
        strides: per stage, an int or one per axis (the first usually 1).
        kernel_sizes: an int, or per stage an int or one per axis.
        n_blocks_per_stage: residual blocks per encoder stage (entries s >= ceil(n / 2) are forced to 1).
        n_conv_per_stage_decoder: blocks per decoder stage, deepest first (entries j >= ceil((n - 1) / 2 + 0.5)
            are forced to 1).
        deep_supervision: return the logits of every decoder stage, full resolution first.
        input_size: unused by U-Mamba_Bot (accepted so both variants take the same arguments).
        d_state, d_conv, expand: Mamba sizes (16, 4, 2).
        force_float32: run the Mamba layer in float32 with autocast off (the original's ``autocast(enabled=False)``).
        backend: selective-scan backend.

    Shapes: x (B, in_channels, *S), each size a multiple of the product of the strides on its axis
    -> (B, out_channels, *S) (a list with deep supervision).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mamba_layer = MambaLayer(self.features_per_stage[-1], self.spatial_dims, **self._mamba_kwargs)
        self._init_weights()

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        self._check_input(x)
        skips = self.encode(x)
        skips[-1] = self.mamba_layer(skips[-1])
        return self.decode(skips)


@register("umamba_enc", "segmentation")
class UMambaEnc(_UMamba):
    """U-Mamba_Enc: nnU-Net residual U-Net with a Mamba layer after every encoder stage.

    Args: as :class:`UMambaBot`, and

        input_size: the training patch size (required): stage s uses channel tokens when
            prod(input_size // cumulative strides) <= features_per_stage[s], the Mamba width then being that
            product. Inputs must then have exactly this size.

    Shapes: x (B, in_channels, *S) -> (B, out_channels, *S) (a list with deep supervision).
    """

    _mamba_in_encoder = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.input_size is None:
            raise InputError("UMambaEnc: input_size (the patch size) is required to place the channel-token layers")
        size, sizes, tokens = self.input_size, [], []
        for s, stride in enumerate(self.strides):
            size = tuple(a // b for a, b in zip(size, stride))
            sizes.append(size)
            tokens.append(math.prod(size) <= self.features_per_stage[s])
        self.feature_map_sizes = tuple(sizes)
        self.channel_token = tuple(tokens)
        self.encoder.mamba_layers = nn.ModuleList(
            MambaLayer(
                math.prod(sizes[s]) if tokens[s] else self.features_per_stage[s],
                self.spatial_dims,
                channel_token=tokens[s],
                **self._mamba_kwargs,
            )
            for s in range(len(sizes))
        )
        self._init_weights()

    def _check_input(self, x: Tensor) -> None:
        super()._check_input(x)
        if any(self.channel_token) and tuple(x.shape[2:]) != self.input_size:
            raise InputError(
                f"UMambaEnc: input of shape {tuple(x.shape)}: channel-token stages need the spatial size "
                f"input_size={self.input_size}"
            )

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        self._check_input(x)
        return self.decode(self.encode(x))


def checkpoint_filter_fn(state_dict: Mapping[str, Tensor], model: nn.Module | None = None) -> dict[str, Tensor]:
    """An original U-Mamba state dict (optionally under ``network_weights``) -> ours: drops the duplicate keys
    ``decoder.encoder.*`` (nnU-Net's decoder holds the encoder) and ``*.all_modules.*`` (``ConvDropoutNormReLU``)."""
    if "network_weights" in state_dict:
        state_dict = state_dict["network_weights"]
    out = {}
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module.") :]
        if key.startswith("decoder.encoder.") or ".all_modules." in key:
            continue
        out[key] = value
    return out
