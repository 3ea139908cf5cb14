"""Where a BERT-style encoder keeps its embeddings and its stack of layers.

Shared by ``llrd`` (a learning rate per layer) and ``reinit`` (re-initialise the
top layers). Not a technique: it has no entry point and no hooks.

The rule, by module structure rather than by model name: a module is the
encoder when it has an ``embeddings`` attribute and a non-empty
``encoder.layer`` (BERT, RoBERTa, ELECTRA, MiniLM) or ``transformer.layer``
(DistilBERT) list of layers. If the model itself is not the encoder, its
``base_model``, ``encoder``, ``bert``, ``roberta``, ``distilbert`` and
``electra`` attributes are searched, in that order and a few levels deep, so a
custom model that holds a transformers encoder under one of those names (a
pooling head, say) is found too. ALBERT (shared layers), GPT-2 and T5 do not
match.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

RULE = (
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
        layers: The transformer layers, bottom to top.
    """

    base: torch.nn.Module
    embeddings: tuple[torch.nn.Module, ...]
    layers: torch.nn.ModuleList


def find_encoder(model: torch.nn.Module, _depth: int = 0) -> EncoderParts | None:
    """The embeddings and layers of ``model``'s encoder, or ``None`` if the rule finds none."""
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


def study_model_layers(study) -> tuple[str, int | None] | None:
    """``(model type, number of layers found or None)`` for the study's model, from its config alone.

    ``None`` when the config cannot be loaded; study validation reports that
    problem itself.
    """
    from autobert.pipeline import resolve_model

    try:
        return _layers_of_checkpoint(resolve_model(study))
    except Exception:
        return None


def unsupported(technique: str, model: str, model_type: str) -> str:
    """The validation problem for a model whose layers cannot be found."""
    return (
        f"model: {technique} cannot find the encoder layers of {model!r} (model type {model_type!r}); "
        f"{RULE}. Add `disable: [{technique}]` to the study file, or choose a model of those families"
    )
