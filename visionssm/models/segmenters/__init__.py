"""Segmentation networks (2D and 3D): encoder-decoder models built on visual state-space blocks.

- :class:`VMUNet` (VM-UNet, 2D): VMamba-v0 encoder, VSS decoder with PatchExpand, additive skips.
- :class:`LightMUNet` (LightM-UNet, 2D/3D): residual vision Mamba (RVM) encoder, DWConv decoder.
- :class:`UMambaBot`, :class:`UMambaEnc` (U-Mamba, 2D/3D): nnU-Net residual U-Net with Mamba layers at the
  bottleneck or after every encoder stage.
- :class:`SegMamba` (3D): GSC + tri-orientated Mamba encoder, MONAI UNETR decoder (needs ``visionssm[med]``).
"""

from .lightm_unet import LightMUNet
from .segmamba import SegMamba
from .umamba import UMambaBot, UMambaEnc
from .vm_unet import VMUNet

__all__ = ["LightMUNet", "SegMamba", "UMambaBot", "UMambaEnc", "VMUNet"]
