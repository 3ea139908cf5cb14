"""Selective masking (Gu et al. 2020, "Train No Evil: Selective Masking for Task-Guided Pre-Training").

:meth:`SelectiveMasking.prepare` runs the paper's whole procedure:

1. fine-tune a task model on the labelled training data (shared with
   ``entropy``: :func:`autobert.plugins.masking.entropy.task_model`);
2. label the training sentences the model classifies correctly with the
   buffer procedure (:func:`buffer_labels`): walk each sentence left to right,
   appending tokens to a buffer; when the model's confidence in the gold label
   from the buffer comes within ``masking.selective_threshold`` (0.01 in the
   reference code) of its confidence from the whole sentence, the token just
   added is important, and it is taken out of the buffer again, so the next
   important token is the next one that completes the evidence;
3. train the masker, a small token classifier (the study's encoder cut to
   ``masking.masker_layers`` layers, ``masking.masker_epochs`` epochs), on
   those labels;
4. run the masker over the stage's corpus: a token is important where the
   masker's probability is above 0.5.

``select`` then masks the important tokens (most probable first) up to
``masking.selective_share`` of the budget and fills the rest of the budget at
random among the other maskable tokens. Task model, masker and marks are cached
in the study's cache (kinds ``task-model``, ``masker`` and ``mask``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from autobert.masking import MaskingContext
from autobert.plugins.masking.entropy import (MASK, TaskGuidedMasking, cached, load_scores, save_scores, task_model,
                                              task_model_key)

SHARE = "masking.selective_share"
THRESHOLD = "masking.selective_threshold"
MASKER_LAYERS = "masking.masker_layers"
MASKER_EPOCHS = "masking.masker_epochs"
MASKER_LR = "masking.masker_learning_rate"
DEFAULTS = {THRESHOLD: 0.01, MASKER_LAYERS: 2, MASKER_EPOCHS: 3, MASKER_LR: 1e-4}
MASKER_BATCH = 16
IGNORE = -100
#: The kind of the maskers' cache entries (the marks are of kind ``mask``).
MASKER = "masker"


def padded(sequences: list[list[int]], pad_id: int):
    """``(input_ids, attention_mask)`` tensors of ``sequences`` padded on the right."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, :len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        attention[i, :len(seq)] = 1
    return ids, attention


def gold_confidence(model: Any, sequences: list[list[int]], labels: list[int], pad_id: int, batch_size: int) -> np.ndarray:
    """``p(label | sequence)`` under ``model`` for each (token ids with special tokens, label)."""
    import torch

    out = np.zeros(len(sequences), dtype=np.float64)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(sequences), batch_size):
            chunk = sequences[start:start + batch_size]
            ids, attention = padded(chunk, pad_id)
            probs = torch.softmax(model(input_ids=ids, attention_mask=attention).logits.float(), dim=-1)
            out[start:start + len(chunk)] = probs[torch.arange(len(chunk)), torch.as_tensor(labels[start:start + len(chunk)])].numpy()
    return out


def buffer_labels(model: Any, rows: list[dict[str, Any]], labels: list[int], threshold: float, pad_id: int = 0,
                  batch_size: int = 256) -> list[np.ndarray | None]:
    """The buffer procedure: 1 at important tokens, 0 at other maskable ones, -100 at special tokens.

    Sentences the model misclassifies get ``None`` (the paper labels only correctly
    classified ones). All sentences advance one token per round, so each round
    is one batched pass over the still-active buffers.
    """
    import torch

    full = [list(r["input_ids"]) for r in rows]
    confidence = gold_confidence(model, full, labels, pad_id, batch_size)
    predicted = []
    with torch.inference_mode():
        for start in range(0, len(full), batch_size):
            ids, attention = padded(full[start:start + batch_size], pad_id)
            predicted.extend(model(input_ids=ids, attention_mask=attention).logits.argmax(-1).tolist())
    result: list[np.ndarray | None] = []
    tokens: list[list[int]] = []  # each labelled sentence's maskable positions, in order
    for r, row in enumerate(rows):
        ids = np.asarray(row["input_ids"])
        maskable = np.flatnonzero(row["maskable"])
        if predicted[r] != labels[r] or len(maskable) == 0:
            result.append(None)
            tokens.append([])
            continue
        marks = np.where(np.asarray(row["maskable"]), 0, IGNORE).astype(np.int64)
        result.append(marks)
        tokens.append(maskable.tolist())
    # The buffer is [CLS] + kept tokens + [SEP]: the sentence's own special tokens around a growing prefix.
    opening = {r: [int(rows[r]["input_ids"][0])] for r in range(len(rows))}
    closing = {r: [int(rows[r]["input_ids"][-1])] for r in range(len(rows))}
    kept = {r: [] for r in range(len(rows)) if tokens[r]}
    step = 0
    while kept:
        active = [r for r in kept if step < len(tokens[r])]
        if not active:
            break
        trial = [opening[r] + kept[r] + [int(rows[r]["input_ids"][tokens[r][step]])] + closing[r] for r in active]
        conf = gold_confidence(model, trial, [labels[r] for r in active], pad_id, batch_size)
        for r, c in zip(active, conf):
            position = tokens[r][step]
            if confidence[r] - c < threshold:
                result[r][position] = 1  # it completes the evidence: important, and out of the buffer
            else:
                kept[r].append(int(rows[r]["input_ids"][position]))
        step += 1
    return result


def masker_base(checkpoint: str, layers: int):
    """A token classifier (2 labels) from ``checkpoint`` with its first ``layers`` layers."""
    from transformers import AutoConfig, AutoModelForTokenClassification

    config = AutoConfig.from_pretrained(checkpoint)
    config.num_hidden_layers = min(layers, config.num_hidden_layers)
    config.num_labels = 2
    return AutoModelForTokenClassification.from_pretrained(checkpoint, config=config)


def train_masker(model: Any, rows: list[dict[str, Any]], marks: list[np.ndarray], epochs: int, seed: int,
                 pad_id: int = 0, learning_rate: float = 1e-4) -> Any:
    """Fit ``model`` to the buffer procedure's marks (cross-entropy at maskable tokens)."""
    import torch

    torch.manual_seed(seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    data = [(r["input_ids"], m) for r, m in zip(rows, marks) if m is not None]
    if not data:
        return model
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(data))
        for start in range(0, len(data), MASKER_BATCH):
            chunk = [data[i] for i in order[start:start + MASKER_BATCH]]
            ids, attention = padded([seq for seq, _ in chunk], pad_id)
            labels = torch.full(ids.shape, IGNORE, dtype=torch.long)
            for i, (seq, mark) in enumerate(chunk):
                labels[i, :len(seq)] = torch.as_tensor(mark)
            loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    model.eval()
    return model


def masker_probabilities(model: Any, rows: list[dict[str, Any]], pad_id: int = 0, batch_size: int = 64) -> list[np.ndarray]:
    """The masker's probability that each token is important; ``-inf`` where it is not maskable."""
    import torch

    out = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            ids, attention = padded([r["input_ids"] for r in chunk], pad_id)
            probs = torch.softmax(model(input_ids=ids, attention_mask=attention).logits.float(), dim=-1)[..., 1].numpy()
            for i, r in enumerate(chunk):
                p = probs[i, :len(r["input_ids"])].astype(np.float32)
                out.append(np.where(np.asarray(r["maskable"]), p, -np.inf).astype(np.float32))
    return out


def select_marked(probabilities: np.ndarray, maskable: np.ndarray, budget: int, share: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Marked tokens (probability > 0.5, most probable first) up to ``share`` of the budget, the rest at random."""
    from autobert.plugins.masking.entropy import top_up

    return top_up(probabilities, maskable, budget, share, rng, eligible=probabilities > 0.5)


class SelectiveMasking(TaskGuidedMasking):
    """Mask the tokens a masker, trained on the buffer procedure's labels, marks important."""

    share_param = SHARE

    def __init__(self):
        self.probabilities: list[np.ndarray] | None = None

    def identity(self, params, run=None):
        found = super().identity(params, run)
        if run is not None:
            found["masker"] = {k: run.settings.get(k, v) for k, v in DEFAULTS.items()}
        return found

    def prepare(self, context: MaskingContext) -> None:
        from autobert.masking import encode_corpus
        from autobert.services import tokenizer_identity
        from autobert import cache_key

        run = context.run
        self.share = float(context.params.get(SHARE, 1.0))
        settings = {k: run.settings.get(k, v) for k, v in DEFAULTS.items()}
        pad_id = run.tokenizer.pad_token_id if run.tokenizer.pad_token_id is not None else 0
        masker_key = cache_key({"task_model": task_model_key(context), "masker": settings, "version": self.version,
                                "tokenizer": tokenizer_identity(run.tokenizer), "max_length": run.study.max_length})
        marks_key = cache_key({"strategy": "selective", "masker": masker_key, "corpus": context.corpus_fingerprint})

        def build_masker(folder: Path) -> None:
            import torch
            from transformers import AutoModelForSequenceClassification

            from autobert.services import resolve_model

            train = context.datasets["train"]
            rows = encode_corpus([str(t) for t in train["text"]], run.tokenizer, run.study.max_length)
            labels = [int(y) for y in train["label"]]
            classifier = AutoModelForSequenceClassification.from_pretrained(str(task_model(context)))
            marks = buffer_labels(classifier, rows, labels, float(settings[THRESHOLD]), pad_id)
            torch.manual_seed(run.seed)  # the token-classification head is new: its initialisation follows the seed
            masker = masker_base(resolve_model(run.study), int(settings[MASKER_LAYERS]))
            train_masker(masker, rows, marks, int(settings[MASKER_EPOCHS]), run.seed, pad_id, float(settings[MASKER_LR]))
            masker.save_pretrained(str(folder))
            labelled = [m for m in marks if m is not None]
            (folder / "buffer.json").write_text(
                f'{{"sentences": {len(rows)}, "labelled": {len(labelled)}, '
                f'"important": {int(sum((m == 1).sum() for m in labelled))}}}\n')

        def mark(folder: Path) -> None:
            from transformers import AutoModelForTokenClassification

            masker_dir = cached(context, MASKER, masker_key, build_masker, settings)
            masker = AutoModelForTokenClassification.from_pretrained(str(masker_dir))
            save_scores(folder, masker_probabilities(masker, context.examples, pad_id))

        folder = cached(context, MASK, marks_key, mark,
                        {"strategy": "selective", "masker": masker_key, "sentences": len(context.examples)})
        self.probabilities = load_scores(folder)

    def select(self, example, budget, rng):
        found = self.probabilities
        probabilities = found[example.index] if found is not None and example.index < len(found) else None
        if probabilities is None or len(probabilities) != len(example.input_ids):
            probabilities = np.zeros(len(example.input_ids), dtype=np.float32)  # nothing marked: random masking
        return select_marked(probabilities, example.maskable, budget, self.share, rng)
