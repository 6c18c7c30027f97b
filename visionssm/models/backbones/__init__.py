"""Backbones registered with timm (importing this package registers them)."""

from .vmamba import VMamba, VMambaStage, checkpoint_filter_fn

__all__ = ["VMamba", "VMambaStage", "checkpoint_filter_fn"]
