"""The masking-strategy extension point: what a strategy must do, the registry, and the collator that applies one.

Shared by the techniques on both sides of it: the ``masking`` technique (and
any plugin) registers strategies through ``autobert_masking_strategies``; the
``further_pretraining`` stages look them up with :func:`registered_strategies`
and mask their batches with :class:`MaskingCollator`. Light to import: torch
is imported when a batch is collated.

- :class:`MaskingStrategy`: the contract (``search_space``, ``identity``,
  ``prepare``, ``rng_key``, ``select``);
- :class:`MaskingContext`, :class:`MaskingExample`: what ``prepare`` and
  ``select`` receive;
- :func:`registered_strategies`, :func:`strategy_key`: the registry and a
  strategy's cache identity;
- :class:`MaskingCollator`, :func:`encode_corpus`, :func:`budget_for`,
  :func:`replace`: tokenising a corpus for masking and the 80/10/10 rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from autobert.stage_cache import cache_key
from autobert.errors import PluginError

__all__ = [
    "MaskingCollator", "MaskingContext", "MaskingExample", "MaskingStrategy", "budget_for", "encode_corpus",
    "registered_strategies", "replace", "strategy_key",
]

PREFIX = "masking."


@dataclass(frozen=True)
class MaskingExample:
    """One visit of one example during masked-language-model pretraining.

    Attributes:
        input_ids: The example's token ids, special tokens included, no padding.
        maskable: ``True`` where a token may be masked; ``False`` at special and
            padding tokens (the collator enforces it whatever ``select`` answers).
        word_ids: The word each token belongs to (0, 1, ...), ``-1`` at special tokens.
        index: The example's row in the stage's corpus.
        epoch: How many full passes over the corpus came before this visit.
        position: The visit's place in the training stream (step * batch size + i).
    """

    input_ids: np.ndarray
    maskable: np.ndarray
    word_ids: np.ndarray
    index: int
    epoch: int
    position: int

    def words(self) -> list[np.ndarray]:
        """The positions of each maskable word's tokens, in order."""
        ids = np.where(self.maskable, self.word_ids, -1)
        return [np.flatnonzero(ids == w) for w in np.unique(ids[ids >= 0])]


@dataclass
class MaskingContext:
    """What :meth:`MaskingStrategy.prepare` may use; one per pretraining stage.

    Attributes:
        stage: ``"domain"`` or ``"task"``.
        texts: The stage's corpus, one document per entry.
        examples: The corpus tokenised: ``input_ids``, ``maskable`` and ``word_ids`` per row.
        corpus_fingerprint: A hash of ``texts``.
        params: This trial's ``masking.*`` parameters.
        seed: The trial's seed.
        key: A hash of the corpus, the tokenizer, ``params`` and ``seed``: the
            name under which to cache anything the preparation computes.
        cache: The study's cache (:class:`autobert.StageCache`, ``run.cache``), or ``None``
            when the study disabled caching.
        run: The trial (:class:`autobert.TrialRun`): ``run.tokenizer``,
            ``run.study``, ``run.settings``, ``run.hooks``, ``run.workdir``.
        datasets: The trial's raw datasets (``train`` has the task's texts and
            labels, e.g. for a task-guided strategy that fine-tunes a model first).
    """

    stage: str
    texts: list[str]
    examples: list[dict[str, Any]]
    corpus_fingerprint: str
    params: dict[str, Any]
    seed: int
    key: str
    cache: Any = None
    run: Any = None
    datasets: dict[str, Any] = field(default_factory=dict)


class MaskingStrategy:
    """One way of choosing the tokens a masked language model must predict.

    Lifecycle: every plugin's ``autobert_masking_strategies()`` maps names to
    factories (usually the class itself); the ``masking`` technique draws
    ``masking.strategy`` among the names and calls a fresh instance's
    :meth:`search_space`, so a strategy's parameters exist only in trials that
    use it. Before a pretraining stage trains, the stage builds one instance
    and calls :meth:`prepare` once; then, for every example of every batch, the
    collator calls :meth:`select` with a generator seeded from the trial's seed
    and :meth:`rng_key`, and applies the 80/10/10 rule to what it selects. A
    stage served from the cache never builds the strategy.

    Invariants: construction is cheap (heavy work goes in ``prepare``);
    ``select`` draws every random number from the generator it is given, so
    masks are reproducible from the seed and independent of caching and
    resuming; special and padding tokens are never masked.

    Attributes:
        version: Bump when the masks change for the same inputs, so that cached
            stages are not reused.
    """

    version: int = 1

    def search_space(self, space: Any) -> None:
        """Draw this strategy's own parameters (``space.suggest_*``, named ``masking.<param>``).

        Called only in trials that chose this strategy. The default draws nothing.
        """

    def identity(self, params: dict[str, Any], run: Any = None) -> dict[str, Any]:
        """Everything the masks depend on besides the corpus, tokenizer and seed.

        Part of the stage-cache key. ``params`` are the trial's ``masking.*``
        parameters; ``run`` is the trial (settings, other techniques' parameters,
        the task data), or ``None`` where none is at hand. The default: the
        class, ``version`` and ``params``. A strategy that reads anything else
        (a task model's recipe, a setting) must add it.
        """
        return {
            "strategy": f"{type(self).__module__}.{type(self).__qualname__}",
            "version": self.version,
            "params": {k: v for k, v in sorted(params.items()) if k.startswith(PREFIX)},
        }

    def prepare(self, context: MaskingContext) -> None:
        """Get ready for a stage: read parameters, precompute per-example scores.

        Called once per stage that trains (per corpus, tokenizer, parameters and
        seed); cache expensive results under ``context.cache`` with
        ``context.key``. The default reads nothing.
        """

    def rng_key(self, example: MaskingExample) -> tuple[int, ...]:
        """What seeds ``select``'s generator besides the trial's seed.

        The default, ``(example.position,)``, draws new masks at every visit
        (dynamic masking); a key without ``position`` fixes an example's masks.
        """
        return (example.position,)

    def select(self, example: MaskingExample, budget: int, rng: np.random.Generator) -> np.ndarray:
        """Choose the positions to predict.

        Args:
            example: The visit (ids, maskable positions, words).
            budget: How many tokens to choose, about ``masking.probability``
                of the maskable ones (at least 1 when any is maskable).
            rng: The only source of randomness.

        Returns:
            A boolean array over ``example.input_ids``; ``True`` = predict this token.
        """
        raise NotImplementedError


def strategy_key(strategy: MaskingStrategy, params: dict[str, Any], run: Any = None) -> str:
    """A short hash of :meth:`MaskingStrategy.identity`."""
    return cache_key(strategy.identity(params, run), 16)


def registered_strategies(hooks: Any) -> dict[str, Any]:
    """``{name: factory}`` from every plugin's ``autobert_masking_strategies`` (sorted by name).

    Raises:
        PluginError: two plugins register the same name.
    """
    found: dict[str, Any] = {}
    owners: dict[str, str] = {}
    if hooks is None:
        return found
    for impl in hooks.autobert_masking_strategies.get_hookimpls():
        for name, factory in (impl.function() or {}).items():
            if name in found:
                raise PluginError(
                    f"masking strategy {name!r} is registered by both {owners[name]!r} and {impl.plugin_name!r}; "
                    f"disable one of them"
                )
            found[name], owners[name] = factory, impl.plugin_name
    return dict(sorted(found.items()))


# --------------------------------------------------------------------------
# Applying a strategy
# --------------------------------------------------------------------------


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

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

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
