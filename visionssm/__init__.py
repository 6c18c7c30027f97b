"""visionssm: visual state-space (Mamba-style) models for medical and remote-sensing imaging.

Subpackages: ``visionssm.scans`` (token orders over 2D/3D grids), ``visionssm.kernels`` (the
selective-scan operator and its backends), ``visionssm.layers`` and ``visionssm.models`` (blocks and
models; need timm), ``visionssm.pipelines`` (end-to-end jobs).

When timm is installed, importing visionssm imports ``visionssm.models``, which registers the backbones
with timm (``timm.create_model("visionssm_vmamba_tiny", ...)``). Without timm it imports only the core.
"""

from importlib.metadata import PackageNotFoundError, version

from visionssm.errors import BackendUnavailableError, InputError, VisionSSMError

try:
    __version__ = version("visionssm")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

try:
    import timm  # noqa: F401
except ImportError:  # timm is the optional extra visionssm[timm]: without it there is nothing to register
    pass
else:
    # Last, so that the modules it imports find __version__ and the errors already defined.
    from visionssm import models  # noqa: F401

__all__ = ["BackendUnavailableError", "InputError", "VisionSSMError", "__version__"]
