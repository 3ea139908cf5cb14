"""The base recipe (learning rate, epochs, batch size, warm-up, weight decay) as a technique like the others."""

from __future__ import annotations

import pytest

from autobert.run.plugin_manager import get_plugin_manager
from autobert.testing import TechniqueConformance


class TestFinetuneConformance(TechniqueConformance):
    """autobert's conformance suite. Finetune cannot be switched off on its own (its ablation gives a reason), so
    the suite compares its recipe with the Trainer's own defaults, as a study that disables it would train."""

    technique = "finetune"
    study_overrides = {"n_train": 32, "n_validation": 16, "only": ["finetune"],
                       "techniques": {"finetune": {"epochs": 1, "batch_size": 16}}}

    @pytest.fixture
    def plugin_manager(self):
        return get_plugin_manager(only=["finetune"])
