"""visionssm: visual state-space (Mamba-style) models for medical and remote-sensing imaging.

Subpackages: ``visionssm.scans`` (token orders over 2D/3D grids), ``visionssm.kernels`` (the
selective-scan operator and its backends), ``visionssm.pipelines`` (end-to-end jobs).
"""

from importlib.metadata import PackageNotFoundError, version

from visionssm.errors import BackendUnavailableError, InputError, VisionSSMError

try:
    __version__ = version("visionssm")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["BackendUnavailableError", "InputError", "VisionSSMError", "__version__"]
