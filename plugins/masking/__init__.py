"""Masking strategies for masked-language-model pretraining: the ``masking`` technique.

``masking.strategy`` chooses among every registered strategy (the built-ins
below and any plugin's, through the ``autobert_masking_strategies`` hook);
``masking.probability`` is the share of tokens to predict. Every strategy's
selected tokens go through the 80/10/10 rule, special and padding tokens are
never masked, and masks are reproducible from the trial's seed.

- :mod:`~autobert.plugins.masking.static`: masks fixed per example copy (BERT);
- :mod:`~autobert.plugins.masking.dynamic`: new masks at every visit (RoBERTa);
- :mod:`~autobert.plugins.masking.whole_word`: every sub-token of a word together;
- :mod:`~autobert.plugins.masking.span`: geometric spans of words (SpanBERT);
- :mod:`~autobert.plugins.masking.entropy`: the tokens whose masking most changes
  a task model's predictive entropy, topped up at random;
- :mod:`~autobert.plugins.masking.selective`: the tokens a masker trained on the
  buffer procedure's labels marks important (Gu et al. 2020), topped up at random.

The parameters only exist in trials that pretrain (the ``further_pretraining``
technique enabled and ``further_pretraining.stages`` other than ``none``):
masking is read by the further-pretraining stages and nothing else.
"""

from __future__ import annotations

from autobert import Setting, hookimpl
# The extension point lives in autobert.masking, where further pretraining reads it too; re-exported here.
from autobert.masking import (MaskingCollator, MaskingContext, MaskingExample, MaskingStrategy, budget_for,
                              encode_corpus, registered_strategies, replace, strategy_key)
from autobert.plugins.masking.dynamic import DynamicMasking
from autobert.plugins.masking.entropy import EntropyMasking
from autobert.plugins.masking.selective import SelectiveMasking
from autobert.plugins.masking.span import SpanMasking
from autobert.plugins.masking.static import StaticMasking
from autobert.plugins.masking.whole_word import WholeWordMasking

__all__ = [
    "MaskingStrategy", "MaskingContext", "MaskingExample", "MaskingCollator", "registered_strategies",
    "strategy_key", "budget_for", "encode_corpus", "replace",
    "StaticMasking", "DynamicMasking", "WholeWordMasking", "SpanMasking", "EntropyMasking",
    "SelectiveMasking",
]

STRATEGY = "masking.strategy"
PROBABILITY = "masking.probability"
#: Listed first: the strategy a study gets when it fixes nothing (and the explorer's default).
DEFAULT_STRATEGY = "dynamic"


@hookimpl
def autobert_masking_strategies():
    return {"static": StaticMasking, "dynamic": DynamicMasking, "whole_word": WholeWordMasking, "span": SpanMasking,
            "entropy": EntropyMasking, "selective": SelectiveMasking}


@hookimpl
def autobert_trial_cost(params, train_rows, settings):
    # The task-guided strategies train a model on the labelled data before the stage.
    from autobert.plugins.masking import entropy, selective

    if params.get("further_pretraining.stages", "none") == "none":
        return None
    strategy = params.get("masking.strategy")
    if strategy == "entropy":
        return {"task model": train_rows * float(settings.get(entropy.EPOCHS, entropy.DEFAULTS[entropy.EPOCHS]))}
    if strategy == "selective":
        epochs = float(settings.get(selective.MASKER_EPOCHS, selective.DEFAULTS[selective.MASKER_EPOCHS]))
        return {"masker": train_rows * epochs}
    return None


@hookimpl
def autobert_settings():
    from autobert.plugins.masking import entropy, selective

    return {
        entropy.EPOCHS: Setting(entropy.DEFAULTS[entropy.EPOCHS], help=(
            "epochs of the task model a task-guided strategy (entropy) fine-tunes on the labelled data")),
        entropy.LEARNING_RATE: Setting(entropy.DEFAULTS[entropy.LEARNING_RATE], help="the task model's learning rate"),
        entropy.BATCH_SIZE: Setting(entropy.DEFAULTS[entropy.BATCH_SIZE], help="the task model's batch size"),
        entropy.SCORING_BATCH: Setting(entropy.DEFAULTS[entropy.SCORING_BATCH], help=(
            "rows (masked copies of sentences) per forward pass when entropy masking scores the corpus")),
        selective.THRESHOLD: Setting(selective.DEFAULTS[selective.THRESHOLD], help=(
            "selective masking: a token is important when the buffer's gold-label confidence comes within this of "
            "the whole sentence's")),
        selective.MASKER_LAYERS: Setting(selective.DEFAULTS[selective.MASKER_LAYERS], help=(
            "selective masking: encoder layers of the masker (the study's model cut to this many)")),
        selective.MASKER_EPOCHS: Setting(selective.DEFAULTS[selective.MASKER_EPOCHS], help="selective masking: the masker's epochs"),
        selective.MASKER_LR: Setting(selective.DEFAULTS[selective.MASKER_LR], help="selective masking: the masker's learning rate"),
    }


@hookimpl
def autobert_validate_study(study, settings):
    from autobert.plugins.masking import entropy, selective

    problems = []
    for name in (entropy.EPOCHS, entropy.BATCH_SIZE, entropy.SCORING_BATCH):
        value = settings.get(name, entropy.DEFAULTS[name])
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"techniques.{name}: {value!r} must be an integer >= 1")
    for name in (selective.MASKER_LAYERS, selective.MASKER_EPOCHS):
        value = settings.get(name, selective.DEFAULTS[name])
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"techniques.{name}: {value!r} must be an integer >= 1")
    threshold = settings.get(selective.THRESHOLD, selective.DEFAULTS[selective.THRESHOLD])
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 <= threshold < 1:
        problems.append(f"techniques.{selective.THRESHOLD}: {threshold!r} must be a number in [0, 1) (the reference "
                        "code uses 0.01)")
    for name, default in ((entropy.LEARNING_RATE, entropy.DEFAULTS[entropy.LEARNING_RATE]),
                          (selective.MASKER_LR, selective.DEFAULTS[selective.MASKER_LR])):
        rate = settings.get(name, default)
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not rate > 0:
            problems.append(f"techniques.{name}: {rate!r} must be a number > 0 (e.g. 1.0e-4)")
    return problems


# Last, so that further_pretraining.stages is drawn already in a trial. (Study
# validation walks each technique's space on its own, where it is not drawn.)
@hookimpl(trylast=True)
def autobert_search_space(space):
    if "further_pretraining" not in space.techniques or space.params.get("further_pretraining.stages") == "none":
        return
    registry = registered_strategies(space.hooks) if getattr(space, "hooks", None) is not None else autobert_masking_strategies()
    names = list(registry)
    if DEFAULT_STRATEGY in names:
        names.insert(0, names.pop(names.index(DEFAULT_STRATEGY)))
    strategy = space.suggest_categorical(STRATEGY, names)
    # A stepped range: few distinct values, so trials can share cached stages.
    space.suggest_float(PROBABILITY, 0.1, 0.2, step=0.05, valid="(0, 1)")
    registry[strategy]().search_space(space)


@hookimpl
def autobert_ablation():
    # Off: RoBERTa's plain random masking; masking only exists in trials that pretrain, so it has no "on".
    return {"off": {STRATEGY: DEFAULT_STRATEGY}}
