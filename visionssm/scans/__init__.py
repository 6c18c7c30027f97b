"""Scan orders for visual state-space models: named 2D/3D token orders as cached ``ScanPlan`` objects.

Example::

    plan = scan_plan("cross", (14, 14))
    tokens = scan_tokens(x, plan)  # x: (B, C, 14, 14) -> (B, 4, C, 196)
    out = merge_tokens(y, plan)  # y: (B, 4, C, 196) -> (B, C, 14, 14)

See docs/scans.md for every order, its source and its options.
"""

from visionssm.scans.plan import ScanPlan, merge_tokens, scan_tokens
from visionssm.scans.registry import available_scans, scan_plan
from visionssm.scans.schedule import ScanSpec, layer_schedule

__all__ = [
    "ScanPlan",
    "ScanSpec",
    "available_scans",
    "layer_schedule",
    "merge_tokens",
    "scan_plan",
    "scan_tokens",
]
