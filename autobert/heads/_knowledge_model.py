"""A sequence classifier that also reads one external vector per text (knowledge injection).

autobert's ``knowledge`` technique wraps whatever classifier the trial built
(the standard [CLS] head, or a ``pooling`` head) in this model;
``save_pretrained`` copies this file (and ``_pooled_model.py``, which it
imports) next to the weights, so the exported folder loads without autobert::

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)
    tokens = AutoTokenizer.from_pretrained(DIR)(texts, padding=True, return_tensors="pt")
    logits = model(**tokens, knowledge_vectors=vectors).logits   # vectors: (len(texts), config.knowledge_dim)

Every call needs ``knowledge_vectors``, a float tensor of shape
``(batch, config.knowledge_dim)``; a missing or wrongly sized one is refused
with a message saying what the model expects. (``transformers.pipeline`` cannot
pass them; call the model.)

The wrapped classifier is ``model.inner`` and is left as it is; the vectors
enter through forward hooks on its modules:

- ``inject="embeddings"``: the output of the encoder's embedding layer (input
  of the first transformer layer), at the [CLS] position (``tokens="cls"``) or
  at every position (``tokens="all"``);
- ``inject="last_layer"``: the input of the classifier, i.e. the pooled
  representation (Ostendorff et al. 2019, "Enriching BERT with Knowledge
  Graph Embeddings for Document Classification").

There, with ``z = dropout(tanh(W_p (v - mean) / std))`` the projected vector
(``knowledge_projection`` wide; ``mean`` and ``std`` per feature, from the
training vectors, kept as buffers) and ``h`` the host representation:
``add`` gives ``h + W_o z``; ``concat`` gives ``W_c [h; z]``, a linear map of the
concatenation back to ``h``'s width, so that the classifier the model already
has applies unchanged; ``gated`` gives ``h + sigmoid(W_g [h; z]) * W_o z``.
``W_o`` starts at zero and ``W_c`` at ``[I 0]``: before training the model
computes exactly what the wrapped classifier computes.

It imports nothing but torch and transformers (and ``_pooled_model`` beside it).
"""

import inspect

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedConfig, PreTrainedModel

from ._pooled_model import AutobertPooledConfig, AutobertPooledForSequenceClassification

INJECTIONS = ("embeddings", "last_layer")
FUSIONS = ("add", "concat", "gated")
TOKENS = ("cls", "all")


class AutobertKnowledgeConfig(PreTrainedConfig):
    """The wrapped classifier's configuration plus how the external vectors are injected.

    Args:
        classifier_config: The wrapped classifier's configuration, as a dict (with ``model_type``).
        knowledge_dim: The dimension of one external vector; every call must pass vectors this wide.
        knowledge_inject: ``embeddings`` or ``last_layer``.
        knowledge_fusion: ``add``, ``concat`` or ``gated``.
        knowledge_tokens: With ``embeddings``: ``cls`` (the first position) or ``all``.
        knowledge_projection: Width the vectors are projected to.
        knowledge_dropout: Dropout on the projected vectors.
        knowledge_source: Where the training vectors came from, for whoever uses the model later.
    """

    model_type = "autobert-knowledge"

    classifier_config: dict | None = None
    knowledge_dim: int = 0
    knowledge_inject: str = "last_layer"
    knowledge_fusion: str = "concat"
    knowledge_tokens: str = "cls"
    knowledge_projection: int = 64
    knowledge_dropout: float = 0.1
    knowledge_source: str = ""

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.knowledge_inject not in INJECTIONS:
            raise ValueError(f"knowledge_inject must be one of {', '.join(INJECTIONS)}, got {self.knowledge_inject!r}")
        if self.knowledge_fusion not in FUSIONS:
            raise ValueError(f"knowledge_fusion must be one of {', '.join(FUSIONS)}, got {self.knowledge_fusion!r}")
        if self.knowledge_tokens not in TOKENS:
            raise ValueError(f"knowledge_tokens must be one of {', '.join(TOKENS)}, got {self.knowledge_tokens!r}")

    def classifier(self) -> PreTrainedConfig:
        """The wrapped classifier's configuration object."""
        cfg = dict(self.classifier_config or {})
        model_type = cfg.pop("model_type", "bert")
        if model_type == AutobertPooledConfig.model_type:
            return AutobertPooledConfig.from_dict(cfg)
        return AutoConfig.for_model(model_type, **cfg)

    # Read through to the wrapped classifier, so that code written for a plain
    # encoder's config (layer counts, initialisation) works on this one too.
    @property
    def hidden_size(self) -> int:
        return self.classifier().hidden_size

    @property
    def num_hidden_layers(self) -> int:
        return self.classifier().num_hidden_layers

    @property
    def initializer_range(self) -> float:
        return getattr(self.classifier(), "initializer_range", 0.02)


class KnowledgeFusion(nn.Module):
    """Fuses a projected external vector into a host representation of width ``width``."""

    def __init__(self, dim: int, width: int, projection: int, fusion: str, dropout: float):
        super().__init__()
        self.fusion = fusion
        # Vectors come at any scale (unit-norm sentence embeddings, raw features): standardised per
        # feature with the training vectors' mean and spread (saved with the model), the projection
        # starts at a useful magnitude whatever they are, and no information is lost.
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.project = nn.Linear(dim, projection)
        self.dropout = nn.Dropout(dropout)
        if fusion in ("add", "gated"):
            self.out = nn.Linear(projection, width)
        if fusion == "concat":
            self.mix = nn.Linear(width + projection, width)
        if fusion == "gated":
            self.gate = nn.Linear(width + projection, width)

    def reset_to_identity(self) -> None:
        """Start as a no-op: the host representation passes through unchanged."""
        with torch.no_grad():
            if self.fusion in ("add", "gated"):
                self.out.weight.zero_()
                self.out.bias.zero_()
            if self.fusion == "concat":
                width = self.mix.out_features
                self.mix.weight.zero_()
                self.mix.weight[:, :width].copy_(torch.eye(width))
                self.mix.bias.zero_()

    def forward(self, host: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        standardised = (vectors.to(host.dtype) - self.shift) / self.scale
        z = self.dropout(torch.tanh(self.project(standardised)))
        if host.dim() == 3:  # (batch, tokens, width): the same vector at every position
            z = z[:, None, :].expand(-1, host.size(1), -1)
        if self.fusion == "add":
            return host + self.out(z)
        both = torch.cat([host, z], dim=-1)
        if self.fusion == "concat":
            return self.mix(both)
        return host + torch.sigmoid(self.gate(both)) * self.out(z)


def _build_classifier(config: PreTrainedConfig) -> PreTrainedModel:
    if isinstance(config, AutobertPooledConfig):
        return AutobertPooledForSequenceClassification(config)
    return AutoModelForSequenceClassification.from_config(config)


def _host_width(classifier: nn.Module, hidden_size: int) -> int:
    """The width of what the classifier module receives (the pooled vector, or hidden states)."""
    return classifier.in_features if isinstance(classifier, nn.Linear) else hidden_size


class AutobertKnowledgeForSequenceClassification(PreTrainedModel):
    """A sequence classifier (``inner``) fed one external vector per text.

    ``model.base_model`` is the wrapped classifier's encoder, so techniques that
    look for the encoder (layer-wise learning rates, re-initialisation, the
    multi-task loss) find it as they would without the wrapper.
    """

    config_class = AutobertKnowledgeConfig
    base_model_prefix = "inner"
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(self, config: AutobertKnowledgeConfig):
        super().__init__(config)
        self.inner = _build_classifier(config.classifier())
        self._vectors: torch.Tensor | None = None
        hidden = self.inner.config.hidden_size
        if config.knowledge_inject == "embeddings":
            host, width = getattr(self.inner.base_model, "embeddings", None), hidden
            if not isinstance(host, nn.Module):
                raise ValueError(f"{type(self.inner.base_model).__name__} has no `embeddings` module to inject into; "
                                 "use knowledge_inject='last_layer'")
            host.register_forward_hook(self._into_embeddings)
        else:
            host = getattr(self.inner, "classifier", None)
            if not isinstance(host, nn.Module):
                raise ValueError(f"{type(self.inner).__name__} has no `classifier` module to inject before; "
                                 "use knowledge_inject='embeddings'")
            width = _host_width(host, hidden)
            host.register_forward_pre_hook(self._into_classifier)
        self.knowledge = KnowledgeFusion(config.knowledge_dim, width, config.knowledge_projection,
                                         config.knowledge_fusion, config.knowledge_dropout)
        self.post_init()
        # A fresh model starts as the wrapped classifier; from_pretrained then loads trained weights over it.
        self.knowledge.reset_to_identity()

    @classmethod
    def wrap(cls, classifier: PreTrainedModel, *, dim: int, inject: str, fusion: str, tokens: str = "cls",
             projection: int = 64, dropout: float = 0.1, source: str = "",
             standardize: tuple | None = None) -> "AutobertKnowledgeForSequenceClassification":
        """Wrap a built (e.g. pretrained) classifier; its weights are kept, the fusion starts as a no-op.

        ``standardize``: the training vectors' per-feature ``(mean, std)``; vectors are
        standardised with them before the projection (default: used as they are).
        """
        config = AutobertKnowledgeConfig(
            classifier_config=classifier.config.to_dict(), knowledge_dim=dim, knowledge_inject=inject,
            knowledge_fusion=fusion, knowledge_tokens=tokens, knowledge_projection=projection,
            knowledge_dropout=dropout, knowledge_source=source,
            id2label=classifier.config.id2label, label2id=classifier.config.label2id,
        )
        model = cls(config)
        model.inner.load_state_dict(classifier.state_dict())
        if standardize is not None:
            mean, std = (torch.as_tensor(x, dtype=torch.float32).reshape(dim) for x in standardize)
            model.knowledge.shift.copy_(mean)
            model.knowledge.scale.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))  # constant features
        return model

    @property
    def base_model(self) -> nn.Module:
        return self.inner.base_model

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.inner.set_input_embeddings(value)

    # The hooks fire inside ``inner``'s forward; ``_vectors`` is set only for the
    # duration of this model's own forward, so an encoder pass made directly
    # through ``base_model`` (the multi-task loss) sees no knowledge.
    def _into_embeddings(self, module, args, output):
        if self._vectors is None:
            return output
        if self.config.knowledge_tokens == "all":
            return self.knowledge(output, self._vectors)
        first = self.knowledge(output[:, 0], self._vectors)
        return torch.cat([first[:, None], output[:, 1:]], dim=1)

    def _into_classifier(self, module, args):
        if self._vectors is None:
            return None
        return (self.knowledge(args[0], self._vectors), *args[1:])

    def _check(self, vectors: torch.Tensor | None, batch: int) -> torch.Tensor:
        dim = self.config.knowledge_dim
        source = f" (trained on {self.config.knowledge_source})" if self.config.knowledge_source else ""
        if vectors is None:
            raise ValueError(
                f"this model reads one external knowledge vector per text{source}: pass "
                f"knowledge_vectors, a float tensor of shape (batch, {dim})"
            )
        vectors = torch.as_tensor(vectors)
        if vectors.dim() != 2 or vectors.shape != (batch, dim):
            raise ValueError(
                f"knowledge_vectors has shape {tuple(vectors.shape)}; this model needs ({batch}, {dim}): "
                f"one {dim}-dimensional vector per text{source}"
            )
        return vectors

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        knowledge_vectors: torch.Tensor | None = None,
    ):
        reference = input_ids if input_ids is not None else inputs_embeds
        vectors = self._check(knowledge_vectors, reference.shape[0])
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
                 "position_ids": position_ids, "inputs_embeds": inputs_embeds, "labels": labels}
        accepted = inspect.signature(self.inner.forward).parameters
        # Only what was given and the wrapped model takes: DistilBERT has no token_type_ids.
        kwargs = {k: v for k, v in given.items() if v is not None and k in accepted}
        self._vectors = vectors.to(reference.device)
        try:
            return self.inner(**kwargs)
        finally:
            self._vectors = None


# save_pretrained then writes ``auto_map`` into config.json and copies this file beside the weights.
AutobertKnowledgeConfig.register_for_auto_class()
AutobertKnowledgeForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
