"""autobert: plugin-based AutoML search for BERT fine-tuning recipes."""

import pluggy

__version__ = "0.1.0"

#: Marker for technique hook implementations: ``@autobert.hookimpl``.
hookimpl = pluggy.HookimplMarker("autobert")

from autobert.settings import Setting  # noqa: E402  (needs nothing from above; kept after the marker)
from autobert.budget import FORWARD_PASS, check_deadline  # noqa: E402  (light: no torch at import)
from autobert.stage_cache import StageCache, cache_key  # noqa: E402  (light: the one cache and its key function)

from autobert.errors import ConfigError, PluginError, TrialFailed  # noqa: E402
from autobert.trial_run import TrialRun  # noqa: E402  (the run object: light, no torch)
from autobert import services  # noqa: E402  (the services for technique authors: light, torch imported lazily)

__all__ = ["FORWARD_PASS", "ConfigError", "PluginError", "Setting", "StageCache", "TrialFailed", "TrialRun",
           "cache_key", "check_deadline", "hookimpl", "services", "__version__"]
