"""truncation technique (in progress)."""
