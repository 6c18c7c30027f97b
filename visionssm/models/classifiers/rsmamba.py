"""RSMamba: multi-path Mamba scene classifier (Chen et al., "RSMamba: Remote Sensing Image Classification with State
Space Model", arXiv 2403.19654; KyanChen/RSMamba, Apache-2.0). Our implementation, written from the paper and the
published configuration (models.md §9), for 2D images and 3D volumes.

Data flow for x (B, in_channels, *spatial), C = embed_dim::

    patch_embed   conv k = patch_size, stride = patch_stride (overlapping), no bias; the input is zero-padded at the
                  end of each axis so that every pixel is covered: grid = ceil(spatial / stride)
                  (224^2, k 16, s 8 -> 28^2 = 784 tokens)
    + pos_embed   learnable absolute position embedding (1, L, C), resized to the input's grid when it differs
    layers        per layer i, residual around: shared pre_norm -> the same MambaMixer_i on every path of ``scan``
                  (forward, reversed and shuffled token orders, run as one batch) -> paths put back in raster
                  order -> softmax gate over the paths (Linear(P C -> P, no bias) of the per-path token means)
    ln1           final LayerNorm (after the last layer)
    pool, ln2     token mean -> LayerNorm
    head          Linear(C -> out_channels)

**The shuffle path.** The original draws a new ``torch.randperm`` every forward, in evaluation too (models.md §9,
§15.3), so its predictions are not reproducible. Here:

- in training mode each layer draws a fresh permutation from torch's global RNG (as the original does), so runs are
  reproducible with ``torch.manual_seed``;
- in evaluation mode layer i uses a fixed permutation, drawn from ``torch.Generator().manual_seed(shuffle_seed + i)``
  for the current token count: the same input gives the same output on every call, and two models with the same
  weights and ``shuffle_seed`` agree. ``eval_shuffle="random"`` restores the original behaviour (a fresh global-RNG
  permutation every forward, also in eval).

Other deviations from the original, all off the published configuration's 224^2 path: the position embedding is
resized (bicubic in 2D, trilinear in 3D) for other input sizes instead of failing, and 3D inputs are supported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionssm.errors import InputError
from visionssm.layers import MambaMixer
from visionssm.layers.ssm import check_spatial_dims
from visionssm.models.registry import register

PATHS = ("forward", "reverse", "shuffle")
_CONVS: dict[int, type[nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}

# Published variants (RSMamba models.py arch_zoo, PDF Table I): layers x hidden / intermediate; state 16, dt rank
# ceil(hidden / 16). Sizes reported in the paper: B 6.4 M, L 16.2 M, H 33.1 M.
VARIANTS = {
    "b": dict(embed_dim=192, depth=24, d_inner=384),
    "l": dict(embed_dim=256, depth=36, d_inner=512),
    "h": dict(embed_dim=320, depth=48, d_inner=640),
}


@torch.compiler.disable  # host-side permutation drawing (explicit generator) stays out of compiled graphs
def _permutation(length: int, seed: int | None, device: torch.device) -> Tensor:
    """A permutation of ``length`` tokens: from a generator seeded with ``seed``, or the global RNG when None."""
    if seed is None:
        return torch.randperm(length).to(device)
    return torch.randperm(length, generator=torch.Generator().manual_seed(seed)).to(device)


@register("rsmamba", "classification")
class RSMamba(nn.Module):
    """RSMamba classifier: overlapping patch embedding, plain stack of multi-path gated Mamba layers, mean pool, head.

    Args:
        spatial_dims: 2 (x: (B, in_channels, H, W)) or 3 (x: (B, in_channels, D, H, W)).
        in_channels: input channels.
        out_channels: number of classes (0 = no head; ``forward`` returns the pooled features (B, embed_dim)).
        img_size: input size the position embedding is built for (int or one per spatial axis).
        embed_dim: token width C (B: 192, L: 256, H: 320).
        depth: number of layers (B: 24, L: 36, H: 48).
        d_inner: Mamba intermediate width (B: 384 = 2 C).
        d_state, d_conv, dt_rank: Mamba sizes (16, 4, ceil(C / 16)).
        patch_size, patch_stride: stem kernel and stride (16, 8: overlapping).
        scan: the token orders (paths), a subset of ("forward", "reverse", "shuffle"); several paths are merged by
            the softmax gate; one path ("forward") is a plain Mamba stack.
        shuffle_seed: seed of the fixed evaluation-mode permutations (layer i uses ``shuffle_seed + i``).
        eval_shuffle: "fixed" (default, deterministic evaluation) or "random" (original: re-drawn every forward).
        drop_rate: dropout after the position embedding.
        norm_eps: eps of every LayerNorm (1e-6).
        backend: selective-scan backend ("auto", "reference", "torch", "triton", "mamba_ssm").

    Shapes: x (B, in_channels, *spatial) -> logits (B, out_channels).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 21,
        img_size: int | Sequence[int] = 224,
        embed_dim: int = 192,
        depth: int = 24,
        d_inner: int | None = None,
        d_state: int = 16,
        d_conv: int = 4,
        dt_rank: int | str = "auto",
        patch_size: int = 16,
        patch_stride: int = 8,
        scan: Sequence[str] = PATHS,
        shuffle_seed: int = 0,
        eval_shuffle: str = "fixed",
        drop_rate: float = 0.0,
        norm_eps: float = 1e-6,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if isinstance(scan, str):
            scan = (scan,)
        scan = tuple(scan)
        if not scan or len(set(scan)) != len(scan) or not set(scan) <= set(PATHS):
            raise InputError(f"RSMamba: scan={scan!r} must be distinct names from {PATHS}")
        if eval_shuffle not in ("fixed", "random"):
            raise InputError(f"RSMamba: eval_shuffle={eval_shuffle!r} must be 'fixed' or 'random'")
        sizes = (img_size,) * spatial_dims if isinstance(img_size, int) else tuple(int(s) for s in img_size)
        if len(sizes) != spatial_dims:
            raise InputError(f"RSMamba: img_size={img_size!r} does not have {spatial_dims} sizes")
        if patch_stride < 1 or patch_size < 1:
            raise InputError(f"RSMamba: patch_size={patch_size!r} and patch_stride={patch_stride!r} must be positive")
        self.in_channels = in_channels
        self.out_channels = self.num_classes = out_channels
        self.embed_dim = self.num_features = embed_dim
        self.scan = scan
        self.shuffle_seed = shuffle_seed
        self.eval_shuffle = eval_shuffle
        self.patch_size = patch_size
        self.patch_stride = patch_stride
        self.grid_size = tuple(math.ceil(s / patch_stride) for s in sizes)
        d_inner = d_inner or 2 * embed_dim

        self.patch_embed = _CONVS[spatial_dims](in_channels, embed_dim, patch_size, stride=patch_stride, bias=False)
        self.pos_embed = nn.Parameter(torch.zeros(1, math.prod(self.grid_size), embed_dim))
        self.drop_after_pos = nn.Dropout(drop_rate)
        self.layers = nn.ModuleList(
            MambaMixer(
                embed_dim,
                d_state=d_state,
                d_conv=d_conv,
                expand=d_inner / embed_dim,
                dt_rank=dt_rank,
                conv_bias=True,
                bias=False,
                backend=backend,
            )
            for _ in range(depth)
        )
        paths = len(scan)
        self.gates = nn.ModuleList(
            nn.Linear(paths * embed_dim, paths, bias=False) for _ in range(depth if paths > 1 else 0)
        )
        self.pre_norm = nn.LayerNorm(embed_dim, eps=norm_eps)  # one LayerNorm shared by all layers, as published
        self.ln1 = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.ln2 = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.head: nn.Module = nn.Linear(embed_dim, out_channels) if out_channels > 0 else nn.Identity()

        # Original init: Kaiming (fan_in, linear) on the stem conv, trunc normal (0.02) position embedding; the rest
        # keeps PyTorch's / Mamba's own initialisation.
        nn.init.kaiming_normal_(self.patch_embed.weight, mode="fan_in", nonlinearity="linear")
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"} | {n for n, p in self.named_parameters() if getattr(p, "_no_weight_decay", False)}

    def _embed(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """x (B, in_channels, *spatial) -> tokens (B, L, C) in raster order and their grid."""
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            axes = "D, H, W" if self.spatial_dims == 3 else "H, W"
            raise InputError(f"RSMamba: input of shape {tuple(x.shape)}, expected (B, {self.in_channels}, {axes})")
        pad: list[int] = []
        for size in reversed(x.shape[2:]):  # "corner" padding at the end of each axis (F.pad lists the last first)
            out = math.ceil(size / self.patch_stride)
            pad += [0, max((out - 1) * self.patch_stride + self.patch_size - size, 0)]
        if any(pad):
            x = F.pad(x, pad)
        x = self.patch_embed(x)
        grid = tuple(x.shape[2:])
        return x.flatten(2).transpose(1, 2), grid

    def _pos_embed(self, grid: tuple[int, ...]) -> Tensor:
        if grid == self.grid_size:
            return self.pos_embed
        pos = self.pos_embed.transpose(1, 2).reshape(1, self.embed_dim, *self.grid_size)
        mode = "bicubic" if self.spatial_dims == 2 else "trilinear"
        pos = F.interpolate(pos, size=grid, mode=mode, align_corners=False)
        return pos.flatten(2).transpose(1, 2)

    def shuffle_order(self, layer: int, length: int, device: torch.device) -> Tensor:
        """The shuffle path's token order of layer ``layer``: (L,) int64, fixed in eval unless ``eval_shuffle``."""
        fixed = not self.training and self.eval_shuffle == "fixed"
        return _permutation(length, self.shuffle_seed + layer if fixed else None, device)

    def forward_features(self, x: Tensor) -> Tensor:
        """x (B, in_channels, *spatial) -> tokens (B, L, C) after the final LayerNorm ``ln1``."""
        x, grid = self._embed(x)
        x = self.drop_after_pos(x + self._pos_embed(grid).to(x.dtype))
        batch, length, _ = x.shape
        for i, layer in enumerate(self.layers):
            residual = x
            h = self.pre_norm(x)  # per token, so normalising before reordering equals the original's order
            inputs, perm = [], None
            for path in self.scan:
                if path == "forward":
                    inputs.append(h)
                elif path == "reverse":
                    inputs.append(h.flip(1))
                else:
                    perm = self.shuffle_order(i, length, h.device)
                    inputs.append(h[:, perm])
            outs = layer(torch.cat(inputs, dim=0)).split(batch, dim=0)
            restored = []
            for path, y in zip(self.scan, outs):
                if path == "reverse":
                    y = y.flip(1)
                elif path == "shuffle":
                    y = y[:, torch.argsort(perm)]
                restored.append(y)
            if len(restored) == 1:
                x = residual + restored[0]
            else:
                gate = self.gates[i](torch.cat([y.mean(dim=1) for y in restored], dim=-1)).softmax(dim=-1)  # (B, P)
                x = residual + sum(gate[:, k, None, None] * y for k, y in enumerate(restored))
        return self.ln1(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """tokens (B, L, C) -> logits (B, out_channels), or the pooled features (B, C) with ``pre_logits``."""
        x = self.ln2(x.mean(dim=1))
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))
