"""SegMamba: a 3D segmenter with tri-orientated Mamba layers (Xing et al., MICCAI 2024, arXiv 2401.13560).

Our implementation, written from the paper and the published code (ge-xing/SegMamba ``model_segmamba/segmamba.py``
and its patched ``mamba_simple.py``, ``bimamba_type="v3"``; spec models.md §4), for 3D volumes, channels-first, with
MONAI argument names. The decoder is built from MONAI's UNETR blocks, as in the original (extra ``visionssm[med]``).

Architecture (n = len(depths) stages, C_i = feat_size[i], published C = 48-96-192-384, depths 2-2-2-2)::

    vit (:class:`SegMambaEncoder`), stage i at S / 2^(i+1):
        downsample_layers[0]: Conv3d k7 s2 p3 (C_in -> C_0)       downsample_layers[i > 0]: IN -> Conv3d k2 s2
        gscs[i]: GatedSpatialConv (x + fused conv branches)
        stages[i]: depths[i] x ToM layer: x + Mamba-v3(LN(x)) over the raster-flattened volume
        outs[i] = mlps[i](norm{i}(x))                             (IN, then 1x1x1 conv MLP C -> 2C -> C, GELU)
    encoder1: UnetrBasicBlock on the raw input (C_in -> C_0, full resolution)
    encoder{i+2}: UnetrBasicBlock on outs[i] (C_i -> C_{i+1}); encoder{n+1}: outs[n-1] -> hidden_size
    decoder{n+1} .. decoder2: UnetrUpBlock (transposed conv x2, **concat** the encoder block of that resolution,
        res-block) hidden_size -> C_{n-1} -> ... -> C_0; decoder1: UnetrBasicBlock C_0 -> C_0
    out: UnetOutBlock 1x1x1 C_0 -> out_channels

The ToM layer is :class:`visionssm.layers.MambaLayer` with ``residual=True`` and ``directions="tri_orientation"``:
one shared in_proj / out_proj and three parameter sets (``*``, ``*_b``, ``*_s``) for the forward raster, its reversal
and the inter-slice order, whose outputs are summed before out_proj. Norms in the encoder are InstanceNorm3d without
affine parameters, the UNETR blocks use ``norm_name`` ("instance") and residual units; there is no deep supervision.
Module and parameter names follow the original (``vit.downsample_layers``, ``vit.gscs``, ``vit.stages``,
``vit.mlps``, ``encoder1``.. ``decoder1``, ``out``, mamba_ssm names), so its state dicts load 1:1.

Fixed quirks of the original (none changes the published configuration at its 128^3 patch, so there is no
``faithful`` switch):

- The inter-slice scan chunk-interleaves the tokens with a hard-coded ``nslices = [64, 32, 16, 8]``: an axis order
  (depth fastest) only for a 128^3 input, a generic interleave for other sizes and a crash when L % nslices != 0.
  Here it is the (H, W, D) axis order on every grid.
- ``UnetOutBlock(in_channels=48)`` is hard-coded: here it takes feat_size[0].
- The encoder hard-codes 4 stages whatever ``depths`` / ``feat_size`` say: here the stage count is their length.
- mamba_ssm's non-fused path (no CUDA kernels) silently runs the forward direction only: here all three always run.
- ``spatial_dims`` other than 3, channel mismatches, sizes that are not multiples of 2^n and a single-voxel
  deepest map fail deep inside (the decoder's concat, InstanceNorm); here they raise
  :class:`~visionssm.errors.InputError`. Arguments the original accepted
  and ignored (``drop_path_rate``, ``layer_scale_init_value``, ``conv_block``) are not accepted.

Parameter count at the BraTS configuration (4 -> 4 channels): 67,416,196 (spec §4: counted 67.42 M).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from visionssm.errors import BackendUnavailableError, InputError
from visionssm.layers.mamba import MambaLayer
from visionssm.layers.segmamba import ChannelMlp, GatedSpatialConv
from visionssm.models.registry import register

__all__ = ["SegMamba", "SegMambaEncoder"]

PUBLISHED_FEATURES = (48, 96, 192, 384)


def _monai_blocks() -> tuple[type[nn.Module], type[nn.Module], type[nn.Module]]:
    """MONAI's (UnetrBasicBlock, UnetrUpBlock, UnetOutBlock), imported on use so visionssm.models imports without
    MONAI."""
    try:
        from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock
    except ImportError as err:
        raise BackendUnavailableError(
            f"SegMamba's decoder is built from MONAI's UNETR blocks, which cannot be imported ({err}); install them "
            "with pip install 'visionssm[med]'"
        ) from err
    return UnetrBasicBlock, UnetrUpBlock, UnetOutBlock


class SegMambaEncoder(nn.Module):
    """SegMamba's encoder (``MambaEncoder``): per stage downsample -> GSC -> ToM layers, output IN -> channel MLP.

    Args:
        in_channels: C_in.
        depths: ToM layers per stage.
        dims: channels per stage (``feat_size``).
        scan: directions of every Mamba (see :class:`visionssm.layers.MambaMixer`): "tri_orientation" (SegMamba),
            1, "bidirectional" or any 3D scan name.
        d_state, d_conv, expand: Mamba sizes (16, 4, 2).
        mlp_ratio: hidden width of the stage MLPs, in multiples of the stage's channels (2).
        force_float32: run the Mamba layers in float32 with autocast off.
        use_checkpoint: recompute each stage's Mamba layers in the backward pass (activation checkpointing) to
            save memory while training.
        backend: selective-scan backend.

    Shapes: x (B, C_in, D, H, W), each size a multiple of 2^len(dims) -> one tensor per stage, stage i
    (B, dims[i], *S / 2^(i+1)).
    """

    def __init__(
        self,
        in_channels: int,
        depths: Sequence[int],
        dims: Sequence[int],
        scan: int | str = "tri_orientation",
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        mlp_ratio: float = 2,
        *,
        force_float32: bool = False,
        use_checkpoint: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        depths, dims = tuple(int(d) for d in depths), tuple(int(c) for c in dims)
        if not dims or len(depths) != len(dims):
            raise InputError(f"SegMambaEncoder: depths={depths} and dims={dims} need one entry per stage each")
        self.depths, self.dims = depths, dims
        self.use_checkpoint = use_checkpoint
        self.downsample_layers = nn.ModuleList([nn.Sequential(nn.Conv3d(in_channels, dims[0], 7, stride=2, padding=3))])
        for i in range(1, len(dims)):
            self.downsample_layers.append(
                nn.Sequential(nn.InstanceNorm3d(dims[i - 1]), nn.Conv3d(dims[i - 1], dims[i], 2, stride=2))
            )
        mamba_kwargs = dict(
            d_state=d_state,
            d_conv=d_conv,
            expand=expand,
            directions=scan,
            residual=True,
            force_float32=force_float32,
            backend=backend,
        )
        self.gscs = nn.ModuleList(GatedSpatialConv(c) for c in dims)
        self.stages = nn.ModuleList(
            nn.Sequential(*(MambaLayer(c, 3, **mamba_kwargs) for _ in range(depth))) for c, depth in zip(dims, depths)
        )
        for i, c in enumerate(dims):
            self.add_module(f"norm{i}", nn.InstanceNorm3d(c))  # the original's names: no parameters (affine=False)
        self.mlps = nn.ModuleList(ChannelMlp(c, int(mlp_ratio * c)) for c in dims)

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i, (down, gsc, stage, mlp) in enumerate(zip(self.downsample_layers, self.gscs, self.stages, self.mlps)):
            x = gsc(down(x))
            if self.use_checkpoint and torch.is_grad_enabled():
                x = checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
            outs.append(mlp(getattr(self, f"norm{i}")(x)))
        return outs


@register("segmamba", "segmentation")
class SegMamba(nn.Module):
    """SegMamba for 3D volumes (MONAI-style arguments).

    Args:
        in_channels: input channels (BraTS: 4 MRI sequences).
        out_channels: output channels (BraTS: 4 labels).
        depths: ToM layers per encoder stage (2, 2, 2, 2).
        feat_size: channels per encoder stage (48, 96, 192, 384); as many entries as ``depths``.
        hidden_size: channels of the bottleneck UNETR block (768).
        norm_name: MONAI norm of the UNETR blocks ("instance").
        res_block: residual units in the UNETR blocks (True).
        spatial_dims: 3 (the only value: SegMamba is a 3D model; accepted for MONAI's signature).
        scan: token order of every Mamba: "tri_orientation" (SegMamba's ToM: forward, backward, inter-slice), or
            another direction spec of :class:`visionssm.layers.MambaMixer` (1, "bidirectional", a 3D scan name).
        d_state, d_conv, expand: Mamba sizes (16, 4, 2).
        force_float32: run the Mamba layers in float32 with autocast off.
        use_checkpoint: activation checkpointing of the encoder's Mamba layers (less memory while training).
        backend: selective-scan backend.

    Shapes: x (B, in_channels, D, H, W), each size a multiple of 2^len(depths) (16 published)
    -> logits (B, out_channels, D, H, W).
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 4,
        depths: Sequence[int] = (2, 2, 2, 2),
        feat_size: Sequence[int] = PUBLISHED_FEATURES,
        hidden_size: int = 768,
        norm_name: str | tuple[str, dict[str, Any]] = "instance",
        res_block: bool = True,
        spatial_dims: int = 3,
        scan: int | str = "tri_orientation",
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        *,
        force_float32: bool = False,
        use_checkpoint: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if spatial_dims != 3:
            raise InputError(f"SegMamba: spatial_dims={spatial_dims!r}: SegMamba is a 3D model (spatial_dims=3)")
        if in_channels < 1 or out_channels < 1:
            raise InputError(f"SegMamba: in_channels={in_channels!r} and out_channels={out_channels!r} must be >= 1")
        feats, depths = tuple(int(c) for c in feat_size), tuple(int(d) for d in depths)
        if not feats or len(feats) != len(depths):
            raise InputError(f"SegMamba: feat_size={feats} and depths={depths} need one entry per stage each")
        basic_block, up_block, out_block = _monai_blocks()
        self.spatial_dims = 3
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.depths = depths
        self.feat_size = feats
        self.hidden_size = hidden_size
        self.scan = scan
        self.divisor = 2 ** len(feats)
        n = len(feats)
        # "vit" is the original's name for the Mamba encoder, kept so its state dicts load
        self.vit = SegMambaEncoder(
            in_channels,
            depths,
            feats,
            scan,
            d_state,
            d_conv,
            expand,
            force_float32=force_float32,
            use_checkpoint=use_checkpoint,
            backend=backend,
        )
        unetr = dict(spatial_dims=3, kernel_size=3, norm_name=norm_name, res_block=res_block)
        # encoder1 sees the raw input, encoder{i+2} the encoder's stage i, the last one lifts to hidden_size
        widths = (in_channels, *feats, hidden_size)
        for i in range(n + 1):
            self.add_module(
                f"encoder{i + 1}", basic_block(in_channels=widths[i], out_channels=widths[i + 1], stride=1, **unetr)
            )
        for i in range(n, 0, -1):  # decoder{n+1} .. decoder2, deepest first
            below = hidden_size if i == n else feats[i]
            self.add_module(
                f"decoder{i + 1}",
                up_block(in_channels=below, out_channels=feats[i - 1], upsample_kernel_size=2, **unetr),
            )
        self.decoder1 = basic_block(in_channels=feats[0], out_channels=feats[0], stride=1, **unetr)
        self.out = out_block(spatial_dims=3, in_channels=feats[0], out_channels=out_channels)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise InputError(f"SegMamba: input of shape {tuple(x.shape)}, expected (B, {self.in_channels}, D, H, W)")
        if any(size % self.divisor for size in x.shape[2:]):
            raise InputError(
                f"SegMamba: input of shape {tuple(x.shape)}: spatial sizes must be multiples of {self.divisor}"
            )
        if all(size == self.divisor for size in x.shape[2:]):  # InstanceNorm cannot normalise a single voxel
            raise InputError(
                f"SegMamba: input of shape {tuple(x.shape)}: the deepest feature map needs more than one voxel "
                f"(some spatial size above {self.divisor})"
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        n = len(self.feat_size)
        outs = self.vit(x)
        skips = [self.encoder1(x)] + [getattr(self, f"encoder{i + 2}")(outs[i]) for i in range(n - 1)]
        y = getattr(self, f"encoder{n + 1}")(outs[-1])
        for i in range(n, 0, -1):
            y = getattr(self, f"decoder{i + 1}")(y, skips[i - 1])
        return self.out(self.decoder1(y))
