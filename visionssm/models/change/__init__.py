"""Change detectors for bi-temporal image pairs (binary, semantic and damage-assessment heads)."""

from .mamba_cd import BDAOutput, ChangeDecoder, MambaBCD, MambaBDA, MambaSCD, SCDOutput, SemanticDecoder

__all__ = ["BDAOutput", "ChangeDecoder", "MambaBCD", "MambaBDA", "MambaSCD", "SCDOutput", "SemanticDecoder"]
