"""ChangeMamba change detectors: MambaBCD (binary), MambaSCD (semantic) and MambaBDA (building damage assessment).

Our implementation of Chen et al., "ChangeMamba: Remote Sensing Change Detection With Spatiotemporal State Space
Model" (TGRS 2024, arXiv 2404.03425), written from the paper and the published code (ChenHongruixuan/MambaCD,
Apache-2.0) for its facts only.

Architecture (``spatial_dims=2``; x1, x2: (B, in_channels, H, W)):

- **Encoder:** a Siamese VMamba-v2 (:class:`visionssm.models.VMamba`: patch embed v2, downsample v3, MLP ratio 4,
  d_state 1, ssm_ratio 2, no z gate), one set of weights applied to both dates, each stage output normalised by its
  own LayerNorm (``encoder_norms``, MambaCD's ``outnorm{i}``): features (B, dims[i], H / 2^(i+2), W / 2^(i+2)).
- **Change decoder** (:class:`ChangeDecoder`): per scale, three spatio-temporal branches, each a 1x1 conv to
  ``decoder_channels`` followed by one VSS block, over three token arrangements of the two dates' features
  (:func:`arrange_tokens`):

  * ``parallel``: T1 and T2 stacked on channels (B, 2C, H, W);
  * ``cross``: T1 and T2 interleaved column by column (B, C, H, 2W), T1 on even columns, so a row-major scan
    alternates between the dates;
  * ``sequential``: T1 and T2 side by side (B, C, H, 2W), T1 on the left, so a column-major scan traverses all of
    T1, then all of T2.

  The five maps (parallel, cross even / odd columns, sequential left / right halves) are fused by
  1x1 conv + BatchNorm + ReLU, then merged top-down (bilinear upsample + add, residual ``ResBlock``), as an FPN.
- **Semantic decoder** (:class:`SemanticDecoder`, SCD / BDA): a single-date VSS-block FPN.
- **Heads:** 1x1 convs, logits bilinearly upsampled to the input size.

Outputs: :class:`MambaBCD` a tensor (B, out_channels, H, W); :class:`MambaSCD` a :class:`SCDOutput` named tuple
``(change, semantic_t1, semantic_t2)``; :class:`MambaBDA` a :class:`BDAOutput` named tuple
``(localization, damage)`` (the orders of the original's returned tuples).

Inputs: ``model(x1, x2)`` with two (B, C, H, W) tensors, or ``model(x)`` with one (B, 2, C, H, W) tensor (TorchGeo's
(T, C, H, W) sample layout, batched).

Quirks of the original code, fixed here (each has a test):

1. The decoder builds its H x 2W token grids with ``torch.empty(...).cuda()``: it only runs on CUDA and always in
   float32. We build them with ``stack`` / ``cat`` on the features' own device and dtype.
2. The Tiny ImageNet checkpoint has 5 blocks in stage 3 while the config builds 4; the original loads it with
   ``strict=False`` and silently drops the 5th block. :meth:`load_encoder_checkpoint` raises an ``InputError``
   naming the unexpected and missing keys instead (``strict=False`` logs them).
3. Mismatched T1 / T2 shapes fail deep inside the decoder (or broadcast); we raise an ``InputError`` naming both
   shapes up front.

Parameter counts follow the code (models.md §6, §15.1): BCD 32.6 / 54.0 / 92.4 M, SCD 37.1 / 58.5 / 97.0 M,
BDA 34.9 / 56.3 / 94.7 M (tiny / small / base), not the README's smaller figures.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionssm.errors import InputError
from visionssm.layers import LayerNormNd, VSSBlock
from visionssm.models.backbones.vmamba import VMamba, checkpoint_filter_fn
from visionssm.models.registry import register

__all__ = [
    "BDAOutput",
    "ChangeDecoder",
    "MambaBCD",
    "MambaBDA",
    "MambaSCD",
    "ResBlock",
    "SCDOutput",
    "SemanticDecoder",
    "SpatioTemporalFusion",
    "arrange_tokens",
]

logger = logging.getLogger("visionssm")

# Encoder sizes of MambaCD's configs (vssm_{tiny_224_0229flex,small_224,base_224}.yaml; models.md §6).
VARIANTS: dict[str, dict[str, Any]] = {
    "tiny": dict(dims=96, depths=(2, 2, 4, 2), drop_path_rate=0.2),
    "small": dict(dims=96, depths=(2, 2, 15, 2), drop_path_rate=0.3),
    "base": dict(dims=128, depths=(2, 2, 15, 2), drop_path_rate=0.6),
}

ARRANGEMENTS = ("parallel", "cross", "sequential")


class SCDOutput(NamedTuple):
    """MambaSCD outputs, each (B, classes, H, W): binary change logits and the semantic logits of each date."""

    change: Tensor
    semantic_t1: Tensor
    semantic_t2: Tensor


class BDAOutput(NamedTuple):
    """MambaBDA outputs, each (B, classes, H, W): building localisation (pre-event image) and damage logits."""

    localization: Tensor
    damage: Tensor


def arrange_tokens(pre: Tensor, post: Tensor, mode: str) -> Tensor:
    """Arrange two dates' feature maps into one grid for a spatio-temporal VSS block.

    Args:
        pre, post: (B, C, H, W) features of the two dates.
        mode: "parallel" (channel concat, (B, 2C, H, W)), "cross" (columns interleaved, pre on even columns,
            (B, C, H, 2W)) or "sequential" (side by side, pre on the left, (B, C, H, 2W)).

    The result has the inputs' device and dtype (the original builds it with ``torch.empty(...).cuda()``).
    """
    if mode == "parallel":
        return torch.cat([pre, post], dim=1)
    if mode == "cross":
        return torch.stack([pre, post], dim=-1).flatten(-2)
    if mode == "sequential":
        return torch.cat([pre, post], dim=-1)
    raise InputError(f"arrange_tokens: mode={mode!r} must be one of {ARRANGEMENTS}")


def split_tokens(x: Tensor, mode: str) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`arrange_tokens` for the H x 2W arrangements: (B, C, H, 2W) -> two (B, C, H, W)."""
    if mode == "cross":
        return x[..., 0::2], x[..., 1::2]
    if mode == "sequential":
        width = x.shape[-1] // 2
        return x[..., :width], x[..., width:]
    raise InputError(f"split_tokens: mode={mode!r} must be 'cross' or 'sequential'")


class ResBlock(nn.Module):
    """ResNet BasicBlock at constant width: conv3x3-BN-ReLU-conv3x3-BN, + identity, ReLU. (B, C, H, W) -> same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(y)) + x)


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU())


class _ProjectedVSS(nn.Sequential):
    """1x1 conv (``proj``) to ``channels``, then one VSS block (``block``)."""

    def __init__(self, in_channels: int, channels: int, **block_kwargs: Any) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, channels, 1)
        self.block = VSSBlock(channels, spatial_dims=2, **block_kwargs)


class SpatioTemporalFusion(nn.Module):
    """One scale of the change decoder: the parallel, cross and sequential branches, then the fusion.

    Shapes: pre, post (B, in_channels, H, W) -> (B, channels, H, W).
    """

    def __init__(self, in_channels: int, channels: int, **block_kwargs: Any) -> None:
        super().__init__()
        self.parallel = _ProjectedVSS(2 * in_channels, channels, **block_kwargs)
        self.cross = _ProjectedVSS(in_channels, channels, **block_kwargs)
        self.sequential = _ProjectedVSS(in_channels, channels, **block_kwargs)
        self.fuse = _conv_bn_relu(5 * channels, channels)

    def forward(self, pre: Tensor, post: Tensor) -> Tensor:
        parts = [self.parallel(arrange_tokens(pre, post, "parallel"))]
        for mode in ("cross", "sequential"):
            parts.extend(split_tokens(getattr(self, mode)(arrange_tokens(pre, post, mode)), mode))
        return self.fuse(torch.cat(parts, dim=1))


def _upsample_add(coarse: Tensor, fine: Tensor) -> Tensor:
    return F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False) + fine


class ChangeDecoder(nn.Module):
    """MambaCD's change decoder: a :class:`SpatioTemporalFusion` per encoder scale, merged top-down.

    Args:
        encoder_dims: channels of the four encoder stages (finest first).
        channels: decoder width (128 in MambaCD).
        **block_kwargs: VSS block options (drop_path, d_state, ssm_ratio, mlp_ratio, scan, backend, ...).

    Shapes: two lists of (B, encoder_dims[i], H_i, W_i) -> (B, channels, H_0, W_0).
    """

    def __init__(self, encoder_dims: Sequence[int], channels: int = 128, **block_kwargs: Any) -> None:
        super().__init__()
        self.fusions = nn.ModuleList(SpatioTemporalFusion(d, channels, **block_kwargs) for d in encoder_dims)
        self.smooth = nn.ModuleList(ResBlock(channels) for _ in encoder_dims[:-1])

    def forward(self, pre_features: Sequence[Tensor], post_features: Sequence[Tensor]) -> Tensor:
        last = len(self.fusions) - 1
        p = self.fusions[last](pre_features[last], post_features[last])
        for i in range(last - 1, -1, -1):
            p = self.smooth[i](_upsample_add(p, self.fusions[i](pre_features[i], post_features[i])))
        return p


class SemanticDecoder(nn.Module):
    """MambaCD's single-date decoder: VSS blocks in a top-down FPN with residual smoothing.

    Shapes: a list of (B, encoder_dims[i], H_i, W_i) -> (B, channels, H_0, W_0).
    """

    def __init__(self, encoder_dims: Sequence[int], channels: int = 128, **block_kwargs: Any) -> None:
        super().__init__()
        n = len(encoder_dims)
        self.top = _ProjectedVSS(encoder_dims[-1], channels, **block_kwargs)
        self.lateral = nn.ModuleList(_conv_bn_relu(d, channels) for d in encoder_dims[:-1])
        self.smooth = nn.ModuleList(ResBlock(channels) for _ in range(n - 1))
        self.blocks = nn.ModuleList(VSSBlock(channels, spatial_dims=2, **block_kwargs) for _ in range(n - 1))
        self.final_smooth = ResBlock(channels)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        p = self.top(features[-1])
        for i in range(len(self.lateral) - 1, -1, -1):
            p = self.blocks[i](self.smooth[i](_upsample_add(p, self.lateral[i](features[i]))))
        return self.final_smooth(p)


class _SiameseVMamba(nn.Module):
    """Shared parts: input checks, the Siamese VMamba-v2 encoder with per-stage norms, encoder checkpoint loading.

    ``scan`` is the scan of every mixer unless ``encoder_scan`` (with ``encoder_scan_options`` and VMamba's cycling
    ``encoder_block_scan_options``) gives the encoder its own (AtrousMambaBCD); the decoder's VSS blocks always use
    ``scan``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        variant: str,
        dims: int | Sequence[int] | None,
        depths: Sequence[int] | None,
        drop_path_rate: float | None,
        decoder_channels: int,
        decoder_drop_path: float,
        d_state: int,
        ssm_ratio: float,
        mlp_ratio: float,
        scan: str | None,
        backend: str,
        encoder_scan: str | None = None,
        encoder_scan_options: Mapping[str, Any] | None = None,
        encoder_block_scan_options: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if spatial_dims != 2 or isinstance(spatial_dims, bool):
            raise InputError(f"{name}: spatial_dims={spatial_dims!r}; {name} is defined for 2D images only")
        if variant not in VARIANTS:
            raise InputError(f"{name}: variant={variant!r} must be one of {sorted(VARIANTS)}")
        preset = VARIANTS[variant]
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.variant = variant
        self.scan = scan or "cross"
        self.encoder = VMamba(
            spatial_dims=2,
            in_chans=in_channels,
            num_classes=0,
            dims=preset["dims"] if dims is None else dims,
            depths=preset["depths"] if depths is None else depths,
            version="v2",
            d_state=d_state,
            ssm_ratio=ssm_ratio,
            mlp_ratio=mlp_ratio,
            drop_path_rate=preset["drop_path_rate"] if drop_path_rate is None else drop_path_rate,
            scan=encoder_scan or self.scan,
            scan_options=encoder_scan_options,
            block_scan_options=encoder_block_scan_options,
            backend=backend,
            global_pool="",
        )
        self.encoder.prune_intermediate_layers(len(self.encoder.stages), prune_norm=True, prune_head=True)
        self.encoder_dims = list(self.encoder.dims)
        self.encoder_norms = nn.ModuleList(LayerNormNd(d) for d in self.encoder_dims)  # MambaCD's outnorm{i}
        self.decoder_channels = decoder_channels
        self.block_kwargs = dict(
            drop_path=decoder_drop_path,
            d_state=d_state,
            ssm_ratio=ssm_ratio,
            mlp_ratio=mlp_ratio,
            conv_bias=False,
            with_z=False,
            scan=self.scan,
            backend=backend,
        )

    def split_inputs(self, x1: Tensor, x2: Tensor | None) -> tuple[Tensor, Tensor]:
        """(x1, x2) as two (B, C, H, W) tensors, from two such tensors or one (B, 2, C, H, W)."""
        name = type(self).__name__
        if x2 is None:
            if x1.dim() != 5 or x1.shape[1] != 2:
                raise InputError(
                    f"{name}: a single input must be (B, 2, C, H, W) (two dates), got {tuple(x1.shape)}; "
                    "or pass the two dates as two (B, C, H, W) tensors"
                )
            x1, x2 = x1.unbind(1)
        if x1.shape != x2.shape:
            raise InputError(f"{name}: the two dates differ in shape: {tuple(x1.shape)} vs {tuple(x2.shape)}")
        if x1.dim() != 4 or x1.shape[1] != self.in_channels:
            raise InputError(f"{name}: input of shape {tuple(x1.shape)}, expected (B, {self.in_channels}, H, W)")
        return x1, x2

    def encode(self, x: Tensor) -> list[Tensor]:
        """x (B, in_channels, H, W) -> four normalised feature maps (B, dims[i], H / 2^(i+2), W / 2^(i+2))."""
        features = self.encoder.forward_intermediates(x, intermediates_only=True)
        return [norm(f) for norm, f in zip(self.encoder_norms, features)]

    def encode_pair(self, x1: Tensor, x2: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Both dates through the one encoder, as a single batch of 2B."""
        features = self.encode(torch.cat([x1, x2], dim=0))
        pre, post = zip(*(f.chunk(2, dim=0) for f in features))
        return list(pre), list(post)

    def load_encoder_checkpoint(self, state_dict: Mapping[str, Tensor], strict: bool = True) -> None:
        """Load VMamba (ImageNet) weights into the encoder; the classifier (norm, head) of the checkpoint is skipped.

        Accepts an original VMamba checkpoint (``layers.i.blocks.j...``, optionally wrapped in ``model``) or our
        names. With ``strict`` (default), keys the encoder lacks or has beyond the checkpoint raise an
        ``InputError`` naming them, e.g. the 5th stage-3 block of the published Tiny checkpoint, which MambaCD drops
        silently with ``strict=False``; ``strict=False`` loads what matches and logs the rest.
        """
        mapped = checkpoint_filter_fn(state_dict, self.encoder)
        mapped = {k: v for k, v in mapped.items() if not k.startswith(("norm.", "head."))}
        result = self.encoder.load_state_dict(mapped, strict=False)
        problems = []
        if result.unexpected_keys:
            problems.append(f"unexpected keys {sorted(result.unexpected_keys)}")
        if result.missing_keys:
            problems.append(f"missing keys {sorted(result.missing_keys)}")
        if problems:
            message = f"{type(self).__name__}.load_encoder_checkpoint: " + "; ".join(problems)
            if strict:
                raise InputError(message + " (depths or dims differ from the checkpoint's?)")
            logger.warning(message)


@register("mamba_bcd", "change_detection")
class MambaBCD(_SiameseVMamba):
    """ChangeMamba binary change detector (MambaBCD): Siamese VMamba-v2 encoder, spatio-temporal change decoder.

    Args:
        spatial_dims: must be 2.
        in_channels: channels of each date's image.
        out_channels: change classes (2 in MambaCD: no change / change).
        variant: "tiny", "small" or "base" (encoder dims, depths and drop path of MambaCD's configs).
        dims, depths, drop_path_rate: override the variant's encoder sizes (e.g. ``dims=16, depths=(1, 1, 1, 1)``).
        decoder_channels: decoder width (128). decoder_drop_path: stochastic depth of the decoder's VSS blocks (0.1).
        d_state, ssm_ratio, mlp_ratio: VSS block sizes, encoder and decoder (1, 2.0, 4.0).
        scan: scan order of every mixer (None = VMamba's 4-direction "cross").
        backend: selective-scan backend.

    Shapes: ``model(x1, x2)`` with x1, x2 (B, in_channels, H, W), or ``model(x)`` with x (B, 2, in_channels, H, W)
    -> logits (B, out_channels, H, W).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 2,
        variant: str = "tiny",
        dims: int | Sequence[int] | None = None,
        depths: Sequence[int] | None = None,
        drop_path_rate: float | None = None,
        decoder_channels: int = 128,
        decoder_drop_path: float = 0.1,
        d_state: int = 1,
        ssm_ratio: float = 2.0,
        mlp_ratio: float = 4.0,
        scan: str | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__(
            spatial_dims, in_channels, variant, dims, depths, drop_path_rate, decoder_channels, decoder_drop_path,
            d_state, ssm_ratio, mlp_ratio, scan, backend,
        )  # fmt: skip
        self.out_channels = out_channels
        self.decoder = ChangeDecoder(self.encoder_dims, decoder_channels, **self.block_kwargs)
        self.head = nn.Conv2d(decoder_channels, out_channels, 1)  # MambaCD's main_clf

    def forward(self, x1: Tensor, x2: Tensor | None = None) -> Tensor:
        x1, x2 = self.split_inputs(x1, x2)
        pre, post = self.encode_pair(x1, x2)
        logits = self.head(self.decoder(pre, post))
        return F.interpolate(logits, size=x1.shape[-2:], mode="bilinear", align_corners=False)


@register("mamba_scd", "change_detection")
class MambaSCD(_SiameseVMamba):
    """ChangeMamba semantic change detector (MambaSCD): MambaBCD plus one semantic decoder per date.

    The two semantic decoders have their own weights and share one classifier (``semantic_head``, MambaCD's
    ``aux_clf``). Args as :class:`MambaBCD`, plus ``semantic_classes`` (7 on SECOND, land-cover classes incl. the
    "no change" class 0).

    Shapes: inputs as :class:`MambaBCD` -> :class:`SCDOutput` ``(change (B, out_channels, H, W), semantic_t1,
    semantic_t2 (B, semantic_classes, H, W))``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 2,
        semantic_classes: int = 7,
        variant: str = "tiny",
        dims: int | Sequence[int] | None = None,
        depths: Sequence[int] | None = None,
        drop_path_rate: float | None = None,
        decoder_channels: int = 128,
        decoder_drop_path: float = 0.1,
        d_state: int = 1,
        ssm_ratio: float = 2.0,
        mlp_ratio: float = 4.0,
        scan: str | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__(
            spatial_dims, in_channels, variant, dims, depths, drop_path_rate, decoder_channels, decoder_drop_path,
            d_state, ssm_ratio, mlp_ratio, scan, backend,
        )  # fmt: skip
        self.out_channels = out_channels
        self.semantic_classes = semantic_classes
        self.decoder = ChangeDecoder(self.encoder_dims, decoder_channels, **self.block_kwargs)
        self.decoder_t1 = SemanticDecoder(self.encoder_dims, decoder_channels, **self.block_kwargs)
        self.decoder_t2 = SemanticDecoder(self.encoder_dims, decoder_channels, **self.block_kwargs)
        self.head = nn.Conv2d(decoder_channels, out_channels, 1)
        self.semantic_head = nn.Conv2d(decoder_channels, semantic_classes, 1)

    def forward(self, x1: Tensor, x2: Tensor | None = None) -> SCDOutput:
        x1, x2 = self.split_inputs(x1, x2)
        pre, post = self.encode_pair(x1, x2)
        size = x1.shape[-2:]

        def up(t: Tensor) -> Tensor:
            return F.interpolate(t, size=size, mode="bilinear", align_corners=False)

        return SCDOutput(
            up(self.head(self.decoder(pre, post))),
            up(self.semantic_head(self.decoder_t1(pre))),
            up(self.semantic_head(self.decoder_t2(post))),
        )


@register("mamba_bda", "change_detection")
class MambaBDA(_SiameseVMamba):
    """ChangeMamba building damage assessment (MambaBDA, xBD): localisation on the pre-event image, damage classes.

    A :class:`SemanticDecoder` on the pre-event features gives building localisation (``localization_classes``,
    2), a :class:`ChangeDecoder` on both dates the damage classes (``out_channels``, 5 on xBD: background, no / minor
    / major damage, destroyed). Other args as :class:`MambaBCD`.

    Shapes: inputs as :class:`MambaBCD` (x1 pre-event, x2 post-event) -> :class:`BDAOutput`
    ``(localization (B, localization_classes, H, W), damage (B, out_channels, H, W))``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 5,
        localization_classes: int = 2,
        variant: str = "tiny",
        dims: int | Sequence[int] | None = None,
        depths: Sequence[int] | None = None,
        drop_path_rate: float | None = None,
        decoder_channels: int = 128,
        decoder_drop_path: float = 0.1,
        d_state: int = 1,
        ssm_ratio: float = 2.0,
        mlp_ratio: float = 4.0,
        scan: str | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__(
            spatial_dims, in_channels, variant, dims, depths, drop_path_rate, decoder_channels, decoder_drop_path,
            d_state, ssm_ratio, mlp_ratio, scan, backend,
        )  # fmt: skip
        self.out_channels = out_channels
        self.localization_classes = localization_classes
        self.decoder = ChangeDecoder(self.encoder_dims, decoder_channels, **self.block_kwargs)
        self.decoder_localization = SemanticDecoder(self.encoder_dims, decoder_channels, **self.block_kwargs)
        self.head = nn.Conv2d(decoder_channels, out_channels, 1)  # MambaCD's main_clf
        self.localization_head = nn.Conv2d(decoder_channels, localization_classes, 1)  # MambaCD's aux_clf

    def forward(self, x1: Tensor, x2: Tensor | None = None) -> BDAOutput:
        x1, x2 = self.split_inputs(x1, x2)
        pre, post = self.encode_pair(x1, x2)
        size = x1.shape[-2:]
        localization = self.localization_head(self.decoder_localization(pre))
        damage = self.head(self.decoder(pre, post))
        return BDAOutput(
            F.interpolate(localization, size=size, mode="bilinear", align_corners=False),
            F.interpolate(damage, size=size, mode="bilinear", align_corners=False),
        )
