"""Selective-scan (S6) kernels: one signature, several backends, plus the multi-direction scan.

- :func:`selective_scan`: mamba_ssm-compatible S6 operator, ``backend="auto" | "reference" | "torch" |
  "triton" | "mamba_ssm"`` (or the environment variable ``VISIONSSM_SCAN_BACKEND``).
- :func:`selective_scan_ref`: the sequential oracle; :func:`selective_scan_chunked`: the chunked PyTorch path.
- :func:`multi_scan`: K directions of a scan order over a 2D/3D grid in one call.

- ``selective_scan_triton``: the fused Triton kernels, loaded on first access (triton is optional).

This package imports only torch (and the leaf module ``visionssm.errors``); triton is imported on demand.
"""

from .backends import BACKEND_NAMES, BackendStatus, backend_status
from .interface import selective_scan
from .multi_scan import ScanOrder, multi_scan
from .reference import selective_scan_ref
from .torch_scan import selective_scan_chunked

__all__ = [
    "BACKEND_NAMES",
    "BackendStatus",
    "ScanOrder",
    "backend_status",
    "multi_scan",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_ref",
]


def __getattr__(name: str):
    # triton is a Linux-only dependency and slow to import: load the Triton backend on first access.
    if name == "selective_scan_triton":
        from .triton_scan import selective_scan_triton

        return selective_scan_triton
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
