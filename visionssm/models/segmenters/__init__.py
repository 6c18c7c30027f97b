"""Segmentation networks (2D and 3D): encoder-decoder models built on visual state-space blocks.

- :class:`VMUNet` (VM-UNet, 2D): VMamba-v0 encoder, VSS decoder with PatchExpand, additive skips.
- :class:`LightMUNet` (LightM-UNet, 2D/3D): residual vision Mamba (RVM) encoder, DWConv decoder.
"""

from .lightm_unet import LightMUNet
from .vm_unet import VMUNet

__all__ = ["LightMUNet", "VMUNet"]
