"""Scan names, their options, and the cached ``scan_plan`` factory."""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from visionssm.errors import InputError
from visionssm.scans import orders2d, orders3d
from visionssm.scans.axes import mamba_nd_cycle
from visionssm.scans.plan import MERGE_RULES, ScanPlan, plan_from_rows

GENERIC_OPTIONS = ("reverse", "directions", "merge")


@dataclass(frozen=True)
class _ScanDef:
    build: Callable[..., orders2d.Directions]  # (shape, **scan options) -> (rows, labels)
    ndims: tuple[int, ...]
    has_reversals: bool  # the direction set already holds reversals, so reverse=True is refused


def _mamba_nd(shape: Sequence[int], *, layer: int | None = None) -> orders2d.Directions:
    """Mamba-ND's axis cycle; ``layer=i`` keeps only the direction layer i uses (cycle position i mod K)."""
    rows, labels = mamba_nd_cycle(shape)
    if layer is None:
        return rows, labels
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or layer < 0:
        raise InputError(f"scan 'mamba_nd': option layer={layer!r} must be an integer >= 0")
    position = int(layer) % len(rows)
    return [rows[position]], (labels[position],)


_SCANS: dict[str, _ScanDef] = {
    "raster": _ScanDef(orders2d.raster, (2,), False),
    "bidirectional": _ScanDef(orders2d.bidirectional, (2,), True),
    "cross": _ScanDef(orders2d.cross, (2,), True),
    "snake": _ScanDef(orders2d.snake, (2,), True),
    "zigzag8": _ScanDef(orders2d.zigzag8, (2,), True),
    "zorder": _ScanDef(orders2d.zorder, (2,), False),
    "jpeg_zigzag": _ScanDef(orders2d.jpeg_zigzag, (2,), False),
    "hilbert": _ScanDef(orders2d.hilbert, (2,), False),
    "window": _ScanDef(orders2d.window, (2,), False),
    "atrous": _ScanDef(orders2d.atrous, (2,), False),
    "raster3d": _ScanDef(orders3d.raster3d, (3,), False),
    "tri_orientation": _ScanDef(orders3d.tri_orientation, (3,), True),
    "cross3d": _ScanDef(orders3d.cross3d, (3,), True),
    "cross3d_12": _ScanDef(orders3d.cross3d_12, (3,), True),
    "snake3d": _ScanDef(orders3d.snake3d, (3,), True),
    "hilbert3d": _ScanDef(orders3d.hilbert3d, (3,), False),
    "mamba_nd": _ScanDef(_mamba_nd, (2, 3), True),
}


def available_scans(ndim: int) -> list[str]:
    """Names of the scans defined on grids with ``ndim`` spatial axes (2 or 3)."""
    if ndim not in (2, 3):
        raise InputError(f"ndim={ndim!r}: scans exist for 2 or 3 spatial axes")
    return [name for name, scan in _SCANS.items() if ndim in scan.ndims]


def scan_plan(name: str, spatial_shape: Sequence[int], **options: Any) -> ScanPlan:
    """Build (or fetch from the cache) the plan of a named scan on one grid shape.

    Args:
        name: a name from :func:`available_scans`.
        spatial_shape: (H, W) or (D, H, W), positive sizes.
        **options: scan-specific options (see docs/scans.md) and the generic ones:
            ``reverse=True`` appends the reversal of every direction (refused where the set already has them);
            ``directions=(i, j, ...)`` keeps only those directions, in that order (indices after ``reverse``);
            ``merge="sum" | "mean"`` (default ``"sum"``).

    Returns:
        The cached :class:`ScanPlan`; the same arguments give the same object.
    """
    scan = _SCANS.get(name) if isinstance(name, str) else None
    if scan is None:
        raise InputError(f"unknown scan {name!r}; 2D scans: {available_scans(2)}, 3D scans: {available_scans(3)}")
    shape = _checked_shape(name, spatial_shape, scan.ndims)
    allowed = [p.name for p in inspect.signature(scan.build).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed) - set(GENERIC_OPTIONS))
    if unknown:
        raise InputError(f"scan {name!r}: unknown option(s) {unknown}; options: {allowed + list(GENERIC_OPTIONS)}")
    return _cached_plan(name, shape, tuple(sorted((key, _hashable(name, key, v)) for key, v in options.items())))


def _checked_shape(name: str, spatial_shape: Sequence[int], ndims: tuple[int, ...]) -> tuple[int, ...]:
    try:
        shape = tuple(operator.index(n) for n in spatial_shape)
    except TypeError:
        raise InputError(f"scan {name!r}: spatial_shape {spatial_shape!r} must be a sequence of integers") from None
    if len(shape) not in ndims or min(shape) < 1 or any(isinstance(n, bool) for n in spatial_shape):
        dims = " or ".join(f"{n}D" for n in ndims)
        raise InputError(
            f"scan {name!r} is {dims}: spatial_shape {tuple(spatial_shape)!r} needs that many positive sizes"
        )
    return shape


def _hashable(name: str, key: str, value: Any) -> Any:
    """Option values as cache keys: lists become tuples; anything else must already be hashable."""
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(name, key, v) for v in value)
    try:
        hash(value)
    except TypeError:
        raise InputError(f"scan {name!r}: option {key}={value!r} must be a number, string, bool or tuple") from None
    return value


@lru_cache(maxsize=256)
def _cached_plan(name: str, shape: tuple[int, ...], options: tuple[tuple[str, Any], ...]) -> ScanPlan:
    scan = _SCANS[name]
    given = dict(options)
    reverse = given.pop("reverse", False)
    selected = given.pop("directions", None)
    merge = given.pop("merge", "sum")
    if merge not in MERGE_RULES:
        raise InputError(f"scan {name!r}: option merge={merge!r} is not one of {MERGE_RULES}")
    if not isinstance(reverse, (bool, np.bool_)):
        raise InputError(f"scan {name!r}: option reverse={reverse!r} must be True or False")
    if reverse and scan.has_reversals:
        raise InputError(f"scan {name!r}: option reverse=True is refused, its directions already include reversals")
    rows, labels = scan.build(shape, **given)
    if reverse:
        rows = rows + [row[::-1] for row in rows]
        labels = labels + tuple(f"{label}_rev" for label in labels)
    if selected is not None:
        keep = _checked_directions(name, selected, len(rows))
        rows, labels = [rows[k] for k in keep], tuple(labels[k] for k in keep)
    return plan_from_rows(name, shape, rows, labels, merge, options)


def _checked_directions(name: str, selected: Any, available: int) -> tuple[int, ...]:
    ok = (
        isinstance(selected, tuple)
        and len(selected) > 0
        and all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and 0 <= k < available for k in selected)
    )
    if not ok or len(set(selected)) != len(selected):
        raise InputError(
            f"scan {name!r}: option directions={selected!r} must be distinct integers in 0..{available - 1}"
        )
    return tuple(int(k) for k in selected)
