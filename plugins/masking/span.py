"""Span masking (Joshi et al. 2020, SpanBERT): contiguous spans of whole words.

Span lengths, in words, follow a geometric distribution (p = 0.2) truncated at
10 words and renormalised, as SpanBERT samples them (mean about 4.0); spans are added until the budget (``masking.probability``
of the tokens, 15% by default) is used. Spans neither overlap nor touch, so each
masked run of words is one span; the last span is shortened to fit the budget.
"""

from __future__ import annotations

import numpy as np

from autobert.masking import MaskingStrategy

P = 0.2
MAX_WORDS = 10


class SpanMasking(MaskingStrategy):
    """Contiguous spans of whole words, lengths ~ Geometric(0.2) truncated at 10."""

    p = P
    max_words = MAX_WORDS

    def span_length(self, rng: np.random.Generator) -> int:
        lengths = np.arange(1, self.max_words + 1)
        weights = self.p * (1 - self.p) ** (lengths - 1)
        return int(rng.choice(lengths, p=weights / weights.sum()))

    def select(self, example, budget, rng):
        selected = np.zeros(len(example.input_ids), dtype=bool)
        words = example.words()
        used = np.zeros(len(words), dtype=bool)  # words masked or next to a masked word
        taken = 0
        for _ in range(4 * budget + 10):
            if taken >= budget or used.all():
                break
            length = self.span_length(rng)
            start = int(rng.integers(len(words)))
            end = min(start + length, len(words))
            if used[start:end].any():
                continue
            sizes = [len(words[w]) for w in range(start, end)]
            while len(sizes) > 1 and taken + sum(sizes) > budget:
                sizes.pop()
                end -= 1
            for w in range(start, end):
                selected[words[w]] = True
            taken += sum(sizes)
            used[max(0, start - 1):min(len(words), end + 1)] = True
        return selected
