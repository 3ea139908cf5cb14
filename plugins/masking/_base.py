"""The masking-strategy contract: what a strategy registered through ``autobert_masking_strategies`` must do."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
        cache: The study's :class:`autobert.stage_cache.StageCache`, or ``None``
            when the study disabled caching.
        run: The trial (:class:`autobert.pipeline.TrialRun`): ``run.tokenizer``,
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
    text = json.dumps(strategy.identity(params, run), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def registered_strategies(hooks: Any) -> dict[str, Any]:
    """``{name: factory}`` from every plugin's ``autobert_masking_strategies`` (sorted by name).

    Raises:
        PluginError: two plugins register the same name.
    """
    from autobert.errors import PluginError

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
