"""What every Trainer autobert runs is told about the machine: precision, device, logging integrations."""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pytest
import torch

from autobert.cli import main
from autobert.config.schema import load_frozen
from autobert.run.device import resolve_precision, select_device, trainer_arguments
from autobert.errors import ConfigError
from autobert.testing import write_study

ON_CPU = not torch.cuda.is_available()
cpu_only = pytest.mark.skipif(not ON_CPU, reason="checks what this machine does without a GPU")


def _study(tmp_path: Path, name: str, **keys) -> Path:
    return write_study(tmp_path, name=name, n_train=64, n_validation=32, only=["finetune"],
                       techniques={"finetune": {"learning_rate": 3e-3, "epochs": 2, "batch_size": 16,
                                                "warmup_ratio": 0.0}}, **keys)


def _trials(path: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{path.parent / name / 'study.db'}").trials


@cpu_only
def test_auto_resolves_to_fp32_on_the_cpu_and_bf16_stays_bf16():
    assert resolve_precision("auto") == "fp32"
    assert resolve_precision("bf16") == "bf16"
    assert resolve_precision("fp32") == "fp32"


def test_each_precision_sets_the_trainer_arguments_it_names(monkeypatch):
    monkeypatch.delenv("AUTOBERT_DEVICE", raising=False)
    # On the CPU the Trainer runs bf16 only when told to use the CPU.
    assert trainer_arguments("bf16") == ({"bf16": True, "use_cpu": True} if ON_CPU else {"bf16": True})
    assert trainer_arguments("fp16") == {"fp16": True}
    assert trainer_arguments("fp32") == {}


@cpu_only
def test_bf16_runs_on_the_cpu_differs_from_fp32_and_train_replays_it_exactly(tmp_path):
    path = _study(tmp_path, "bf16", precision="bf16")
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    (trial,) = _trials(path, "bf16")
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.user_attrs["precision"] == "bf16"
    best = tmp_path / "bf16" / "best.yaml"
    assert load_frozen(best).precision == "bf16" and "\nprecision: bf16\n" in best.read_text()

    out = tmp_path / "model"
    assert main(["train", str(best), "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    scores = ("loss", "accuracy", "macro_f1")
    assert {k: metrics["validation"][k] for k in scores} == {k: trial.user_attrs["metrics"][k] for k in scores}

    # The same recipe in fp32 trains to another loss: bf16 really ran (autocast), it was not a label.
    fp32 = _study(tmp_path / "fp32", "fp32", precision="fp32")
    assert main(["search", str(fp32), "--n-trials", "1"]) == 0
    (reference,) = _trials(fp32, "fp32")
    assert reference.params == trial.params
    assert reference.user_attrs["metrics"]["loss"] != trial.user_attrs["metrics"]["loss"]


@cpu_only
def test_auto_is_recorded_as_what_it_resolved_to(tmp_path):
    path = _study(tmp_path, "auto")  # precision: auto, the default
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    assert load_frozen(tmp_path / "auto" / "best.yaml").precision == "fp32"


@cpu_only
def test_fp16_on_the_cpu_is_refused_at_validation_with_the_fix(tmp_path, capsys):
    path = _study(tmp_path, "half", precision="fp16")
    assert main(["validate", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "precision (line" in err and "fp16 needs a CUDA GPU" in err and "use bf16" in err


def test_an_unknown_precision_names_the_choices(tmp_path, capsys):
    path = _study(tmp_path, "typo", precision="fp8")
    assert main(["validate", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "precision (line" in err and "'auto', 'fp32', 'bf16' or 'fp16'" in err


def test_a_recipe_exported_before_the_precision_key_replays_in_fp32(tmp_path):
    path = _study(tmp_path, "old")
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    best = tmp_path / "old" / "best.yaml"
    best.write_text("".join(line for line in best.read_text().splitlines(True) if not line.startswith("precision:")))
    assert load_frozen(best).precision == "fp32"


def test_device_cpu_hides_the_gpus_and_trains_on_the_cpu(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("AUTOBERT_DEVICE", raising=False)
    select_device("cpu")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "" and trainer_arguments("fp32") == {"use_cpu": True}
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16")


def test_device_cuda_n_narrows_the_visible_gpus_to_that_one(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.delenv("AUTOBERT_DEVICE", raising=False)
    select_device("cuda:1")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    with pytest.raises(ConfigError, match="leaves 1 GPU"):
        select_device("cuda:1")
    with pytest.raises(ConfigError, match="give cpu, cuda"):
        select_device("gpu1")


def test_report_to_tensorboard_writes_each_trials_curves_under_its_number(tmp_path):
    pytest.importorskip("tensorboard")
    path = _study(tmp_path, "tb", report_to="tensorboard")
    assert main(["search", str(path), "--n-trials", "2"]) == 0
    runs = sorted(p.name for p in (tmp_path / "tb" / "tensorboard").iterdir())
    assert runs == ["tb-trial-0-seed-0", "tb-trial-1-seed-0"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard" / runs[0]))
    events.Reload()
    assert {"train/loss", "eval/accuracy"} <= set(events.Tags()["scalars"])


@cpu_only
def test_further_pretraining_teachers_and_fine_tuning_all_train_in_the_studys_precision(tmp_path, monkeypatch):
    import warnings

    from optuna.trial import FixedTrial
    from transformers import Trainer

    from autobert.config.schema import load_study
    from autobert.run.pipeline import run_pipeline
    from autobert.run.plugin_manager import get_plugin_manager
    from autobert.study.validation import validate_study
    from autobert.stage_cache import StageCache

    trained = []
    original = Trainer.train

    def train(self, *a, **kw):
        trained.append((type(self).__name__, self.args.bf16))
        return original(self, *a, **kw)

    monkeypatch.setattr(Trainer, "train", train)
    techniques = ["finetune", "further_pretraining", "masking", "distillation"]
    params = {"finetune.learning_rate": 3e-3, "finetune.epochs": 1, "finetune.batch_size": 16,
              "finetune.warmup_ratio": 0.0, "finetune.weight_decay": 0.0,
              "further_pretraining.stages": "task", "further_pretraining.task_steps": 2,
              "further_pretraining.task_learning_rate": 1e-4, "masking.strategy": "dynamic",
              "masking.probability": 0.15, "distillation.enabled": True, "distillation.alpha": 0.5,
              "distillation.temperature": 2.0, "distillation.teachers": 1}
    stages = {}
    for precision in ("bf16", "fp32"):
        path = write_study(tmp_path, name="every", n_train=32, n_validation=16, only=techniques, precision=precision,
                           techniques={"further_pretraining": {"batch_size": 4}})
        study = load_study(path)
        pm = get_plugin_manager(only=techniques)
        data = validate_study(study, pm)
        trained.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FixedTrial: values outside the default ranges
            run_pipeline(study, FixedTrial(params), pm, data)
        kinds = sorted({name for name, _ in trained})
        assert kinds == ["StageTrainer", "_AutobertTrainer"] and len(trained) == 3, trained  # stage, teacher, student
        assert all(bf16 == (precision == "bf16") for _, bf16 in trained), trained
        stages[precision] = {e.key for e in StageCache(study.cache_path).entries("stage")}
    # A stage trained in bf16 is not served to an fp32 trial (nor the other way round).
    assert stages["fp32"] - stages["bf16"]


def test_an_unknown_or_uninstalled_logging_integration_is_refused_at_validation(tmp_path, capsys):
    path = _study(tmp_path, "logs", report_to=["tensorboard", "tensorbored"])
    assert main(["validate", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "report_to (line" in err and "'tensorbored' is not a logging integration" in err and "wandb" in err
