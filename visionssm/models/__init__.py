"""Models: one registry (``create``, ``list_models``, YAML presets) and timm-registered backbones.

Importing ``visionssm.models`` registers every model with the visionssm registry and the backbones with timm.
Needs timm (extra ``visionssm[timm]``).
"""

from . import backbones, change
from .backbones import VMamba
from .change import MambaBCD, MambaBDA, MambaSCD
from .registry import ModelEntry, build_from_config, create, list_models, load_config, register

register("vmamba", "backbone")(VMamba)

__all__ = [
    "MambaBCD",
    "MambaBDA",
    "MambaSCD",
    "ModelEntry",
    "VMamba",
    "backbones",
    "change",
    "build_from_config",
    "create",
    "list_models",
    "load_config",
    "register",
]
