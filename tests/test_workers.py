"""Several `autobert search` processes on one study: SQLite, a journal file and PostgreSQL.

Real worker processes on real storages. A worker is SIGKILLed mid-trial; the
others (or the next start) fail its trial and run it again once with the same
parameters, and the study ends with no lost and no duplicated trials.
PostgreSQL tests start a throwaway server (initdb into a temporary folder) and
skip, saying why, where PostgreSQL is not installed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from autobert.cli import main
from autobert.store.storage import open_storage
from autobert.testing import write_study
from autobert.testing.postgres import TemporaryPostgres, why_not_available

AUTOBERT = str(Path(sys.executable).parent / "autobert")
HEARTBEAT = {"interval": 1, "grace_period": 3}


def _study(tmp_path: Path, name: str, epochs: int = 40) -> Path:
    """A tiny study whose trials take a few seconds (``epochs`` x 6 steps), with a fast heartbeat."""
    return write_study(
        tmp_path, name=name, n_train=96, n_validation=32, only=["finetune"], heartbeat=HEARTBEAT,
        sampler={"name": "random", "seed": 0},
        techniques={"finetune": {"learning_rate": {"low": 1e-3, "high": 5e-3, "log": True}, "epochs": epochs,
                                 "batch_size": 16, "warmup_ratio": 0.0}},
    )


def _worker(path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([AUTOBERT, "search", str(path), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _finish(*procs: subprocess.Popen) -> None:
    for proc in procs:
        output, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, output


def _trials(name: str, url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(url)).trials


def _wait_running(name: str, url: str, proc: subprocess.Popen, timeout: float = 90) -> optuna.trial.FrozenTrial:
    """The first trial the process ``proc`` runs, once it is RUNNING."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            running = [t for t in _trials(name, url) if t.state == TrialState.RUNNING]
        except Exception:  # the worker may still be creating the study
            running = []
        if running:
            return running[0]
        time.sleep(0.3)
    raise AssertionError("the worker never started a trial")


def _kill_mid_trial(name: str, url: str, proc: subprocess.Popen) -> tuple[optuna.trial.FrozenTrial, int]:
    """SIGKILL ``proc`` in the middle of a trial; return that trial and how many had completed."""
    _wait_running(name, url, proc)
    time.sleep(0.5)  # into its training
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    trials = _trials(name, url)
    (lost,) = [t for t in trials if t.state == TrialState.RUNNING]
    return lost, sum(t.state == TrialState.COMPLETE for t in trials)


def _check_recovered(trials: list[optuna.trial.FrozenTrial], lost: optuna.trial.FrozenTrial, complete: int,
                     workdirs: Path) -> None:
    """The lost trial failed and ran again once with its parameters; nothing else went missing."""
    assert [t.number for t in trials] == list(range(len(trials))), "duplicate or missing trial numbers"
    by_number = {t.number: t for t in trials}
    assert by_number[lost.number].state == TrialState.FAIL
    assert by_number[lost.number].user_attrs["fail_reason"].startswith("lost: its worker stopped mid-trial")
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == lost.number]
    assert len(retries) == 1, [(t.number, t.state, t.system_attrs) for t in trials]
    (retry,) = retries
    assert retry.state == TrialState.COMPLETE and retry.params == lost.params
    assert "fail_reason" not in retry.user_attrs
    assert not list(workdirs.glob("trial-*")), "the lost trial's temporary folder was left behind"
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == complete and states.count(TrialState.FAIL) == 1, states
    # Workers starting together still draw different recipes.
    fresh = [t for t in trials if t.number != retry.number]
    assert len({t.params["finetune.learning_rate"] for t in fresh}) == len(fresh), [
        (t.number, t.state.name, t.params["finetune.learning_rate"], t.user_attrs.get("worker"), t.system_attrs) for t in trials]


def test_sqlite_refuses_a_second_worker_and_a_restart_retries_the_killed_trial(tmp_path, capsys):
    path = _study(tmp_path, "solo")
    url = f"sqlite:///{tmp_path / 'solo' / 'study.db'}"
    first = _worker(path, "--n-trials", "5")
    _wait_running("solo", url, first)
    capsys.readouterr()
    assert main(["search", str(path), "--n-trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "SQLite takes one worker at a time" in err and "postgresql://" in err and "journal:///" in err
    assert "database is locked" not in err
    lost, done = _kill_mid_trial("solo", url, first)
    # The restart knows the trial's worker is dead (it holds the lock now): failed, retried, total reached.
    assert main(["search", str(path), "--n-trials", "2"]) == 0
    _check_recovered(_trials("solo", url), lost, complete=done + 2, workdirs=tmp_path / "solo")


@pytest.fixture(scope="module")
def postgres():
    reason = why_not_available()
    if reason:
        pytest.skip(reason)
    with TemporaryPostgres() as server:
        yield server


@pytest.fixture(params=["journal", "postgresql"])
def shared_storage(request, tmp_path):
    """The URL of an empty storage that several workers can share."""
    if request.param == "journal":
        return f"journal:///{tmp_path / 'study.log'}"
    return request.getfixturevalue("postgres").database(f"workers_{os.getpid()}_{int(time.time() * 1000)}")


def test_workers_recover_a_sigkilled_workers_trial_with_no_lost_or_duplicate_trials(tmp_path, shared_storage):
    path = _study(tmp_path, "shared")
    # Two first starts at once on an empty storage: one creates the schema and the study, the other loads them.
    first = _worker(path, "--storage", shared_storage, "--n-trials", "5")
    _finish(_worker(path, "--storage", shared_storage, "--init-only"))
    lost, done = _kill_mid_trial("shared", shared_storage, first)
    time.sleep(HEARTBEAT["grace_period"])  # its heartbeat is stale from now on
    # Two more workers together: whichever starts a trial first fails the lost one and queues it again.
    _finish(*[_worker(path, "--storage", shared_storage, "--n-trials", "1") for _ in range(2)])
    trials = _trials("shared", shared_storage)
    _check_recovered(trials, lost, complete=done + 2, workdirs=tmp_path / "shared")
    survivors = {t.user_attrs["worker"] for t in trials if t.state == TrialState.COMPLETE}
    assert len(survivors - {f"{socket.gethostname()}:{first.pid}"}) == 2  # both later workers ran a trial
    assert [s.study_name for s in optuna.get_all_study_summaries(storage=open_storage(shared_storage))] == ["shared"]
