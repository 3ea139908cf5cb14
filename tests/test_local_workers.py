"""`autobert search --workers N`: N local processes share one study, with one display and one Ctrl-C.

Real processes on a real journal file (the SQLite study's workers move to one).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from autobert.store.storage import open_storage
from autobert.testing import write_study
from autobert.study.workers import Slot, plan_slots, split_trials

AUTOBERT = str(Path(sys.executable).parent / "autobert")


def _study(tmp_path: Path, name: str, epochs: int) -> Path:
    return write_study(
        tmp_path, name=name, n_train=64, n_validation=16, only=["finetune"], sampler={"name": "random", "seed": 0},
        techniques={"finetune": {"learning_rate": {"low": 1e-3, "high": 5e-3, "log": True}, "epochs": epochs,
                                 "batch_size": 16, "warmup_ratio": 0.0}},
    )


def _journal(tmp_path: Path, name: str) -> str:
    return f"journal:///{str((tmp_path / name / 'study.journal').resolve()).lstrip('/')}"


def _trials(name: str, url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(url)).trials


def _search(path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([AUTOBERT, "search", str(path), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_workers_get_a_gpu_each_when_there_are_enough_else_share_the_cores():
    assert plan_slots(2, ["0", "1", "2", "3"], 16) == [Slot("0", 8), Slot("1", 8)]
    assert plan_slots(4, [], 8) == [Slot(None, 2)] * 4
    assert plan_slots(3, [], 2) == [Slot(None, 1)] * 3  # never fewer than one thread
    assert plan_slots(3, ["5", "7"], 4) == [Slot("5", 1), Slot("7", 1), Slot("5", 1)]


def test_the_trials_are_split_so_that_they_add_up():
    assert split_trials(5, 2) == [3, 2]
    assert split_trials(4, 4) == [1, 1, 1, 1]
    assert split_trials(None, 3) == [None, None, None]


def test_two_workers_complete_the_trials_in_two_processes_with_no_lost_or_duplicate_numbers(tmp_path):
    path = _study(tmp_path, "pair", epochs=2)
    proc = _search(path, "--workers", "2", "--n-trials", "4")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    flat = " ".join(output.split())
    assert "SQLite takes one worker at a time" in flat and "pair/study.journal" in "".join(output.split())
    trials = _trials("pair", _journal(tmp_path, "pair"))
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2 and not any(w.endswith(f":{proc.pid}") for w in workers)
    assert len({t.params["finetune.learning_rate"] for t in trials}) == 4  # each worker its own draws
    assert (tmp_path / "pair" / "best.yaml").is_file()
    assert "4 complete, 0 pruned, 0 failed, 0 running of 4" in flat  # the combined display's summary


def test_ctrl_c_stops_every_worker_and_their_running_trials_are_failed_as_interrupted(tmp_path):
    path = _study(tmp_path, "stop", epochs=200)
    url = _journal(tmp_path, "stop")
    proc = _search(path, "--workers", "2", "--n-trials", "6")
    deadline = time.time() + 120
    running: list[optuna.trial.FrozenTrial] = []
    while time.time() < deadline and len(running) < 2:
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.5)
        try:
            # Running, and training: it has recorded its worker and reported an evaluation.
            running = [t for t in _trials("stop", url)
                       if t.state == TrialState.RUNNING and "worker" in t.user_attrs and t.intermediate_values]
        except Exception:  # the journal is still being created
            running = []
    assert len(running) == 2, "both workers should be training"
    pids = [int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in running]

    proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends the command
    output, _ = proc.communicate(timeout=90)
    assert proc.returncode == 130, output
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    trials = _trials("stop", url)
    seen = [(t.number, t.state.name, t.user_attrs) for t in trials]
    logs = "\n".join(p.read_text() for p in sorted((tmp_path / "stop" / "workers").glob("*.log")))
    assert not [t for t in trials if t.state == TrialState.RUNNING], (seen, output, logs)
    stopped = {t.number: t for t in trials}
    for t in running:
        assert stopped[t.number].state == TrialState.FAIL, (seen, output, logs)
        assert stopped[t.number].user_attrs["fail_reason"].startswith("interrupted"), (seen, output, logs)
    assert "Run the same command to resume" in " ".join(output.split())


def test_a_journal_write_finishes_before_a_ctrl_c_that_arrives_during_it(tmp_path):
    from autobert.store.storage import _interrupts_held

    url = f"journal:///{str((tmp_path / 'held.journal').resolve()).lstrip('/')}"
    study = optuna.create_study(study_name="held", storage=open_storage(url))
    finished = []
    # As in a terminal: a test run started in the background (`scripts/test &`) inherits SIGINT ignored.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with _interrupts_held():
                os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C came while the worker waited for the file's lock
                time.sleep(0.1)
                study.set_user_attr("written", True)
                finished.append(True)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert finished == [True] and _trials_attr(url) == {"written": True}


def _trials_attr(url: str) -> dict:
    return optuna.load_study(study_name="held", storage=open_storage(url)).user_attrs
