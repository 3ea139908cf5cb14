"""autobert: plugin-based AutoML search for BERT fine-tuning recipes."""

import pluggy

__version__ = "0.1.0"

#: Marker for technique hook implementations: ``@autobert.hookimpl``.
hookimpl = pluggy.HookimplMarker("autobert")

__all__ = ["hookimpl", "__version__"]
