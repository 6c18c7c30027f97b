"""timm's layers used by visionssm.layers, with an install hint when timm is missing (extra ``visionssm[timm]``)."""

from __future__ import annotations

try:
    from timm.layers import DropPath, Mlp
except ImportError as err:  # pragma: no cover - exercised only without timm
    raise ImportError(
        f"visionssm.layers and visionssm.models need timm ({err}); install it with pip install 'visionssm[timm]'"
    ) from err

__all__ = ["DropPath", "Mlp"]
