"""VMamba: hierarchical visual state-space backbone (Liu et al., "VMamba: Visual State Space Model", arXiv 2401.10166).

Our implementation, written from the paper and the published configs (MzeroMiko/VMamba, MIT), for 2D images and 3D
volumes, registered with timm. Two designs are selected by ``version``:

- ``"v0"`` (VMamba "vanilla"): patch embed v1 (conv k=s=4 + LN), downsample v1 (PatchMerging), no MLP, mixer with
  the z gate and a biased depthwise conv; d_state 16, ssm_ratio 2.
- ``"v2"`` (VMamba-T/S/B, ``v05_noz``): patch embed v2 (two conv3x3 s2), downsample v3 (conv3x3 s2 + LN), MLP ratio 4,
  mixer without z gate and without conv bias; d_state 1.

Layout: ``patch_embed`` -> ``stages[i]`` (``downsample`` for i > 0, then ``blocks``) -> ``norm`` -> global average
pool -> ``head``. Unlike VMamba, the downsample opens stage i+1 instead of closing stage i, so every stage output is
a feature map at reduction 4, 8, 16, 32 (``feature_info``); :func:`checkpoint_filter_fn` maps VMamba's key names.
Tensors are channels-first throughout: (B, C, H, W) or (B, C, D, H, W).

Registered names (``timm.create_model``; importing ``visionssm.models`` registers them): ``visionssm_vmamba_tiny``,
``visionssm_vmamba_small``, ``visionssm_vmamba_base``, ``visionssm_vmamba_vanilla_tiny`` and the CI-sized
``visionssm_test_vmamba`` (2D) and ``visionssm_test_vmamba3d`` (3D).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from visionssm.errors import InputError
from visionssm.layers import (
    ConvDownsample,
    LayerNormNd,
    PatchEmbed,
    PatchEmbedV2,
    PatchMerging,
    VSSBlock,
)
from visionssm.layers.init import init_linear_and_layernorm
from visionssm.layers.ssm import check_spatial_dims

__all__ = ["VMamba", "VMambaStage", "checkpoint_filter_fn"]

# Defaults of the two designs; explicit constructor arguments override them.
VERSIONS: dict[str, dict[str, Any]] = {
    "v0": dict(patch_embed="v1", downsample="v1", mlp_ratio=0.0, conv_bias=True, with_z=True),
    "v2": dict(patch_embed="v2", downsample="v3", mlp_ratio=4.0, conv_bias=False, with_z=False),
}
_VERSION_ALIASES = {"vanilla": "v0", "v0": "v0", "v2": "v2", "v05_noz": "v2"}
_PATCH_EMBEDS = {"v1": PatchEmbed, "v2": PatchEmbedV2}
_DOWNSAMPLES = {"v1": PatchMerging, "v3": ConvDownsample}


def take_indices(num_stages: int, indices: int | Sequence[int] | None) -> list[int]:
    """Absolute stage indices: None = all, an int n = the last n, a sequence = those (negative counts from the end)."""
    if indices is None:
        return list(range(num_stages))
    if isinstance(indices, int):
        if not 0 < indices <= num_stages:
            raise InputError(f"indices={indices}: the last n stages need 1 <= n <= {num_stages}")
        return list(range(num_stages - indices, num_stages))
    taken = [i + num_stages if i < 0 else i for i in indices]
    if any(not 0 <= i < num_stages for i in taken):
        raise InputError(f"indices={list(indices)}: stage indices must lie in [-{num_stages}, {num_stages})")
    return taken


class VMambaStage(nn.Module):
    """One resolution level: optional downsample (channels ``in_dim`` -> ``dim``), then ``depth`` VSS blocks.

    Shapes: x (B, in_dim, *spatial) -> (B, dim, *spatial / 2) with a downsample, else (B, dim, *spatial).
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        spatial_dims: int,
        downsample: str | None,
        drop_path: Sequence[float],
        norm_eps: float = 1e-5,
        block_scan_options: Sequence[Mapping[str, Any]] = (),
        **block_kwargs: Any,
    ) -> None:
        super().__init__()
        self.grad_checkpointing = False
        base_options = dict(block_kwargs.pop("scan_options", None) or {})
        cycle = list(block_scan_options) or [{}]
        if downsample is None:
            self.downsample: nn.Module = nn.Identity()
        else:
            self.downsample = _DOWNSAMPLES[downsample](in_dim, dim, spatial_dims=spatial_dims, norm_eps=norm_eps)
        self.blocks = nn.Sequential(
            *(
                VSSBlock(
                    dim,
                    spatial_dims=spatial_dims,
                    drop_path=drop_path[j],
                    norm_eps=norm_eps,
                    scan_options={**base_options, **cycle[j % len(cycle)]},
                    **block_kwargs,
                )
                for j in range(depth)
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            for block in self.blocks:
                x = checkpoint(block, x, use_reentrant=False)
            return x
        return self.blocks(x)


class VMamba(nn.Module):
    """Hierarchical VMamba backbone and classifier for 2D or 3D inputs (timm API).

    Args:
        spatial_dims: 2 (x: (B, in_chans, H, W)) or 3 (x: (B, in_chans, D, H, W)).
        in_chans: input channels.
        num_classes: classifier outputs; 0 = no classifier (``forward`` returns pooled features).
        dims: channels per stage, or the first stage's channels (doubled per stage).
        depths: VSS blocks per stage.
        version: "v2" (VMamba-T/S/B design) or "v0" / "vanilla" (VMamba v0); sets the defaults below.
        d_state, ssm_ratio, dt_rank, d_conv: mixer sizes (see :class:`visionssm.layers.SSMixer`).
        conv_bias, with_z, mlp_ratio, patch_embed ("v1" | "v2"), downsample ("v1" | "v3"): None = the version's value.
        patch_size: stem stride (patch embed v2 needs 4).
        drop_rate: dropout before the classifier. drop_path_rate: stochastic depth, linear from 0 over all blocks.
        ssm_drop_rate: dropout after the mixer's out_proj. mlp_drop_rate: dropout inside the MLP.
        norm_eps: eps of every LayerNorm.
        scan: scan order of every mixer; None = "cross" (2D) or "cross3d" (3D). scan_options: ``scan_plan`` options.
        block_scan_options: per-block options merged over scan_options, cycling within every stage: block j of a stage
            uses ``block_scan_options[j % len(block_scan_options)]`` (e.g. AtrousMambaBCD's rates).
        backend: selective-scan backend ("auto" = env VISIONSSM_SCAN_BACKEND, else triton on CUDA, else torch).
        global_pool: "avg" or "" (no pooling in ``forward_head``).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_chans: int = 3,
        num_classes: int = 1000,
        dims: int | Sequence[int] = 96,
        depths: Sequence[int] = (2, 2, 9, 2),
        version: str = "v2",
        d_state: int = 1,
        ssm_ratio: float = 2.0,
        dt_rank: int | str = "auto",
        d_conv: int = 3,
        conv_bias: bool | None = None,
        with_z: bool | None = None,
        mlp_ratio: float | None = None,
        patch_embed: str | None = None,
        downsample: str | None = None,
        patch_size: int = 4,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        ssm_drop_rate: float = 0.0,
        mlp_drop_rate: float = 0.0,
        norm_eps: float = 1e-5,
        scan: str | None = None,
        scan_options: Mapping[str, Any] | None = None,
        block_scan_options: Sequence[Mapping[str, Any]] = (),
        backend: str = "auto",
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if version not in _VERSION_ALIASES:
            raise InputError(f"VMamba: version={version!r} must be one of {sorted(_VERSION_ALIASES)}")
        self.version = _VERSION_ALIASES[version]
        defaults = VERSIONS[self.version]
        patch_embed = patch_embed or defaults["patch_embed"]
        downsample = downsample or defaults["downsample"]
        if patch_embed not in _PATCH_EMBEDS or downsample not in _DOWNSAMPLES:
            raise InputError(
                f"VMamba: patch_embed={patch_embed!r} must be in {sorted(_PATCH_EMBEDS)} and "
                f"downsample={downsample!r} in {sorted(_DOWNSAMPLES)}"
            )
        depths = tuple(depths)
        num_stages = len(depths)
        if isinstance(dims, int):
            dims = [dims * 2**i for i in range(num_stages)]
        dims = [int(d) for d in dims]
        if len(dims) != num_stages:
            raise InputError(f"VMamba: {len(dims)} dims for {num_stages} stages (depths={depths})")
        if global_pool not in ("avg", ""):
            raise InputError(f"VMamba: global_pool={global_pool!r} must be 'avg' or ''")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.dims = dims
        self.depths = depths
        self.num_features = self.head_hidden_size = dims[-1]
        self.global_pool = global_pool
        self.drop_rate = drop_rate
        self.scan = scan or ("cross" if spatial_dims == 2 else "cross3d")
        self.output_fmt = "NCHW"  # timm's name for channels-first; it knows no 3D format, so 3D uses it too

        self.patch_embed = _PATCH_EMBEDS[patch_embed](
            in_chans, dims[0], patch_size=patch_size, spatial_dims=spatial_dims, norm_eps=norm_eps
        )
        block_kwargs = dict(
            mlp_ratio=defaults["mlp_ratio"] if mlp_ratio is None else mlp_ratio,
            mlp_drop=mlp_drop_rate,
            d_state=d_state,
            ssm_ratio=ssm_ratio,
            dt_rank=dt_rank,
            d_conv=d_conv,
            conv_bias=defaults["conv_bias"] if conv_bias is None else conv_bias,
            with_z=defaults["with_z"] if with_z is None else with_z,
            scan=self.scan,
            scan_options=scan_options,
            backend=backend,
            dropout=ssm_drop_rate,
            out_norm_eps=norm_eps,
        )
        total = sum(depths)
        rates = [drop_path_rate * j / (total - 1) if total > 1 else 0.0 for j in range(total)]  # linear from 0
        stages = []
        self.feature_info: list[dict[str, Any]] = []
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            stages.append(
                VMambaStage(
                    dims[i - 1] if i else dims[0],
                    dims[i],
                    depth,
                    spatial_dims,
                    downsample if i else None,
                    rates[start : start + depth],
                    norm_eps=norm_eps,
                    block_scan_options=block_scan_options,
                    **block_kwargs,
                )
            )
            self.feature_info.append(dict(num_chs=dims[i], reduction=patch_size * 2**i, module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.norm = LayerNormNd(self.num_features, eps=norm_eps)
        self.head_drop = nn.Dropout(drop_rate)
        self.head: nn.Module = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        # Linear (incl. the 1x1 projections) and LayerNorm as VMamba; convs and the S6 parameters keep theirs.
        self.apply(init_linear_and_layernorm)

    # ---- timm model API ------------------------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Names of the parameters marked ``_no_weight_decay`` (the mixers' ``A_logs`` and ``Ds``)."""
        return {name for name, p in self.named_parameters() if getattr(p, "_no_weight_decay", False)}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        fine = [
            (r"^stages\.(\d+)\.downsample", (0,)),
            (r"^stages\.(\d+)\.blocks\.(\d+)", None),
            (r"^norm", (99999,)),
        ]
        return dict(stem=r"^patch_embed", blocks=r"^stages\.(\d+)" if coarse else fine)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier with a fresh ``Linear(num_features, num_classes)`` (0: none)."""
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise InputError(f"VMamba: global_pool={global_pool!r} must be 'avg' or ''")
            self.global_pool = global_pool
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """Stage outputs (B, dims[i], *spatial / reduction_i) for the stages in ``indices``.

        Args:
            x: (B, in_chans, *spatial).
            indices: None = all stages, int n = the last n, or a list of stage indices.
            norm: apply the final ``norm`` to the last stage's feature map when it is taken.
            stop_early: stop after the last stage taken (the returned final features are then that stage's).
            output_fmt: channels-first ("NCHW", also accepted for 3D, or "NCDHW"), or channels-last ("NHWC", "NDHWC").
            intermediates_only: return only the list.

        Returns:
            The list of feature maps, or (final features after ``norm``, list).
        """
        fmt = str(getattr(output_fmt, "value", output_fmt))
        if fmt not in ("NCHW", "NCDHW", "NHWC", "NDHWC"):
            raise InputError(f"VMamba: output_fmt={fmt!r} must be channels-first (NCHW/NCDHW) or -last (NHWC/NDHWC)")
        channels_last = fmt in ("NHWC", "NDHWC")
        taken = take_indices(len(self.stages), indices)
        last = len(self.stages) - 1
        stages = self.stages[: max(taken) + 1] if stop_early else self.stages
        intermediates = []
        x = self.patch_embed(x)
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in taken:
                y = self.norm(x) if norm and i == last else x
                intermediates.append(y.movedim(1, -1).contiguous() if channels_last else y)
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last one in ``indices`` (and the norm / head); returns the absolute indices."""
        taken = take_indices(len(self.stages), indices)
        self.stages = self.stages[: max(taken) + 1]
        if prune_norm or max(taken) < len(self.dims) - 1:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return taken

    def forward_features(self, x: Tensor) -> Tensor:
        """x (B, in_chans, *spatial) -> normalised last-stage features (B, num_features, *spatial / 32)."""
        if x.dim() != self.spatial_dims + 2:
            raise InputError(
                f"VMamba ({self.spatial_dims}D): input of shape {tuple(x.shape)}, expected (B, {self.in_chans}, "
                f"{'D, H, W' if self.spatial_dims == 3 else 'H, W'})"
            )
        return self.norm(self.stages(self.patch_embed(x)))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Global average pool -> dropout -> classifier; ``pre_logits`` stops before the classifier."""
        if self.global_pool == "avg":
            x = x.mean(dim=tuple(range(2, x.dim())))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


# ---- weights ---------------------------------------------------------------------------------------------------
_V2_STEM = {"0": "conv1", "2": "norm1", "5": "conv2", "7": "norm2"}
_V1_STEM = {"0": "proj", "2": "norm", "proj": "proj", "norm": "norm"}


def _rename_vmamba_key(key: str, model: VMamba) -> str:
    """One key of an original VMamba checkpoint (``layers.i.blocks.j.op...``) in our layout."""
    if match := re.match(r"patch_embed\.(\w+)\.(.*)", key):
        table = _V2_STEM if isinstance(model.patch_embed, PatchEmbedV2) else _V1_STEM
        return f"patch_embed.{table.get(match[1], match[1])}.{match[2]}"
    if match := re.match(r"layers\.(\d+)\.downsample\.(.*)", key):
        rest = re.sub(r"^1\.", "conv.", re.sub(r"^3\.", "norm.", match[2]))
        return f"stages.{int(match[1]) + 1}.downsample.{rest}"
    if match := re.match(r"layers\.(\d+)\.blocks\.(\d+)\.(.*)", key):
        rest = match[3].replace("ln_1.", "norm.").replace("self_attention.", "op.")
        rest = re.sub(r"^op\.", "mixer.", rest).replace("mixer.conv2d.", "mixer.conv.")
        return f"stages.{match[1]}.blocks.{match[2]}.{rest}"
    for old, new in (("classifier.norm.", "norm."), ("classifier.head.", "head.")):
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def _adapt_input_conv_nd(in_chans: int, weight: Tensor) -> Tensor:
    """timm's first-conv adaptation for N-D conv weights (O, I, *k): sum to 1 channel, else repeat and rescale."""
    source = weight.shape[1]
    dtype = weight.dtype
    weight = weight.float()
    if in_chans == 1:
        adapted = weight.sum(dim=1, keepdim=True)
    else:
        repeats = -(-in_chans // source)
        adapted = weight.repeat(1, repeats, *([1] * (weight.dim() - 2)))[:, :in_chans] * (source / in_chans)
    return adapted.to(dtype)


def checkpoint_filter_fn(state_dict: Mapping[str, Tensor], model: VMamba) -> dict[str, Tensor]:
    """Prepare a checkpoint for ``model``: unwrap ``model``/``state_dict`` keys, map original VMamba names to ours,
    and adapt a 3D first conv to the model's ``in_chans`` (timm's ``adapt_input_conv`` handles 2D only).

    The VMamba name mapping follows the published code's module names; it has not been checked against a released
    checkpoint file.
    """
    for wrapper in ("model", "state_dict", "model_ema"):
        if wrapper in state_dict and isinstance(state_dict[wrapper], Mapping):
            state_dict = state_dict[wrapper]
    original = any(k.startswith(("layers.", "classifier.")) for k in state_dict)
    out = {(_rename_vmamba_key(k, model) if original else k): v for k, v in state_dict.items()}
    if model.spatial_dims == 3:
        first = model.pretrained_cfg.get("first_conv") if hasattr(model, "pretrained_cfg") else None
        key = f"{first}.weight"
        target = model.get_submodule(first).weight if first else None
        if first and key in out and target is not None and out[key].shape[1] != target.shape[1]:
            out[key] = _adapt_input_conv_nd(target.shape[1], out[key])
    return out


# ---- registration ------------------------------------------------------------------------------------------------
def _create_vmamba(variant: str, pretrained: bool = False, **kwargs: Any) -> VMamba:
    return build_model_with_cfg(
        VMamba,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True, feature_cls="getter"),
        **kwargs,
    )


def _cfg(first_conv: str = "patch_embed.conv1", **kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": first_conv,
        "classifier": "head",
        "license": "apache-2.0",
        "paper_ids": "arXiv:2401.10166",
        "origin_url": "https://github.com/MzeroMiko/VMamba",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "visionssm_vmamba_tiny": _cfg(),
        "visionssm_vmamba_small": _cfg(),
        "visionssm_vmamba_base": _cfg(),
        "visionssm_vmamba_vanilla_tiny": _cfg(first_conv="patch_embed.proj"),
        "visionssm_test_vmamba": _cfg(input_size=(3, 64, 64), pool_size=(2, 2)),
        # timm's cfg describes 2D inputs (input_size = (C, H, W)); 3D models leave it unset and say it in notes.
        "visionssm_test_vmamba3d": _cfg(
            input_size=None, pool_size=None, mean=(0.0,), std=(1.0,), crop_pct=1.0, notes="3D input (B, 1, 32, 32, 32)"
        ),
    }
)


@register_model
def visionssm_vmamba_tiny(pretrained: bool = False, **kwargs: Any) -> VMamba:
    """VMamba-T [s1l8]: dims 96, depths 2-2-8-2, d_state 1, ssm_ratio 1.0, MLP 4 (v2 design)."""
    args = dict(dims=96, depths=(2, 2, 8, 2), d_state=1, ssm_ratio=1.0, version="v2", drop_path_rate=0.2)
    return _create_vmamba("visionssm_vmamba_tiny", pretrained, **dict(args, **kwargs))


@register_model
def visionssm_vmamba_small(pretrained: bool = False, **kwargs: Any) -> VMamba:
    """VMamba-S [s2l15]: dims 96, depths 2-2-15-2, d_state 1, ssm_ratio 2.0, MLP 4 (v2 design)."""
    args = dict(dims=96, depths=(2, 2, 15, 2), d_state=1, ssm_ratio=2.0, version="v2", drop_path_rate=0.3)
    return _create_vmamba("visionssm_vmamba_small", pretrained, **dict(args, **kwargs))


@register_model
def visionssm_vmamba_base(pretrained: bool = False, **kwargs: Any) -> VMamba:
    """VMamba-B [s2l15]: dims 128, depths 2-2-15-2, d_state 1, ssm_ratio 2.0, MLP 4 (v2 design)."""
    args = dict(dims=128, depths=(2, 2, 15, 2), d_state=1, ssm_ratio=2.0, version="v2", drop_path_rate=0.6)
    return _create_vmamba("visionssm_vmamba_base", pretrained, **dict(args, **kwargs))


@register_model
def visionssm_vmamba_vanilla_tiny(pretrained: bool = False, **kwargs: Any) -> VMamba:
    """VMamba v0 ("vanilla") tiny: dims 96, depths 2-2-9-2, d_state 16, ssm_ratio 2, no MLP, z gate."""
    args = dict(dims=96, depths=(2, 2, 9, 2), d_state=16, ssm_ratio=2.0, version="v0", drop_path_rate=0.2)
    return _create_vmamba("visionssm_vmamba_vanilla_tiny", pretrained, **dict(args, **kwargs))


@register_model
def visionssm_test_vmamba(pretrained: bool = False, **kwargs: Any) -> VMamba:
    """CI-sized 2D VMamba (v2 design): dims 16-32-64-128, one block per stage, d_state 1."""
    args = dict(dims=16, depths=(1, 1, 1, 1), d_state=1, ssm_ratio=1.0, version="v2", drop_path_rate=0.0)
    return _create_vmamba("visionssm_test_vmamba", pretrained, **dict(args, **kwargs))


@register_model
def visionssm_test_vmamba3d(pretrained: bool = False, **kwargs: Any) -> VMamba:
    """CI-sized 3D VMamba (v2 design) for volumes (B, 1, D, H, W): dims 8-16-32-64, one block per stage."""
    args = dict(
        spatial_dims=3,
        in_chans=1,
        dims=8,
        depths=(1, 1, 1, 1),
        d_state=1,
        ssm_ratio=1.0,
        version="v2",
        drop_path_rate=0.0,
    )
    return _create_vmamba("visionssm_test_vmamba3d", pretrained, **dict(args, **kwargs))
