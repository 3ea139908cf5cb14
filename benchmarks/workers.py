"""Workers on one study: trials per minute with 1, 2 and 4 workers, and crash recovery time.

For each storage (PostgreSQL, a journal file) and each number of workers, a
fresh study of tiny models (autobert.testing.write_study: a 2-layer BERT,
hidden size 32, on a synthetic task) is created with ``--init-only``, then N
``autobert search`` processes run ``--trials-per-worker`` trials each. Reported:

* trials/min (wall): completed trials over the time from starting the workers
  to the last one exiting (process start-up included);
* trials/min (trials): completed trials over the span from the first trial's
  start to the last trial's end, as Optuna recorded them (start-up excluded).

Then the recovery time: two workers run; one is SIGKILLed mid-trial; the time
from the kill to its trial being failed and queued again by the other worker
is polled from the storage. It is about the heartbeat grace period (less the
time since the last heartbeat) plus the wait for the surviving worker's next
trial start.

PostgreSQL runs on a throwaway server (autobert.testing.postgres); it is
skipped, saying why, where PostgreSQL is not installed.

    python benchmarks/workers.py --quick      # a smoke run: 3-5 minutes on 2 busy cores
    python benchmarks/workers.py              # 1, 2, 4 workers x 8 trials, 3 kills per storage
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import optuna
from optuna.trial import TrialState

from autobert.store.record import TrialRecord
from autobert.store.storage import open_storage
from autobert.testing import write_study
from autobert.testing.postgres import TemporaryPostgres, why_not_available

ROOT = Path(__file__).resolve().parent.parent
AUTOBERT = str(Path(sys.executable).parent / "autobert")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 and 2 workers, 2 trials each, one kill per storage")
    p.add_argument("--workers", default="1,2,4", help="numbers of workers to compare (default 1,2,4)")
    p.add_argument("--storages", default="postgresql,journal", help="postgresql, journal or both")
    p.add_argument("--trials-per-worker", type=int, default=8)
    p.add_argument("--epochs", type=int, default=20, help="epochs per trial (96 rows, batch 16: 6 steps an epoch)")
    p.add_argument("--kills", type=int, default=3, help="SIGKILL measurements per storage")
    p.add_argument("--heartbeat-interval", type=int, default=2)
    p.add_argument("--grace-period", type=int, default=6)
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (OMP_NUM_THREADS)")
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks" / "workers.md")
    args = p.parse_args(argv)
    if args.quick:
        args.workers, args.trials_per_worker, args.kills = "1,2", 2, 1
    args.worker_counts = [int(n) for n in args.workers.split(",") if n.strip()]
    args.storage_kinds = [s.strip() for s in args.storages.split(",") if s.strip()]
    return args


def write(folder: Path, name: str, args) -> Path:
    return write_study(
        folder, name=name, n_train=96, n_validation=32, only=["finetune"],
        heartbeat={"interval": args.heartbeat_interval, "grace_period": args.grace_period},
        sampler={"name": "random", "seed": 0},
        techniques={"finetune": {"learning_rate": {"low": 1e-3, "high": 5e-3, "log": True}, "epochs": args.epochs,
                                 "batch_size": 16, "warmup_ratio": 0.0}},
    )


def worker(path: Path, url: str, *extra: str, threads: int = 1) -> subprocess.Popen:
    return subprocess.Popen([AUTOBERT, "search", str(path), "--storage", url, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": str(threads)})


def finish(proc: subprocess.Popen) -> None:
    output, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"a worker failed ({proc.returncode}):\n{output[-3000:]}")


def trials(name: str, url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(url)).trials


class Storages:
    """Fresh, empty storages of one kind, one per measurement."""

    def __init__(self, kind: str, folder: Path, pg: TemporaryPostgres | None):
        self.kind, self.folder, self.pg, self.count = kind, folder, pg, 0

    def new(self) -> str:
        self.count += 1
        if self.kind == "journal":
            return f"journal:///{self.folder / f'study-{self.count}.log'}"
        return self.pg.database(f"bench_{self.count}")


def throughput(storages: Storages, n_workers: int, args, folder: Path) -> dict:
    url = storages.new()
    name = f"throughput{storages.count}"
    path = write(folder, name, args)
    finish(worker(path, url, "--init-only"))
    start = time.perf_counter()
    procs = [worker(path, url, "--n-trials", str(args.trials_per_worker), threads=args.threads) for _ in range(n_workers)]
    for proc in procs:
        finish(proc)
    wall = time.perf_counter() - start
    done = [t for t in trials(name, url) if t.state == TrialState.COMPLETE]
    numbers = [t.number for t in trials(name, url)]
    assert len(numbers) == len(set(numbers)) == n_workers * args.trials_per_worker, numbers
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return {"workers": n_workers, "trials": len(done), "wall_s": wall,
            "per_min_wall": 60 * len(done) / wall, "per_min_trials": 60 * len(done) / span}


def recovery(storages: Storages, args, folder: Path) -> float:
    """Seconds from SIGKILLing a worker mid-trial to its trial being queued again by another."""
    url = storages.new()
    name = f"recovery{storages.count}"
    path = write(folder, name, args)
    finish(worker(path, url, "--init-only"))
    survivor = worker(path, url, "--n-trials", "1000", threads=args.threads)
    victim = worker(path, url, "--n-trials", "1000", threads=args.threads)
    victim_tag = f":{victim.pid}"
    try:
        lost = None
        while lost is None:
            if victim.poll() is not None:
                raise SystemExit(f"the worker to kill exited early:\n{victim.communicate()[0][-3000:]}")
            running = [t for t in trials(name, url) if t.state == TrialState.RUNNING
                       and str(TrialRecord.from_trial(t).worker or "").endswith(victim_tag)]
            lost = running[0] if running else None
            time.sleep(0.2)
        time.sleep(0.5)
        victim.send_signal(signal.SIGKILL)
        killed = time.perf_counter()
        victim.wait()
        while True:
            if any(TrialRecord.from_trial(t).retry_of == lost.number for t in trials(name, url)):
                return time.perf_counter() - killed
            if time.perf_counter() - killed > 10 * args.grace_period + 600:
                raise SystemExit("the killed worker's trial was never queued again")
            time.sleep(0.2)
    finally:
        for proc in (survivor, victim):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.communicate()


def versions() -> str:
    names = ["optuna", "torch", "transformers", "sqlalchemy", "psycopg"]
    found = []
    for n in names:
        try:
            found.append(f"{n} {metadata.version(n)}")
        except metadata.PackageNotFoundError:
            pass
    return f"autobert {metadata.version('autobert')}, " + ", ".join(found)


def report(args, rows: dict, kills: dict, skipped: dict, pg_version: str | None) -> str:
    command = "python benchmarks/workers.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        "# Workers on one study: throughput and crash recovery",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        f"- versions: {versions()}" + (f", {pg_version}" if pg_version else ""),
        f"- command: `{command.strip()}`",
        f"- task: tiny BERT (2 layers, hidden 32), 96 training and 32 validation rows, finetune {args.epochs} "
        f"epoch(s) at batch 16 ({6 * args.epochs} steps a trial), {args.trials_per_worker} trials per worker, "
        f"{args.threads} torch thread(s) per worker",
        f"- heartbeat: interval {args.heartbeat_interval} s, grace period {args.grace_period} s",
        "",
        "Trials per minute: *wall* counts from starting the workers to the last one exiting (start-up "
        "included); *trials* counts from the first trial's start to the last trial's end. With more workers "
        "than CPU cores the workers share the cores, so the speed-up measures the storage's overhead and "
        "the cores, not the storage alone.",
        "",
        "| storage | workers | completed trials | wall time (s) | trials/min (wall) | trials/min (trials) | speed-up (trials) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, measured in rows.items():
        base = measured[0]["per_min_trials"] if measured else None
        for r in measured:
            lines.append(f"| {kind} | {r['workers']} | {r['trials']} | {r['wall_s']:.1f} | {r['per_min_wall']:.1f} | "
                         f"{r['per_min_trials']:.1f} | {r['per_min_trials'] / base:.2f}x |")
    lines += ["", "Time from a worker's SIGKILL (mid-trial) to its trial being failed and queued again by the "
              "other worker. The trial is stale once its last heartbeat (0 to one interval before the kill) is "
              "older than the grace period, and is noticed when the other worker next starts a trial, so expect "
              "between grace - interval and grace + one trial's duration:", "",
              "| storage | kills | mean (s) | min (s) | max (s) |", "|---|---:|---:|---:|---:|"]
    for kind, seconds in kills.items():
        if seconds:
            lines.append(f"| {kind} | {len(seconds)} | {statistics.fmean(seconds):.1f} | {min(seconds):.1f} | {max(seconds):.1f} |")
    for kind, why in skipped.items():
        lines += ["", f"{kind}: skipped ({why})"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    rows: dict[str, list[dict]] = {}
    kills: dict[str, list[float]] = {}
    skipped: dict[str, str] = {}
    pg_version = None
    with tempfile.TemporaryDirectory(prefix="autobert-workers-") as tmp:
        folder = Path(tmp)
        for kind in args.storage_kinds:
            pg = None
            if kind == "postgresql":
                why = why_not_available()
                if why:
                    skipped[kind] = why
                    print(f"{kind}: skipped ({why})", flush=True)
                    continue
                pg = TemporaryPostgres().start()
                pg_version = subprocess.run([str(pg.bin / "postgres"), "--version"], capture_output=True,
                                            text=True).stdout.strip()
            try:
                storages = Storages(kind, folder, pg)
                rows[kind] = []
                for n in args.worker_counts:
                    r = throughput(storages, n, args, folder)
                    rows[kind].append(r)
                    print(f"{kind}: {n} worker(s): {r['trials']} trials, {r['per_min_wall']:.1f}/min wall, "
                          f"{r['per_min_trials']:.1f}/min in trials", flush=True)
                kills[kind] = []
                for _ in range(args.kills):
                    kills[kind].append(recovery(storages, args, folder))
                    print(f"{kind}: re-queued {kills[kind][-1]:.1f} s after the SIGKILL", flush=True)
            finally:
                if pg is not None:
                    pg.stop()
    text = report(args, rows, kills, skipped, pg_version)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
