"""MedMamba: hierarchical classifier of SS-Conv-SSM blocks (Yue & Li, "MedMamba: Vision Mamba for Medical Image
Classification", arXiv 2403.03849; YubiaoYue/MedMamba). Our implementation, written from the paper and the published
model definition (models.md §10), for 2D images and 3D volumes; tensors are channels-first throughout.

Layout (VMamba v0 hierarchy)::

    patch_embed   conv k = s = 4 + LayerNorm                                   (B, dims[0], *spatial / 4)
    stages[i]     depths[i] x SSConvSSM(dims[i]), then PatchMerging (dims[i] -> dims[i + 1]) except after the last
    pool, head    global average pool -> Linear(dims[-1] -> out_channels); no final norm (as published)

SS-Conv-SSM block on x (B, C, *sp)::

    left, right = x[:, :C/2], x[:, C/2:]
    left  -> BN -> Conv3 -> BN -> ReLU -> Conv3 -> BN -> ReLU -> Conv1 -> ReLU
    right -> DropPath(SS2D(LN(right)))           (VMamba v0 mixer on C/2: d_state 16, ssm_ratio 2, z gate, conv 3)
    out   = channel_shuffle(cat(left, right), groups=2) + x

Deviation from the original (a fix, on by default): its ``PatchMerging2D`` crops an odd-sized feature map (the last
row/column is dropped), so part of the input never reaches the head; our :class:`PatchMerging` zero-pads instead, so
every pixel counts for any input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from visionssm.errors import InputError
from visionssm.layers import LayerNormNd, PatchEmbed, PatchMerging, SSMixer
from visionssm.layers._timm import DropPath
from visionssm.layers.init import init_linear_and_layernorm
from visionssm.layers.ssm import check_spatial_dims
from visionssm.models.registry import register

_CONVS: dict[int, type[nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}
_BNS: dict[int, type[nn.Module]] = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}

# Published variants (MedMamba.py L760-762): depths and dims. Counted with 6 classes: T 14.46 M, S 18.63 M, B 39.86 M.
VARIANTS = {
    "tiny": dict(depths=(2, 2, 4, 2), dims=(96, 192, 384, 768)),
    "small": dict(depths=(2, 2, 8, 2), dims=(96, 192, 384, 768)),
    "base": dict(depths=(2, 2, 12, 2), dims=(128, 256, 512, 1024)),
}


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet channel shuffle on channels-first x (B, C, *sp): channel g * (C / groups) + j -> j * groups + g."""
    batch, channels, *spatial = x.shape
    return x.reshape(batch, groups, channels // groups, *spatial).transpose(1, 2).reshape(batch, channels, *spatial)


class SSConvSSM(nn.Module):
    """MedMamba's SS-Conv-SSM block: half the channels through a conv branch, half through SS2D, shuffled, residual.

    Args:
        dim: channels C (even).
        spatial_dims: 2 or 3.
        drop_path: stochastic depth of the SS2D branch.
        d_state, ssm_ratio, d_conv: SS2D sizes (16, 2, 3).
        norm_eps: eps of the LayerNorm before SS2D (1e-5: the original passes ``nn.LayerNorm``).
        **mixer_kwargs: passed to :class:`SSMixer` (scan, backend, dropout, ...).

    Shapes: x (B, C, *spatial) -> (B, C, *spatial).
    """

    def __init__(
        self,
        dim: int,
        spatial_dims: int = 2,
        drop_path: float = 0.0,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        d_conv: int = 3,
        norm_eps: float = 1e-5,
        **mixer_kwargs,
    ) -> None:
        super().__init__()
        if dim % 2:
            raise InputError(f"SSConvSSM: dim={dim} must be even (the block splits the channels in half)")
        half = dim // 2
        conv, bn = _CONVS[spatial_dims], _BNS[spatial_dims]
        self.norm = LayerNormNd(half, eps=norm_eps)
        self.mixer = SSMixer(
            half,
            spatial_dims=spatial_dims,
            d_state=d_state,
            ssm_ratio=ssm_ratio,
            d_conv=d_conv,
            conv_bias=True,
            with_z=True,
            **mixer_kwargs,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.conv_branch = nn.Sequential(
            bn(half),
            conv(half, half, 3, padding=1),
            bn(half),
            nn.ReLU(),
            conv(half, half, 3, padding=1),
            bn(half),
            nn.ReLU(),
            conv(half, half, 1),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        left, right = x.chunk(2, dim=1)
        right = self.drop_path(self.mixer(self.norm(right)))
        return channel_shuffle(torch.cat((self.conv_branch(left), right), dim=1), groups=2) + x


@register("medmamba", "classification")
class MedMamba(nn.Module):
    """MedMamba classifier for 2D images or 3D volumes.

    Args:
        spatial_dims: 2 (x: (B, in_channels, H, W)) or 3 (x: (B, in_channels, D, H, W)).
        in_channels: input channels.
        out_channels: number of classes (0 = no head; ``forward`` returns the pooled features (B, dims[-1])).
        variant: "tiny" ([2,2,4,2], 96..768), "small" ([2,2,8,2]) or "base" ([2,2,12,2], 128..1024); ``depths`` /
            ``dims`` override it.
        depths: blocks per stage. dims: channels per stage, or the first stage's (doubled per stage).
        d_state, ssm_ratio, d_conv: SS2D sizes (16, 2, 3).
        patch_size: stem stride (4).
        drop_rate: dropout after the stem. drop_path_rate: stochastic depth, linear from 0 over all blocks (0.1).
        norm_eps: eps of every LayerNorm (1e-5, as the original's ``nn.LayerNorm``).
        scan: scan order of every SS2D; None = "cross" (2D, K=4) or "cross3d" (3D, K=6).
        backend: selective-scan backend.

    Shapes: x (B, in_channels, *spatial) -> logits (B, out_channels).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 6,
        variant: str = "tiny",
        depths: Sequence[int] | None = None,
        dims: int | Sequence[int] | None = None,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        d_conv: int = 3,
        patch_size: int = 4,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        norm_eps: float = 1e-5,
        scan: str | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if variant not in VARIANTS:
            raise InputError(f"MedMamba: variant={variant!r} is not one of {sorted(VARIANTS)}")
        depths = tuple(VARIANTS[variant]["depths"] if depths is None else depths)
        dims = VARIANTS[variant]["dims"] if dims is None else dims
        if isinstance(dims, int):
            dims = [dims * 2**i for i in range(len(depths))]
        dims = [int(d) for d in dims]
        if len(dims) != len(depths):
            raise InputError(f"MedMamba: {len(dims)} dims for {len(depths)} stages (depths={depths})")
        self.in_channels = in_channels
        self.out_channels = self.num_classes = out_channels
        self.dims = dims
        self.depths = depths
        self.num_features = dims[-1]
        self.scan = scan or ("cross" if spatial_dims == 2 else "cross3d")

        self.patch_embed = PatchEmbed(in_channels, dims[0], patch_size, spatial_dims=spatial_dims, norm_eps=norm_eps)
        self.pos_drop = nn.Dropout(drop_rate)
        total = sum(depths)
        rates = [drop_path_rate * j / (total - 1) if total > 1 else 0.0 for j in range(total)]  # torch.linspace(0, r)
        stages = []
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            blocks: list[nn.Module] = [
                SSConvSSM(
                    dims[i],
                    spatial_dims,
                    drop_path=rates[start + j],
                    d_state=d_state,
                    ssm_ratio=ssm_ratio,
                    d_conv=d_conv,
                    norm_eps=norm_eps,
                    scan=self.scan,
                    backend=backend,
                )
                for j in range(depth)
            ]
            if i < len(depths) - 1:
                blocks.append(PatchMerging(dims[i], dims[i + 1], spatial_dims=spatial_dims, norm_eps=norm_eps))
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head: nn.Module = nn.Linear(self.num_features, out_channels) if out_channels > 0 else nn.Identity()

        # Original init: trunc normal (0.02) Linear weights, zero biases; LayerNorm (1, 0); then Kaiming normal
        # (fan_out, relu) on every conv, SS2D's depthwise conv included. BatchNorm and the S6 parameters keep theirs.
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        init_linear_and_layernorm(module)
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {n for n, p in self.named_parameters() if getattr(p, "_no_weight_decay", False)}

    def forward_features(self, x: Tensor) -> Tensor:
        """x (B, in_channels, *spatial) -> feature map (B, dims[-1], *spatial / 32)."""
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            axes = "D, H, W" if self.spatial_dims == 3 else "H, W"
            raise InputError(f"MedMamba: input of shape {tuple(x.shape)}, expected (B, {self.in_channels}, {axes})")
        return self.stages(self.pos_drop(self.patch_embed(x)))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = x.flatten(2).mean(dim=2)
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))
