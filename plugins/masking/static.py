"""Static masking (Devlin et al. 2019): masks chosen once per example copy, before training.

BERT duplicated its data ``duplicates`` times with different masks; epoch
``e`` sees copy ``e % duplicates``, so with one copy an example shows the very
same masked tokens (and the same replacements) in every epoch.
"""

from __future__ import annotations

from autobert.masking import MaskingStrategy
from autobert.plugins.masking.dynamic import choose_tokens

DUPLICATES = "masking.duplicates"


class StaticMasking(MaskingStrategy):
    """Masks fixed per (example, copy); ``masking.duplicates`` copies with different masks."""

    duplicates = 1

    def search_space(self, space):
        space.suggest_int(DUPLICATES, 1, 10, valid="[1, inf)")

    def prepare(self, context):
        self.duplicates = int(context.params.get(DUPLICATES, 1))

    def rng_key(self, example):
        return (example.index, example.epoch % self.duplicates)

    def select(self, example, budget, rng):
        return choose_tokens(example, budget, rng)
