"""Change detectors for bi-temporal image pairs (binary, semantic and damage-assessment heads)."""
