"""autobert: plugin-based AutoML search for BERT fine-tuning recipes.

This package's top level is the public API a technique imports (docs/plugin_api.md), the way ``pytest``
stands apart from ``_pytest``: the names below are defined in the contract modules and the engine
(``autobert.config``, ``autobert.run``, ...), which may move beneath them.
"""

from autobert.version import __version__
from autobert.hookspecs import FORWARD_PASS, hookimpl
from autobert.config.settings import Setting
from autobert.run.clock import check_deadline
from autobert.stage_cache import StageCache, cache_key
from autobert.errors import ConfigError, PluginError, TrialFailed
from autobert.trial_run import TrialRun
from autobert import services

__all__ = ["FORWARD_PASS", "ConfigError", "PluginError", "Setting", "StageCache", "TrialFailed", "TrialRun",
           "cache_key", "check_deadline", "hookimpl", "services", "__version__"]
