"""``ScanPlan``: a fixed set of token orders over a 2D or 3D grid, and the gather/scatter that applies it.

A plan holds K directions over L = prod(spatial_shape) tokens. ``index[k, t]`` is the raster position of the t-th
token of direction k (a gather index); ``inverse[k, p]`` is the step at which direction k visits raster position p.
Raster positions are C-order flat indices: r = i * W + j in 2D, r = (d * H + h) * W + w in 3D.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from visionssm.errors import InputError

MERGE_RULES = ("sum", "mean")
DISTANCE_METRICS = ("manhattan", "euclidean")


@dataclass(frozen=True, eq=False)
class ScanPlan:
    """K token orders over one grid shape, with their inverses and the rule that merges the K outputs.

    Build plans with :func:`visionssm.scans.scan_plan` (cached, validated). Plans compare by identity; treat the
    tensors as read-only, they are shared by every user of the cached plan.

    Attributes:
        name: scan name, e.g. ``"cross"``.
        spatial_shape: (H, W) or (D, H, W).
        index: (K, L) int64 gather index, ``index[k, t]`` = raster position of the t-th token of direction k.
        inverse: (K, L) int64, ``inverse[k, p]`` = step at which direction k visits raster position p.
        merge: ``"sum"`` or ``"mean"`` over the K directions.
        directions: one short label per direction, e.g. ``("row", "col", "row_rev", "col_rev")``.
        options: the scan-specific and generic options the plan was built with, as sorted (name, value) pairs.
    """

    name: str
    spatial_shape: tuple[int, ...]
    index: torch.Tensor
    inverse: torch.Tensor
    merge: str
    directions: tuple[str, ...]
    options: tuple[tuple[str, Any], ...] = ()
    # One copy per device, shared by all copies of the plan so that plan.to(a).to(b) finds the cached b copy.
    _device_copies: dict[torch.device, ScanPlan] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        expected = (len(self.directions), math.prod(self.spatial_shape))
        for label, tensor in (("index", self.index), ("inverse", self.inverse)):
            if tensor.dtype != torch.int64 or tuple(tensor.shape) != expected:
                raise InputError(
                    f"ScanPlan {self.name!r}: {label} must be int64 of shape {expected}, "
                    f"got {tensor.dtype} {tuple(tensor.shape)}"
                )
        if self.merge not in MERGE_RULES:
            raise InputError(f"ScanPlan {self.name!r}: merge={self.merge!r} is not one of {MERGE_RULES}")
        self._device_copies.setdefault(self.index.device, self)

    @property
    def num_directions(self) -> int:
        """K, the number of directions."""
        return self.index.shape[0]

    @property
    def length(self) -> int:
        """L, the number of tokens of every direction."""
        return self.index.shape[1]

    @property
    def ndim(self) -> int:
        """Number of spatial axes (2 or 3)."""
        return len(self.spatial_shape)

    def to(self, device: torch.device | str) -> ScanPlan:
        """The plan with ``index`` and ``inverse`` on ``device``; built once per device and cached."""
        requested = torch.device(device)
        copy = self._device_copies.get(requested)
        if copy is None:
            index = self.index.to(requested)
            # "cuda" and "cuda:0" must share one copy: key by the device the tensor actually landed on as well.
            copy = self._device_copies.get(index.device)
            if copy is None:
                copy = ScanPlan(
                    self.name,
                    self.spatial_shape,
                    index,
                    self.inverse.to(requested),
                    self.merge,
                    self.directions,
                    self.options,
                    self._device_copies,
                )
            self._device_copies[requested] = copy
        return copy

    def step_lengths(self, metric: str = "manhattan") -> torch.Tensor:
        """Distance between consecutive tokens of every direction.

        Args:
            metric: ``"manhattan"`` (int64) or ``"euclidean"`` (float64).

        Returns:
            (K, L - 1) tensor on the plan's device; entry (k, t) is the distance from token t to token t + 1.
        """
        if metric not in DISTANCE_METRICS:
            raise InputError(f"metric={metric!r} is not one of {DISTANCE_METRICS}")
        coords, rest = [], self.index
        for size in reversed(self.spatial_shape):  # peel off the fastest axis first
            coords.append(rest % size)
            rest = rest // size
        steps = torch.stack([c.diff(dim=-1) for c in coords])  # (ndim, K, L - 1)
        if metric == "manhattan":
            return steps.abs().sum(dim=0)
        return steps.double().square().sum(dim=0).sqrt()

    def num_jumps(self) -> tuple[int, ...]:
        """Per direction, the number of steps that do not move to a face neighbour (Manhattan distance > 1)."""
        return tuple(int(n) for n in (self.step_lengths() > 1).sum(dim=-1))


def plan_from_rows(
    name: str,
    spatial_shape: tuple[int, ...],
    rows: list[np.ndarray],
    directions: tuple[str, ...],
    merge: str,
    options: tuple[tuple[str, Any], ...],
) -> ScanPlan:
    """Assemble a CPU plan from K gather rows (each a permutation of arange(L)); computes the inverse."""
    index = np.ascontiguousarray(np.stack(rows), dtype=np.int64)  # (K, L)
    inverse = np.empty_like(index)
    steps = np.broadcast_to(np.arange(index.shape[1], dtype=np.int64), index.shape)
    np.put_along_axis(inverse, index, steps, axis=1)  # inverse[k, index[k, t]] = t
    return ScanPlan(name, spatial_shape, torch.from_numpy(index), torch.from_numpy(inverse), merge, directions, options)


def scan_tokens(x: torch.Tensor, plan: ScanPlan) -> torch.Tensor:
    """Gather a grid into the plan's K token sequences.

    Args:
        x: (B, C, *spatial) with ``spatial == plan.spatial_shape``.
        plan: the scan plan; moved to ``x.device`` (cached).

    Returns:
        (B, K, C, L), contiguous; ``out[:, k, :, t] = x_flat[:, :, plan.index[k, t]]``.
    """
    _check_spatial(x, plan)
    plan = plan.to(x.device)
    batch, channels = x.shape[:2]
    flat = x.reshape(batch, channels, plan.length)  # (B, C, L)
    gathered = flat.index_select(-1, plan.index.reshape(-1))  # (B, C, K * L)
    return gathered.view(batch, channels, plan.num_directions, plan.length).transpose(1, 2).contiguous()


def merge_tokens(y: torch.Tensor, plan: ScanPlan) -> torch.Tensor:
    """Put each direction's tokens back at their raster positions and combine the K directions.

    Implemented as a gather with ``plan.inverse`` (no scatter-add), so it is deterministic on every device.

    Args:
        y: (B, K, C, L), direction k's tokens in that direction's order.
        plan: the scan plan; moved to ``y.device`` (cached).

    Returns:
        (B, C, *spatial): the sum (``merge="sum"``) or mean (``"mean"``) over directions.
    """
    if y.dim() != 4 or y.shape[1] != plan.num_directions or y.shape[3] != plan.length:
        raise InputError(
            f"merge_tokens: y has shape {tuple(y.shape)}, expected (B, {plan.num_directions}, C, "
            f"{plan.length}) for scan {plan.name!r} on {plan.spatial_shape}"
        )
    plan = plan.to(y.device)
    batch, channels = y.shape[0], y.shape[2]
    offsets = torch.arange(plan.num_directions, device=y.device).unsqueeze(1) * plan.length
    flat = y.transpose(1, 2).reshape(batch, channels, plan.num_directions * plan.length)  # (B, C, K * L)
    # Raster position p of direction k sits at flat position k * L + inverse[k, p].
    raster = flat.index_select(-1, (plan.inverse + offsets).reshape(-1))
    raster = raster.view(batch, channels, plan.num_directions, plan.length)  # (B, C, K, L)
    merged = raster.sum(dim=2) if plan.merge == "sum" else raster.mean(dim=2)  # (B, C, L)
    return merged.view(batch, channels, *plan.spatial_shape)


def _check_spatial(x: torch.Tensor, plan: ScanPlan) -> None:
    if x.dim() != plan.ndim + 2 or tuple(x.shape[2:]) != plan.spatial_shape:
        raise InputError(
            f"scan_tokens: x has shape {tuple(x.shape)}, expected (B, C, "
            f"{', '.join(map(str, plan.spatial_shape))}) for scan {plan.name!r}"
        )
