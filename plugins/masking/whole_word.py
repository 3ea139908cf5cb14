"""Whole-word masking (Devlin et al. 2019, the later BERT release): all sub-tokens of a chosen word together."""

from __future__ import annotations

import numpy as np

from autobert.masking import MaskingStrategy


class WholeWordMasking(MaskingStrategy):
    """Words in random order are masked whole while they fit in the budget of tokens."""

    def select(self, example, budget, rng):
        selected = np.zeros(len(example.input_ids), dtype=bool)
        words = example.words()
        taken = 0
        for w in rng.permutation(len(words)):
            if taken >= budget:
                break
            if taken + len(words[w]) > budget and taken > 0:
                continue  # as BERT: skip a word that would overshoot, try a shorter one
            selected[words[w]] = True
            taken += len(words[w])
        return selected
