"""Image classifiers built on visual state-space blocks (2D images and 3D volumes, MONAI-style arguments).

- :class:`VMambaClassifier`: VMamba-T/S/B and vanilla-T presets (arXiv 2401.10166).
- :class:`RSMamba`: multi-path (forward / reverse / shuffle) gated Mamba for remote-sensing scenes (arXiv 2403.19654).
- :class:`MedMamba`: SS-Conv-SSM hierarchy for medical images (arXiv 2403.03849).

Importing this package registers them (``create("vmamba_classifier" | "rsmamba" | "medmamba")``).
"""

from .medmamba import MedMamba, SSConvSSM
from .rsmamba import RSMamba
from .vmamba import VMambaClassifier

__all__ = ["MedMamba", "RSMamba", "SSConvSSM", "VMambaClassifier"]
