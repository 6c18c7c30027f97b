"""``VSSBlock``: VMamba's visual state-space block on channels-first 2D/3D feature maps.

The MLP branch uses timm's ``Mlp`` (``fc1``/``fc2`` as ``nn.Linear``) on a channels-last view: the block permutes
(B, C, *sp) -> (B, *sp, C) around it. timm's ``use_conv=True`` would avoid the permute but only exists for 2D, and the
Linear layout is what VMamba's checkpoints hold (its ``Linear2d`` stores Linear-shaped weights).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ._timm import DropPath, Mlp
from .norm import LayerNormNd
from .ssm import SSMixer, check_spatial_dims


class VSSBlock(nn.Module):
    """``x + DropPath(SSMixer(LN(x)))``, then optionally ``x + DropPath(MLP(LN(x)))``.

    Args:
        dim: channels C.
        spatial_dims: 2 or 3.
        drop_path: stochastic-depth rate of both residual branches.
        mlp_ratio: hidden width of the MLP as a multiple of C; 0 = no MLP branch (VMamba v0).
        mlp_act_layer: activation of the MLP (GELU).
        mlp_drop: dropout inside the MLP.
        norm_eps: eps of the two LayerNorms.
        **mixer_kwargs: passed to :class:`SSMixer` (d_state, ssm_ratio, dt_rank, d_conv, conv_bias, with_z, scan,
            scan_options, backend, dropout, ...).

    Shapes: x (B, C, *spatial) -> (B, C, *spatial).
    """

    def __init__(
        self,
        dim: int,
        spatial_dims: int = 2,
        drop_path: float = 0.0,
        mlp_ratio: float = 4.0,
        mlp_act_layer: type[nn.Module] = nn.GELU,
        mlp_drop: float = 0.0,
        norm_eps: float = 1e-5,
        **mixer_kwargs: Any,
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.norm = LayerNormNd(dim, eps=norm_eps)
        self.mixer = SSMixer(dim, spatial_dims=spatial_dims, **mixer_kwargs)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2: nn.Module | None = None
        self.mlp: nn.Module | None = None
        if mlp_ratio > 0:
            self.norm2 = LayerNormNd(dim, eps=norm_eps)
            self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=mlp_act_layer, drop=mlp_drop)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.mixer(self.norm(x)))
        if self.mlp is not None:
            y = self.mlp(self.norm2(x).movedim(1, -1)).movedim(-1, 1)  # timm Mlp works on channels-last
            x = x + self.drop_path(y)
        return x
