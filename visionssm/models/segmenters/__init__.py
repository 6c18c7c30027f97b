"""Segmentation networks (2D and 3D): encoder-decoder models built on visual state-space blocks."""
