"""Models, data, training and checkpoints (torch lives here; never Qt)."""
