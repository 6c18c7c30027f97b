"""Fused Triton kernels of the selective scan (S6): backend "triton" of ``selective_scan`` and ``multi_scan``.

Importing this package imports triton; ``visionssm.kernels`` imports it only on demand, so the rest of
the library works without triton. On CPU tensors the kernels run only under ``TRITON_INTERPRET=1``.
"""

from .multi import fused_by_default, multi_scan_triton
from .scan import selective_scan_triton

__all__ = ["fused_by_default", "multi_scan_triton", "selective_scan_triton"]
