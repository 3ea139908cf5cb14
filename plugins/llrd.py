"""llrd technique (in progress)."""
