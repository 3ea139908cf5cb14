"""autobert's conformance suite, run against this package's technique.

Run with ``pytest`` from this folder after ``pip install -e .``.
"""

import pytest

from autobert.run.plugin_manager import get_plugin_manager
from autobert.testing import TechniqueConformance

TECHNIQUES = ["finetune", "label_smoothing"]


class TestLabelSmoothing(TechniqueConformance):
    technique = "label_smoothing"
    # Kept cheap: a small task, one epoch, and only the technique beside the base recipe.
    study_overrides = {"n_train": 32, "n_validation": 16, "only": TECHNIQUES,
                       "techniques": {"finetune": {"epochs": 1, "batch_size": 16}}}
    # It declares no off value (no autobert_ablation), so the suite compares it with the technique disabled;
    # a factor of 0 would train exactly as without it.
    on_values = {"label_smoothing.factor": 0.1}

    @pytest.fixture
    def plugin_manager(self):
        return get_plugin_manager(only=TECHNIQUES)
