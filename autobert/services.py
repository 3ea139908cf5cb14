"""The services autobert offers technique authors, beside the hooks of :mod:`autobert.hookspecs`.

Everything a built-in technique uses from the core is here (or in
:mod:`autobert`, :mod:`autobert.masking`, :mod:`autobert.augmenters`,
:mod:`autobert.stage_cache` and :mod:`autobert.errors`), so a third-party
package can do anything a built-in does without importing the engine
(``autobert.run.pipeline``, ``autobert.study.search``, ``autobert.run.plugin_manager``) or
another technique. Light to import: torch and transformers are imported inside
the functions that need them.

- **The run object**: :class:`~autobert.trial_run.TrialRun` (``run`` in the
  hooks), with the trial's enabled techniques (``run.techniques``) and
  :meth:`~autobert.trial_run.TrialRun.note` to record a note on the trial.
- **Models**: :func:`resolve_model`, :func:`load_tokenizer`,
  :func:`find_encoder`, :func:`study_model_layers`, :func:`load_mlm` (get or
  attach a masked-language-model head), :func:`mlm_head`,
  :func:`parameter_groups` (AdamW groups, optionally one learning rate per
  layer), :func:`decays`.
- **Sub-trials**: :func:`train_model` trains a model with the trial's own
  techniques and a changed recipe (a distillation teacher, a task model),
  through the trial's own plugin manager; :func:`subtrial_settings` says what
  settings it trains with; :func:`predict_logits` runs a model it saved.
- **Data and identities**, for cache keys: :func:`fingerprint`,
  :func:`read_split`, :func:`load_task_data`, :func:`model_identity`,
  :func:`tokenizer_identity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

# The model services live in the engine (autobert.run.models) and are public here: this module is the facade
# technique authors import, as `pytest` is for `_pytest`.
from autobert.run.models import (ENCODER_RULE, EncoderParts, decays, encoder_not_found, find_encoder, folder_contents,
                                 layer_depths, load_mlm, load_tokenizer, mlm_head, parameter_groups, resolve_model,
                                 study_model_layers)
from autobert.trial_run import TrialRun
from autobert.stage_cache import cache_key

__all__ = [
    "ENCODER_RULE", "EncoderParts", "SubTrialResult", "TrialRun", "decays", "encoder_not_found", "find_encoder",
    "fingerprint", "layer_depths", "load_mlm", "load_task_data", "load_tokenizer", "mlm_head", "model_identity",
    "parameter_groups", "predict_logits", "read_split", "resolve_model", "study_model_layers", "subtrial_settings",
    "tokenizer_identity", "train_model",
]


# --------------------------------------------------------------------------
# Sub-trials
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SubTrialResult:
    """What :func:`train_model` trained: the validation metric and where the model went."""

    value: float
    metrics: dict[str, float]
    steps: int
    saved_to: Path | None


def train_model(run: TrialRun, datasets: Mapping[str, Any], *, params: Mapping[str, Any],
                save_to: str | Path | None = None, seed: int | None = None,
                techniques: Iterable[str] | None = None) -> SubTrialResult:
    """Train a model with the trial's own techniques and a changed recipe: a sub-trial.

    The sub-trial runs the whole pipeline (data hooks, further pretraining,
    model, training, evaluation) on ``datasets`` with the trial's plugin
    manager, the study's settings and ``params`` as a complete recipe, never
    reporting to the trial's pruner. A distillation teacher is the trial's
    recipe with distillation off; a task model is ``finetune`` alone at a fixed
    recipe.

    Args:
        run: The trial asking.
        datasets: ``{"train": ..., "validation": ...}`` with ``text`` and
            ``label`` columns (and any column the techniques read); without
            ``validation``, the model is evaluated on ``train``.
        params: Every parameter of the recipe, as ``run.params`` holds them
            (e.g. ``{**run.params, "distillation.enabled": False}``). Values
            outside the study's ranges are allowed.
        save_to: If given, the trained model and tokenizer are saved there.
        seed: The sub-trial's seed (default: the trial's).
        techniques: The techniques to run with (default: ``run.techniques``,
            every technique of the trial, those without parameters included).
            A name the trial does not run is refused.

    Returns:
        A :class:`SubTrialResult`.

    Raises:
        PluginError: ``techniques`` names a technique the trial does not run.
        TrialFailed: the sub-trial failed (its loss diverged, ...).
    """
    from autobert.run.pipeline import run_subtrial  # here, not at the top: keeps torch out of `import autobert`

    result = run_subtrial(run, dict(datasets), params=dict(params), save_to=None if save_to is None else Path(save_to),
                          seed=seed, techniques=None if techniques is None else tuple(techniques))
    return SubTrialResult(value=result.value, metrics=dict(result.metrics), steps=result.steps,
                          saved_to=None if save_to is None else Path(save_to))


def predict_logits(run: TrialRun, model_dir: str | Path, dataset: Any, batch_size: int = 64) -> Any:
    """The logits (a float32 ``numpy`` array, one row per row) of the model saved in ``model_dir`` on ``dataset``.

    The texts are encoded as the trial encodes them (its ``autobert_tokenize``),
    and the columns other techniques added that the model's ``forward`` takes
    (knowledge's vectors) are passed as the trainer passes them. For a model
    :func:`train_model` saved (a teacher, a quick model).
    """
    import inspect

    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), trust_remote_code=True)
    model.eval()
    keys = set(inspect.signature(model.forward).parameters)
    token_keys = ("input_ids", "attention_mask", "token_type_ids")
    extra = [k for k in dataset.column_names if k in keys and k not in (*token_keys, "labels")]
    texts = list(dataset["text"])
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            enc = run.hooks.autobert_tokenize(texts=texts[start:start + batch_size], tokenizer=run.tokenizer,
                                              max_length=run.study.max_length, run=run)
            enc = {k: v for k, v in dict(enc).items() if k in token_keys}
            batch = dict(run.tokenizer.pad(enc, return_tensors="pt"))
            batch.update({k: torch.tensor(np.array(dataset[start:start + batch_size][k])) for k in extra})
            out.append(model(**{k: v for k, v in batch.items() if k in keys}).logits.float().numpy())
    return np.concatenate(out) if out else np.zeros((0, run.num_labels), dtype=np.float32)


def subtrial_settings(run: TrialRun, techniques: Iterable[str] | None = None) -> dict[str, Any]:
    """The settings a :func:`train_model` call with ``techniques`` trains with (for its cache key)."""
    from autobert.run.pipeline import subtrial_settings as settings_of  # keeps torch out of `import autobert`

    return settings_of(run, None if techniques is None else tuple(techniques))


# --------------------------------------------------------------------------
# Data and identities (cache keys)
# --------------------------------------------------------------------------


def fingerprint(texts: list[str], labels: list[int]) -> str:
    """A short hash of a split's texts and labels, in order."""
    from autobert.run import data as run_data  # here: keeps pydantic and the data readers out of `import autobert`

    return run_data.fingerprint(texts, labels)


def read_split(study: Any, split: str) -> Any:
    """The study's ``split`` (``train``, ``validation``, ``test``) as the data file gives it, every column
    kept (a ``pandas.DataFrame``); for a technique that reads extra columns."""
    from autobert.run import data as run_data  # here: keeps pydantic and the data readers out of `import autobert`

    return run_data.read_split(study, split)


def load_task_data(study: Any) -> Any:
    """The study's splits, validated and with label ids (``.splits``, ``.label_names``), as a trial sees them.

    Raises:
        ConfigError: the data has problems (every one listed).
    """
    from autobert.run import data as run_data  # here: keeps pydantic and the data readers out of `import autobert`

    return run_data.load_task_data(study)


def model_identity(checkpoint: str) -> dict[str, Any]:
    """A model for a cache key: its name, and for a local folder its config and weight sizes."""
    path = Path(checkpoint)
    if not path.is_dir():
        return {"model": checkpoint}
    return {"model": str(path.resolve()), **folder_contents(path)}  # the same keys as ever: cached entries still match


def tokenizer_identity(tokenizer: Any) -> str:
    """A tokenizer for a cache key: a short hash of its class, vocabulary and special tokens."""
    return cache_key([type(tokenizer).__name__, sorted(tokenizer.get_vocab().items()), tokenizer.all_special_tokens], 16)
