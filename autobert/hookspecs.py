"""The autobert plugin contract.

Every technique is a pluggy plugin: a module (or object) with functions marked
``@autobert.hookimpl`` whose names match the specs below. Specs are grouped by
pipeline phase, in the order data flows through a trial:

    search space -> study validation -> data -> further pretraining
    -> model -> optimisation -> loss -> evaluation

An implementation may accept any subset of a spec's arguments, so specs can gain
arguments without breaking plugins. Unless a spec says ``firstresult``, every
registered implementation is called and the results are collected in a list.

Order is declared, never left to registration: pluggy calls wrappers first
(``wrapper=True, tryfirst=True`` outermost, ``wrapper=True, trylast=True``
innermost), then ``tryfirst`` implementations, plain ones, ``trylast`` ones,
and autobert's defaults last. Within one tier the order is registration order,
which is not part of the contract: techniques whose relative order matters sit
in different tiers (see docs/plugin_hooks.md, "Order").

The object named ``run`` in many hooks is a :class:`autobert.TrialRun`: the
study, the trial's parameters (``run.params``), the seed, the tokenizer, the
label names, the trial's techniques, a private working directory and the
study's cache. What a hook may use besides its arguments is the public API
(:mod:`autobert.services`, docs/plugin_api.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import pluggy

if TYPE_CHECKING:
    import torch
    from datasets import Dataset

    from autobert.config.schema import StudyConfig
    from autobert.trial_run import TrialRun
    from autobert.config.settings import Setting
    from autobert.config.space import EffectiveSpace, SearchSpace

hookspec = pluggy.HookspecMarker("autobert")
#: Marker for technique hook implementations: ``@autobert.hookimpl`` (defined here, beside the specs it implements).
hookimpl = pluggy.HookimplMarker("autobert")

#: A forward pass alone (evaluation, scoring, generation) costs about a third of a training pass: the unit a
#: technique's ``autobert_trial_cost`` uses for work that only runs the model forward (``autobert.FORWARD_PASS``).
FORWARD_PASS = 1 / 3


# --------------------------------------------------------------------------
# Search space
# --------------------------------------------------------------------------


@hookspec
def autobert_search_space(space: SearchSpace) -> None:
    """Suggest this technique's parameters for one trial.

    :param space: The trial's search space. Call ``space.suggest_float``,
        ``space.suggest_int`` or ``space.suggest_categorical`` with a name
        namespaced by the technique (``"finetune.learning_rate"``) and the
        technique's own default range. Study-file overrides (a fixed value, a
        narrower range, fewer choices) are applied by ``space``; the plugin never
        sees them. An opt-in technique asks ``space.configured`` whether the
        study file has a section for it. Conditional parameters are plain Python::

            if space.suggest_categorical("distill.enabled", [False, True]):
                space.suggest_float("distill.alpha", 0.1, 0.9)

    :return: Nothing; the suggested values are read later from ``run.params``.

    Called once per trial before anything else, for every enabled technique, and
    also with a recording space by ``autobert plugins`` and study validation, so
    it must be cheap and free of side effects.
    """


@hookspec
def autobert_trial_cost(
    params: dict[str, Any], train_rows: int, settings: dict[str, Any], cache_dir: Path, hooks: Any
) -> Mapping[str, float] | None:
    """Predict the work this technique adds to one run of a trial, before it starts.

    :param params: The trial's drawn parameters (every technique's), as
        ``run.params`` will hold them.
    :param train_rows: Rows in the task's training split, before augmentation.
    :param settings: Every enabled technique's settings (see
        :func:`autobert_settings`), paths resolved.
    :param cache_dir: The study's stage cache folder: leave out work whose
        output is already cached there.
    :param hooks: The plugin manager's hook relay, for a technique whose cost
        depends on an extension point of its own (the augmenters).
    :return: ``{"term": work}``, the work of each expensive thing the
        technique does, in **example passes**: one forward and backward pass
        of one training example at the study's ``max_length`` (a forward pass
        alone is about a third of one); or ``None`` when it adds nothing.

    Called once per trial and seed by the search's cost model, for every
    enabled technique, after the search space is drawn and before anything
    heavy. The search turns the summed work into seconds with the throughput it
    measures on this study's own trials, and uses the prediction to keep a time
    budget (a trial predicted not to fit is not started) and to explore cheap
    recipes first. A technique that trains another model (a teacher, a task
    model), runs a stage (further pretraining) or multiplies the training rows
    says so here; one that only changes how a step is computed may return
    nothing. Must be cheap and free of side effects.
    """


@hookspec
def autobert_cost_knobs() -> Mapping[str, Any] | None:
    """Declare the technique's cost knobs: its parameters whose lower values make a trial cheaper.

    :return: ``{"technique.parameter": knob}``, the technique's own
        parameters in the order it would rather have them lowered, or
        ``None``. A knob is ``{"steps": ..., "passes": ...}``:

        * ``steps``: ``"down"`` for an integer parameter (one less at a time,
          down to the lowest value the study's space allows), or the values
          to try, dearest first (``[8, 4, 2, 1]``): the steps after the
          recipe's own value (for a number the list lacks, those below it).
        * ``passes`` (optional, ``False``): ``True`` when the parameter counts
          passes over the training data (``{"steps": "down", "passes": True}``
          for a count of epochs). The engine's own evaluation runs at every
          report of every pass, so the cost model scales it with this value
          (one pass where no enabled technique says so). At most one
          enabled technique may declare such a knob.

        A bare ``"down"`` or list of steps stands for ``{"steps": ...}``.

    A timed search makes a recipe over its cheap-first cap fit as its
    *cheaper variant*: it switches the costliest techniques off (their
    :func:`autobert_ablation` off values) and then lowers the knobs, the
    technique with the most predicted work first, each knob a step at a time
    while the recipe is over the cap and each step lowers its predicted cost
    (:func:`autobert_trial_cost`); values the study's space does not allow
    are skipped. Called for every enabled technique whenever the search
    predicts a trial's cost or makes a cheaper variant; any technique may
    implement it. Naming another technique's parameter, or a knob of another
    shape, raises ``PluginError``. Must be cheap and free of side effects.
    """


@hookspec
def autobert_settings() -> Mapping[str, Setting] | None:
    """Declare the technique's settings: fixed values the user gives once, never searched.

    :return: ``{"technique.setting": Setting(default, help, path=...)}`` (a
        bare value is taken as the default), or ``None`` when the technique has
        none. Names are namespaced by the technique, like parameters.

    A study file sets a setting in the technique's section of ``techniques:``,
    beside the parameter overrides (``domain_corpus: data/movies.txt``). Hooks
    read the value from ``run.settings["technique.setting"]``; relative paths
    of ``path=True`` settings arrive resolved against the study file's folder.
    Settings are copied into frozen configs, so a replay sees the same values,
    and are listed by ``autobert plugins``. Called whenever the settings are
    needed: when a study is validated, at the start of every trial and
    sub-trial, and on every read of ``space.settings``; so it must be cheap,
    free of side effects and answer the same every time.
    """


@hookspec
def autobert_ablation() -> Mapping[str, Any] | None:
    """Declare how the technique is switched off, and on at its documented default.

    :return: ``{"off": {...}, "on": {...}}``: ``off`` the values of the
        technique's own parameters that switch it off (the neutral choice of
        its space, ``{"llrd.decay": 1.0}``); ``on``, optional, the complete
        parameter values of its documented default, conditional ones included
        (``{"llrd.decay": 0.95}``). Or ``{"reason": "..."}`` when the
        technique cannot be switched off on its own; ``None`` (or no
        implementation) counts as "declares no off value".

    ``autobert ablate`` re-trains a frozen recipe with each technique it uses
    (one whose ``off`` parameters are drawn with other values) switched off
    alone, and with ``--add NAME`` a technique it does not use switched on at
    ``on``; parameters the changed recipe no longer draws are dropped. Must be
    cheap and free of side effects.
    """


@hookspec
def autobert_validate_study(study: StudyConfig, settings: dict[str, Any], space: EffectiveSpace) -> list[str] | None:
    """Check the study file for problems this technique would hit later.

    :param study: The parsed study file.
    :param settings: Every declared setting's value for this study (see
        :func:`autobert_settings`), keyed by full name, paths resolved.
    :param space: The effective space: ``{name: ParamSpec}`` of every
        parameter the study's trials can draw, after the study file's
        overrides (``space["reinit.layers"].highest``,
        ``space["llrd.decay"].is_fixed``, ``space.changed(name)``). Check the
        parameters against it; never read ``study.overrides``.
    :return: A list of human-readable problems (each naming the key and the
        fix), or ``None``/``[]`` when there is nothing to report.

    Called once before the first trial, for every enabled technique; all
    problems from all plugins are reported together in one error, so a user
    fixes the file in one go instead of discovering problems mid-search.
    """


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


@hookspec
def autobert_modify_datasets(datasets: dict[str, Dataset], run: TrialRun) -> None:
    """Change the trial's raw datasets before tokenisation.

    :param datasets: ``{"train": ..., "validation": ..., "test": ...}`` of
        ``datasets.Dataset`` with columns ``text`` and ``label`` (ids). Replace
        an entry to change it, e.g. ``datasets["train"] = augmented``. Extra
        columns added here reach :func:`autobert_compute_loss` as ``extras``.
    :return: Nothing; modify ``datasets`` in place.

    Called once per trial, for every enabled technique. Never change the
    evaluation splits' rows: the metric must stay comparable across trials.
    """


@hookspec
def autobert_augmenters(settings: dict[str, Any]) -> Mapping[str, Any] | None:
    """Register data-augmentation methods for the ``augmentation`` technique.

    :param settings: Every enabled technique's settings (see
        :func:`autobert_settings`), the study file's or the default.
    :return: ``{name: augmenter}``, each augmenter an
        :class:`autobert.augmenters.Augmenter` (its ``search_space``
        draws the method's own parameters, its ``augment`` turns a batch of
        training texts into new ones), or ``None`` when the plugin has none.
        Names must be unique across plugins. A method that cannot run as
        configured (back-translation without its two models) maps to a string
        instead, the reason and what to set: it is no choice, and a study file
        asking for it is refused with that string.

    The registered names, sorted, are the choices of ``augmentation.method``.
    The augmentation technique calls this through ``space.hooks`` and
    ``run.hooks`` whenever it needs the registry (in every search-space pass
    and once per trial), so it must be cheap: build models lazily inside
    ``augment``. The built-in ``eda``, ``contextual`` and ``backtranslation``
    techniques register their methods through this hook, like any
    third-party plugin.
    """


@hookspec(firstresult=True)
def autobert_tokenize(
    texts: list[str], tokenizer: Any, max_length: int, run: TrialRun
) -> Mapping[str, list] | None:
    """Turn a batch of texts into model inputs.

    :param texts: The batch's texts.
    :param tokenizer: The study's tokenizer.
    :param max_length: The study's maximum sequence length.
    :param run: The trial (``run.params`` holds the technique's choices).
    :return: A mapping like the tokenizer's output (``input_ids``,
        ``attention_mask``, ...) without padding, or ``None`` to leave it to the
        next implementation.

    ``firstresult``: the first non-``None`` answer wins; autobert's default
    truncates at the end.
    """


# --------------------------------------------------------------------------
# Further pretraining
# --------------------------------------------------------------------------


@hookspec(firstresult=True)
def autobert_further_pretrain(
    checkpoint: str, datasets: dict[str, Dataset], run: TrialRun
) -> str | None:
    """Continue pretraining the encoder before fine-tuning.

    :param checkpoint: Path or hub id of the encoder the trial starts from.
    :param datasets: The trial's raw datasets (after
        :func:`autobert_modify_datasets`); use ``train`` texts, never labels of
        the evaluation splits.
    :return: The path of the further-pretrained checkpoint (loadable with
        ``from_pretrained`` and containing the study's tokenizer), or ``None``
        to fine-tune ``checkpoint`` as it is.

    ``firstresult``: the first non-``None`` answer wins. Called once per trial
    after the data phase. Write large outputs under ``run.cache_dir`` (shared
    across trials) or ``run.workdir`` (removed after the trial).
    """


@hookspec
def autobert_masking_strategies() -> Mapping[str, Callable[[], Any]] | None:
    """Register masking strategies for masked-language-model pretraining.

    :return: ``{name: factory}``, each factory (usually a class) returning a
        fresh :class:`autobert.masking.MaskingStrategy` (its
        ``search_space`` draws the strategy's own parameters, ``prepare`` runs
        once per pretraining stage with the corpus, tokenizer, trial and
        cache, ``select`` chooses the tokens of each visit), or ``None`` when
        the plugin has none. Names must be unique across plugins.

    The registered names are the choices of ``masking.strategy`` (``dynamic``
    first, then by name). The ``masking`` technique and the further-pretraining
    stages call this through ``space.hooks`` and ``run.hooks`` whenever they
    need the registry, so it must be cheap; construction of a strategy must be
    cheap too. The six built-in strategies, ``static``, ``dynamic``,
    ``whole_word``, ``span``, ``entropy`` and ``selective``, are registered
    through this hook by the ``masking`` technique, like any third-party
    plugin's.
    """


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


@hookspec(firstresult=True)
def autobert_build_model(checkpoint: str, run: TrialRun) -> torch.nn.Module | None:
    """Build the classification model: encoder plus head.

    :param checkpoint: Path or hub id to load the encoder from.
    :return: A ``transformers.PreTrainedModel`` whose ``forward`` accepts the
        tokenizer's outputs and ``labels`` and returns an output with
        ``logits`` (and ``loss`` when labels are given), or ``None`` to leave it
        to the next implementation. Use ``run.num_labels``, ``run.id2label``
        and ``run.label2id``.

    ``firstresult``: the first non-``None`` answer wins; autobert's default is
    ``AutoModelForSequenceClassification`` (the [CLS] head). The random state
    is seeded with the trial's seed before this call.
    """


@hookspec
def autobert_modify_model(model: torch.nn.Module, run: TrialRun) -> None:
    """Change the built model before training (re-initialise layers, add modules).

    :param model: The model from :func:`autobert_build_model`.
    :return: Nothing; modify ``model`` in place.

    Called once per trial, for every enabled technique, after the model is
    built and before the optimizer is created.
    """


# --------------------------------------------------------------------------
# Optimisation
# --------------------------------------------------------------------------


@hookspec
def autobert_training_arguments(args: dict[str, Any], run: TrialRun) -> None:
    """Set ``transformers.TrainingArguments`` for fine-tuning.

    :param args: Keyword arguments for ``TrainingArguments``, pre-filled by
        autobert with what the study fixes (output directory, seed, evaluation
        schedule, no checkpoints). Set or change keys in place, e.g.
        ``args["learning_rate"] = run.params["finetune.learning_rate"]``.
    :return: Nothing.

    Called once per trial, for every enabled technique, before the trainer is
    built.
    """


@hookspec(firstresult=True)
def autobert_optimizer_param_groups(
    model: torch.nn.Module, args: Any, run: TrialRun
) -> list[dict[str, Any]] | None:
    """Split the model's parameters into AdamW parameter groups.

    :param model: The model to train.
    :param args: The final ``TrainingArguments`` (``args.learning_rate``,
        ``args.weight_decay``).
    :return: A list of ``{"params": [...], "lr": ..., "weight_decay": ...}``
        dicts covering every trainable parameter exactly once, or ``None`` to
        leave it to the next implementation.

    ``firstresult``: the first non-``None`` answer wins; autobert's default uses
    the base learning rate everywhere and no weight decay on biases and
    LayerNorm weights. The linear warmup/decay schedule applies to all groups.
    """


# --------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------


@hookspec(firstresult=True)
def autobert_compute_loss(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    outputs: Any,
    extras: dict[str, torch.Tensor],
    run: TrialRun,
) -> torch.Tensor | None:
    """Compute the training loss of one batch.

    :param model: The model being trained.
    :param inputs: The batch as passed to the model (including ``labels``).
    :param outputs: The model's output for ``inputs``.
    :param extras: Batch columns the model does not take (added by
        :func:`autobert_modify_datasets`), as tensors.
    :return: A scalar loss tensor.

    ``firstresult``: autobert's default returns the model's cross-entropy
    (``outputs.loss``). To add a term to whatever loss the others compute,
    implement it as a wrapper::

        @hookimpl(wrapper=True)
        def autobert_compute_loss(outputs, run):
            loss = yield
            return loss + run.params["aux.weight"] * aux_term(outputs)

    A loss that is not finite fails the trial with the step it happened at.
    """


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


@hookspec
def autobert_metrics() -> dict[str, Callable[[Any, Any], float]] | None:
    """Register evaluation metrics.

    :return: ``{name: fn}`` where ``fn(logits, labels)`` takes numpy arrays
        (``logits`` of shape ``(n, num_labels)``, integer ``labels``) and returns
        a float where higher or lower is better as the study's ``direction``
        says.

    Called when a study is validated and when evaluation is set up; every
    registered metric is computed at each evaluation, and the study's
    ``metric`` picks the one that is optimised and reported to the pruner.
    Names must be unique across plugins.
    """


@hookspec
def autobert_trainer_callbacks(run: TrialRun) -> list[Any] | None:
    """Add ``transformers.TrainerCallback`` objects to the fine-tuning trainer.

    :return: A list of callbacks (may be empty) or ``None``.

    Called once per trial, for every enabled technique, when the trainer is
    built. Callbacks see every step and evaluation; raise
    ``optuna.TrialPruned`` from one to stop the trial as pruned.
    """
