"""Plain Mamba-1 token mixers and the U-Mamba / SegMamba / LightM-UNet wrappers around them.

- :class:`MambaMixer`: mamba_ssm's ``Mamba`` block mixer on token sequences (B, L, d_model), unidirectional or with
  one parameter set per direction (Vim "bimamba v2", SegMamba "v3" tri-orientation, or any named scan order).
- :class:`MambaLayer`: LayerNorm -> mixer on a channels-first map (B, C, *spatial), with or without a residual
  (U-Mamba: without; SegMamba's ToM: with), optionally with channels as tokens (U-Mamba Enc).
- :class:`ResidualVisionMamba`: LightM-UNet's RVM layer ``Linear(LN(Mamba(LN(x)) + skip_scale * x))``.
- :class:`VimBlock`: Vim's block ``x + DropPath(MambaMixer(Norm(x)))`` with the bidirectional mixer, on token sequences.

Data flow of :class:`MambaMixer` for x (B, L, d_model), d_inner = expand * d_model, K directions, N = d_state,
R = dt_rank::

    in_proj                          (B, L, d_model)  -> x, z (B, d_inner, L) each, raster order
    gather x and z per direction     (B, K * d_inner, L), direction k in its own token order
    causal depthwise conv1d, SiLU    per direction (kernel d_conv, left padding d_conv - 1, cropped to L)
    x_proj per direction             -> dt (R), B (N), C (N) per token
    dt_proj per direction (no bias)  -> dt (B, K * d_inner, L); its bias is the scan's delta_bias
    selective_scan                   all K directions in one call (B and C as K groups), gated by silu(z)
    back to raster order, merge      sum (SegMamba, mamba_ssm's default) or mean (Vim, ``if_divide_out``)
    out_proj                         (B, L, d_inner) -> (B, L, d_model)

Parameter names follow mamba_ssm (``in_proj``, ``conv1d``, ``x_proj``, ``dt_proj``, ``A_log``, ``D``,
``out_proj``); the extra directions follow Vim / SegMamba (``conv1d_b``, ``x_proj_b``, ``dt_proj_b``, ``A_b_log``,
``D_b`` for the backward direction, ``*_s`` / ``A_s_log`` for SegMamba's inter-slice direction), so their state
dicts load 1:1. Other scan orders name direction k >= 1 with the suffix ``_k`` (``conv1d_1``, ``A_1_log``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionssm.errors import InputError
from visionssm.kernels import selective_scan
from visionssm.scans import available_scans, scan_plan

from ._timm import DropPath
from .ssm import check_spatial_dims, dt_bias_init, resolve_dt_rank

MERGES = ("sum", "mean")
VIM_NORMS = ("rms", "layer")
# Parameter-name suffixes of the published multi-direction variants (mamba_simple.py of Vim and SegMamba).
_NAMED_SUFFIXES = {"bidirectional": ("", "_b"), "tri_orientation": ("", "_b", "_s")}


def _direction_name(directions: int | str) -> str | None:
    """None for the unidirectional mixer, else the scan name ("bidirectional" for ``directions=2``)."""
    if isinstance(directions, bool):
        raise InputError(f"directions={directions!r}: expected 1, 2, 'bidirectional', 'tri_orientation' or a scan")
    if isinstance(directions, int):
        if directions == 1:
            return None
        if directions == 2:
            return "bidirectional"
        raise InputError(f"directions={directions}: integers 1 and 2 are accepted; name a scan for more directions")
    if not isinstance(directions, str):
        raise InputError(f"directions={directions!r}: expected 1, 2, 'bidirectional', 'tri_orientation' or a scan")
    return directions


class MambaMixer(nn.Module):
    """Mamba-1 block mixer (mamba_ssm ``Mamba``) on token sequences, with one or several scan directions.

    Args:
        d_model: token width.
        d_state: N, SSM state size per channel.
        d_conv: kernel size of the causal depthwise conv1d.
        expand: d_inner = int(expand * d_model).
        dt_rank: R, rank of the step-size projection; "auto" = ceil(d_model / 16).
        dt_min, dt_max, dt_init_floor: ``softplus(dt_proj.bias)`` is drawn log-uniformly in [dt_min, dt_max],
            floored at dt_init_floor (Mamba's dt init).
        dt_init, dt_scale: ``dt_proj.weight`` is uniform in +-dt_scale * R**-0.5 ("random") or that constant.
        conv_bias: bias of the conv1d.
        bias: bias of in_proj and out_proj.
        directions: the scan directions, each with its own conv1d / x_proj / dt_proj / A_log / D, all sharing
            in_proj and out_proj:

            - ``1``: plain causal Mamba in the given token order (U-Mamba, LightM-UNet, mamba_ssm default).
            - ``2`` or ``"bidirectional"``: the sequence and its reversal (Vim / mamba "bimamba v2", ``*_b``).
              Works on any sequence; needs no spatial shape.
            - ``"tri_orientation"``: SegMamba's ToM ("v3"): raster, reversed raster and the inter-slice order
              (depth fastest, ``*_s``), on 3D grids. The inter-slice order is the (H, W, D) axis order, so unlike
              SegMamba's chunk interleave it needs no ``L % nslices == 0`` and is correct for any grid.
            - any other name from ``visionssm.scans.available_scans``: that scan's K directions.
        merge: how the K directions' outputs (back in raster order) are combined before out_proj: ``"sum"``
            (SegMamba v3; mamba_ssm / Vim with ``if_divide_out=False``) or ``"mean"`` (Vim's released T/S/B
            configs, ``if_divide_out=True``: (y_f + flip(y_b)) / 2).
        spatial_dims: 2 or 3; only needed to count the directions of a named scan defined in both (``mamba_nd``).
        scan_options: options for ``scan_plan`` (e.g. ``{"reverse": True}``); not ``merge`` (use ``merge=``).
        backend: selective-scan backend ("auto", "reference", "torch", "triton", "mamba_ssm").

    Shapes: x (B, L, d_model) -> (B, L, d_model). Named scans other than "bidirectional" need
    ``forward(x, spatial_shape)`` with prod(spatial_shape) == L, the tokens being the raster-flattened grid.
    Parameters are float32; ``A_log`` and ``D`` carry ``_no_weight_decay = True``.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        directions: int | str = 1,
        merge: str = "sum",
        *,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        spatial_dims: int | None = None,
        scan_options: Mapping[str, Any] | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if d_model < 1 or d_state < 1 or d_conv < 1 or expand <= 0:
            raise InputError(
                f"MambaMixer: d_model={d_model!r}, d_state={d_state!r}, d_conv={d_conv!r} and expand={expand!r} "
                "must be positive"
            )
        if merge not in MERGES:
            raise InputError(f"MambaMixer: merge={merge!r} is not one of {MERGES}")
        if dt_init not in ("random", "constant"):
            raise InputError(f"MambaMixer: dt_init={dt_init!r} must be 'random' or 'constant'")
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = d_inner = int(expand * d_model)
        self.dt_rank = resolve_dt_rank(dt_rank, d_model)
        self.merge = merge
        self.backend = backend
        self.scan = _direction_name(directions)
        self.scan_options = dict(scan_options or {})
        if "merge" in self.scan_options:
            raise InputError("MambaMixer: pass merge= to the mixer, not in scan_options")
        self.spatial_dims = self._scan_dims(spatial_dims)
        self.num_directions = self._count_directions()
        named = _NAMED_SUFFIXES.get(self.scan or "")
        if named is None or self.scan_options:  # a subset or extension of a published set: number the directions
            named = ("",) + tuple(f"_{k}" for k in range(1, self.num_directions))
        self.suffixes: tuple[str, ...] = named

        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        R, N = self.dt_rank, d_state
        for s in self.suffixes:
            self.add_module(
                f"conv1d{s}",
                nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=conv_bias),
            )
            self.add_module(f"x_proj{s}", nn.Linear(d_inner, R + 2 * N, bias=False))
            dt_proj = nn.Linear(R, d_inner, bias=True)
            std = dt_scale * R**-0.5
            with torch.no_grad():
                if dt_init == "random":
                    dt_proj.weight.uniform_(-std, std)
                else:
                    dt_proj.weight.fill_(std)
                dt_proj.bias.copy_(dt_bias_init(d_inner, dt_min, dt_max, dt_init_floor))
            dt_proj.bias._no_reinit = True  # mamba_ssm's marker: generic inits must not zero this bias
            self.add_module(f"dt_proj{s}", dt_proj)
            # S4D-real: A = -exp(A_log) = -(1..N) for every channel; D = 1. float32, no weight decay.
            A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(d_inner, 1))
            D = nn.Parameter(torch.ones(d_inner))
            A_log._no_weight_decay = True
            D._no_weight_decay = True
            self.register_parameter(f"A{s}_log", A_log)
            self.register_parameter(f"D{s}", D)
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)

    # -- construction helpers -------------------------------------------------------------------------------------
    def _scan_dims(self, spatial_dims: int | None) -> int | None:
        if spatial_dims is not None:
            check_spatial_dims(spatial_dims)
        if self.scan in (None, "bidirectional"):
            return spatial_dims
        dims = [n for n in (2, 3) if self.scan in available_scans(n)]
        if not dims:
            raise InputError(
                f"MambaMixer: unknown scan {self.scan!r}; use 1, 'bidirectional', or one of "
                f"{available_scans(2)} (2D), {available_scans(3)} (3D)"
            )
        if spatial_dims is None:
            if len(dims) > 1:
                raise InputError(f"MambaMixer: scan {self.scan!r} is defined in 2D and 3D: pass spatial_dims")
            return dims[0]
        if spatial_dims not in dims:
            raise InputError(f"MambaMixer: scan {self.scan!r} is not defined for spatial_dims={spatial_dims}")
        return spatial_dims

    def _count_directions(self) -> int:
        if self.scan is None:
            return 1
        if self.scan == "bidirectional":
            return 2
        # K from a plan on a small probe grid; the plan used at run time is checked to have the same K.
        return scan_plan(self.scan, (8,) * self.spatial_dims, **self.scan_options).num_directions

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state}, d_conv={self.d_conv}, "
            f"dt_rank={self.dt_rank}, directions={self.scan or 1!r}, K={self.num_directions}, merge={self.merge!r}"
        )

    # -- per-direction parameters ----------------------------------------------------------------------------------
    def direction_parameters(self, k: int) -> dict[str, Tensor]:
        """Direction k's own parameters under mamba_ssm's names without suffix: conv_weight (d_inner, 1, d_conv),
        conv_bias (d_inner,) or None, x_proj (R + 2N, d_inner), dt_proj_weight (d_inner, R), dt_proj_bias
        (d_inner,), A_log (d_inner, N), D (d_inner,)."""
        s = self.suffixes[k]
        conv: nn.Conv1d = getattr(self, f"conv1d{s}")
        dt_proj: nn.Linear = getattr(self, f"dt_proj{s}")
        return {
            "conv_weight": conv.weight,
            "conv_bias": conv.bias,
            "x_proj": getattr(self, f"x_proj{s}").weight,
            "dt_proj_weight": dt_proj.weight,
            "dt_proj_bias": dt_proj.bias,
            "A_log": getattr(self, f"A{s}_log"),
            "D": getattr(self, f"D{s}"),
        }

    # -- token orders ------------------------------------------------------------------------------------------------
    @torch.compiler.disable  # plan building (numpy, lru_cache) is host code
    def token_orders(
        self, length: int, spatial_shape: Sequence[int] | None, device: torch.device
    ) -> tuple[Tensor, Tensor] | None:
        """The K gather orders over L tokens as (index, inverse), each (K, L) int64 on ``device``.

        ``index[k, t]`` is the input position of direction k's t-th token, ``inverse[k, p]`` the step at which
        direction k visits position p. None for the unidirectional mixer (identity order).
        """
        if spatial_shape is not None:
            spatial_shape = tuple(int(n) for n in spatial_shape)
            if math.prod(spatial_shape) != length:
                raise InputError(
                    f"MambaMixer: spatial_shape {spatial_shape} has {math.prod(spatial_shape)} positions but the "
                    f"sequence has L = {length} tokens"
                )
        if self.scan is None:
            return None
        if self.scan == "bidirectional":
            forward = torch.arange(length, device=device)
            index = torch.stack([forward, forward.flip(0)])
            return index, index  # a reversal is its own inverse
        if spatial_shape is None:
            raise InputError(
                f"MambaMixer: directions={self.scan!r} orders tokens over a grid: call forward(x, spatial_shape) "
                "or use MambaLayer"
            )
        plan = scan_plan(self.scan, spatial_shape, **self.scan_options)
        if plan.num_directions != self.num_directions:
            raise InputError(
                f"MambaMixer: scan {self.scan!r} has {plan.num_directions} directions on grid {spatial_shape}, "
                f"but the mixer was built for {self.num_directions}"
            )
        plan = plan.to(device)
        return plan.index, plan.inverse

    # -- forward -----------------------------------------------------------------------------------------------------
    def forward(self, x: Tensor, spatial_shape: Sequence[int] | None = None) -> Tensor:
        """x (B, L, d_model) -> (B, L, d_model); ``spatial_shape`` = the grid the L tokens flatten (raster order)."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise InputError(f"MambaMixer: x has shape {tuple(x.shape)}, expected (B, L, {self.d_model})")
        batch, length, _ = x.shape
        K, Di, R, N = self.num_directions, self.d_inner, self.dt_rank, self.d_state
        orders = self.token_orders(length, spatial_shape, x.device)

        xz = self.in_proj(x).transpose(1, 2)  # (B, 2 * Di, L): x then z
        if orders is not None:
            xz = xz[:, :, orders[0]].transpose(1, 2)  # (B, K, 2 * Di, L), direction k in its own order
        xz = xz.reshape(batch, K, 2, Di, length)
        u, z = xz[:, :, 0].reshape(batch, K * Di, length), xz[:, :, 1].reshape(batch, K * Di, length)

        params = [self.direction_parameters(k) for k in range(K)]
        conv_bias = None if params[0]["conv_bias"] is None else torch.cat([p["conv_bias"] for p in params])
        conv_weight = torch.cat([p["conv_weight"] for p in params])  # (K * Di, 1, d_conv)
        if conv_bias is not None:
            conv_bias = conv_bias.to(u.dtype)
        # Causal: pad d_conv - 1 on both sides and keep the first L outputs, so token t sees tokens t - d_conv + 1..t.
        u = F.conv1d(u, conv_weight.to(u.dtype), conv_bias, padding=self.d_conv - 1, groups=K * Di)[..., :length]
        u = F.silu(u)

        x_proj = torch.stack([p["x_proj"] for p in params]).to(u.dtype)  # (K, R + 2N, Di)
        x_dbl = torch.einsum("kcd,bkdl->bkcl", x_proj, u.view(batch, K, Di, length))
        dt, B, C = torch.split(x_dbl, [R, N, N], dim=2)  # (B, K, R | N | N, L)
        dt_weight = torch.stack([p["dt_proj_weight"] for p in params]).to(u.dtype)  # (K, Di, R)
        dt = torch.einsum("kdr,bkrl->bkdl", dt_weight, dt).reshape(batch, K * Di, length)
        y = selective_scan(
            u,
            dt,
            -torch.exp(torch.cat([p["A_log"] for p in params]).float()),  # (K * Di, N)
            B.contiguous(),  # (B, K, N, L): direction k is group k of the K * Di channels
            C.contiguous(),
            torch.cat([p["D"] for p in params]).float(),
            z=z,
            delta_bias=torch.cat([p["dt_proj_bias"] for p in params]).float(),
            delta_softplus=True,
            backend=self.backend,
        )
        y = y.view(batch, K, Di, length)
        if orders is not None:
            y = y.gather(-1, orders[1][None, :, None, :].expand(batch, K, Di, length))  # back to raster order
        y = y.sum(1) if self.merge == "sum" or K == 1 else y.mean(1)  # (B, Di, L)
        return self.out_proj(y.transpose(1, 2))


def _float32_context(x: Tensor, force_float32: bool):
    """Autocast off (and 16-bit inputs cast to float32) when ``force_float32``, as U-Mamba does."""
    if not force_float32:
        return x, nullcontext()
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    if not torch.amp.is_autocast_available(x.device.type):  # e.g. meta (sizes, FLOPs): no autocast to turn off
        return x, nullcontext()
    return x, torch.autocast(device_type=x.device.type, enabled=False)


class MambaLayer(nn.Module):
    """U-Mamba / SegMamba ``MambaLayer``: LayerNorm over channels -> :class:`MambaMixer` on the flattened map.

    Args:
        dim: token width: the channels C, or prod(spatial) when ``channel_token``.
        spatial_dims: 2 (x: (B, C, H, W)) or 3 (x: (B, C, D, H, W)).
        d_state, d_conv, expand: as in :class:`MambaMixer` (all three models: 16, 4, 2).
        directions: see :class:`MambaMixer`; U-Mamba 1, SegMamba ``"tri_orientation"``.
        channel_token: use the C channels as the tokens and the flattened map (prod(spatial) == dim) as the token
            vector (U-Mamba Enc on stages where prod(feature_map) <= channels). Only ``directions`` 1 or
            "bidirectional" apply, the sequence not being a grid.
        residual: add the input to the output: False for U-Mamba (Bot and Enc: ``mamba(norm(x))`` only), True for
            SegMamba's ToM (``x + mamba(norm(x))``).
        merge: see :class:`MambaMixer` (SegMamba: "sum").
        force_float32: run with autocast disabled and 16-bit inputs cast to float32 (U-Mamba's
            ``autocast(enabled=False)``; its output then stays float32).
        norm_eps: eps of the LayerNorm (nn.LayerNorm default 1e-5 in both models).
        backend: selective-scan backend.
        **mixer_kwargs: further :class:`MambaMixer` arguments (dt_rank, conv_bias, bias, dt_min, ...).

    Shapes: x (B, C, *spatial) -> (B, C, *spatial). Submodules ``norm`` (nn.LayerNorm(dim)) and ``mamba`` keep the
    originals' names.
    """

    def __init__(
        self,
        dim: int,
        spatial_dims: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        directions: int | str = 1,
        channel_token: bool = False,
        *,
        residual: bool = False,
        merge: str = "sum",
        force_float32: bool = False,
        norm_eps: float = 1e-5,
        backend: str = "auto",
        **mixer_kwargs: Any,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.channel_token = channel_token
        self.residual = residual
        self.force_float32 = force_float32
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.mamba = MambaMixer(
            dim,
            d_state=d_state,
            d_conv=d_conv,
            expand=expand,
            directions=directions,
            merge=merge,
            spatial_dims=spatial_dims,
            backend=backend,
            **mixer_kwargs,
        )
        if channel_token and self.mamba.scan not in (None, "bidirectional"):
            raise InputError(
                f"MambaLayer: channel_token=True orders the channels, not a grid: directions={directions!r} needs "
                "spatial tokens (use 1 or 'bidirectional')"
            )

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, spatial_dims={self.spatial_dims}, channel_token={self.channel_token}, "
            f"residual={self.residual}, force_float32={self.force_float32}"
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != self.spatial_dims + 2:
            raise InputError(f"MambaLayer: x has shape {tuple(x.shape)}, expected (B, C, *{self.spatial_dims} axes)")
        batch, channels, *spatial = x.shape
        x, context = _float32_context(x, self.force_float32)
        with context:
            if self.channel_token:
                if math.prod(spatial) != self.dim:
                    raise InputError(
                        f"MambaLayer: channel tokens need prod(spatial) == dim = {self.dim}, got x {tuple(x.shape)}"
                    )
                out = self.mamba(self.norm(x.reshape(batch, channels, self.dim))).reshape(x.shape)
            else:
                if channels != self.dim:
                    raise InputError(f"MambaLayer: x has {channels} channels, expected {self.dim}")
                tokens = x.reshape(batch, channels, -1).transpose(1, 2)  # (B, L, C), raster order
                out = self.mamba(self.norm(tokens), spatial).transpose(1, 2).reshape(x.shape)
            return out + x if self.residual else out


class ResidualVisionMamba(nn.Module):
    """LightM-UNet's residual vision Mamba (RVM) layer: ``Linear(LN(Mamba(LN(x)) + skip_scale * x))`` per token.

    Args:
        spatial_dims: 2 (x: (B, C_in, H, W)) or 3 (x: (B, C_in, D, H, W)).
        in_channels: C_in, the Mamba width.
        out_channels: C_out of the final Linear (default C_in).
        d_state, d_conv, expand: as in :class:`MambaMixer` (LightM-UNet: 16, 4, 2).
        directions, merge: see :class:`MambaMixer` (LightM-UNet: 1).
        force_float32: autocast off and 16-bit inputs cast to float32 (LightM-UNet casts float16 inputs to float32
            but leaves autocast on).
        norm_eps: LayerNorm eps (1e-5).
        backend: selective-scan backend.
        **mixer_kwargs: further :class:`MambaMixer` arguments.

    As in LightM-UNet (``RVMLayer``), one LayerNorm ``norm`` is applied twice (before the mixer and after the skip
    add), ``skip_scale`` is a learnable scalar initialised to 1 and ``proj`` is ``nn.Linear(C_in, C_out)`` with bias;
    the submodule names ``norm``, ``mamba``, ``proj``, ``skip_scale`` are the original's.

    Shapes: x (B, C_in, *spatial) -> (B, C_out, *spatial).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int | None = None,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        directions: int | str = 1,
        *,
        merge: str = "sum",
        force_float32: bool = False,
        norm_eps: float = 1e-5,
        backend: str = "auto",
        **mixer_kwargs: Any,
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.in_channels = in_channels
        self.out_channels = out_channels = in_channels if out_channels is None else out_channels
        self.force_float32 = force_float32
        self.norm = nn.LayerNorm(in_channels, eps=norm_eps)
        self.mamba = MambaMixer(
            in_channels,
            d_state=d_state,
            d_conv=d_conv,
            expand=expand,
            directions=directions,
            merge=merge,
            spatial_dims=spatial_dims,
            backend=backend,
            **mixer_kwargs,
        )
        self.proj = nn.Linear(in_channels, out_channels)
        self.skip_scale = nn.Parameter(torch.ones(1))

    def extra_repr(self) -> str:
        return f"spatial_dims={self.spatial_dims}, in_channels={self.in_channels}, out_channels={self.out_channels}"

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise InputError(
                f"ResidualVisionMamba: x has shape {tuple(x.shape)}, expected (B, {self.in_channels}, "
                f"*{self.spatial_dims} axes)"
            )
        batch, channels, *spatial = x.shape
        x, context = _float32_context(x, self.force_float32)
        with context:
            tokens = x.reshape(batch, channels, -1).transpose(1, 2)  # (B, L, C_in)
            y = self.mamba(self.norm(tokens), spatial) + self.skip_scale * tokens
            y = self.proj(self.norm(y))  # (B, L, C_out)
            return y.transpose(1, 2).reshape(batch, self.out_channels, *spatial)


class VimBlock(nn.Module):
    """Vim's block (hustvl/Vim ``models_mamba.Block``, bimamba v2): ``x + DropPath(mixer(norm(x)))`` on tokens.

    Vim writes the same computation as "add -> norm -> mixer", passing the residual stream between blocks
    (``forward(hidden_states, residual) -> (hidden_states, residual)``) so that mamba_ssm can fuse the add into the
    norm. Stacked, the two compute the same function with the same drop rates: Vim's block i drops block i - 1's mixer
    output with rate ``dpr[i - 1]`` and the model's final add drops the last one with ``dpr[-1]``, which is
    ``drop_path=dpr[i]`` on block i here; Vim's final ``norm_f(residual + hidden_states)`` is a norm after the stack.

    Args:
        dim: token width C (Vim: ``embed_dim``).
        d_state, d_conv, expand: as in :class:`MambaMixer` (Vim: 16, 4, 2).
        norm: ``"rms"`` (RMSNorm, Vim's released models) or ``"layer"`` (LayerNorm, Vim's ``rms_norm=False``).
        norm_eps: eps of the norm (1e-5).
        drop_path: stochastic-depth rate of the mixer branch.
        residual_in_fp32: keep the residual stream in (at least) float32: 16-bit inputs give float32 outputs, also
            under autocast, as in Vim's released models. The norm sees the input cast to its weight's dtype, as in Vim.
        merge: how the two directions combine: ``"mean"`` (Vim's released configs, ``if_divide_out=True``) or
            ``"sum"``.
        backend: selective-scan backend.
        **mixer_kwargs: further :class:`MambaMixer` arguments (dt_rank, conv_bias, bias, dt_min, ...).

    Submodule names ``norm`` and ``mixer`` (with the ``*_b`` backward-direction parameters) are Vim's, so a Vim
    ``layers.{i}.*`` state dict loads 1:1.

    Shapes: x (B, L, C) -> (B, L, C).
    """

    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        *,
        norm: str = "rms",
        norm_eps: float = 1e-5,
        drop_path: float = 0.0,
        residual_in_fp32: bool = True,
        merge: str = "mean",
        backend: str = "auto",
        **mixer_kwargs: Any,
    ) -> None:
        super().__init__()
        if norm not in VIM_NORMS:
            raise InputError(f"VimBlock: norm={norm!r} is not one of {VIM_NORMS}")
        self.dim = dim
        self.residual_in_fp32 = residual_in_fp32
        self.norm = nn.RMSNorm(dim, eps=norm_eps) if norm == "rms" else nn.LayerNorm(dim, eps=norm_eps)
        self.mixer = MambaMixer(
            dim,
            d_state=d_state,
            d_conv=d_conv,
            expand=expand,
            directions="bidirectional",
            merge=merge,
            backend=backend,
            **mixer_kwargs,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def extra_repr(self) -> str:
        return f"dim={self.dim}, residual_in_fp32={self.residual_in_fp32}"

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise InputError(f"VimBlock: x has shape {tuple(x.shape)}, expected (B, L, {self.dim})")
        residual = x.to(torch.promote_types(x.dtype, torch.float32)) if self.residual_in_fp32 else x
        return residual + self.drop_path(self.mixer(self.norm(x.to(self.norm.weight.dtype))))
