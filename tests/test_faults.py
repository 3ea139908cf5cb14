"""Faults and bad input end in a clear state, with one message saying what failed and what to do.

Covered elsewhere, not repeated here: a diverging (NaN) loss, Ctrl-C, and a
changed categorical's choices refused (tests/test_search.py); a frozen config whose
technique is not installed or whose data changed (tests/test_search.py); a
SIGKILLed worker and several workers (tests/test_workers.py).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from autobert import hookimpl
from autobert.cli import main
from autobert.config.schema import load_study
from autobert.errors import ConfigError
from autobert.run.plugin_manager import Technique, get_plugin_manager
from autobert.study.search import run_search
from autobert.study.validation import validate_study
from autobert.store.storage import open_storage
from autobert.testing import write_study
from autobert.testing.postgres import free_port

FINETUNE = {"learning_rate": {"low": 1e-3, "high": 5e-3, "log": True}, "epochs": 1, "batch_size": 16,
            "warmup_ratio": 0.0}


def _study(tmp_path: Path, name: str, **overrides) -> Path:
    overrides.setdefault("techniques", {"finetune": FINETUNE})
    return write_study(tmp_path, name=name, n_train=96, n_validation=32, only=["finetune"], **overrides)


def _trials(path: Path, name: str, storage: str | None = None) -> list[optuna.trial.FrozenTrial]:
    url = storage or f"sqlite:///{path.parent / name / 'study.db'}"
    return optuna.load_study(study_name=name, storage=open_storage(url)).trials


class FailsTrial:
    """Raises ``error`` in trial ``number``, after its model is built."""

    def __init__(self, number: int, error: Exception):
        self.number, self.error = number, error

    @hookimpl
    def autobert_modify_model(self, model, run):
        if run.trial.number == self.number:
            raise self.error


def _search_with(path: Path, plugin, n_trials: int) -> optuna.Study:
    study = load_study(path)
    pm = get_plugin_manager(only=["finetune"])
    pm.register_technique(plugin, Technique("faulty", f"{__name__}:FailsTrial", "autobert-tests", "0"))
    return run_search(study, pm, validate_study(study, pm), n_trials=n_trials)


# ---------------------------------------------------------------------------
# A trial's failure, or the study's
# ---------------------------------------------------------------------------


def test_out_of_memory_in_one_trial_fails_that_trial_and_the_study_goes_on(tmp_path):
    path = _study(tmp_path, "oom")
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    opened = _search_with(path, FailsTrial(1, oom), n_trials=3)
    states = [t.state for t in opened.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    reason = opened.trials[1].user_attrs["fail_reason"]
    assert "OutOfMemoryError: CUDA out of memory" in reason and "narrow finetune.batch_size" in reason


def test_a_configuration_error_in_a_trial_ends_the_study_with_one_message(tmp_path):
    path = _study(tmp_path, "badconfig")
    problem = ConfigError("study file", ["techniques.faulty.corpus: file not found: missing.txt"])
    with pytest.raises(ConfigError) as caught:
        _search_with(path, FailsTrial(1, problem), n_trials=3)
    assert str(caught.value) == "study file: 1 problem:\n  - techniques.faulty.corpus: file not found: missing.txt"
    assert [t.state for t in _trials(path, "badconfig")] == [TrialState.COMPLETE, TrialState.FAIL]


# ---------------------------------------------------------------------------
# Exporting
# ---------------------------------------------------------------------------


def test_a_full_disk_while_exporting_keeps_the_previous_best_file(tmp_path, monkeypatch, capsys):
    path = _study(tmp_path, "full")
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    best = tmp_path / "full" / "best.yaml"
    before = best.read_bytes()
    assert main(["search", str(path), "--n-trials", "2"]) == 0  # a new best may change the file

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    best.write_bytes(before)
    monkeypatch.setattr(os, "fsync", no_space)
    capsys.readouterr()
    assert main(["best", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write the best recipe to {best}" in err and "No space left on device" in err
    assert "the previous best.yaml is unchanged" in err
    assert best.read_bytes() == before
    assert sorted(p.name for p in best.parent.glob(".best.yaml*")) == [], "a temporary file was left behind"


def test_an_unwritable_export_folder_says_what_failed(tmp_path, capsys):
    path = _study(tmp_path, "unwritable")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the export folder should be\n")
    capsys.readouterr()
    assert main(["search", str(path), "--n-trials", "1", "--export", str(blocker / "best.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"cannot write the best recipe to {blocker / 'best.yaml'}" in err and "no best.yaml was written" in err
    assert "--export" in err
    assert [t.state for t in _trials(path, "unwritable")] == [TrialState.COMPLETE]  # the trial itself is stored


def test_a_full_disk_while_saving_the_trained_model_keeps_the_previous_model(tmp_path, monkeypatch, capsys):
    import transformers

    path = _study(tmp_path, "model")
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    best, out = tmp_path / "model" / "best.yaml", tmp_path / "trained"
    assert main(["train", str(best), "--output", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert "model.safetensors" in before

    def fills_the_disk(self, output_dir=None, _internal_call=False):
        (Path(output_dir) / "model.safetensors").write_bytes(b"the first half of a model")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(transformers.Trainer, "save_model", fills_the_disk)
    capsys.readouterr()
    assert main(["train", str(best), "--output", str(out)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"cannot save the model to {out} (No space left on device)" in err and "unchanged" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not list(out.glob(".saving-*")), "the half-written save was left behind"


# ---------------------------------------------------------------------------
# Resuming with a changed study file
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("change, expected", [
    ({"techniques": {"finetune": {**FINETUNE, "learning_rate": {"low": 1e-3, "high": 5e-3, "log": False}}}},
     "techniques.finetune.learning_rate: the stored study searched it on a log scale, the study file gives log: false"),
    ({"direction": "minimize"}, "direction: the stored study 'changed' is set to maximize, the study file says minimize"),
    ({"metric": "macro_f1"}, "metric: the stored study 'changed' optimises 'accuracy', not 'macro_f1'"),
], ids=["log-flag", "direction", "metric"])
def test_resuming_with_a_changed_space_is_refused_before_any_trial(tmp_path, capsys, change, expected):
    path = _study(tmp_path, "changed")
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    _study(tmp_path, "changed", **change)
    capsys.readouterr()
    assert main(["search", str(path), "--n-trials", "2"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert expected in err and "new study name" in err
    assert [t.state for t in _trials(path, "changed")] == [TrialState.COMPLETE]


def test_keep_stored_space_resumes_with_the_stored_definition_of_what_changed(tmp_path, capsys):
    path = _study(tmp_path, "kept")
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    _study(tmp_path, "kept", techniques={"finetune": {**FINETUNE, "batch_size": [16, 32],
                                                      "learning_rate": {"low": 1e-3, "high": 5e-3, "log": False}}})
    capsys.readouterr()
    assert main(["search", str(path), "--n-trials", "1"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("or pass --keep-stored-space") == 2  # the choices and the log scale
    assert main(["search", str(path), "--n-trials", "2", "--keep-stored-space"]) == 0
    first, *resumed = _trials(path, "kept")
    assert [t.state for t in resumed] == [TrialState.COMPLETE, TrialState.COMPLETE]
    for trial in resumed:
        assert trial.distributions["finetune.learning_rate"].log is True
        assert trial.distributions["finetune.batch_size"].choices == (16,)


# ---------------------------------------------------------------------------
# Storage problems
# ---------------------------------------------------------------------------


def _corrupt_sqlite(tmp_path: Path) -> str:
    db = tmp_path / "corrupt.db"
    db.write_bytes(b"this is not an SQLite database\n" * 100)
    return f"sqlite:///{db}"


def _truncated_sqlite(tmp_path: Path) -> str:
    db = tmp_path / "truncated.db"
    study = optuna.create_study(study_name="storage", storage=f"sqlite:///{db}", direction="maximize")
    for i in range(200):
        study.add_trial(optuna.trial.create_trial(
            params={"x": i / 200}, distributions={"x": optuna.distributions.FloatDistribution(0, 1)}, value=i,
            user_attrs={"note": "padding " * 20}))
    optuna.storages.RDBStorage(f"sqlite:///{db}").engine.dispose()
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.truncate(size // 3)
    return f"sqlite:///{db}"


def _corrupt_journal(tmp_path: Path) -> str:
    log = tmp_path / "study.log"
    optuna.create_study(study_name="storage", storage=open_storage(f"journal:///{log}"), direction="maximize")
    with open(log, "ab") as f:
        f.write(b'{"op_code": 0, "worker_id"\n{"op_code": 5}\n')
    return f"journal:///{log}"


@pytest.mark.parametrize("make_url, expected", [
    (_corrupt_sqlite, "the file is not an SQLite database"),
    (_truncated_sqlite, "the SQLite file is corrupt or truncated"),
    (_corrupt_journal, "the journal file is corrupt"),
    (lambda tmp: "mongodb://localhost/studies", "unknown scheme 'mongodb'"),
    (lambda tmp: "studies.db", "'studies.db' is not a storage URL"),
    (lambda tmp: f"postgresql://autobert:secret@127.0.0.1:{free_port()}/studies", "cannot connect"),
], ids=["corrupt-sqlite", "truncated-sqlite", "corrupt-journal", "unknown-scheme", "no-scheme", "unreachable-postgresql"])
def test_storage_problems_are_one_clear_message(tmp_path, capsys, make_url, expected):
    url = make_url(tmp_path)
    path = _study(tmp_path, "storage")
    capsys.readouterr()
    assert main(["search", str(path), "--storage", url, "--n-trials", "1"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert expected in err, err
    assert "Traceback" not in err and "secret" not in err
    assert any(fix in err for fix in ("move it aside", "use sqlite:///PATH", "check that the server is running"))


# ---------------------------------------------------------------------------
# Stopping a worker
# ---------------------------------------------------------------------------


def test_sigterm_fails_the_running_trial_removes_its_folder_and_the_next_run_resumes(tmp_path):
    long = {**FINETUNE, "learning_rate": 1e-3, "epochs": 400}
    path = _study(tmp_path, "stopped", techniques={"finetune": long})
    url = f"journal:///{tmp_path / 'stopped.log'}"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "autobert"), "search", str(path), "--storage", url,
                             "--n-trials", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 90
    while time.time() < deadline and not list((tmp_path / "stopped").glob("trial-*")):
        time.sleep(0.3)
    time.sleep(1.5)  # into its training
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    (trial,) = _trials(path, "stopped", url)
    assert trial.state == TrialState.FAIL and "interrupted" in trial.user_attrs["fail_reason"]
    assert not list((tmp_path / "stopped").glob("trial-*")), "the trial's working folder was left behind"
    _study(tmp_path, "stopped", techniques={"finetune": {**long, "epochs": 1}})
    assert main(["search", str(path), "--storage", url, "--n-trials", "1"]) == 0
    assert [(t.number, t.state) for t in _trials(path, "stopped", url)] == [(0, TrialState.FAIL), (1, TrialState.COMPLETE)]
