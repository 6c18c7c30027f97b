"""VM-UNet: a U-shaped segmenter built entirely from VMamba-v0 blocks (Ruan & Xiang, arXiv 2402.02491).

Our implementation, written from the paper and the published code (JCruan519/VM-UNet, Apache-2.0,
``models/vmunet/vmamba.py`` ``VSSM`` and ``models/vmunet/vmunet.py``). 2D only, channels-first.

Architecture (published config, ``depths=(2, 2, 2, 2)``, ``depths_decoder=(2, 2, 2, 1)``)::

    x (B, C_in, H, W)
    encoder = visionssm VMamba "v0" backbone (no final norm, no head):
      patch_embed (conv k=s=4, LN)                        -> s0 (B, 96, H/4, W/4)    (never used as a skip)
      stages[0].blocks                                    -> (B, 96, H/4)
      stages[i].downsample (PatchMerging)  i = 1, 2, 3    -> s_i (B, 96*2^i, H/2^(i+2))   skip i
      stages[i].blocks
    decoder[0]: VSS blocks at H/32 (768 ch)
    decoder[i], i = 1..3: x + s_(4-i) -> PatchExpand (Linear C->2C, 2x2 pixel shuffle, LN(C/2)) -> VSS blocks
    final_up: Linear 96->384, 4x4 pixel shuffle, LN(24)   -> (B, 24, H, W)
    head: Conv2d(24, out_channels, 1)                     -> (B, out_channels, H, W)

As in VM-UNet, the skips are **added**, and each one is the input of an encoder stage's VSS blocks (the output of
its PatchMerging), not the stage output; the decoder's drop-path rates run linearly from ``drop_path_rate`` down to
0; every LayerNorm uses eps 1e-5 (VM-UNet's ``VSSM`` passes ``nn.LayerNorm`` to its blocks).

Behavioural differences from the original (each has a test in ``tests/models/test_segmenters.py``):

- The original returns ``sigmoid(logits)`` when ``num_classes == 1`` and logits otherwise. ``VMUNet`` always returns
  logits (use ``BCEWithLogits``-style losses); ``sigmoid_binary=True`` restores the original behaviour.
- The original silently repeats a 1-channel input to 3 channels, whatever the model was built for. ``VMUNet``
  builds its stem for ``in_channels`` and raises :class:`~visionssm.errors.InputError` on a channel mismatch. A gray
  model (``in_channels=1``) given RGB stem weights summed over the input channels (what
  :func:`checkpoint_filter_fn` and timm's ``adapt_input_conv`` do) computes exactly what the original computes on a
  repeated gray image.
- Height and width must be multiples of 32 (the original fails with a shape error in a skip addition); other sizes
  raise :class:`~visionssm.errors.InputError` naming the shape.

Weights: the encoder is :class:`visionssm.models.backbones.vmamba.VMamba` (``version="v0"``), so VMamba-v0
checkpoints map through its :func:`~visionssm.models.backbones.vmamba.checkpoint_filter_fn`;
:func:`checkpoint_filter_fn` here maps a whole VM-UNet checkpoint (``vmunet.layers*``, ``layers_up*``, ``final_up``,
``final_conv``). The mapping follows the published module names; it has not been checked against a released file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from visionssm.errors import InputError
from visionssm.layers import LayerNormNd, PointwiseLinear, VSSBlock
from visionssm.layers.init import init_linear_and_layernorm
from visionssm.models.backbones.vmamba import VMamba, _rename_vmamba_key
from visionssm.models.registry import register

__all__ = ["PatchExpand", "VMUNet", "VMUNetDecoderStage", "checkpoint_filter_fn"]


class PatchExpand(nn.Module):
    """VM-UNet's ``PatchExpand2D`` / ``Final_PatchExpand2D``: Linear(C -> s^2 C_out, no bias), s x s pixel shuffle, LN.

    The expanded channels are read as (p1, p2, c) with c fastest (einops ``b h w (p1 p2 c) -> b (h p1) (w p2) c``),
    so the original ``expand`` weights load unchanged.

    Shapes: x (B, dim, H, W) -> (B, out_dim, s H, s W).
    """

    def __init__(self, dim: int, out_dim: int, scale: int = 2, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.scale = scale
        self.out_dim = out_dim
        self.expand = PointwiseLinear(dim, scale * scale * out_dim, bias=False)
        self.norm = LayerNormNd(out_dim, eps=norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        s, c = self.scale, self.out_dim
        y = self.expand(x).view(batch, s, s, c, height, width)
        y = y.permute(0, 3, 4, 1, 5, 2).reshape(batch, c, height * s, width * s)
        return self.norm(y)


class VMUNetDecoderStage(nn.Module):
    """One decoder level (VM-UNet ``VSSLayer_up``): optional PatchExpand (``in_dim`` -> ``dim``), then VSS blocks.

    Shapes: x (B, in_dim, H, W) -> (B, dim, 2H, 2W) with the upsample, else (B, dim, H, W).
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        upsample: bool,
        drop_path: Sequence[float],
        norm_eps: float = 1e-5,
        **block_kwargs: Any,
    ) -> None:
        super().__init__()
        self.upsample: nn.Module = PatchExpand(in_dim, dim, 2, norm_eps=norm_eps) if upsample else nn.Identity()
        self.blocks = nn.Sequential(
            *(
                VSSBlock(dim, spatial_dims=2, drop_path=drop_path[j], norm_eps=norm_eps, **block_kwargs)
                for j in range(depth)
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.upsample(x))


@register("vm_unet", "segmentation")
class VMUNet(nn.Module):
    """VM-UNet for 2D images (MONAI-style arguments).

    Args:
        spatial_dims: must be 2 (VM-UNet is 2D).
        in_channels: input channels (published: 3; gray images: 1, see the module docstring).
        out_channels: output channels (classes; 1 for binary segmentation, 9 for Synapse).
        dims: encoder channels per stage, or the first stage's channels (doubled per stage). Published 96.
        depths: VSS blocks per encoder stage (published configs 2-2-2-2; the class default of the original 2-2-9-2).
        depths_decoder: VSS blocks per decoder level, deepest first (published 2-2-2-1).
        d_state, ssm_ratio, dt_rank, d_conv: SS2D sizes (VMamba v0: 16, 2, ceil(C/16), 3).
        drop_path_rate: stochastic depth, linear over the encoder from 0, and from the rate down to 0 in the decoder.
        norm_eps: eps of every LayerNorm.
        scan: scan order of every mixer; default "cross" (VMamba's 4-direction cross-scan, summed).
        scan_options: ``scan_plan`` options.
        backend: selective-scan backend.
        sigmoid_binary: apply a sigmoid to the output when ``out_channels == 1`` (the original's behaviour; off:
            logits always).

    Shapes: x (B, in_channels, H, W), H and W multiples of 32 -> logits (B, out_channels, H, W).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        dims: int | Sequence[int] = 96,
        depths: Sequence[int] = (2, 2, 2, 2),
        depths_decoder: Sequence[int] = (2, 2, 2, 1),
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        dt_rank: int | str = "auto",
        d_conv: int = 3,
        drop_path_rate: float = 0.2,
        norm_eps: float = 1e-5,
        scan: str = "cross",
        scan_options: Mapping[str, Any] | None = None,
        backend: str = "auto",
        sigmoid_binary: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise InputError(f"VMUNet: spatial_dims={spatial_dims!r}; VM-UNet is defined for 2D images only")
        depths, depths_decoder = tuple(depths), tuple(depths_decoder)
        if len(depths_decoder) != len(depths):
            raise InputError(f"VMUNet: depths={depths} and depths_decoder={depths_decoder} need the same length")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.sigmoid_binary = sigmoid_binary
        self.scan = scan
        self.encoder = VMamba(
            spatial_dims=2,
            in_chans=in_channels,
            num_classes=0,
            dims=dims,
            depths=depths,
            version="v0",
            d_state=d_state,
            ssm_ratio=ssm_ratio,
            dt_rank=dt_rank,
            d_conv=d_conv,
            drop_path_rate=drop_path_rate,
            norm_eps=norm_eps,
            scan=scan,
            scan_options=scan_options,
            backend=backend,
            global_pool="",
        )
        self.encoder.norm = nn.Identity()  # VM-UNet has no norm after the encoder
        enc_dims = self.encoder.dims
        self.divisor = self.encoder.patch_embed.patch_size * 2 ** (len(depths) - 1)
        dec_dims = enc_dims[::-1]
        total = sum(depths_decoder)
        rates = [drop_path_rate * j / (total - 1) if total > 1 else 0.0 for j in range(total)][::-1]
        block_kwargs = dict(
            mlp_ratio=0.0,
            d_state=d_state,
            ssm_ratio=ssm_ratio,
            dt_rank=dt_rank,
            d_conv=d_conv,
            conv_bias=True,
            with_z=True,
            scan=scan,
            scan_options=scan_options,
            backend=backend,
            out_norm_eps=norm_eps,
        )
        self.decoder = nn.ModuleList()
        for i, depth in enumerate(depths_decoder):
            start = sum(depths_decoder[:i])
            self.decoder.append(
                VMUNetDecoderStage(
                    dec_dims[i - 1] if i else dec_dims[0],
                    dec_dims[i],
                    depth,
                    upsample=i > 0,
                    drop_path=rates[start : start + depth],
                    norm_eps=norm_eps,
                    **block_kwargs,
                )
            )
        final_dim = dec_dims[-1] // 4
        self.final_up = PatchExpand(
            dec_dims[-1], final_dim, scale=self.encoder.patch_embed.patch_size, norm_eps=norm_eps
        )
        self.head = nn.Conv2d(final_dim, out_channels, 1)
        for module in (self.decoder, self.final_up):
            module.apply(init_linear_and_layernorm)

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Encoder: x (B, C_in, H, W) -> (deepest features (B, dims[-1], H/32, W/32), skips).

        ``skips[i]`` is the input of stage i's blocks: (B, dims[i], H / (4 * 2^i), W / (4 * 2^i)); ``skips[0]`` (the
        patch embedding) is returned for completeness but, as in VM-UNet, not used by the decoder.
        """
        x = self.encoder.patch_embed(x)
        skips = []
        for stage in self.encoder.stages:
            x = stage.downsample(x)
            skips.append(x)
            x = stage.blocks(x)
        return x, skips

    def forward_decoder(self, x: Tensor, skips: Sequence[Tensor]) -> Tensor:
        """Decoder: deepest features and skips -> (B, dims[0], H/4, W/4)."""
        for i, stage in enumerate(self.decoder):
            x = stage(x if i == 0 else x + skips[-i])
        return x

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise InputError(
                f"VMUNet: input of shape {tuple(x.shape)}, expected (B, {self.in_channels}, H, W)"
                + (" (build the model with in_channels=1 for gray images)" if x.dim() == 4 and x.shape[1] == 1 else "")
            )
        if any(size % self.divisor for size in x.shape[2:]):
            raise InputError(f"VMUNet: input of shape {tuple(x.shape)}: H and W must be multiples of {self.divisor}")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        x, skips = self.forward_features(x)
        x = self.forward_decoder(x, skips)
        logits = self.head(self.final_up(x))
        if self.sigmoid_binary and self.out_channels == 1:
            return torch.sigmoid(logits)
        return logits


def checkpoint_filter_fn(state_dict: Mapping[str, Tensor], model: VMUNet) -> dict[str, Tensor]:
    """Map an original VM-UNet checkpoint (``vmunet.layers.*``, ``vmunet.layers_up.*``, ``final_up``, ``final_conv``)
    to :class:`VMUNet` names; already-mapped keys pass unchanged.

    Follows the published module names; not checked against a released checkpoint file.
    """
    for wrapper in ("model", "state_dict", "model_ema"):
        if wrapper in state_dict and isinstance(state_dict[wrapper], Mapping):
            state_dict = state_dict[wrapper]
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.").removeprefix("vmunet.")
        if key.startswith(("patch_embed.", "layers.")):
            key = "encoder." + _rename_vmamba_key(key, model.encoder)
        elif match := re.match(r"layers_up\.(\d+)\.(.*)", key):
            if match[2].startswith("upsample."):
                key = f"decoder.{match[1]}.{match[2]}"
            else:
                key = "decoder." + _rename_vmamba_key(f"layers.{match[1]}.{match[2]}", model.encoder).removeprefix(
                    "stages."
                )
        elif key.startswith("final_conv."):
            key = "head." + key.removeprefix("final_conv.")
        out[key] = value
    return out
