"""Building blocks of visual state-space models, for 2D and 3D channels-first tensors (B, C, *spatial).

- :class:`SSMixer`: the SS2D selective-scan mixer generalised to 2D/3D and any scan order.
- :class:`VSSBlock`: norm -> mixer -> DropPath residual (+ optional MLP branch).
- :class:`PatchEmbed`, :class:`PatchEmbedV2`: stems (VMamba v0 / v2).
- :class:`PatchMerging`, :class:`ConvDownsample`: downsampling (VMamba v1 / v3).
- :class:`LayerNormNd`: channels-first LayerNorm; :class:`PointwiseLinear`: per-position Linear.
- :class:`GatedSpatialConv`: SegMamba's gated spatial convolution.
- :class:`BasicResBlock`, :class:`BasicBlockD`, :class:`ConvNormAct`, :class:`UpsampleLayer`: nnU-Net-style conv
  blocks (U-Mamba's conv half; its Mamba half is :class:`MambaLayer`).
- :class:`MambaMixer`, :class:`MambaLayer`, :class:`ResidualVisionMamba`, :class:`VimBlock`: plain Mamba-1 mixers on
  token sequences and the blocks around them (U-Mamba, SegMamba's tri-orientation, LightM-UNet, Vim's bidirectional).

Imports timm (``Mlp``, ``DropPath``): install the ``visionssm[timm]`` extra.
"""

from .blocks import VSSBlock
from .linear import PointwiseLinear
from .mamba import MambaLayer, MambaMixer, ResidualVisionMamba, VimBlock
from .norm import LayerNormNd
from .patch import ConvDownsample, PatchEmbed, PatchEmbedV2, PatchMerging
from .residual import BasicBlockD, BasicResBlock, ConvNormAct, UpsampleLayer
from .segmamba import GatedSpatialConv
from .ssm import SSMixer, dt_bias_init, resolve_dt_rank

__all__ = [
    "BasicBlockD",
    "BasicResBlock",
    "ConvDownsample",
    "ConvNormAct",
    "GatedSpatialConv",
    "LayerNormNd",
    "MambaLayer",
    "MambaMixer",
    "PatchEmbed",
    "PatchEmbedV2",
    "PatchMerging",
    "PointwiseLinear",
    "ResidualVisionMamba",
    "SSMixer",
    "UpsampleLayer",
    "VSSBlock",
    "VimBlock",
    "dt_bias_init",
    "resolve_dt_rank",
]
