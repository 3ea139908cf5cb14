"""autobert: plugin-based AutoML search for BERT fine-tuning recipes."""

import pluggy

__version__ = "0.1.0"

#: Marker for technique hook implementations: ``@autobert.hookimpl``.
hookimpl = pluggy.HookimplMarker("autobert")

from autobert.settings import Setting  # noqa: E402  (needs nothing from above; kept after the marker)
from autobert.budget import FORWARD_PASS, check_deadline  # noqa: E402  (light: no torch at import)

__all__ = ["FORWARD_PASS", "Setting", "check_deadline", "hookimpl", "__version__"]
