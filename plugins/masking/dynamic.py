"""Dynamic masking (Liu et al. 2019, RoBERTa): new masks every time an example is seen."""

from __future__ import annotations

import numpy as np

from autobert.masking import MaskingExample, MaskingStrategy


def choose_tokens(example: MaskingExample, budget: int, rng: np.random.Generator) -> np.ndarray:
    """``budget`` maskable tokens chosen uniformly without replacement."""
    selected = np.zeros(len(example.input_ids), dtype=bool)
    candidates = np.flatnonzero(example.maskable)
    selected[rng.choice(candidates, size=min(budget, len(candidates)), replace=False)] = True
    return selected


class DynamicMasking(MaskingStrategy):
    """Each visit masks ``masking.probability`` of the tokens, drawn anew."""

    def select(self, example, budget, rng):
        return choose_tokens(example, budget, rng)
