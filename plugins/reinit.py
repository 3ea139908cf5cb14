"""reinit technique (in progress)."""
