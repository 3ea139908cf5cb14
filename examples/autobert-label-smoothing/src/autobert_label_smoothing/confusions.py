"""The technique's own cached stage: which classes a quick model confuses each class with.

A quick model is the trial's own recipe with smoothing off, trained through
:func:`autobert.services.train_model` (a sub-trial with the trial's own
techniques) on a seeded half of the training rows; its predictions on the
other half give, for each class, how its mistakes spread over the other
classes. That row, normalised, is the distribution the class is smoothed
toward (uniform over the other classes where the model made no mistake).

The result is an entry of this technique's own kind, ``label-confusions``, in
the study's cache (``run.cache``): built once per key, under the cache's lock,
published whole, listed by ``autobert cache ls`` and cleaned by ``autobert
cache prune`` like any other. The key (:func:`autobert.cache_key`, the one key
function) holds everything the result depends on and nothing smoothing
searches: trials that differ only in ``label_smoothing.factor`` share it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from autobert import cache_key
from autobert.services import fingerprint, predict_logits, resolve_model, train_model

#: This technique's kind of cache entry.
KIND = "label-confusions"
#: Bump when what an entry holds changes, so that old entries are rebuilt, not misread.
VERSION = 1


def quick_params(params: dict[str, Any]) -> dict[str, Any]:
    """The quick model's recipe: the trial's, with smoothing off (so its sub-trial never recurses)."""
    return {**params, "label_smoothing.factor": 0.0}


def stage_key(run: Any, train_fingerprint: str) -> str:
    """Everything the confusions depend on: the recipe without smoothing, the data, the model, the seed."""
    return cache_key({
        "version": VERSION,
        "params": {k: v for k, v in quick_params(run.params).items() if not k.startswith("label_smoothing.")},
        "train": train_fingerprint,
        "model": resolve_model(run.study),
        "labels": list(run.label_names),
        "seed": run.seed,
        "max_length": run.study.max_length,
        "precision": run.precision,
        "techniques": sorted(run.techniques),
        "settings": {k: v for k, v in run.settings.items() if not k.startswith("label_smoothing.")},
    })


def confusion_targets(datasets: dict[str, Any], run: Any) -> np.ndarray:
    """``(K, K)``: row ``k`` is the distribution class ``k`` is smoothed toward; cached, or built now."""
    train = datasets["train"]
    key = stage_key(run, fingerprint(list(train["text"]), list(train["label"])))
    folder = run.cache.build(KIND, key, lambda staging: build(staging, datasets, run),
                             {"rows": len(train), "seed": run.seed, "model": run.study.model})
    return np.load(folder / "targets.npy")


def build(folder: Path, datasets: dict[str, Any], run: Any) -> None:
    """Train the quick model on half the training rows, count its confusions on the other half, into ``folder``."""
    train = datasets["train"]
    order = np.random.default_rng(run.seed).permutation(len(train))
    half = len(train) // 2
    fit, held = train.select(sorted(order[:half].tolist())), train.select(sorted(order[half:].tolist()))
    model_dir = folder / "quick-model"
    result = train_model(run, {"train": fit, "validation": held}, params=quick_params(run.params), save_to=model_dir)
    predicted = predict_logits(run, model_dir, held).argmax(axis=-1)
    shutil.rmtree(model_dir)  # only the counts are kept
    np.save(folder / "targets.npy", targets_from(np.asarray(held["label"]), predicted, run.num_labels))
    (folder / "quick-model.txt").write_text(f"held-out {run.study.metric}: {result.value}\n", encoding="utf-8")


def targets_from(labels: np.ndarray, predicted: np.ndarray, num_labels: int) -> np.ndarray:
    """Each true class's mistakes, normalised over the other classes; uniform over them where there is none."""
    counts = np.zeros((num_labels, num_labels), dtype=np.float64)
    np.add.at(counts, (labels.astype(int), predicted.astype(int)), 1.0)
    np.fill_diagonal(counts, 0.0)
    uniform = (1.0 - np.eye(num_labels)) / max(num_labels - 1, 1)
    totals = counts.sum(axis=1, keepdims=True)
    return np.where(totals > 0, counts / np.maximum(totals, 1.0), uniform).astype(np.float32)
