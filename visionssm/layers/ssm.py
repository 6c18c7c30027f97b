"""``SSMixer``: VMamba's SS2D token mixer, generalised to 2D and 3D grids and to any scan order.

Data flow for x (B, C, *spatial), d_inner = ssm_ratio * C, K directions of the scan plan, N = d_state, R = dt_rank::

    in_proj (1x1, no bias)        (B, C, *sp)            -> (B, d_inner [x2 with the z gate], *sp)
    depthwise conv k=d_conv, SiLU (B, d_inner, *sp)
    x_proj per direction          (B, d_inner, L)         -> dt (B, K, R, L), B (B, K, N, L), C (B, K, N, L)
    dt_proj per direction         (B, K, R, L)            -> (B, K, d_inner, L)
    multi_scan over scan_plan     K selective scans (float32), put back in raster order and summed
    out_norm (LayerNorm over channels), [* silu(z)], out_proj (1x1, no bias), dropout -> (B, C, *sp)

Every per-token projection is computed in raster layout: a per-token linear map commutes with a token
permutation, so projecting before ``multi_scan`` applies the order (inside the operator) gives the same numbers as
VMamba's project-after-cross-scan. The parameters keep VMamba's names and layouts (``x_proj_weight`` (K, R+2N,
d_inner), ``dt_projs_weight`` (K, d_inner, R), ``dt_projs_bias`` (K, d_inner), ``A_logs`` (K*d_inner, N), ``Ds``
(K*d_inner)); only the depthwise conv is called ``conv`` (VMamba: ``conv2d``) since it is 2D or 3D.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionssm.errors import InputError
from visionssm.kernels import multi_scan
from visionssm.scans import scan_plan

from .linear import PointwiseLinear
from .norm import LayerNormNd

_CONVS: dict[int, type[nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}


def check_spatial_dims(spatial_dims: int) -> int:
    """``spatial_dims`` if it is 2 or 3, else an InputError naming the value."""
    if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
        raise InputError(f"spatial_dims={spatial_dims!r}: must be 2 (images) or 3 (volumes)")
    return spatial_dims


def resolve_dt_rank(dt_rank: int | str, d_model: int) -> int:
    """``dt_rank``, with ``"auto"`` meaning ceil(d_model / 16) as in Mamba and VMamba."""
    if dt_rank == "auto":
        return math.ceil(d_model / 16)
    if isinstance(dt_rank, bool) or not isinstance(dt_rank, int) or dt_rank < 1:
        raise InputError(f"dt_rank={dt_rank!r}: must be a positive integer or 'auto'")
    return dt_rank


def dt_bias_init(
    num: int, dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4, generator=None
) -> Tensor:
    """Bias b with softplus(b) log-uniform in [dt_min, dt_max] (clamped below at ``dt_init_floor``): Mamba's dt init.

    Returns: (num,) float32, the inverse softplus of the sampled step sizes.
    """
    log_dt = torch.rand(num, generator=generator) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
    dt = torch.exp(log_dt).clamp(min=dt_init_floor)
    return dt + torch.log(-torch.expm1(-dt))  # inverse of softplus


class SSMixer(nn.Module):
    """Selective-scan token mixer over a 2D or 3D grid (VMamba SS2D, N-D, any scan order).

    Args:
        d_model: channels C of the input and output.
        spatial_dims: 2 (x: (B, C, H, W)) or 3 (x: (B, C, D, H, W)).
        d_state: N, the SSM state size per channel (VMamba v0: 16, v2: 1).
        ssm_ratio: d_inner = int(ssm_ratio * d_model).
        dt_rank: rank R of the step-size projection; "auto" = ceil(d_model / 16).
        d_conv: kernel size of the depthwise conv over the grid (< 2: no conv).
        conv_bias: bias of that conv (VMamba v0: True, v2: False).
        with_z: gate the output with silu(z) from a second half of ``in_proj`` (v0: True; v2 "noz": False).
        scan: scan name from ``visionssm.scans.available_scans(spatial_dims)``; K is the plan's direction count.
            None = VMamba's cross-scan: "cross" (2D, K=4) or "cross3d" (3D, K=6).
        scan_options: options passed to ``scan_plan`` (e.g. ``{"merge": "mean"}``).
        backend: selective-scan backend ("auto", "reference", "torch", "triton", "mamba_ssm").
        dropout: dropout after ``out_proj``.
        dt_min, dt_max, dt_init, dt_scale, dt_init_floor: Mamba's dt initialisation; ``dt_init`` is "random"
            (weight uniform in +-dt_scale/sqrt(R)) or "constant".
        out_norm_eps: eps of ``out_norm``.

    Shapes: x (B, C, *spatial) -> (B, C, *spatial). The plan is built (and cached) for the input's spatial shape
    at run time, so one module serves any grid size.
    """

    def __init__(
        self,
        d_model: int,
        spatial_dims: int = 2,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        dt_rank: int | str = "auto",
        d_conv: int = 3,
        conv_bias: bool = True,
        with_z: bool = True,
        scan: str | None = None,
        scan_options: Mapping[str, Any] | None = None,
        backend: str = "auto",
        dropout: float = 0.0,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        out_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if d_state < 1 or ssm_ratio <= 0:
            raise InputError(f"SSMixer: d_state={d_state!r} and ssm_ratio={ssm_ratio!r} must be positive")
        if dt_init not in ("random", "constant"):
            raise InputError(f"SSMixer: dt_init={dt_init!r} must be 'random' or 'constant'")
        self.d_model = d_model
        self.d_inner = d_inner = int(ssm_ratio * d_model)
        self.d_state = d_state
        self.dt_rank = resolve_dt_rank(dt_rank, d_model)
        self.with_z = with_z
        self.scan = scan or ("cross" if spatial_dims == 2 else "cross3d")
        self.scan_options = dict(scan_options or {})
        self.backend = backend
        # K from a plan on a small probe grid; the plan actually used is built per input shape (and checked).
        self.num_directions = scan_plan(self.scan, (8,) * spatial_dims, **self.scan_options).num_directions
        K, R, N = self.num_directions, self.dt_rank, d_state

        self.in_proj = PointwiseLinear(d_model, d_inner * (2 if with_z else 1), bias=False)
        self.conv: nn.Module | None = None
        if d_conv > 1:
            self.conv = _CONVS[spatial_dims](
                d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner, bias=conv_bias
            )
        self.act = nn.SiLU()
        # Per-direction projections, VMamba layouts: x_proj (K, R + 2N, d_inner), dt_proj (K, d_inner, R) + bias.
        bound = d_inner**-0.5  # nn.Linear's default init, as VMamba builds these from nn.Linear layers
        self.x_proj_weight = nn.Parameter(torch.empty(K, R + 2 * N, d_inner).uniform_(-bound, bound))
        dt_std = dt_scale * R**-0.5
        dt_weight = torch.empty(K, d_inner, R)
        if dt_init == "random":
            dt_weight.uniform_(-dt_std, dt_std)
        else:
            dt_weight.fill_(dt_std)
        self.dt_projs_weight = nn.Parameter(dt_weight)
        self.dt_projs_bias = nn.Parameter(dt_bias_init(K * d_inner, dt_min, dt_max, dt_init_floor).view(K, d_inner))
        # S4D-real: A = -exp(A_logs) = -(1..N) per channel and direction; D = 1. Kept float32, no weight decay.
        self.A_logs = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(K * d_inner, 1))
        self.Ds = nn.Parameter(torch.ones(K * d_inner))
        self.A_logs._no_weight_decay = True
        self.Ds._no_weight_decay = True

        self.out_norm = LayerNormNd(d_inner, eps=out_norm_eps)
        self.out_proj = PointwiseLinear(d_inner, d_model, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state}, dt_rank={self.dt_rank}, "
            f"spatial_dims={self.spatial_dims}, scan={self.scan!r}, K={self.num_directions}, with_z={self.with_z}"
        )

    @torch.compiler.disable  # plan building (numpy, lru_cache) is host code: torch.compile calls it eagerly
    def plan_for(self, spatial_shape: tuple[int, ...]):
        """The (cached) scan plan for one grid shape, checked to have the K directions the parameters were built for."""
        plan = scan_plan(self.scan, spatial_shape, **self.scan_options)
        if plan.num_directions != self.num_directions:
            raise InputError(
                f"SSMixer: scan {self.scan!r} has {plan.num_directions} directions on grid {tuple(spatial_shape)}, "
                f"but the module was built for {self.num_directions}"
            )
        return plan

    def ssm(self, x: Tensor) -> Tensor:
        """The scan core on the conv output: x (B, d_inner, *sp) -> float32 (B, d_inner, *sp), before out_norm."""
        batch, dim, *spatial = x.shape
        plan = self.plan_for(tuple(spatial))
        K, R, N = self.num_directions, self.dt_rank, self.d_state
        length = math.prod(spatial)
        x_dbl = torch.einsum("kcd,bdl->bkcl", self.x_proj_weight.to(x.dtype), x.reshape(batch, dim, length))
        dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)  # (B, K, R | N | N, L)
        dts = torch.einsum("kdr,bkrl->bkdl", self.dt_projs_weight.to(x.dtype), dts)  # (B, K, d_inner, L)
        # The scan runs in float32 whatever the activation dtype (DESIGN.md: state and accumulation float32).
        return multi_scan(
            x.float(),
            dts.float().reshape(batch, K, dim, *spatial),
            -torch.exp(self.A_logs.float()).view(K, dim, N),
            Bs.float().reshape(batch, K, N, *spatial),
            Cs.float().reshape(batch, K, N, *spatial),
            plan,
            D=self.Ds.float().view(K, dim),
            delta_bias=self.dt_projs_bias.float(),
            delta_softplus=True,
            backend=self.backend,
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.d_model:
            raise InputError(
                f"SSMixer: input of shape {tuple(x.shape)}, expected (B, {self.d_model}, "
                f"{'D, H, W' if self.spatial_dims == 3 else 'H, W'})"
            )
        xz = self.in_proj(x)
        if self.with_z:
            x_in, z = xz.chunk(2, dim=1)
        else:
            x_in, z = xz, None
        if self.conv is not None:
            x_in = self.conv(x_in)
        x_in = self.act(x_in)
        y = self.out_norm(self.ssm(x_in)).to(x.dtype)
        if z is not None:
            y = y * F.silu(z)
        return self.dropout(self.out_proj(y))
