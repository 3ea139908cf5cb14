"""autobert's version: one place, read by the package, the frozen config's provenance and the model card."""

__version__ = "0.1.0"
