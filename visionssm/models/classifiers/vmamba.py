"""``VMambaClassifier``: the VMamba presets (Liu et al., arXiv 2401.10166) under the MONAI constructor vocabulary.

A thin subclass of :class:`visionssm.models.backbones.vmamba.VMamba`: ``in_channels`` -> ``in_chans``,
``out_channels`` -> ``num_classes``, ``variant`` picks one of the published configurations (models.md §11), and any
other keyword overrides that preset. State dicts, the timm API (``forward_features``, ``forward_head``,
``forward_intermediates``, ``reset_classifier``) and the key names are those of ``VMamba``.
"""

from __future__ import annotations

from typing import Any

from visionssm.errors import InputError
from visionssm.models.backbones.vmamba import VMamba
from visionssm.models.registry import register

# The published configurations (MzeroMiko/VMamba classification/configs/vssm/*.yaml; models.md §11), the same values
# as the timm registrations ``visionssm_vmamba_{tiny,small,base,vanilla_tiny}``.
VARIANTS: dict[str, dict[str, Any]] = {
    "tiny": dict(dims=96, depths=(2, 2, 8, 2), d_state=1, ssm_ratio=1.0, version="v2", drop_path_rate=0.2),
    "small": dict(dims=96, depths=(2, 2, 15, 2), d_state=1, ssm_ratio=2.0, version="v2", drop_path_rate=0.3),
    "base": dict(dims=128, depths=(2, 2, 15, 2), d_state=1, ssm_ratio=2.0, version="v2", drop_path_rate=0.6),
    "vanilla_tiny": dict(dims=96, depths=(2, 2, 9, 2), d_state=16, ssm_ratio=2.0, version="v0", drop_path_rate=0.2),
}


@register("vmamba_classifier", "classification")
class VMambaClassifier(VMamba):
    """VMamba image/volume classifier: preset ``variant`` + MONAI-style arguments.

    Args:
        spatial_dims: 2 (x: (B, in_channels, H, W)) or 3 (x: (B, in_channels, D, H, W)).
        in_channels: input channels.
        out_channels: number of classes (0 = no head; ``forward`` returns the pooled features (B, C_last)).
        variant: "tiny" (T [s1l8], 30 M), "small" (S [s2l15], 50 M), "base" (B [s2l15], 89 M) or "vanilla_tiny"
            (v0, 23 M); published sizes are with 1000 classes.
        scan: scan order of every mixer; None = "cross" (2D, K=4) or "cross3d" (3D, K=6).
        **overrides: any other :class:`VMamba` argument (dims, depths, d_state, drop_path_rate, backend, ...); it
            replaces the preset's value.

    Shapes: x (B, in_channels, *spatial) -> logits (B, out_channels).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1000,
        variant: str = "tiny",
        scan: str | None = None,
        **overrides: Any,
    ) -> None:
        if variant not in VARIANTS:
            raise InputError(f"VMambaClassifier: variant={variant!r} is not one of {sorted(VARIANTS)}")
        clashing = sorted({"in_chans", "num_classes"} & set(overrides))
        if clashing:
            raise InputError(f"VMambaClassifier: pass in_channels/out_channels instead of {clashing}")
        kwargs = {**VARIANTS[variant], **overrides}
        super().__init__(spatial_dims=spatial_dims, in_chans=in_channels, num_classes=out_channels, scan=scan, **kwargs)
        self.variant = variant
        self.in_channels = in_channels
        self.out_channels = out_channels
