"""Models: timm-registered backbones (importing ``visionssm.models`` registers them with timm).

Needs timm (extra ``visionssm[timm]``).
"""

from . import backbones
from .backbones import VMamba

__all__ = ["VMamba", "backbones"]
