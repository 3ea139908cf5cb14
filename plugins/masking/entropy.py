"""Entropy-based masking: mask the tokens a task model's prediction depends on.

A cheaper cousin of selective masking (Gu et al. 2020) without the masker:
:meth:`EntropyMasking.prepare` fine-tunes a task model on the labelled training
data (a sub-trial, :func:`autobert.services.train_model`, of the trial's ``finetune`` technique alone, at the fixed
recipe of the ``masking.task_model_*`` settings), then scores every token of the
stage's corpus by how much the model's predictive entropy changes when that
token alone is replaced by ``[MASK]``::

    score(i) = | H(p(y | x with x_i masked)) - H(p(y | x)) |

Each masked copy of a sentence is one row of a batched forward pass; rows of
many sentences share a batch (``masking.scoring_batch_size`` rows). ``select``
gives ``masking.entropy_share`` of the budget to the top-scored maskable
tokens and tops the rest up at random among the others, so every visit masks
exactly the budget and never a special or padding token.

The task model and the scores are cached in the study's cache (kinds
``task-model`` and ``mask``), keyed by what they depend on: the model, the
training data, the labels, the recipe and seed (task model); that, the corpus,
tokenizer and maximum length (scores). Trials that differ only in
``masking.entropy_share`` or ``masking.probability`` score once.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from autobert.masking import MaskingContext, MaskingStrategy

SHARE = "masking.entropy_share"
EPOCHS = "masking.task_model_epochs"
LEARNING_RATE = "masking.task_model_learning_rate"
BATCH_SIZE = "masking.task_model_batch_size"
SCORING_BATCH = "masking.scoring_batch_size"
#: The kinds of the cache entries task-guided strategies build.
TASK_MODEL, MASK = "task-model", "mask"
#: Bump when the task model's training changes, so that cached task models are not reused.
TASK_MODEL_VERSION = 2
DEFAULTS = {EPOCHS: 2, LEARNING_RATE: 1e-4, BATCH_SIZE: 32, SCORING_BATCH: 256}
#: The task model is a sub-trial of these techniques alone.
TASK_MODEL_TECHNIQUES = ("finetune",)


def task_model_recipe(settings: dict[str, Any]) -> dict[str, Any]:
    """The task model's fine-tuning recipe: fixed by settings, so every trial shares one task model."""
    return {
        "finetune.learning_rate": float(settings.get(LEARNING_RATE, DEFAULTS[LEARNING_RATE])),
        "finetune.epochs": int(settings.get(EPOCHS, DEFAULTS[EPOCHS])),
        "finetune.batch_size": int(settings.get(BATCH_SIZE, DEFAULTS[BATCH_SIZE])),
        "finetune.warmup_ratio": 0.0,
        "finetune.weight_decay": 0.0,
    }


def task_model_summary(run: Any) -> dict[str, Any]:
    """What a strategy's cache identity says of the task model it prepares with."""
    return {"recipe": task_model_recipe(run.settings), "model": run.study.model, "labels": list(run.label_names)}


def task_model_identity(run: Any, train_fingerprint: str) -> dict[str, Any]:
    """Everything the task model depends on."""
    from autobert.services import model_identity, resolve_model, subtrial_settings

    return {"model": model_identity(resolve_model(run.study)), "labels": list(run.label_names),
            "recipe": task_model_recipe(run.settings), "seed": run.seed, "max_length": run.study.max_length,
            "train": train_fingerprint,
            # The task model trains with finetune's batching setting (train_task_model runs finetune alone), and
            # the batch order changes the model.
            "group_by_length": subtrial_settings(run, TASK_MODEL_TECHNIQUES).get("finetune.group_by_length", True),
            # It trains in the study's precision (a sub-trial); fp32 keeps the keys of before.
            **({"precision": run.precision} if getattr(run, "precision", "fp32") != "fp32" else {})}


def train_task_model(datasets: dict[str, Any], run: Any, folder: Path) -> None:
    """Fine-tune a sequence classifier on ``datasets["train"]`` with autobert's pipeline, save it to ``folder``."""
    from autobert.services import train_model

    splits = {name: datasets[name].select_columns(["text", "label"]) for name in ("train", "validation") if name in datasets}
    # A sub-trial of finetune alone at the settings' recipe: the trial's other techniques are not the task model's.
    train_model(run, splits, params=task_model_recipe(run.settings), techniques=TASK_MODEL_TECHNIQUES, save_to=folder)


def task_model_key(context: MaskingContext) -> str:
    """The cache name's key of the task model a stage's strategy would train."""
    from autobert.services import fingerprint
    from autobert import cache_key

    train = context.datasets["train"]
    train_print = fingerprint([str(t) for t in train["text"]], [int(y) for y in train["label"]])
    return cache_key({"task_model": task_model_identity(context.run, train_print), "version": TASK_MODEL_VERSION})


def task_model(context: MaskingContext) -> Path:
    """The folder of the task model (a sequence classifier) for ``context``: cached, or trained now.

    Shared by the task-guided strategies: ``entropy`` and ``selective`` with the
    same settings, training data and seed use one task model.
    """
    return cached(context, TASK_MODEL, task_model_key(context),
                  lambda folder: train_task_model(context.datasets, context.run, folder),
                  task_model_recipe(context.run.settings))


def cached(context: MaskingContext, kind: str, key: str, builder, description: dict[str, Any]) -> Path:
    """``context.cache``'s entry ``key`` of ``kind``, built by ``builder(folder)`` if missing;
    without a cache, built once per trial under its work folder."""
    if context.cache is not None:
        return context.cache.build(kind, key, builder, description)
    folder = Path(context.run.workdir) / "masking" / f"{kind}-{key}"
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        builder(folder)
        (folder / ".complete").touch()
    return folder


def entropy(logits):
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def entropy_scores(model: Any, rows: list[dict[str, Any]], mask_id: int, pad_id: int = 0,
                   batch_size: int = 256) -> list[np.ndarray]:
    """Each token's entropy change when it alone is masked; ``-inf`` where a token is not maskable.

    Args:
        model: A sequence classifier (``model(input_ids, attention_mask).logits``).
        rows: Tokenised sentences (``input_ids`` and ``maskable``, as from ``encode_corpus``).
        mask_id: The tokenizer's mask token.
        batch_size: Rows per forward pass; a sentence of ``n`` maskable tokens
            contributes ``n + 1`` rows (itself and each masked copy), and rows of
            different sentences share batches.

    Returns:
        One float array per row, aligned with its ``input_ids``.
    """
    import torch

    # (sentence, position or -1 for the unmasked sentence), longest sentences first so batches pad little.
    order = sorted(range(len(rows)), key=lambda r: -len(rows[r]["input_ids"]))
    jobs = [(r, p) for r in order for p in [-1, *np.flatnonzero(rows[r]["maskable"]).tolist()]]
    entropies = {}
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start:start + batch_size]
            width = max(len(rows[r]["input_ids"]) for r, _ in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, (r, p) in enumerate(chunk):
                row = torch.as_tensor(rows[r]["input_ids"], dtype=torch.long)
                ids[i, :len(row)] = row
                attention[i, :len(row)] = 1
                if p >= 0:
                    ids[i, p] = mask_id
            values = entropy(model(input_ids=ids, attention_mask=attention).logits).tolist()
            entropies.update(zip(chunk, values))
    scores = []
    for r, row in enumerate(rows):
        score = np.full(len(row["input_ids"]), -np.inf, dtype=np.float32)
        full = entropies[(r, -1)]
        for p in np.flatnonzero(row["maskable"]):
            score[p] = abs(entropies[(r, int(p))] - full)
        scores.append(score)
    return scores


def top_up(scores: np.ndarray, maskable: np.ndarray, budget: int, share: float, rng: np.random.Generator,
           eligible: np.ndarray | None = None) -> np.ndarray:
    """Up to ``round(share * budget)`` top-scored maskable tokens, the rest of the budget at random among the others.

    With ``eligible``, only those tokens may be among the top ones (``selective`` takes only marked tokens).
    """
    selected = np.zeros(len(maskable), dtype=bool)
    candidates = np.flatnonzero(maskable)
    budget = min(budget, len(candidates))
    ranked = candidates if eligible is None else candidates[eligible[candidates]]
    ranked = ranked[np.argsort(-scores[ranked], kind="stable")]
    top = ranked[:int(round(share * budget))]
    selected[top] = True
    rest = np.setdiff1d(candidates, top)
    selected[rng.choice(rest, size=budget - len(top), replace=False)] = True
    return selected


class TaskGuidedMasking(MaskingStrategy):
    """A strategy that masks what a task model finds important: ``share_param`` of the budget, the rest at random.

    Its masks depend on the task model (part of the stage-cache identity); its
    preparation builds cache entries of the kinds ``task-model`` and ``mask``.
    """

    share_param = SHARE
    share = 1.0

    def search_space(self, space):
        space.suggest_float(self.share_param, 0.5, 1.0, step=0.25, valid="(0, 1]")

    def identity(self, params, run=None):
        found = super().identity(params, run)
        if run is not None:
            found["task_model"] = task_model_summary(run)
        return found


class EntropyMasking(TaskGuidedMasking):
    """Mask the tokens whose masking most changes a task model's predictive entropy."""

    def __init__(self):
        self.scores: list[np.ndarray] | None = None

    def prepare(self, context: MaskingContext) -> None:
        from autobert.services import tokenizer_identity
        from autobert import cache_key

        run = context.run
        self.share = float(context.params.get(SHARE, 1.0))
        model_key = task_model_key(context)
        scores_key = cache_key({"strategy": "entropy", "task_model": model_key, "corpus": context.corpus_fingerprint,
                                "version": self.version,
                                "tokenizer": tokenizer_identity(run.tokenizer), "max_length": run.study.max_length})

        def score(folder: Path) -> None:
            from transformers import AutoModelForSequenceClassification

            model = AutoModelForSequenceClassification.from_pretrained(str(task_model(context)))
            tokenizer = run.tokenizer
            scores = entropy_scores(model, context.examples, tokenizer.mask_token_id,
                                    tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
                                    int(run.settings.get(SCORING_BATCH, DEFAULTS[SCORING_BATCH])))
            save_scores(folder, scores)

        folder = cached(context, MASK, scores_key, score,
                        {"strategy": "entropy", "task_model": model_key, "sentences": len(context.examples)})
        self.scores = load_scores(folder)

    def select(self, example, budget, rng):
        scores = self.scores[example.index] if self.scores is not None and example.index < len(self.scores) else None
        if scores is None or len(scores) != len(example.input_ids):
            scores = np.zeros(len(example.input_ids), dtype=np.float32)  # no score: random masking
        return top_up(scores, example.maskable, budget, self.share, rng)


def save_scores(folder: Path, scores: list[np.ndarray]) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(s) for s in scores], dtype=np.int64)
    flat = np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)
    np.savez(folder / "scores.npz", lengths=lengths, scores=flat)
    (folder / "scores.json").write_text(json.dumps({"sentences": len(scores)}) + "\n")


def load_scores(folder: Path) -> list[np.ndarray]:
    with np.load(Path(folder) / "scores.npz") as data:
        return np.split(data["scores"], np.cumsum(data["lengths"])[:-1]) if len(data["lengths"]) else []
