"""Change detectors for bi-temporal image pairs (binary, semantic and damage-assessment heads)."""

from .atrous_mamba import AtrousMambaBCD
from .mamba_cd import BDAOutput, ChangeDecoder, MambaBCD, MambaBDA, MambaSCD, SCDOutput, SemanticDecoder

__all__ = [
    "AtrousMambaBCD",
    "BDAOutput",
    "ChangeDecoder",
    "MambaBCD",
    "MambaBDA",
    "MambaSCD",
    "SCDOutput",
    "SemanticDecoder",
]
