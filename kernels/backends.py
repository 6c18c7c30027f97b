"""Which selective-scan backends exist, which can run here, and how "auto" picks one.

A backend is a function with the ``selective_scan_ref`` signature. The choice is made per call from
``backend=`` or, when that is ``"auto"``, from the environment variable ``VISIONSSM_SCAN_BACKEND``,
then from the device of the inputs: "triton" for CUDA tensors when triton imports, else "torch".
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from visionssm.errors import BackendUnavailableError, InputError

from .reference import selective_scan_ref
from .torch_scan import selective_scan_chunked

BACKEND_NAMES = ("reference", "torch", "triton", "mamba_ssm")
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


@functools.cache
def _triton_import_error() -> str | None:
    """None when triton imports, else why not (triton is a Linux-only dependency)."""
    try:
        importlib.import_module("triton")
    except ImportError as err:
        return f"backend 'triton' needs the triton package ({err}); install it with pip install triton (Linux)"
    return None


def triton_interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def _triton_status() -> BackendStatus:
    error = _triton_import_error()
    if error is not None:
        return BackendStatus("triton", False, error)
    version = importlib.import_module("triton").__version__
    if torch.cuda.is_available():
        return BackendStatus("triton", True, f"fused Triton kernels {version} (CUDA tensors)")
    if triton_interpreting():
        return BackendStatus("triton", True, f"Triton {version} CPU interpreter (TRITON_INTERPRET=1; slow, for tests)")
    return BackendStatus(
        "triton",
        False,
        f"triton {version} is installed but no CUDA device is available (TRITON_INTERPRET=1 runs "
        "its kernels in the CPU interpreter)",
    )


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
        _triton_status(),
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
            return "triton" if u.is_cuda and _triton_import_error() is None else "torch"
    if backend not in BACKEND_NAMES:
        raise InputError(f"unknown scan backend {backend!r}; choose one of {('auto', *BACKEND_NAMES)}")
    if backend == "triton":
        error = _triton_import_error()
        if error is not None:
            raise BackendUnavailableError(error)
        if not u.is_cuda and not triton_interpreting():
            raise BackendUnavailableError(
                f"backend 'triton' runs on CUDA tensors; the inputs are on {u.device} (set TRITON_INTERPRET=1 to "
                "run its kernels in Triton's CPU interpreter, slow, for tests)"
            )
    if backend == "mamba_ssm" and not u.is_cuda:
        raise BackendUnavailableError("backend 'mamba_ssm' runs on CUDA tensors only; the inputs are on the CPU")
    return backend


def backend_function(name: str) -> Callable[..., Tensor]:
    """The scan function of a concrete backend name."""
    if name == "reference":
        return selective_scan_ref
    if name == "torch":
        return selective_scan_chunked
    if name == "triton":
        from .triton_scan import selective_scan_triton  # imports triton: only on demand

        return selective_scan_triton
    _mamba_ssm_module()
    return _selective_scan_mamba_ssm
