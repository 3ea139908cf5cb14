"""``autobert predict``: label a data file with a trained model; write labels (and probabilities) as CSV or JSONL."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from autobert.commands.console import console, print_notes
from autobert.commands.options import at_least_one
from autobert.errors import AutobertError

#: What ``--output``'s suffix writes.
OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("predict", help="label a data file with a trained model")
    p.add_argument("model", type=Path, metavar="MODEL_DIR",
                   help="the folder `autobert train --output` wrote (or any transformers text classifier)")
    p.add_argument("data", type=Path, metavar="DATA",
                   help="the texts: a CSV, TSV, JSON lines or Parquet file (as a study file's data), or a datasets "
                        "folder")
    p.add_argument("--output", "-o", type=Path, required=True, metavar="FILE",
                   help="the file to write: .csv, or .jsonl (.json: JSON lines too); one row per input row, in order")
    p.add_argument("--probabilities", action="store_true",
                   help="also write each class's probability (CSV: a column p_<label> each; JSONL: a `probabilities` "
                        "object)")
    p.add_argument("--device", metavar="cpu|cuda|cuda:N",
                   help="predict on this device (default: the first GPU if there is one, else the CPU)")
    p.add_argument("--batch-size", type=at_least_one("texts per batch"), default=64, metavar="N",
                   help="texts per forward pass (default: 64, the evaluation batch of training)")
    p.add_argument("--text-column", metavar="NAME",
                   help="the column holding the texts (default: the model's data.text_column, else `text`)")
    return p


def run(args: argparse.Namespace) -> int:
    # The engine is imported when the command runs, not when `autobert` builds its parser: it imports torch and
    # transformers, which `autobert --help` and the light commands do without.
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from autobert.config.schema import write_atomic
    from autobert.run.inference import load_classifier, read_table

    out = Path(args.output)
    _check_output(out)
    kind = _output_format(out)
    frame = read_table(args.data)  # a data file's mistake is reported before the model loads
    classifier = load_classifier(args.model, device=args.device)
    column = args.text_column or classifier.text_column
    texts = _texts(frame, column, Path(args.data))
    print_notes(classifier.notes)

    start = time.perf_counter()
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("batches"), TimeElapsedColumn(), console=console, transient=False)
    with progress:
        task = progress.add_task("predicting", total=math.ceil(len(texts) / args.batch_size))
        probabilities = classifier.predict_probabilities(texts, batch_size=args.batch_size,
                                                         on_batch=lambda _: progress.advance(task))
    seconds = time.perf_counter() - start
    names = classifier.label_names
    labels = [names[i] for i in probabilities.argmax(axis=1)]
    rows = probabilities if args.probabilities else None
    text = _csv(labels, rows, names) if kind == "csv" else _jsonl(labels, rows, names)
    try:
        write_atomic(out, text)  # a failed run leaves no half-written file
    except OSError as exc:
        raise AutobertError(f"cannot write --output {out} ({exc.strerror or exc}); choose another --output") from None
    counts = Counter(labels)
    summary = ", ".join(f"{name} {counts[name]}" for name in names if counts[name])
    console.print(f"{len(texts)} rows labelled in {seconds:.1f} s; written to [bold]{out}[/] ({summary})")
    return 0


def _output_format(out: Path) -> str:
    kind = OUTPUT_FORMATS.get(out.suffix.lower())
    if kind is None:
        what = f"a {out.suffix!r} file" if out.suffix else "a file without a suffix"
        raise AutobertError(f"--output {out}: cannot write {what}; name the file .csv, or .jsonl for JSON lines")
    return kind


def _check_output(out: Path) -> None:
    """Refuse an output that cannot be written before anything is predicted: a folder, a file in the way."""
    if out.is_dir():
        raise AutobertError(f"--output {out} is a folder; give a file in it (e.g. {out / 'predictions.csv'})")
    existing = out.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise AutobertError(f"--output {out}: {existing} is a file, not a folder; choose another --output")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise AutobertError(f"--output {out}: cannot write in {existing} (permission denied); choose another --output")


def _texts(frame: Any, column: str, path: Path) -> list[str]:
    """The column's texts, or an error naming the columns the file has and the rows without a text."""
    from autobert.run.data import describe_rows

    if column not in frame.columns:
        have = ", ".join(repr(str(c)) for c in frame.columns)
        raise AutobertError(f"DATA: {path} has no column {column!r} (its columns: {have}); name the column of texts "
                            "with --text-column")
    texts, missing = [], []
    for i, value in enumerate(frame[column].tolist()):
        if value is None or (isinstance(value, float) and value != value):
            missing.append(i)
        texts.append(value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value))
    if missing:
        verb = "has" if len(missing) == 1 else "have"
        raise AutobertError(f"DATA: {path}: {describe_rows(missing)} {verb} no text in column {column!r}; fill them "
                            "in or remove them")
    return texts


def _csv(labels: list[str], probabilities: Any, names: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["label", *(f"p_{name}" for name in names)] if probabilities is not None else ["label"])
    for i, label in enumerate(labels):
        writer.writerow([label, *map(float, probabilities[i])] if probabilities is not None else [label])
    return buffer.getvalue()


def _jsonl(labels: list[str], probabilities: Any, names: list[str]) -> str:
    lines = []
    for i, label in enumerate(labels):
        row: dict[str, Any] = {"label": label}
        if probabilities is not None:
            row["probabilities"] = {name: float(p) for name, p in zip(names, probabilities[i])}
        lines.append(json.dumps(row, ensure_ascii=False))
    return "\n".join(lines) + "\n"


__all__ = ["add_parser", "run"]
