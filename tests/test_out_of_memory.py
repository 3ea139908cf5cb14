"""A trial that runs out of memory halves its per-device batch and doubles the accumulation, then fails at the floor."""

from __future__ import annotations

import torch
from optuna.trial import TrialState
from transformers import TrainerCallback

from autobert import hookimpl
from autobert.config.schema import load_study
from autobert.run.plugin_manager import Technique, get_plugin_manager
from autobert.study.search import run_search
from autobert.study.validation import validate_study
from autobert.testing import write_study

FINETUNE = {"learning_rate": 3e-3, "epochs": 2, "batch_size": 16, "warmup_ratio": 0.0, "weight_decay": 0.0}


class OutOfMemoryOnFirstBatch:
    """A test double for a GPU too small: the first batch of every run larger than ``fits`` raises CUDA's OOM."""

    def __init__(self, fits: int):
        self.fits = fits
        self.runs: list[tuple[int, int, int]] = []  # (per-device batch, accumulation, steps trained)

    @hookimpl
    def autobert_trainer_callbacks(self, run):
        probe = self

        class Raise(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                if args.per_device_train_batch_size > probe.fits:
                    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (test double)")

            def on_train_end(self, args, state, control, **kw):
                probe.runs.append((args.per_device_train_batch_size, args.gradient_accumulation_steps,
                                   state.global_step))

        return [Raise()]


def _search(tmp_path, name: str, fits: int | None):
    path = write_study(tmp_path, name=name, n_train=64, n_validation=16, only=["finetune"],
                       techniques={"finetune": FINETUNE})
    study = load_study(path)
    pm = get_plugin_manager(only=["finetune"])
    probe = None
    if fits is not None:
        probe = OutOfMemoryOnFirstBatch(fits)
        pm.register_technique(probe, Technique("oom", f"{__name__}:OutOfMemoryOnFirstBatch", "autobert-tests", "0"))
    opened = run_search(study, pm, validate_study(study, pm), n_trials=1)
    (trial,) = opened.trials
    return trial, probe


def test_out_of_memory_on_the_first_batch_ends_in_a_completed_trial_at_half_the_batch_and_double_accumulation(tmp_path):
    trial, probe = _search(tmp_path, "oom", fits=8)
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
    assert trial.user_attrs["out_of_memory"] == {"0": {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 2,
                                                       "requested_batch_size": 16, "halvings": 1}}
    (finished,) = probe.runs
    # The same effective batch, so as many optimizer steps as the run that fits (64 rows / 16 x 2 epochs).
    reference, _ = _search(tmp_path / "fits", "fits", fits=None)
    assert finished == (8, 2, reference.user_attrs["steps"]) and trial.user_attrs["steps"] == reference.user_attrs["steps"] == 8
    assert "out_of_memory" not in reference.user_attrs
    # The recipe's results stay the same up to float rounding (dropout draws differ between micro-batches).
    assert abs(trial.user_attrs["metrics"]["loss"] - reference.user_attrs["metrics"]["loss"]) < 0.05


def test_out_of_memory_at_the_floor_fails_the_trial_with_what_was_tried_and_the_hint(tmp_path):
    trial, probe = _search(tmp_path, "floor", fits=0)
    assert trial.state == TrialState.FAIL and probe.runs == []
    reason = trial.user_attrs["fail_reason"]
    assert "out of memory after halving the per-device batch from 16 to 1 (gradient accumulation 16)" in reason
    assert "lower max_length" in reason and reason.count("max_length") == 1  # the hint once


def test_out_of_memory_is_recognised_on_a_gpu_and_on_the_cpu():
    from autobert.run.device import is_out_of_memory

    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"))
    assert not is_out_of_memory(ValueError("learning rate must be positive"))
