"""Patch embedding (stem) and downsampling layers of VMamba, for 2D and 3D channels-first tensors.

- :class:`PatchEmbed` v1: conv k = s = patch_size, LayerNorm (VMamba v0).
- :class:`PatchEmbedV2`: conv3x3 s2 -> LN -> GELU -> conv3x3 s2 -> LN, i.e. patch 4 (VMamba v2).
- :class:`PatchMerging` (downsample v1): 2x2 (2x2x2) neighbourhood gather -> LN(2^d C) -> Linear(2^d C -> 2C, no bias).
- :class:`ConvDownsample` (downsample v3): conv3x3 s2 p1 -> LN.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionssm.errors import InputError

from .norm import LayerNormNd
from .ssm import check_spatial_dims

_CONVS: dict[int, type[nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}


class PatchEmbed(nn.Module):
    """Non-overlapping patches: conv k = s = ``patch_size``, then LayerNorm over channels (``patch_norm``).

    Shapes: x (B, in_chans, *spatial) -> (B, embed_dim, *spatial / patch_size) (sizes rounded down).
    """

    def __init__(
        self,
        in_chans: int,
        embed_dim: int,
        patch_size: int = 4,
        spatial_dims: int = 2,
        patch_norm: bool = True,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        self.patch_size = patch_size
        self.proj = _CONVS[spatial_dims](in_chans, embed_dim, patch_size, stride=patch_size)
        self.norm = LayerNormNd(embed_dim, eps=norm_eps) if patch_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x))


class PatchEmbedV2(nn.Module):
    """Overlapping stem of VMamba v2: conv3x3 s2 (-> embed_dim/2) -> LN -> GELU -> conv3x3 s2 -> LN; patch size 4.

    Shapes: x (B, in_chans, *spatial) -> (B, embed_dim, *ceil(spatial / 4)).
    """

    def __init__(
        self,
        in_chans: int,
        embed_dim: int,
        patch_size: int = 4,
        spatial_dims: int = 2,
        patch_norm: bool = True,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if patch_size != 4:
            raise InputError(f"PatchEmbedV2: patch_size={patch_size!r}; the two stride-2 convs give patch size 4")
        self.patch_size = patch_size
        conv = _CONVS[spatial_dims]
        hidden = embed_dim // 2
        self.conv1 = conv(in_chans, hidden, 3, stride=2, padding=1)
        self.norm1 = LayerNormNd(hidden, eps=norm_eps) if patch_norm else nn.Identity()
        self.act = nn.GELU()
        self.conv2 = conv(hidden, embed_dim, 3, stride=2, padding=1)
        self.norm2 = LayerNormNd(embed_dim, eps=norm_eps) if patch_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))


class PatchMerging(nn.Module):
    """Swin/VMamba patch merging: concatenate each 2x2 (2D) or 2x2x2 (3D) neighbourhood, LayerNorm, Linear.

    Odd sizes are zero-padded at the end first. Neighbours are concatenated with the first spatial axis varying
    fastest, as VMamba's ``PatchMerging2D`` does (x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]), so its
    ``norm``/``reduction`` weights load unchanged.

    Shapes: x (B, C, *spatial) -> (B, out_dim, *ceil(spatial / 2)), out_dim = 2C unless given.
    """

    def __init__(self, dim: int, out_dim: int | None = None, spatial_dims: int = 2, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.out_dim = out_dim or 2 * dim
        merged = 2**spatial_dims * dim
        self.norm = nn.LayerNorm(merged, eps=norm_eps)
        self.reduction = nn.Linear(merged, self.out_dim, bias=False)
        # offsets (o_1, ..., o_d) with o_1 fastest: (0,0), (1,0), (0,1), (1,1) in 2D.
        self.offsets = [tuple(reversed(o)) for o in itertools.product((0, 1), repeat=spatial_dims)]

    def forward(self, x: Tensor) -> Tensor:
        spatial = x.shape[2:]
        pad: list[int] = []
        for size in reversed(spatial):  # F.pad lists the last axis first
            pad += [0, size % 2]
        if any(pad):
            x = F.pad(x, pad)
        parts = [x[(..., *(slice(o, None, 2) for o in offset))] for offset in self.offsets]
        y = torch.cat(parts, dim=1).movedim(1, -1)  # (B, *spatial/2, 2^d C)
        return self.reduction(self.norm(y)).movedim(-1, 1)


class ConvDownsample(nn.Module):
    """VMamba downsample v3: conv3x3 (3x3x3) stride 2 padding 1, then LayerNorm over channels.

    Shapes: x (B, dim, *spatial) -> (B, out_dim, *ceil(spatial / 2)), out_dim = 2 dim unless given.
    """

    def __init__(self, dim: int, out_dim: int | None = None, spatial_dims: int = 2, norm_eps: float = 1e-5) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        self.out_dim = out_dim or 2 * dim
        self.conv = _CONVS[spatial_dims](dim, self.out_dim, 3, stride=2, padding=1)
        self.norm = LayerNormNd(self.out_dim, eps=norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.conv(x))
