"""pooling technique (in progress)."""
