"""A sequence classifier that pools an encoder's hidden states in one of several ways.

autobert's ``pooling`` technique builds this model; ``save_pretrained`` copies
this file next to the weights, so that the exported folder loads without
autobert::

    from transformers import AutoModelForSequenceClassification, pipeline

    model = AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)
    classify = pipeline("text-classification", model=DIR, trust_remote_code=True)

It therefore imports nothing but torch and transformers. The encoder is any
model ``AutoModel`` builds from the nested ``encoder_config`` (BERT, RoBERTa,
DistilBERT, ELECTRA, MiniLM...); it is the model's ``base_model``.
"""

import inspect

import torch
from torch import nn
from transformers import MODEL_MAPPING, AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import logging as hf_logging

#: Pooling kinds and the paper each comes from.
POOLINGS = {
    "mean": "masked mean of the last layer's token vectors (Reimers & Gurevych 2019)",
    "max": "masked maximum of the last layer's token vectors (Reimers & Gurevych 2019)",
    "concat_last_k": "the [CLS] vectors of the last k layers, concatenated (Devlin et al. 2019, sec. 5.3)",
    "scalar_mix": "a learned softmax-weighted sum of every layer's [CLS] vector, embeddings included "
                  "(Peters et al. 2018; Tenney et al. 2019)",
    "cnn_all_cls": "the [CLS] vectors of all layers, stacked and fed to a 1-D CNN over the layer axis "
                   "(Mozafari et al. 2019)",
}

#: Width of the 1-D CNN's window over the layer axis (``cnn_all_cls``).
CNN_WINDOW = 3


class AutobertPooledConfig(PreTrainedConfig):
    """The encoder's configuration plus the pooling and the labels.

    Args:
        encoder_config: The encoder's configuration (a config or its dict, with ``model_type``).
        pooling: One of :data:`POOLINGS`.
        pooling_k: How many top layers ``concat_last_k`` concatenates; at most the encoder's layer count.
        classifier_dropout: Dropout before the classifier; ``None`` takes the encoder's
            ``classifier_dropout``, else its ``hidden_dropout_prob``, else 0.1.
        id2label, label2id, num_labels: As for any transformers classifier.
    """

    model_type = "autobert-pooled"
    sub_configs_defaults = {"encoder_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder_config: PreTrainedConfig | dict | None = None
    pooling: str = "mean"
    pooling_k: int = 2
    classifier_dropout: float | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        layers = self.encoder_config.num_hidden_layers
        if self.pooling == "concat_last_k" and not 1 <= self.pooling_k <= layers:
            raise ValueError(f"pooling_k must be between 1 and the encoder's {layers} layers, got {self.pooling_k}")

    # Read through to the encoder, so that code written for a plain encoder's
    # config (layer counts, initialisation) works on this one too.
    @property
    def hidden_size(self) -> int:
        return self.encoder_config.hidden_size

    @property
    def num_hidden_layers(self) -> int:
        return self.encoder_config.num_hidden_layers

    @property
    def initializer_range(self) -> float:
        return getattr(self.encoder_config, "initializer_range", 0.02)


def _encoder_kwargs(encoder_config: PreTrainedConfig) -> dict:
    """Leave out the encoder's own pooler (no pooling here uses it) where the encoder allows it."""
    encoder_class = MODEL_MAPPING.get(type(encoder_config), None)
    if encoder_class is not None and "add_pooling_layer" in inspect.signature(encoder_class.__init__).parameters:
        return {"add_pooling_layer": False}
    return {}


class LayerPooling(nn.Module):
    """Turns the encoder's hidden states into one vector per text (``width`` wide)."""

    def __init__(self, kind: str, hidden_size: int, num_layers: int, k: int):
        super().__init__()
        self.kind, self.k = kind, k
        if kind == "scalar_mix":
            self.mix_weights = nn.Parameter(torch.zeros(num_layers + 1))  # embeddings + every layer
            self.gamma = nn.Parameter(torch.ones(()))
        elif kind == "cnn_all_cls":
            self.conv = nn.Conv1d(hidden_size, hidden_size, kernel_size=CNN_WINDOW, padding=CNN_WINDOW // 2)
        self.width = hidden_size * k if kind == "concat_last_k" else hidden_size

    def forward(self, hidden_states: tuple[torch.Tensor, ...], attention_mask: torch.Tensor) -> torch.Tensor:
        last = hidden_states[-1]
        mask = attention_mask.unsqueeze(-1).to(last.dtype)
        if self.kind == "mean":
            return (last * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        if self.kind == "max":
            return last.masked_fill(mask == 0, torch.finfo(last.dtype).min).max(1).values
        if self.kind == "concat_last_k":
            return torch.cat([h[:, 0] for h in hidden_states[-self.k:]], dim=-1)
        if self.kind == "scalar_mix":
            cls = torch.stack([h[:, 0] for h in hidden_states], dim=1)  # (batch, layers + 1, hidden)
            weights = torch.softmax(self.mix_weights, dim=0).to(cls.dtype)
            return self.gamma * (weights[None, :, None] * cls).sum(1)
        # cnn_all_cls: the transformer layers' [CLS] vectors, the layer axis as the sequence.
        cls = torch.stack([h[:, 0] for h in hidden_states[1:]], dim=2)  # (batch, hidden, layers)
        return torch.relu(self.conv(cls)).max(dim=-1).values


class AutobertPooledForSequenceClassification(PreTrainedModel):
    """An encoder, a pooling of its hidden states, dropout and a linear classifier.

    The encoder is built from ``config.encoder_config`` and held as ``backbone``
    (``base_model_prefix``), so ``model.base_model`` is the plain encoder
    (``model.base_model.encoder.layer`` for BERT). The head is ``pooling`` and
    ``classifier``; ``classifier.in_features`` is the pooled width.
    """

    config_class = AutobertPooledConfig
    base_model_prefix = "backbone"
    # The wrapper has no attention of its own: the encoder decides what it supports.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(self, config: AutobertPooledConfig):
        super().__init__(config)
        encoder_config = config.encoder_config
        self.num_labels = config.num_labels
        self.backbone = AutoModel.from_config(encoder_config, **_encoder_kwargs(encoder_config))
        self.pooling = LayerPooling(config.pooling, encoder_config.hidden_size,
                                    encoder_config.num_hidden_layers, config.pooling_k)
        dropout = config.classifier_dropout
        if dropout is None:
            dropout = getattr(encoder_config, "classifier_dropout", None)
        if dropout is None:
            dropout = getattr(encoder_config, "hidden_dropout_prob", 0.1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.pooling.width, config.num_labels)
        self.post_init()

    @classmethod
    def from_encoder(cls, checkpoint: str, *, pooling: str, pooling_k: int = 2, **config_kwargs):
        """A new classifier over a pretrained encoder, with a freshly initialised head.

        Args:
            checkpoint: A local folder (or hub id) that ``AutoModel.from_pretrained`` loads.
            pooling: One of :data:`POOLINGS`.
            pooling_k: Layers for ``concat_last_k``; capped by the encoder's layer count.
            **config_kwargs: ``id2label``, ``label2id``, ``num_labels``, ``classifier_dropout``.
        """
        encoder_config = AutoConfig.from_pretrained(checkpoint)
        config = AutobertPooledConfig(
            encoder_config=encoder_config, pooling=pooling,
            pooling_k=min(pooling_k, encoder_config.num_hidden_layers), **config_kwargs,
        )
        model = cls(config)
        # AutoModel knows how to strip a task head's prefix (``bert.``) from the checkpoint's keys.
        # Its report would only list the checkpoint's pooler and task head, which are left out on
        # purpose; the strict load below fails if any weight the encoder needs is missing.
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            pretrained = AutoModel.from_pretrained(checkpoint, **_encoder_kwargs(encoder_config))
        finally:
            hf_logging.set_verbosity(verbosity)
        model.backbone.load_state_dict(pretrained.state_dict())
        return model

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, LayerPooling) and module.kind == "scalar_mix":
            nn.init.zeros_(module.mix_weights)  # an equal mix to start with
            nn.init.ones_(module.gamma)

    def get_input_embeddings(self):
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.backbone.set_input_embeddings(value)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
                 "position_ids": position_ids, "inputs_embeds": inputs_embeds}
        # Only what was given: not every encoder takes token_type_ids (DistilBERT does not).
        outputs = self.backbone(**{k: v for k, v in given.items() if v is not None},
                                output_hidden_states=True, return_dict=True)
        if attention_mask is None:
            reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
            attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
        logits = self.classifier(self.dropout(self.pooling(outputs.hidden_states, attention_mask)))
        return SequenceClassifierOutput(loss=self._loss(logits, labels), logits=logits)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
        """The loss every transformers sequence classifier computes, by ``problem_type``."""
        if labels is None:
            return None
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "regression":
            return nn.functional.mse_loss(logits.squeeze(-1) if self.num_labels == 1 else logits, labels.to(logits.dtype))
        if self.config.problem_type == "single_label_classification":
            return nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


# save_pretrained then writes ``auto_map`` into config.json and copies this file beside the weights.
AutobertPooledConfig.register_for_auto_class()
AutobertPooledForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
