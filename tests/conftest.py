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
# The normal run draws the same examples every time (derandomize), so it needs no example database: none is
# written into the repository, where the xdist workers would share it.
settings.register_profile("autobert", max_examples=12, deadline=None, derandomize=True, database=None)
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


# ---------------------------------------------------------------------------
# Running under pytest-xdist (scripts/test: `-n auto --dist loadscope --no-loadscope-reorder`)
# ---------------------------------------------------------------------------

# The modules that take longest, longest first (measured with `--durations`, two workers on two cores): xdist hands
# out whole modules (so that a module-scoped fixture, a search all its tests read, is built once) in this order,
# and the longest first leaves no worker alone with a long module at the end. Only the order changes; a module
# not listed comes after these, in the usual order, and a stale entry costs nothing.
LONGEST_FIRST = (
    "test_budget", "test_workers", "test_combine", "test_fuzz_frozen", "test_third_party_plugin", "test_search", "test_seeds",
    "test_local_workers", "test_ablate", "test_further_pretraining", "test_faults", "test_hooks", "test_augmentation",
    "test_selective_masking", "test_knowledge", "test_portfolio", "test_browser", "test_effective_space",
    "test_distillation",
)


def pytest_collection_modifyitems(config, items):
    """Run the longest modules first (see LONGEST_FIRST); within a module, the tests keep their order."""
    def rank(item):
        stem = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
        return LONGEST_FIRST.index(stem) if stem in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable
