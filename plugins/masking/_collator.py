"""Turns visits of tokenised examples into masked-language-model batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from autobert.plugins.masking._base import MaskingExample, MaskingStrategy

#: Mixed into every generator seed, so masks never share a stream with anything else seeded by the trial's seed.
SALT = 0x6D61736B
IGNORE = -100


def budget_for(maskable: np.ndarray, probability: float) -> int:
    """How many tokens to predict: ``probability`` of the maskable ones, at least one."""
    n = int(np.count_nonzero(maskable))
    return 0 if n == 0 else max(1, int(round(probability * n)))


def replace(input_ids: np.ndarray, selected: np.ndarray, rng: np.random.Generator, mask_id: int,
            random_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 80/10/10 rule (Devlin et al. 2019): of the selected tokens, 80% become
    ``mask_id``, 10% a random non-special token and 10% stay; every selected token is a label.

    Returns:
        ``(inputs, labels)``; labels are ``-100`` where nothing is predicted.
    """
    inputs = input_ids.copy()
    labels = np.full_like(input_ids, IGNORE)
    labels[selected] = input_ids[selected]
    where = np.flatnonzero(selected)
    draw = rng.random(len(where))
    inputs[where[draw < 0.8]] = mask_id
    randomised = where[(draw >= 0.8) & (draw < 0.9)]
    inputs[randomised] = rng.choice(random_ids, size=len(randomised))
    return inputs, labels


class MaskingCollator:
    """A data collator for ``Trainer``: masks each visit with ``strategy``, then pads.

    Each feature carries ``input_ids``, ``maskable``, ``word_ids`` and the
    visit's ``index``, ``epoch`` and ``position``. Every random choice comes
    from a generator seeded by ``(seed, strategy.rng_key(visit))``, so a batch's
    masks depend on nothing but the visit: not on the order batches are built,
    nor on whether training resumed from a checkpoint.
    """

    def __init__(self, tokenizer: Any, strategy: MaskingStrategy, probability: float, seed: int):
        self.tokenizer = tokenizer
        self.strategy = strategy
        self.probability = probability
        self.seed = seed
        special = set(tokenizer.all_special_ids)
        self.random_ids = np.array([i for i in range(len(tokenizer)) if i not in special], dtype=np.int64)
        self.mask_id = tokenizer.mask_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def mask(self, feature: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """``(inputs, labels)`` of one visit."""
        example = MaskingExample(
            input_ids=np.asarray(feature["input_ids"], dtype=np.int64),
            maskable=np.asarray(feature["maskable"], dtype=bool),
            word_ids=np.asarray(feature["word_ids"], dtype=np.int64),
            index=int(feature["index"]), epoch=int(feature["epoch"]), position=int(feature["position"]),
        )
        rng = np.random.default_rng([self.seed, SALT, *map(int, self.strategy.rng_key(example))])
        budget = budget_for(example.maskable, self.probability)
        selected = np.asarray(self.strategy.select(example, budget, rng), dtype=bool) & example.maskable
        return replace(example.input_ids, selected, rng, self.mask_id, self.random_ids)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        masked = [self.mask(f) for f in features]
        width = max(len(ids) for ids, _ in masked)
        input_ids = np.full((len(masked), width), self.pad_id, dtype=np.int64)
        labels = np.full((len(masked), width), IGNORE, dtype=np.int64)
        attention = np.zeros((len(masked), width), dtype=np.int64)
        for row, (ids, lab) in enumerate(masked):
            input_ids[row, :len(ids)] = ids
            labels[row, :len(ids)] = lab
            attention[row, :len(ids)] = 1
        return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention),
                "labels": torch.from_numpy(labels)}


def encode_corpus(texts: list[str], tokenizer: Any, max_length: int) -> list[dict[str, Any]]:
    """Tokenise a corpus for masking: ``input_ids``, ``maskable`` and ``word_ids`` per text.

    Words come from a fast tokenizer's word ids; a slow tokenizer's WordPiece
    continuations (``##``) are joined to the token before them.
    """
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_special_tokens_mask=True)
    rows = []
    for i, ids in enumerate(encoded["input_ids"]):
        special = np.asarray(encoded["special_tokens_mask"][i], dtype=bool)
        if encoded.is_fast:
            words = np.array([-1 if w is None else w for w in encoded.word_ids(i)], dtype=np.int64)
        else:
            tokens = tokenizer.convert_ids_to_tokens(ids)
            words, current = [], -1
            for token in tokens:
                current += 0 if token.startswith("##") and current >= 0 else 1
                words.append(current)
            words = np.array(words, dtype=np.int64)
        words[special] = -1
        maskable = ~special & (np.asarray(ids) != (tokenizer.pad_token_id if tokenizer.pad_token_id is not None else -1))
        rows.append({"input_ids": list(ids), "maskable": maskable.tolist(), "word_ids": words.tolist()})
    return rows
