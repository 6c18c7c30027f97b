"""Models: one registry (``create``, ``list_models``, YAML presets) and timm-registered backbones.

Importing ``visionssm.models`` registers every model with the visionssm registry and the backbones with timm.
Needs timm (extra ``visionssm[timm]``).
"""

from . import backbones
from .backbones import VMamba
from .registry import ModelEntry, build_from_config, create, list_models, load_config, register

register("vmamba", "backbone")(VMamba)

__all__ = [
    "ModelEntry",
    "VMamba",
    "backbones",
    "build_from_config",
    "create",
    "list_models",
    "load_config",
    "register",
]
