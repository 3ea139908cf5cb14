"""End-to-end behaviour of `autobert search`, `best` and `train` on a tiny model."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from autobert.cli import main
from autobert.config.schema import load_frozen
from autobert.testing import write_study


def _trials(study_path: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{study_path.parent / name / 'study.db'}"
    return optuna.load_study(study_name=name, storage=storage).trials


def _create(tmp_path: Path, name: str) -> optuna.Study:
    (tmp_path / name).mkdir()
    return optuna.create_study(study_name=name, storage=f"sqlite:///{tmp_path / name / 'study.db'}", direction="maximize")


def test_search_resumes_and_continues_numbering(tmp_path):
    path = write_study(tmp_path, name="resume", only=["finetune"])
    assert main(["search", str(path), "--n-trials", "3"]) == 0
    assert [t.number for t in _trials(path, "resume")] == [0, 1, 2]
    assert main(["search", str(path), "--n-trials", "2"]) == 0
    trials = _trials(path, "resume")
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # A resumed TPE study keeps sampling new points, not the first ones again.
    assert len({t.params["finetune.learning_rate"] for t in trials}) == 5


def test_exported_recipe_replays_to_the_same_validation_metric(tmp_path):
    path = write_study(tmp_path, name="replay")
    assert main(["search", str(path), "--n-trials", "2"]) == 0
    best = tmp_path / "replay" / "best.yaml"
    frozen = load_frozen(best)
    out = tmp_path / "model"
    assert main(["train", str(best), "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["value"] == frozen.provenance.value  # exactly, on CPU with the same seed
    assert metrics["test"]["accuracy"] >= 0.0
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists()
    assert load_frozen(out / "autobert.yaml").provenance == frozen.provenance

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True)  # any pooling head
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert model(**tokenizer(["a great film"], return_tensors="pt")).logits.shape == (1, 2)


def test_frozen_config_round_trips_byte_for_byte(tmp_path):
    path = write_study(tmp_path, name="roundtrip")
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    best = tmp_path / "roundtrip" / "best.yaml"
    text = best.read_text()
    frozen = load_frozen(best)
    assert frozen.to_yaml() == text
    assert {n for n in frozen.params if n.startswith("finetune.")} == {f"finetune.{p}" for p in ("learning_rate", "epochs", "batch_size", "warmup_ratio", "weight_decay")}
    assert all(not isinstance(v, dict) for v in frozen.techniques["finetune"].values())
    assert frozen.provenance.data_fingerprint.keys() == {"train", "validation", "test"}
    with pytest.raises(Exception):
        frozen.provenance.trial = 3  # frozen: immutable


def test_bad_learning_rate_range_is_pruned_before_its_last_evaluation(tmp_path):
    path = write_study(
        tmp_path, name="prune", evaluations_per_epoch=2, only=["finetune"],
        budget={"trials": 6}, sampler={"name": "random", "seed": 3},
        pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        # Half of this log range cannot learn anything in two epochs.
        techniques={"finetune": {"learning_rate": {"low": 1e-9, "high": 5e-3, "log": True}, "epochs": 3,
                                 "batch_size": 16, "warmup_ratio": 0.0}},
    )
    # A good first recipe sets the bar the median pruner compares against.
    _create(tmp_path, "prune").enqueue_trial({"finetune.learning_rate": 3e-3})
    assert main(["search", str(path)]) == 0
    trials = _trials(path, "prune")
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned, [(t.params["finetune.learning_rate"], t.state) for t in trials]
    full_steps = max(max(t.intermediate_values) for t in complete)
    for t in pruned:
        assert max(t.intermediate_values) < full_steps
        assert "pruned at step" in t.user_attrs["pruned_reason"]
    # What was pruned is what should have been: the tiny learning rates.
    assert max(t.params["finetune.learning_rate"] for t in pruned) < max(t.params["finetune.learning_rate"] for t in complete)


def test_diverging_loss_fails_the_trial_and_the_study_continues(tmp_path):
    path = write_study(
        tmp_path, name="diverge", only=["finetune"],
        techniques={"finetune": {"learning_rate": [1e30, 1e-3], "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0}},
    )
    study = _create(tmp_path, "diverge")
    study.enqueue_trial({"finetune.learning_rate": 1e30})
    study.enqueue_trial({"finetune.learning_rate": 1e-3})
    assert main(["search", str(path), "--n-trials", "2"]) == 0
    first, second = _trials(path, "diverge")
    assert first.state == TrialState.FAIL
    assert "the training loss became" in first.user_attrs["fail_reason"]
    assert second.state == TrialState.COMPLETE


def test_ctrl_c_marks_the_running_trial_failed_and_the_next_search_resumes(tmp_path):
    path = write_study(
        tmp_path, name="interrupt", only=["finetune"],
        techniques={"finetune": {"learning_rate": 1e-3, "epochs": 400, "batch_size": 16, "warmup_ratio": 0.0}},
    )
    script = Path(sys.executable).parent / "autobert"
    proc = subprocess.Popen([str(script), "search", str(path), "--n-trials", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    db = tmp_path / "interrupt" / "study.db"
    deadline = time.time() + 60
    while time.time() < deadline:
        if _has_running_trial(db):
            break
        time.sleep(0.5)
    time.sleep(3)  # well into training
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=180)  # generous: a loaded CI machine is slow to unwind
    assert proc.returncode == 130, output
    (trial,) = _trials(path, "interrupt")
    assert trial.state == TrialState.FAIL
    assert "interrupted" in trial.user_attrs["fail_reason"]
    assert not list((tmp_path / "interrupt").glob("trial-*")), "the trial's working folder was left behind"
    # Same study, now with a short recipe: numbering resumes after the failed trial.
    write_study(tmp_path, name="interrupt", only=["finetune"],
                techniques={"finetune": {"learning_rate": 1e-3, "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0}})
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    assert [(t.number, t.state) for t in _trials(path, "interrupt")] == [(0, TrialState.FAIL), (1, TrialState.COMPLETE)]


def _has_running_trial(db: Path) -> bool:
    """Poll read-only, so the poll never races the worker creating the schema."""
    import sqlite3

    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return bool(conn.execute("SELECT 1 FROM trials WHERE state = 'RUNNING'").fetchall())
    except sqlite3.OperationalError:
        return False


def test_changing_a_categorical_parameters_choices_ends_the_study_with_one_message(tmp_path, capsys):
    fixed = {"learning_rate": 3e-3, "epochs": 1, "warmup_ratio": 0.0}
    path = write_study(tmp_path, name="changed", only=["finetune"], techniques={"finetune": {**fixed, "batch_size": [16]}})
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    # A fixed number may change between runs of one study ...
    write_study(tmp_path, name="changed", only=["finetune"],
                techniques={"finetune": {**fixed, "epochs": 2, "batch_size": [16]}})
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    # ... but Optuna cannot change a categorical's choices: a clear error before any trial runs.
    write_study(tmp_path, name="changed", only=["finetune"], techniques={"finetune": {**fixed, "batch_size": [32]}})
    capsys.readouterr()
    assert main(["search", str(path), "--n-trials", "3"]) == 2
    assert "techniques.finetune.batch_size: the stored study searched other choices" in capsys.readouterr().err
    assert [t.state for t in _trials(path, "changed")] == [TrialState.COMPLETE, TrialState.COMPLETE]


def test_train_refuses_changed_data_or_a_missing_technique_with_the_fix(tmp_path, capsys):
    path = write_study(tmp_path, name="guard", only=["finetune"])
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    best = tmp_path / "guard" / "best.yaml"
    train_csv = tmp_path / "data" / "train.csv"
    train_csv.write_text(train_csv.read_text().replace(",1\n", ",0\n", 5))
    capsys.readouterr()
    assert main(["train", str(best), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    # The key now comes with its line in the frozen config: "data.train (line 5): the data changed ...".
    assert re.search(r"data\.train( \(line \d+\))?: the data changed since the recipe was found", err)
    assert "--allow-data-change" in err
    assert main(["train", str(best), "--output", str(tmp_path / "out"), "--allow-data-change"]) == 0

    ghost = tmp_path / "ghost.yaml"
    ghost.write_text(best.read_text().replace("  plugins:\n", "  plugins:\n    ghost: ghost-technique 1.0\n"))
    capsys.readouterr()
    assert main(["train", str(ghost), "--output", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    # Named with its distribution and version from the provenance, and the install that fixes it (replay checks).
    assert "'ghost' from ghost-technique 1.0, which is not installed" in err
    assert "pip install 'ghost-technique==1.0'" in err
