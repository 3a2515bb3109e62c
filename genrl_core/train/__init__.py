"""Training loops, one per model."""
