"""Per-layer scan schedules: one direction per layer, cycling across the depth of a network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from visionssm.errors import InputError
from visionssm.scans.plan import ScanPlan
from visionssm.scans.registry import scan_plan

SCHEDULES = ("zigma", "mamba_nd")


@dataclass(frozen=True)
class ScanSpec:
    """A scan name plus options, waiting for a grid shape to become a :class:`ScanPlan`.

    ``options`` may be given as a mapping; it is stored as sorted (name, value) pairs so specs are hashable.
    """

    name: str
    options: Mapping[str, Any] | tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        items = self.options.items() if isinstance(self.options, Mapping) else self.options
        object.__setattr__(self, "options", tuple(sorted(items)))

    def plan(self, spatial_shape: Sequence[int]) -> ScanPlan:
        """The cached plan on ``spatial_shape``; (H, W) or (D, H, W) as the scan allows."""
        return scan_plan(self.name, spatial_shape, **dict(self.options))


def layer_schedule(name: str, depth: int) -> list[ScanSpec]:
    """The scan of every layer of a ``depth``-layer network, for schedules that use one direction per layer.

    ``"zigma"``: layer i uses ZigMa path ``i % 8`` (``zigzag8`` with ``directions=(i % 8,)``), 2D.
    ``"mamba_nd"``: layer i uses Mamba-ND's axis order ``(i // 2) % n``, reversed when i is odd
    (2D: H+, H-, W+, W-; 3D: DHW+, DHW-, DWH+, DWH-, WHD+, WHD-), i.e. ``mamba_nd`` with ``layer=i``; the grid
    shape passed to :meth:`ScanSpec.plan` decides between 2D and 3D.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise InputError(f"layer_schedule: depth={depth!r} must be an integer >= 0")
    if name == "zigma":
        return [ScanSpec("zigzag8", {"directions": (i % 8,)}) for i in range(depth)]
    if name == "mamba_nd":
        return [ScanSpec("mamba_nd", {"layer": i}) for i in range(depth)]
    raise InputError(f"unknown layer schedule {name!r}; schedules: {list(SCHEDULES)}")
