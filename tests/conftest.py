import os

# The tests train tiny models: one thread is faster than several fighting over 2 cores.
# Set before torch starts its thread pool; subprocesses (the CLI tests) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# `tokenizers` turns its parallelism off for good once the process forks; off from the start, every
# test runs the same way whatever ran before it. (The tiny models' vocabularies no longer depend on it:
# autobert.testing.tiny_vocabulary builds them without tokenizers' trainer, the same in every process.)
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import pytest
import torch
from hypothesis import settings

from autobert.testing import write_study

# The fuzzing harness (tests/test_fuzz_inputs.py): a few dozen examples in the normal run;
# `pytest --hypothesis-profile=long` for hundreds, now and then. Examples train nothing: no deadline.
settings.register_profile("autobert", max_examples=12, deadline=None, derandomize=True)
settings.register_profile("long", max_examples=400, deadline=None)
settings.load_profile("autobert")

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def tiny_study(tmp_path):
    """Write a tiny synthetic study under ``tmp_path`` and return a function giving its path.

    The study is pinned whatever ``write_study``'s defaults become: 96 training
    and 32 validation rows, and finetune fixed to 1 epoch at batch size 16
    (6 steps, under a second). Keyword arguments override study keys:
    ``tiny_study(metric="macro_f1")``.
    """

    def write(**overrides):
        overrides.setdefault("n_train", 96)
        overrides.setdefault("n_validation", 32)
        overrides.setdefault("techniques", {"finetune": {
            "learning_rate": {"low": 1e-3, "high": 5e-3, "log": True}, "epochs": 1, "batch_size": 16,
            "warmup_ratio": 0.0,
        }})
        return write_study(tmp_path, **overrides)

    return write
