"""Image classifiers built on visual state-space blocks."""
