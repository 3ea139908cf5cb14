"""The baselines autobert is measured against, written directly against the transformers Trainer.

Nothing here imports autobert: this is the code a user would write without it.

* :func:`train` fine-tunes once with the usual BERT recipe (AdamW, linear
  warmup and decay, the [CLS] head of ``AutoModelForSequenceClassification``,
  dynamic padding) and scores validation and, optionally, test.
* :func:`hyperparameter_search` runs ``Trainer.hyperparameter_search`` with the
  Optuna backend and its default space (learning rate, epochs, seed, batch size).

Run as a script, it trains once and writes ``metrics.json`` (and the model) to
``--output``: ``benchmarks/run.py`` times it against ``autobert train`` on the
same recipe to measure the framework's overhead::

    python benchmarks/plain_trainer.py --train T.csv --validation V.csv --model DIR --output OUT [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

MAX_LENGTH = 64
DEFAULT_RECIPE = {"learning_rate": 2e-5, "num_train_epochs": 3, "per_device_train_batch_size": 32,
                  "warmup_ratio": 0.1, "weight_decay": 0.01}


def load_splits(paths: dict[str, str], tokenizer, max_length: int = MAX_LENGTH) -> dict[str, Any]:
    """CSV files with ``text`` and ``label`` columns, tokenized (no padding: the collator pads per batch)."""
    from datasets import load_dataset

    raw = load_dataset("csv", data_files=paths, keep_default_na=False)
    return {split: ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=max_length),
                          batched=True, remove_columns=["text"]) for split, ds in raw.items()}


def _accuracy(prediction) -> dict[str, float]:
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return {"accuracy": float((np.argmax(logits, axis=-1) == prediction.label_ids).mean())}


def _arguments(output_dir: str, seed: int, recipe: dict[str, Any], group_by_length: bool):
    from transformers import TrainingArguments

    warmup = recipe.get("warmup_ratio", 0.0)
    return TrainingArguments(
        output_dir=output_dir, seed=seed,
        learning_rate=recipe["learning_rate"], num_train_epochs=recipe["num_train_epochs"],
        per_device_train_batch_size=recipe["per_device_train_batch_size"], per_device_eval_batch_size=64,
        warmup_steps=float(warmup), weight_decay=recipe.get("weight_decay", 0.0), lr_scheduler_type="linear",
        eval_strategy="epoch", save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
        dataloader_pin_memory=False,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
    )


def train(paths: dict[str, str], model: str, recipe: dict[str, Any] | None = None, *, seed: int = 0,
          group_by_length: bool = False, save_to: str | None = None, num_labels: int = 2) -> dict[str, Any]:
    """Fine-tune ``model`` once on ``paths["train"]``; score validation (each epoch) and test (at the end).

    Returns ``{"validation": acc, "test": acc or None, "seconds": s, "train_seconds": s,
    "examples_per_second": n}``; ``seconds`` covers loading, training, scoring and saving.
    """
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              PrinterCallback, Trainer)

    start = time.perf_counter()
    recipe = {**DEFAULT_RECIPE, **(recipe or {})}
    tokenizer = AutoTokenizer.from_pretrained(model)
    splits = load_splits(paths, tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            model=AutoModelForSequenceClassification.from_pretrained(model, num_labels=num_labels),
            args=_arguments(tmp, seed, recipe, group_by_length), train_dataset=splits["train"],
            eval_dataset=splits["validation"], processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=_accuracy,
        )
        trainer.remove_callback(PrinterCallback)  # keep the benchmark's log readable
        trained = trainer.train()
        # The evaluation at the end of the last epoch (not a second one: benchmarks/run.py times this run).
        validation = [e["eval_accuracy"] for e in trainer.state.log_history if "eval_accuracy" in e][-1]
        test = trainer.predict(splits["test"]).metrics["test_accuracy"] if "test" in splits else None
        if save_to:
            trainer.save_model(save_to)
    return {"validation": validation, "test": test, "seconds": time.perf_counter() - start,
            "train_seconds": trained.metrics["train_runtime"],
            "examples_per_second": trained.metrics["train_samples_per_second"]}


def hyperparameter_search(paths: dict[str, str], model: str, *, timeout: float, storage: str,
                          sampler_seed: int = 0, max_trials: int = 1000, num_labels: int = 2) -> Any:
    """``Trainer.hyperparameter_search`` (Optuna backend, default space, Optuna's default median pruner).

    Stops starting trials after ``timeout`` seconds, like ``autobert search --timeout``;
    the trials are stored in ``storage`` so the caller can read their timing.
    Returns transformers' ``BestRun``.
    """
    import optuna
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              PrinterCallback, Trainer)

    tokenizer = AutoTokenizer.from_pretrained(model)
    splits = load_splits({k: v for k, v in paths.items() if k != "test"}, tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            model_init=lambda *_: AutoModelForSequenceClassification.from_pretrained(model, num_labels=num_labels),
            args=_arguments(tmp, 0, DEFAULT_RECIPE, False), train_dataset=splits["train"],
            eval_dataset=splits["validation"], processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=_accuracy,
        )
        trainer.remove_callback(PrinterCallback)
        return trainer.hyperparameter_search(
            direction="maximize", backend="optuna", n_trials=max_trials, timeout=timeout,
            compute_objective=lambda metrics: metrics["eval_accuracy"],
            sampler=optuna.samplers.TPESampler(seed=sampler_seed), storage=storage, study_name="hp-search",
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--validation", required=True)
    parser.add_argument("--test")
    parser.add_argument("--model", required=True, help="a model folder or hub id")
    parser.add_argument("--output", required=True, help="folder for the model and metrics.json")
    parser.add_argument("--learning-rate", type=float, default=DEFAULT_RECIPE["learning_rate"])
    parser.add_argument("--epochs", type=int, default=DEFAULT_RECIPE["num_train_epochs"])
    parser.add_argument("--batch-size", type=int, default=DEFAULT_RECIPE["per_device_train_batch_size"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--group-by-length", action="store_true")
    args = parser.parse_args()
    import transformers

    transformers.logging.set_verbosity_error()
    paths = {"train": args.train, "validation": args.validation} | ({"test": args.test} if args.test else {})
    recipe = {"learning_rate": args.learning_rate, "num_train_epochs": args.epochs,
              "per_device_train_batch_size": args.batch_size}
    result = train(paths, args.model, recipe, seed=args.seed, group_by_length=args.group_by_length,
                   save_to=args.output)
    Path(args.output, "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
