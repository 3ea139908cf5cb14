"""Where a study lives, and how its workers recover from each other's crashes.

Three kinds of storage, all Optuna's own:

* SQLite (``sqlite:///PATH``, the default): one worker at a time. A search holds
  :class:`SQLiteWorkerLock` while it runs, so a second worker is refused with a
  message naming the alternatives, and the trials a new worker finds RUNNING
  are known to be dead: they are failed and queued again at once.
* PostgreSQL (``postgresql://USER@HOST[:PORT]/DB``; other SQLAlchemy URLs such
  as MySQL work the same way): many workers on many machines.
* Optuna's journal file (``journal:///PATH``): many workers on one machine or
  a shared file system.

Crash recovery is Optuna's heartbeat: each running trial's worker records a
heartbeat every ``heartbeat.interval`` seconds; before a worker starts a trial,
Optuna fails every trial whose last heartbeat is older than the grace period
and calls :class:`RetryStaleTrial`, which queues it again (``heartbeat.retries``
times) with the same parameters. Optuna implements the heartbeat for RDB
storages; :class:`JournalStorageWithHeartbeat` implements the same contract for
the journal file, with the heartbeat kept in a trial system attribute.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from autobert.config.schema import HeartbeatConfig, StudyConfig
from autobert.errors import AutobertError, ConfigError
from autobert.store import record
from autobert.store.record import TrialRecord

SCHEMES = "sqlite:///PATH (one worker), postgresql://USER@HOST[:PORT]/DB or journal:///PATH (many workers)"
RDB_DIALECTS = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql")
SCALING_OUT = "see 'Scaling out' in the documentation (docs/scaling-out.md)"


def storage_kind(url: str) -> str:
    """``"sqlite"``, ``"journal"`` or ``"rdb"`` (PostgreSQL and other SQLAlchemy URLs)."""
    if url.startswith("journal:"):
        return "journal"
    return "sqlite" if url.startswith("sqlite:") else "rdb"


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    if storage_kind(url) != "rdb":
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@", 1)[-1] if "@" in url else url


class RetryStaleTrial(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a dead worker's trial, without the dead run's user attributes.

    The queued trial keeps the parameters (and Optuna's ``failed_trial`` and
    ``retry_history`` system attributes); what the lost run had recorded (its
    seed values so far, its worker) would be wrong on the new run. The lost
    run's temporary folder (``trial-N-*`` under ``workdirs``) is removed where
    it is visible from here.
    """

    def __init__(self, max_retry: int | None = None, workdirs: Path | None = None):
        super().__init__(max_retry=max_retry)
        self.workdirs = workdirs

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.workdirs is not None and self.workdirs.is_dir():
            for folder in self.workdirs.glob(f"trial-{trial.number}-*"):
                shutil.rmtree(folder, ignore_errors=True)
        super().__call__(study, record.without_record(trial))


def _note_lost(storage: BaseStorage, trial_ids: list[int], why: str) -> list[int]:
    """Record why each trial is about to fail; drop the ones another worker has failed already."""
    noted = []
    for trial_id in trial_ids:
        try:
            record.store_by_id(storage, trial_id, fail_reason=f"lost: its worker stopped mid-trial ({why})")
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        noted.append(trial_id)
    return noted


def _grace_words(interval: int, grace_period: int | None) -> str:
    return f"no heartbeat for over {grace_period or 2 * interval} s: killed, crashed or cut off"


class RDBStorageWithReasons(RDBStorage):
    """Optuna's RDB storage; a trial failed for a stale heartbeat says so in ``fail_reason``."""

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        why = _grace_words(self.heartbeat_interval, self.grace_period)
        return _note_lost(self, super()._get_stale_trial_ids(study_id), why)


def _retry(retries: int, workdirs: Path | None = None) -> RetryStaleTrial:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryStaleTrial(max_retry=retries, workdirs=workdirs)


@contextmanager
def _interrupts_held():
    """Hold back Ctrl-C and SIGTERM until the block has run, then deliver them (main thread only).

    A journal write interrupted while it waits for the file's lock has Optuna
    release the lock, which then belongs to another worker (its ``acquire``
    releases on any exception), and a replay interrupted half-way leaves this
    process's view of the study half-updated. When `--workers` stops all
    workers at once, both happen; so journal reads and writes finish first.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            handler = previous[pending[0]]
            if callable(handler):
                handler(pending[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), pending[0])


class _JournalFile(JournalFileBackend):
    """Optuna's journal file whose appends are never cut short by a signal (see :func:`_interrupts_held`)."""

    def append_logs(self, logs) -> None:
        with _interrupts_held():
            super().append_logs(logs)


class JournalStorageWithHeartbeat(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage with Optuna's heartbeat contract.

    The heartbeat is the time (seconds since the epoch) in the trial's
    ``autobert:heartbeat`` system attribute; a RUNNING trial is stale when
    both that and its start are older than ``grace_period``. Workers on
    several machines sharing the file need roughly synchronised clocks (NTP).
    """

    def __init__(self, backend: JournalFileBackend, *, interval: int, grace_period: int | None,
                 callback: Callable[[optuna.Study, FrozenTrial], None] | None):
        super().__init__(backend)
        self._interval = interval
        self._grace_period = grace_period or 2 * interval
        self._callback = callback

    def _sync_with_backend(self) -> None:
        with _interrupts_held():
            super()._sync_with_backend()

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            record.store_heartbeat(self, trial_id, time.time())
        except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
            pass  # the trial just finished, or another worker failed it

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            # A retried trial inherits its original's heartbeat; its own start is newer.
            started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
            last = max(float(TrialRecord.from_trial(trial).heartbeat or 0.0), started)
            if now - last > self._grace_period:
                stale.append(trial._trial_id)
        return _note_lost(self, stale, _grace_words(self._interval, self._grace_period))

    def get_heartbeat_interval(self) -> int | None:
        return self._interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._callback


def open_storage(url: str, resolve: Callable[[str], Path] | None = None,
                 heartbeat: HeartbeatConfig = HeartbeatConfig(), workdirs: Path | None = None,
                 must_exist: bool = False) -> BaseStorage:
    """Open (creating the schema if needed) the storage at ``url``.

    Args:
        url: ``sqlite:///PATH``, ``journal:///PATH`` or another SQLAlchemy URL.
        resolve: Turns a relative journal path into a path (e.g. relative to the study file).
        heartbeat: Heartbeat interval, grace period and retries (not used by SQLite).
        workdirs: The folder of the trials' temporary folders (a lost trial's is removed).
        must_exist: For readers of stored studies (a warm start, a portfolio's scores): a SQLite or journal
            file that does not exist is an error naming the path, not a new empty file.

    Raises:
        ConfigError: an unknown scheme, a missing database driver, a corrupt
            file, or a server that cannot be reached, each with what to do.
    """
    retry = _retry(heartbeat.retries, workdirs)
    if must_exist:
        _check_exists(url, resolve)
    if storage_kind(url) == "journal":
        return _open_journal((resolve or Path)(url.removeprefix("journal:").removeprefix("//")), heartbeat, retry)
    given = url
    for short in ("postgres://", "postgresql://"):
        if url.startswith(short):
            # SQLAlchemy's default PostgreSQL driver differs between versions; autobert depends on psycopg 3.
            url = "postgresql+psycopg://" + url.removeprefix(short)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme.split("+", 1)[0] not in RDB_DIALECTS:
        raise ConfigError("storage", [
            f"storage: {url!r} is not a storage URL autobert knows"
            + (f" (unknown scheme {scheme!r})" if scheme else "")
            + f"; use {SCHEMES}"
        ])
    kind = storage_kind(url)
    engine_kwargs: dict = {}
    if kind == "sqlite":
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            _check_sqlite_file(Path(path))
        # Readers (`autobert best`, `report`) wait for the worker's write instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif scheme.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _with_retries(lambda: RDBStorageWithReasons(
            url, engine_kwargs=engine_kwargs,
            # SQLite has one worker, whose lock tells a dead worker's trials at once (see recover_dead_trials).
            heartbeat_interval=None if kind == "sqlite" else heartbeat.interval,
            grace_period=None if kind == "sqlite" else heartbeat.grace_period,
            heartbeat_stale_trial_callback=None if kind == "sqlite" else retry,
        ), given)


def _with_retries(create: Callable[[], BaseStorage], url: str, attempts: int = 5) -> BaseStorage:
    """Create an RDB storage; workers starting together may race to create its tables."""
    import random

    for attempt in range(attempts):
        try:
            return create()
        except ImportError as exc:
            driver = "'psycopg[binary]'" if url.startswith("postgres") else "the database's driver"
            raise ConfigError("storage", [
                f"storage {shown(url)!r}: the database driver is not installed ({exc}); pip install {driver}"
            ]) from None
        except Exception as exc:
            if _is_create_race(exc) and attempt + 1 < attempts:
                time.sleep(random.uniform(0.2, 1.0))
                continue
            raise ConfigError("storage", [storage_problem(url, exc)]) from None
    raise AssertionError("unreachable")


def _is_create_race(exc: Exception) -> bool:
    # Two workers creating the schema at once: one wins, the other sees a duplicate table, type or row.
    text = str(exc).lower()
    return type(exc).__name__ in ("IntegrityError", "ProgrammingError") and (
        "already exists" in text or "duplicate" in text or "unique" in text
    )


def make_storage(study: StudyConfig, override: str | None = None) -> BaseStorage:
    """The study's storage: an SQLAlchemy URL (sqlite, postgresql, mysql) or
    ``journal:///PATH`` for Optuna's journal file (relative to the study file);
    see :mod:`autobert.store.storage`."""
    return open_storage(override or study.storage_url, study.resolve_path, study.heartbeat, study.study_dir)


def storage_problem(url: str, exc: Exception) -> str:
    """One line for people: what went wrong opening ``url`` and what to do."""
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    kind = storage_kind(url)
    if kind in ("sqlite", "journal") and ("not a database" in first or "malformed" in first or "Invalid log" in first
                                         or type(exc).__name__ == "JSONDecodeError"):
        return (f"storage {url!r}: the {'SQLite' if kind == 'sqlite' else 'journal'} file is corrupt or truncated "
                f"({first}); move it aside to start a new study there, or restore it from a backup")
    if kind == "rdb" and type(exc).__name__ == "OperationalError":
        return (f"storage {shown(url)!r}: cannot connect ({first}); check that the server is running and "
                f"reachable, and that the user and database exist ({SCALING_OUT} for a local PostgreSQL)")
    return (f"storage {shown(url)!r}: cannot open it ({type(exc).__name__}: {first}); check the URL, "
            "that the server is running, and that the path is writable")


def _check_exists(url: str, resolve: Callable[[str], Path] | None) -> None:
    kind = storage_kind(url)
    if kind == "journal":
        path = (resolve or Path)(url.removeprefix("journal:").removeprefix("//"))
        where = "a relative journal path is relative to the study file"
    elif kind == "sqlite" and url.removeprefix("sqlite:///") not in ("", ":memory:"):
        path = Path(url.removeprefix("sqlite:///"))
        where = "a relative SQLite path is relative to the current folder, as SQLAlchemy reads it"
    else:
        return
    if not path.exists():
        raise ConfigError("storage", [
            f"storage {url!r}: no such file {path.absolute()} ({where}); check the path, or give it absolute"
        ])


def _check_sqlite_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size:
        with open(path, "rb") as f:
            header = f.read(16)
        if header != b"SQLite format 3\x00":
            raise ConfigError("storage", [
                f"storage {path}: the file is not an SQLite database (corrupt, truncated or another kind of file); "
                "move it aside to start a new study there, or restore it from a backup"
            ])


def _open_journal(path: Path, heartbeat: HeartbeatConfig, retry: RetryStaleTrial) -> JournalStorage:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return JournalStorageWithHeartbeat(
            _JournalFile(str(path)), interval=heartbeat.interval, grace_period=heartbeat.grace_period,
            callback=retry,
        )
    except (ValueError, KeyError, TypeError) as exc:  # json's decode error is a ValueError
        raise ConfigError("storage", [
            f"storage journal:///{path}: the journal file is corrupt ({type(exc).__name__}: {exc}); "
            "move it aside to start a new study there, or restore it from a backup"
        ]) from None
    except OSError as exc:
        raise ConfigError("storage", [
            f"storage journal:///{path}: cannot open it ({exc.strerror}); check that the folder is writable"
        ]) from None


# ---------------------------------------------------------------------------
# SQLite: one worker at a time
# ---------------------------------------------------------------------------


class SQLiteWorkerLock:
    """An exclusive lock beside an SQLite study, held while a search runs.

    The operating system releases it when the process ends, however it ends,
    so a SIGKILLed worker never leaves it behind.
    """

    def __init__(self, url: str):
        self.db = Path(url.removeprefix("sqlite:///"))
        self.path = self.db.with_name(self.db.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> "SQLiteWorkerLock":
        try:
            import fcntl
        except ImportError:  # not on a POSIX system: no lock, as before
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AutobertError(
                f"storage {self.db}: another `autobert search` (process {holder}) is running on this SQLite "
                "study, and SQLite takes one worker at a time. Wait for it to finish, or run several workers on "
                f"PostgreSQL (--storage postgresql://USER@HOST/DB) or a journal file (--storage journal:///PATH); "
                f"{SCALING_OUT}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    @property
    def held(self) -> bool:
        """Whether this process holds the lock (never, where the OS has no ``flock``)."""
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


def recover_dead_trials(opened: optuna.Study, retries: int, workdirs: Path | None = None) -> list[int]:
    """Fail (and queue again) trials left RUNNING by a dead worker; return their numbers.

    Only for SQLite, called while holding :class:`SQLiteWorkerLock`: no other
    worker can be running, so every RUNNING trial belongs to a dead one.
    Other storages leave this to Optuna's heartbeat.
    """
    storage = opened._storage
    retry = _retry(retries, workdirs)
    failed = []
    for trial in opened.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _note_lost(storage, [trial._trial_id], "killed or crashed; found by the next search"):
            continue
        try:
            if storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                failed.append(trial.number)
                retry(opened, storage.get_trial(trial._trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
    return failed


def is_retry(trial: FrozenTrial) -> int | None:
    """The number of the lost trial ``trial`` re-runs, or None."""
    return TrialRecord.from_trial(trial).retry_of


__all__ = ["make_storage", "open_storage", "storage_kind", "SQLiteWorkerLock", "recover_dead_trials", "JournalStorageWithHeartbeat",
           "RetryStaleTrial", "is_retry", "shown"]
