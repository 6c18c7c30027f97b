"""Models: one registry (``create``, ``list_models``, YAML presets) and timm-registered backbones.

Importing ``visionssm.models`` registers every model with the visionssm registry and the backbones with timm.
Needs timm (extra ``visionssm[timm]``).
"""

from . import backbones, change, classifiers, segmenters
from .backbones import VMamba
from .change import AtrousMambaBCD, MambaBCD, MambaBDA, MambaSCD
from .classifiers import MedMamba, RSMamba, VMambaClassifier
from .registry import ModelEntry, build_from_config, create, list_models, load_config, register
from .segmenters import LightMUNet, SegMamba, UMambaBot, UMambaEnc, VMUNet

register("vmamba", "backbone")(VMamba)

__all__ = [
    "AtrousMambaBCD",
    "MambaBCD",
    "MambaBDA",
    "MambaSCD",
    "MedMamba",
    "LightMUNet",
    "ModelEntry",
    "RSMamba",
    "SegMamba",
    "UMambaBot",
    "UMambaEnc",
    "VMUNet",
    "VMamba",
    "VMambaClassifier",
    "backbones",
    "change",
    "classifiers",
    "segmenters",
    "build_from_config",
    "create",
    "list_models",
    "load_config",
    "register",
]
