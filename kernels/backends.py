"""Which selective-scan backends exist, which can run here, and how "auto" picks one.

A backend is a function with the ``selective_scan_ref`` signature. The choice is made per call from
``backend=`` or, when that is ``"auto"``, from the environment variable ``VISIONSSM_SCAN_BACKEND``,
then from the device of the inputs.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from visionssm.errors import BackendUnavailableError, InputError

from .reference import selective_scan_ref
from .torch_scan import selective_scan_chunked

BACKEND_NAMES = ("reference", "torch", "mamba_ssm")
ENV_VARIABLE = "VISIONSSM_SCAN_BACKEND"


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend can run on this machine; ``detail`` says why not, or what it runs on."""

    name: str
    available: bool
    detail: str


def _mamba_ssm_module():
    """mamba_ssm's scan interface module, or BackendUnavailableError saying how to get it."""
    try:
        interface = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
    except ImportError as err:
        raise BackendUnavailableError(
            f"backend 'mamba_ssm' needs the mamba-ssm package with its CUDA extension ({err}); "
            "install it with MAMBA_KEEP_CUDA_BUILD=TRUE pip install mamba-ssm, or use backend='torch'"
        ) from err
    if getattr(interface, "selective_scan_cuda", None) is None:
        raise BackendUnavailableError(
            "backend 'mamba_ssm': mamba-ssm is installed without its selective_scan_cuda extension; "
            "reinstall it with MAMBA_KEEP_CUDA_BUILD=TRUE, or use backend='torch'"
        )
    return interface


def _selective_scan_mamba_ssm(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
    """mamba_ssm's CUDA scan, given the contiguous tensors and dtypes its extension checks for."""
    as_float = lambda t: None if t is None else t.float()  # noqa: E731
    contiguous = lambda t: None if t is None else t.contiguous()  # noqa: E731
    return _mamba_ssm_module().selective_scan_fn(
        u.contiguous(),
        delta.to(u.dtype).contiguous(),
        A.float(),
        contiguous(B),
        contiguous(C),
        as_float(D),
        contiguous(z),
        as_float(delta_bias),
        delta_softplus,
        return_last_state,
    )


def backend_status() -> list[BackendStatus]:
    """One entry per backend name, in preference order, for ``visionssm info``."""
    statuses = [
        BackendStatus("reference", True, "sequential PyTorch loop (exact oracle, slow)"),
        BackendStatus("torch", True, "chunked PyTorch scan (CPU and GPU)"),
    ]
    try:
        _mamba_ssm_module()
        statuses.append(BackendStatus("mamba_ssm", True, "mamba-ssm CUDA extension (CUDA tensors only)"))
    except BackendUnavailableError as err:
        statuses.append(BackendStatus("mamba_ssm", False, str(err)))
    return statuses


def resolve_backend(backend: str, u: Tensor) -> str:
    """The concrete backend name for ``backend`` ("auto" or a name) and inputs on ``u``'s device."""
    if backend == "auto":
        backend = os.environ.get(ENV_VARIABLE, "auto").strip().lower() or "auto"
        if backend == "auto":
            return "torch"
    if backend not in BACKEND_NAMES:
        raise InputError(f"unknown scan backend {backend!r}; choose one of {('auto', *BACKEND_NAMES)}")
    if backend == "mamba_ssm" and not u.is_cuda:
        raise BackendUnavailableError("backend 'mamba_ssm' runs on CUDA tensors only; the inputs are on the CPU")
    return backend


def backend_function(name: str) -> Callable[..., Tensor]:
    """The scan function of a concrete backend name."""
    if name == "reference":
        return selective_scan_ref
    if name == "torch":
        return selective_scan_chunked
    _mamba_ssm_module()
    return _selective_scan_mamba_ssm
