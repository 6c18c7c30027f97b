"""A report of the software and hardware visionssm sees on this machine (``visionssm info``)."""

from __future__ import annotations

import importlib
import platform
from dataclasses import dataclass

import torch

from visionssm import __version__
from visionssm.kernels import backend_status

OPTIONAL_PACKAGES = ("triton", "einops", "numpy", "monai", "nibabel", "SimpleITK", "rasterio", "timm", "lightning")


@dataclass(frozen=True)
class EnvironmentReport:
    """Versions, devices and scan backends; ``lines()`` renders it for the terminal."""

    visionssm: str
    python: str
    platform: str
    torch: str
    cuda: str
    devices: tuple[str, ...]
    packages: tuple[tuple[str, str], ...]
    backends: tuple[tuple[str, bool, str], ...]

    def lines(self) -> list[str]:
        out = [
            f"visionssm  {self.visionssm}",
            f"python     {self.python} ({self.platform})",
            f"torch      {self.torch}",
            f"CUDA       {self.cuda}",
        ]
        out += [f"device     {device}" for device in self.devices]
        out.append("packages")
        out += [f"  {name:<10} {found}" for name, found in self.packages]
        out.append("scan backends")
        out += [f"  {name:<10} {'yes' if ok else 'no ':<3}  {detail}" for name, ok, detail in self.backends]
        return out


def _package_version(name: str) -> str:
    try:
        module = importlib.import_module(name)
    except Exception:  # any import failure means "not usable here"; the report must not crash
        return "not installed"
    return str(getattr(module, "__version__", "installed"))


def collect() -> EnvironmentReport:
    """Gather the report; imports each optional package once, so it takes a second or two."""
    cuda = "not available"
    devices: tuple[str, ...] = ("cpu",)
    if torch.cuda.is_available():
        cuda = f"{torch.version.cuda} ({torch.cuda.device_count()} device(s))"
        devices = tuple(f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())) + devices
    elif torch.version.cuda:
        cuda = f"built for {torch.version.cuda}, no GPU visible"
    return EnvironmentReport(
        visionssm=__version__,
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.machine()}",
        torch=torch.__version__,
        cuda=cuda,
        devices=devices,
        packages=tuple((name, _package_version(name)) for name in OPTIONAL_PACKAGES),
        backends=tuple((s.name, s.available, s.detail) for s in backend_status()),
    )
