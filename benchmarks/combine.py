"""Does keeping what the search trained pay? autobert's single best recipe against its combination (soup or ensemble).

The protocol of ``benchmarks/search_strategy.py`` (same sub-sampled tasks, same encoder, same leave-one-task-out
warm start, same budget-aware engine): one autobert search per task and budget, with ``combine: auto`` (the
default). Its winner is then re-trained on fresh seeds twice:

* ``single``: the single best recipe (``autobert train --single``), on seeds 100, 101, ...;
* ``combined``: the combination the search chose (``autobert train``), every member on its own seed plus the
  fresh seed as an offset. Where ``auto`` kept the single recipe, ``combined`` is the single recipe.

``Trainer.hyperparameter_search`` is read from ``search_strategy.py``'s stored cells
(``docs/benchmarks/search_strategy-cells/<task>-hp-<budget>.json``, the same tasks, sample and fresh seeds),
not run again. Each cell writes ``<out>/<task>-<budget>.json`` and is skipped when it exists::

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/combine.py run --task sst2 --budget 300 &
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/combine.py run --task mpqa --budget 300
    python benchmarks/combine.py report
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from _common import ROOT, t_interval  # benchmarks/ is on sys.path when run as a script
import search_strategy
from search_strategy import autobert_study, counts, loto_portfolio, versions, write_splits

# The score matrix the built-in portfolio came from, as committed (runs/ is not kept between machines).
search_strategy.PORTFOLIO_STORAGE = f"journal:///{ROOT / 'docs' / 'benchmarks' / 'portfolio-scores.journal'}"

CELLS = ROOT / "docs" / "benchmarks" / "combine-cells"
HP_CELLS = ROOT / "docs" / "benchmarks" / "search_strategy-cells"
REPORT = ROOT / "docs" / "benchmarks" / "combine.md"


def run_cell(task: str, budget: float, seeds: list[int], train_rows: int, size: int) -> dict:
    import optuna

    from autobert.config.schema import load_frozen
    from autobert.run.data import load_task_data
    from autobert.run.pipeline import quiet_transformers, run_seeds
    from autobert.run.plugin_manager import get_plugin_manager
    from autobert.store.record import StudyRecord
    from autobert.study.search import export_best, replay_trial, run_search
    from autobert.study.train import train_combination

    quiet_transformers()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix=f"autobert-combine-{task}-"))
    paths = write_splits(task, train_rows, work)
    portfolio, names = loto_portfolio(task, size, work)
    study = autobert_study(task, paths, work, "combined", warm_start=str(portfolio), budget={"timeout": budget})
    pm = get_plugin_manager(disable=study.disable)
    data = load_task_data(study)
    row: dict = {"task": task, "budget": budget, "portfolio": names, "seeds": seeds, "train_rows": train_rows,
                 "study_dir": str(study.study_dir)}
    start = time.perf_counter()
    opened = run_search(study, pm, data, timeout=budget)
    row["search_seconds"] = time.perf_counter() - start
    frozen = load_frozen(export_best(study, opened, pm, data))
    combination = StudyRecord.from_study(opened).combination or {}
    row.update(trials=counts(opened.trials), recipe=frozen.params, search_value=frozen.provenance.value,
               combination={k: combination.get(k) for k in ("kind", "variant", "value", "single", "holdout",
                                                           "reason", "candidates")},
               members=[{k: m[k] for k in ("trial", "seed", "weight", "value")}
                        for m in combination.get("members") or []])
    start = time.perf_counter()
    single = run_seeds(frozen, replay_trial(frozen), pm, data, seeds=seeds, evaluate_test=True)
    row["single"] = {"test": [r.test_metrics["accuracy"] for r in single.results],
                     "validation": [r.value for r in single.results], "seconds": time.perf_counter() - start}
    if combination.get("kind") in ("soup", "ensemble"):
        with tempfile.TemporaryDirectory(prefix="combined-", dir=work) as out:
            start = time.perf_counter()
            trained = train_combination(frozen, pm, data, offsets=seeds, output=Path(out))
            metrics = trained.metrics
            row["combined"] = {"test": [trained.scores[o]["test"]["accuracy"] for o in seeds],
                               "validation": [trained.scores[o]["validation"]["accuracy"] for o in seeds],
                               "seconds": time.perf_counter() - start,
                               "inference_ms_per_1000": metrics.get("inference_ms_per_1000"),
                               "size_bytes": metrics.get("size_bytes")}
    else:
        row["combined"] = dict(row["single"], same_as_single=True)
    return row


def cmd_redecide(args) -> int:
    """Decide a finished cell's combination again with the current rule, from its stored study (the runs' stored
    probabilities and weights), and record it in the cell as ``final_rule``: for a cell that ran before the rule
    changed. Where the rule now keeps the single recipe, the cell's ``single`` figures are the combined ones."""
    import optuna

    from autobert.config.schema import StudyConfig
    from autobert.run.data import load_task_data
    from autobert.run.pipeline import quiet_transformers
    from autobert.run.plugin_manager import get_plugin_manager
    from autobert.study.combine import combine

    quiet_transformers()
    path = CELLS / f"{args.task}-{int(args.budget)}.json"
    row = json.loads(path.read_text())
    folder = Path(args.study_dir)
    study = autobert_study(args.task, {s: str(folder.parent / f"{args.task}-{s}.csv")
                                       for s in ("train", "validation", "test")},
                           folder.parent, folder.name, warm_start="none", budget={"timeout": args.budget})
    study = StudyConfig.model_validate({**study.model_dump(), "base_dir": folder.parent})
    opened = optuna.load_study(study_name=folder.name, storage=study.storage_url)
    result = combine(study, get_plugin_manager(disable=study.disable), load_task_data(study), opened)
    row["final_rule"] = {k: result[k] for k in ("kind", "variant", "holdout", "reason")}
    path.write_text(json.dumps(row, indent=1) + "\n")
    print(f"{args.task} {int(args.budget)}: {result['kind']}; {result['reason']}")
    return 0


def cmd_run(args) -> int:
    CELLS.mkdir(parents=True, exist_ok=True)
    path = CELLS / f"{args.task}-{int(args.budget)}.json"
    if path.exists():
        print(f"{path} exists: skipped")
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.perf_counter()
    row = run_cell(args.task, args.budget, seeds, args.train_rows, args.portfolio_size)
    row.update(date=date.today().isoformat(), versions=versions(), seconds=time.perf_counter() - start,
               command="python benchmarks/combine.py " + " ".join(sys.argv[1:]))
    path.write_text(json.dumps(row, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


def combined_test(c: dict) -> list[float]:
    """The combined arm's test values under the final rule: where the rule now keeps the single recipe (the cell ran
    before the rule changed; see ``redecide``), the single recipe's."""
    final = c.get("final_rule") or {}
    if final.get("kind") == "none" and c["combination"].get("kind") not in (None, "none"):
        return c["single"]["test"]
    return c["combined"]["test"]


def _ms(values: list[float]) -> str:
    mean = 100 * statistics.mean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}"


def _diff(a: list[float], b: list[float]) -> tuple[float, float, float]:
    return t_interval([100 * (x - y) for x, y in zip(a, b)])


def cmd_report(args) -> int:
    cells = [json.loads(p.read_text()) for p in sorted(CELLS.glob("*.json"))]
    if not cells:
        print("no cells yet: run `python benchmarks/combine.py run --task T --budget B` first")
        return 1
    budgets = sorted({c["budget"] for c in cells})
    lines = ["# Keeping what the search trained: single recipe vs. combination (MiniLM)", "",
             f"Run on {cells[0]['date']}: {cells[0]['versions']}. Each task's cell ran in its own process, pinned to "
             "its own core with one torch thread (`OMP_NUM_THREADS=1 taskset -c N`), two cells side by side.",
             f"Data: {', '.join(sorted({c['task'] for c in cells}))} from `../shared/data`, training sets sub-sampled to "
             f"{cells[0]['train_rows']} rows (seed 1, as `search_strategy.py`), full validation (searched on) and test "
             f"(winners only). Encoder all-MiniLM-L6-v2, max length 64. Fresh seeds: {cells[0]['seeds']}.",
             "The `Trainer.hyperparameter_search` column is `search_strategy.py`'s stored cell for the same task, "
             "sample and budget (run on 2026-12-02, optuna 5.0.0), on the same fresh seeds; it was not run again.",
             "Command per cell: `" + cells[0]["command"] + "`; report: `python benchmarks/combine.py report`.", ""]
    raw = {}
    for budget in budgets:
        rows = [c for c in cells if c["budget"] == budget]
        lines += [f"## {int(budget)} s of search", "", "### Test accuracy (%, mean ± std over the fresh seeds)", "",
                  "| task | Trainer.hyperparameter_search | autobert, single best recipe | autobert, combined | "
                  "what `auto` chose |", "|---|---:|---:|---:|---|"]
        diffs: dict[str, list[float]] = {"single": [], "combined": [], "combined - single": []}
        diff_tasks: dict[str, list[str]] = {name: [] for name in diffs}
        for c in rows:
            n = len(c["seeds"])
            hp_path = HP_CELLS / f"{c['task']}-hp-{int(budget)}.json"
            hp = json.loads(hp_path.read_text())["test"][:n] if hp_path.exists() else None
            chosen = c["combination"].get("kind") or "none"
            what = (f"{chosen} ({c['combination'].get('variant')}) of {len(c['members'])} runs" if chosen != "none"
                    else "single recipe kept")
            final = (c.get("final_rule") or {}).get("kind")
            if final and final != chosen:
                what += (f"; the final rule keeps the single recipe (bootstrap noise "
                         f"{100 * c['final_rule']['holdout']['noise']:.2f} points): the column shows it, the "
                         f"{chosen} as run scored {_ms(c['combined']['test'])}")
            lines.append(f"| {c['task']} | {_ms(hp) if hp else 'not run'} | {_ms(c['single']['test'])} | "
                         f"{_ms(combined_test(c))} | {what} |")
            if hp:
                diffs["single"] += [100 * (x - y) for x, y in zip(c["single"]["test"], hp)]
                diffs["combined"] += [100 * (x - y) for x, y in zip(combined_test(c), hp)]
                diff_tasks["single"] += [c["task"]] * n
                diff_tasks["combined"] += [c["task"]] * n
            diffs["combined - single"] += [100 * (x - y) for x, y in zip(combined_test(c), c["single"]["test"])]
            diff_tasks["combined - single"] += [c["task"]] * n
        lines += ["", "### Paired differences (test, points; 95 % t interval over task × seed pairs)", "",
                  "| comparison | per task | overall |", "|---|---|---:|"]
        for name, label in (("single", "autobert single − hyperparameter_search"),
                            ("combined", "autobert combined − hyperparameter_search"),
                            ("combined - single", "autobert combined − autobert single")):
            per_task = []
            for c in rows:
                n = len(c["seeds"])
                hp_path = HP_CELLS / f"{c['task']}-hp-{int(budget)}.json"
                if name == "combined - single":
                    a, b = combined_test(c), c["single"]["test"]
                elif hp_path.exists():
                    a = combined_test(c) if name == "combined" else c["single"]["test"]
                    b = json.loads(hp_path.read_text())["test"][:n]
                else:
                    continue
                mean, low, high = _diff(a, b)
                per_task.append(f"{c['task']} {mean:+.2f} [{low:+.1f}, {high:+.1f}]")
            values = diffs[name]
            if values:
                _, low, high = t_interval(values)
                overall = f"**{statistics.mean(values):+.2f}** [{low:+.2f}, {high:+.2f}]"
                without = [d for d, task in zip(values, diff_tasks[name]) if task != "sst5"]
                if name != "combined - single" and len(without) < len(values) and len(without) > 1:
                    _, low, high = t_interval(without)
                    overall += f"; without sst5 {statistics.mean(without):+.2f} [{low:+.2f}, {high:+.2f}]"
                lines.append(f"| {label} | {'; '.join(per_task)} | {overall} |")
        ratios = []
        for c in rows:
            hp_path = HP_CELLS / f"{c['task']}-hp-{int(budget)}.json"
            if hp_path.exists():
                hp = json.loads(hp_path.read_text())["test"][:len(c["seeds"])]
                ratios.append(f"{c['task']} {statistics.stdev(combined_test(c)) / statistics.stdev(hp):.2f}")
        if ratios:
            lines += ["", "Test std of autobert combined over the fresh seeds, as a share of the hyperparameter "
                      "search's (goal: at most 0.5): " + ", ".join(ratios) + "."]
        lines += ["", "### What each search did and what the combination cost", "",
                  "| task | search s (of the budget) | trials | combination candidates (held-out half: gain over the "
                  "single recipe, points) | chosen | retrain s (single / combined, all seeds) | inference ms per 1,000 "
                  "sentences (one core) | size MB |",
                  "|---|---:|---|---|---|---:|---:|---:|"]
        for c in rows:
            cand = "; ".join(f"{x['kind']} {x['variant']} ({x['members']} runs) {x['gain'] * 100:+.2f}"
                             for x in c["combination"].get("candidates") or []) or "—"
            comb = c["combined"]
            ms = comb.get("inference_ms_per_1000")
            size = comb.get("size_bytes")
            kind = c["combination"].get("kind") or "none"
            cost = {"soup": "1×", "ensemble": f"{len(c['members'])}×"}.get(kind, "1×")
            lines.append(f"| {c['task']} | {c['search_seconds']:.0f} ({100 * c['search_seconds'] / budget:.0f} %) | "
                         f"{c['trials']} | {cand} | {kind} | {c['single']['seconds']:.0f} / {comb['seconds']:.0f} | "
                         f"{f'{ms:,.0f}' if ms is not None else '—'} ({cost} one model) | "
                         f"{f'{size / 1e6:.0f}' if size else '—'} |")
        lines.append("")
        raw[str(int(budget))] = rows
    if REPORT.exists():
        old = REPORT.read_text()
        if "## Reading" in old:
            lines += [old[old.index("## Reading"):].rstrip(), ""]
    REPORT.write_text("\n".join(lines) + "\n")
    (REPORT.with_suffix(".json")).write_text(json.dumps(raw, indent=1) + "\n")
    print(f"wrote {REPORT}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--task", required=True)
    run.add_argument("--budget", type=float, required=True)
    run.add_argument("--seeds", default="100,101,102,103,104")
    run.add_argument("--train-rows", type=int, default=500)
    run.add_argument("--portfolio-size", type=int, default=4)
    sub.add_parser("report")
    again = sub.add_parser("redecide")
    again.add_argument("--task", required=True)
    again.add_argument("--budget", type=float, required=True)
    again.add_argument("--study-dir", required=True, help="the cell's study folder (<work>/combined)")
    args = parser.parse_args()
    return {"run": cmd_run, "report": cmd_report, "redecide": cmd_redecide}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
