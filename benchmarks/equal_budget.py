"""autobert's budget-aware search against ``Trainer.hyperparameter_search`` at the same wall-clock budget.

The recipe-quality part of ``benchmarks/run.py``, split so that the systems run
side by side, one process each, every process pinned to its own core with one
thread (the conditions of ``docs/benchmarks/run.md``)::

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/equal_budget.py --system hp --out /tmp/hp.json &
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/equal_budget.py --system autobert --out /tmp/ab.json
    python benchmarks/equal_budget.py --merge /tmp/hp.json /tmp/ab.json --output docs/benchmarks/equal_budget.md

* ``hp``: ``Trainer.hyperparameter_search`` (Optuna backend, its default space:
  learning rate, epochs, seed, batch size; Optuna's median pruner), ``--budget``
  seconds (Optuna's timeout: a running trial finishes).
* ``autobert``: ``autobert search`` with ``--space default`` (every installed
  technique at its default space, the defaults of the study file: pruner,
  sampler, finalists) or ``--space benchmark`` (the hand-narrowed
  ``benchmarks/sst2-benchmark.yaml``), ``budget.timeout = --budget``.

Same data as run.py (SST-2, ``--train`` sentences sampled with seed 0, all
validation and test). Each winner is re-trained on the fresh seeds 100-104 and
scored on test; ``--merge`` writes the table, the paired differences (winner
by winner on the same seed) with a 95 % t interval, and a plot.
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

import optuna
import torch
import transformers
import yaml

import autobert
import plain_trainer
from _common import ROOT, SST2, sample, t_interval, write_report  # benchmarks/ is on sys.path when run as a script
from run import FRESH_SEEDS, MODEL, best_so_far, counts, describe, run_hp_search, step_curves, trial_seconds

from autobert.config.schema import StudyConfig, load_frozen
from autobert.run.data import load_task_data
from autobert.run.aggregate import mean_std
from autobert.run.pipeline import quiet_transformers
from autobert.run.models import resolve_model
from autobert.run.plugin_manager import get_plugin_manager
from autobert.store.record import TrialRecord
from autobert.study.search import export_best, run_search
from autobert.study.train import train_frozen

BENCHMARK_SPACE = yaml.safe_load(Path(__file__).with_name("sst2-benchmark.yaml").read_text(encoding="utf-8"))


def autobert_study(work: Path, data: dict, space: str, budget: float) -> StudyConfig:
    base = {"name": f"autobert-{space}", "model": MODEL, "data": data, "max_length": plain_trainer.MAX_LENGTH,
            "seed": 0, "budget": {"timeout": budget}, "base_dir": work}
    if space == "benchmark":
        return StudyConfig.model_validate({**BENCHMARK_SPACE, **base})
    return StudyConfig.model_validate(base)  # every technique, every default


def run_autobert(work: Path, data: dict, seeds: list[int], budget: float, space: str) -> dict:
    study = autobert_study(work, data, space, budget)
    pm = get_plugin_manager(disable=study.disable) if space == "default" else get_plugin_manager(
        only=list(BENCHMARK_SPACE["techniques"]))
    task_data = load_task_data(study)
    start = time.perf_counter()
    opened = run_search(study, pm, task_data, timeout=budget)
    search_seconds = time.perf_counter() - start
    frozen = load_frozen(export_best(study, opened, pm, task_data))
    trials = opened.trials
    records = {t.number: TrialRecord.from_trial(t) for t in trials}
    skipped = sum(records[t.number].is_skipped for t in trials)
    finalist_runs = [t for t in trials if records[t.number].is_finalist]
    ran = [t for t in trials if not records[t.number].is_skipped and not records[t.number].is_finalist]
    print(f"autobert ({space}): {len(ran)} trials ({counts(ran)}), {skipped} not started, {len(finalist_runs)} finalist "
          f"runs in {search_seconds:.0f}s; winner trial {frozen.provenance.trial} ({frozen.provenance.value:.4f})",
          flush=True)
    start = time.perf_counter()
    result = train_frozen(frozen, pm, task_data, seeds=seeds).runs
    retrain = time.perf_counter() - start
    tests = [r.test_metrics["accuracy"] for r in result.results]
    for s, t in zip(seeds, tests):
        print(f"autobert winner, seed {s}: test {t:.4f}", flush=True)
    predicted = [(records[t.number].predicted_seconds, records[t.number].seconds) for t in ran
                 if t.state.name == "COMPLETE" and records[t.number].predicted_seconds is not None]
    return {"system": f"autobert ({space} space)", "search_seconds": search_seconds,
            "trial_seconds": trial_seconds(trials),
            "trials": f"{len(ran)} ({counts(ran)}); {skipped} not started; {len(finalist_runs)} finalist runs",
            "recipe": describe(frozen.params), "search_value": frozen.provenance.value,
            "finalists": frozen.provenance.finalists, "predicted_vs_actual": predicted,
            "test": tests, "validation": [r.value for r in result.results], "retrain_seconds": retrain,
            "curve": best_so_far([t for t in trials if not records[t.number].is_finalist])}


def merge(paths: list[Path], output: Path) -> int:
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    rows = [r["row"] for r in runs]
    lines = [
        "# autobert's budget-aware search vs Trainer.hyperparameter_search (SST-2, MiniLM)",
        "",
        f"Run on {runs[0]['date']}: {runs[0]['versions']}. Each system in its own process, pinned to its own core "
        "with one torch thread (`OMP_NUM_THREADS=1 taskset -c N`), both at the same time.",
        f"Data: SST-2, {runs[0]['train']} training sentences (sampled with seed 0), all 872 validation (searched on) "
        f"and 1,821 test sentences (winners only). Encoder: all-MiniLM-L6-v2, max length 64. Budget: "
        f"{runs[0]['budget']:.0f} s of search wall time per system. Winners re-trained on seeds "
        f"{', '.join(map(str, runs[0]['seeds']))}.",
        "Commands: " + "; ".join(f"`{r['command']}`" for r in runs),
        "",
        "| system | trials | search wall s | best validation in search (%) | fresh-seed test (%) | fresh-seed validation (%) | winning recipe |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        m, s = mean_std(r["test"])
        vm, vs = mean_std(r["validation"])
        value = "—" if r["search_value"] is None else f"{100 * r['search_value']:.1f}"
        lines.append(f"| {r['system']} | {r['trials']} | {r['search_seconds']:.0f} | {value} | {100 * m:.1f} ± {100 * s:.1f} | "
                     f"{100 * vm:.1f} ± {100 * vs:.1f} | {r['recipe']} |")
    lines += ["", "Per seed (test %): " + "; ".join(
        f"{r['system']}: " + ", ".join(f"{100 * v:.1f}" for v in r["test"]) for r in rows)]
    base = next((r for r in rows if r["system"].startswith("Trainer")), None)
    if base:
        lines += ["", "Paired differences against `Trainer.hyperparameter_search`, seed by seed (test, points):", "",
                  "| system | mean difference | 95 % t interval |", "|---|---:|---|"]
        for r in rows:
            if r is base:
                continue
            diffs = [100 * (a - b) for a, b in zip(r["test"], base["test"])]
            mean, low, high = t_interval(diffs)
            lines.append(f"| {r['system']} | {mean:+.2f} | [{low:+.2f}, {high:+.2f}] |")
    for r in rows:
        if r.get("finalists"):
            lines += ["", f"{r['system']}: finalists (re-runs on fresh seeds; the winner is the best mean):", "",
                      "| trial | search value (%) | fresh seeds (%) | mean (%) |", "|---:|---:|---|---:|"]
            for f in r["finalists"]:
                lines.append(f"| {f['trial']} | {100 * f['search_value']:.1f} | "
                             + ", ".join(f"seed {s}: {100 * v:.1f}" for s, v in f["seed_values"].items())
                             + f" | {100 * f['mean']:.1f} |")
        if r.get("predicted_vs_actual"):
            pairs = r["predicted_vs_actual"]
            errors = [abs(p - a) / a for p, a in pairs if a]
            lines += ["", f"{r['system']}: predicted vs actual trial seconds over {len(pairs)} completed trials: median "
                      f"absolute error {100 * statistics.median(errors):.0f} %; " + ", ".join(
                          f"{p:.0f}/{a:.0f}" for p, a in pairs) + " (predicted/actual s)."]
    plot(rows, output)
    lines += ["", f"![search progress]({output.stem}-search.png)"]
    write_report(output, lines)
    output.with_suffix(".json").write_text(json.dumps({"runs": runs}, indent=1), encoding="utf-8")
    return 0


def plot(rows: list[dict], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    step_curves(ax, rows)
    ax.set_title("Search progress (single-seed values; finalist re-runs not shown)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(output.with_name(output.stem + "-search.png"), dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=["hp", "autobert"])
    parser.add_argument("--space", choices=["default", "benchmark"], default="default")
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--budget", type=float, default=900)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="where a --system run writes its row (JSON)")
    parser.add_argument("--merge", type=Path, nargs="+", help="rows to merge into the report")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks" / "equal_budget.md")
    args = parser.parse_args()
    if args.merge:
        return merge(args.merge, args.output)
    if not args.system or not args.out:
        parser.error("give --system and --out (or --merge)")
    if not SST2.exists():
        print(f"SST-2 not found at {SST2}; this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    quiet_transformers()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seeds = FRESH_SEEDS[:args.seeds]
    work = Path(tempfile.mkdtemp(prefix=f"autobert-equal-{args.system}-"))
    paths = {"train": sample("train", args.train, work), "validation": sample("validation", 0, work),
             "test": sample("test", 0, work)}
    data = {**paths, "label_names": ["negative", "positive"]}
    started = time.perf_counter()
    if args.system == "hp":
        model = resolve_model(autobert_study(work, data, "default", args.budget))
        row = run_hp_search(paths, model, seeds, args.budget, work)
    else:
        row = run_autobert(work, data, seeds, args.budget, args.space)
    versions = (f"autobert {autobert.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, "
                f"optuna {optuna.__version__}, Python {platform.python_version()}; {platform.machine()}, "
                f"{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} available to each run), "
                f"{torch.get_num_threads()} torch thread(s), no GPU")
    args.out.write_text(json.dumps({"row": row, "date": str(date.today()), "versions": versions, "train": args.train,
                                    "budget": args.budget, "seeds": seeds,
                                    "seconds": time.perf_counter() - started,
                                    "command": "python benchmarks/equal_budget.py " + " ".join(sys.argv[1:])},
                                   indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
