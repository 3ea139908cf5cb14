"""Several sequence classifiers as one: the weighted average of their class probabilities.

autobert's search may find that a few trained models, combined, beat its best
single one (Caruana et al. 2004, "Ensemble Selection from Libraries of
Models"); ``autobert train`` then saves them as this one model.
``save_pretrained`` copies this file (and ``_pooled_model.py`` and
``_knowledge_model.py``, which it imports) next to the weights, so the folder
loads without autobert::

    from transformers import AutoModelForSequenceClassification, pipeline

    model = AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)
    classify = pipeline("text-classification", model=DIR, trust_remote_code=True)

The members are ``model.members`` (an ``nn.ModuleList``), each built from its
own configuration in ``config.members``; ``config.weights`` are their weights
(non-negative, summing to 1). The forward pass returns as logits
``log(sum_i w_i * softmax(logits_i))``, so ``softmax(logits)`` is the weighted
average of the members' probabilities, and the loss, with labels, is its
negative log-likelihood. Every member reads the same tokens: members trained
with different tokenizations (a different truncation) are scored exactly as
in training only by feeding each its own encoding (``autobert predict`` does).

It imports nothing but torch and transformers (and the two heads beside it).
"""

import inspect
import math

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from ._knowledge_model import AutobertKnowledgeConfig, AutobertKnowledgeForSequenceClassification
from ._pooled_model import AutobertPooledConfig, AutobertPooledForSequenceClassification


class AutobertEnsembleConfig(PreTrainedConfig):
    """The members' configurations and weights, plus the labels.

    Args:
        members: Each member's ``config.to_dict()`` (with its ``model_type``).
        weights: One non-negative weight per member; normalised to sum to 1
            (default: equal weights).
        id2label, label2id, num_labels: As for any transformers classifier; every member shares them.
    """

    model_type = "autobert-ensemble"

    members: list | None = None
    weights: list | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # No members is allowed here (transformers builds a config of defaults now and then); a model needs some.
        members = list(self.members or [])
        weights = [1.0] * len(members) if self.weights is None else [float(w) for w in self.weights]
        if len(weights) != len(members):
            raise ValueError(f"an ensemble of {len(members)} members needs {len(members)} weights, got {len(weights)}")
        if any(not math.isfinite(w) or w < 0 for w in weights) or (members and sum(weights) <= 0):
            raise ValueError(f"ensemble weights must be non-negative, finite and not all 0, got {weights}")
        total = sum(weights)
        self.members = members
        self.weights = [w / total for w in weights] if members else []

    def member_configs(self) -> list[PreTrainedConfig]:
        """The members' configuration objects, in order."""
        return [member_config(cfg) for cfg in self.members]


def member_config(cfg: dict) -> PreTrainedConfig:
    """A configuration object from a member's ``to_dict()``: autobert's heads, or any transformers model type."""
    cfg = dict(cfg)
    model_type = cfg.pop("model_type", "bert")
    cfg.pop("auto_map", None)  # the member's own remote code is this folder's; the ensemble's auto_map rules
    if model_type == AutobertPooledConfig.model_type:
        return AutobertPooledConfig.from_dict(cfg)
    if model_type == AutobertKnowledgeConfig.model_type:
        return AutobertKnowledgeConfig.from_dict(cfg)
    return AutoConfig.for_model(model_type, **cfg)


def _build_member(config: PreTrainedConfig) -> PreTrainedModel:
    if isinstance(config, AutobertPooledConfig):
        return AutobertPooledForSequenceClassification(config)
    if isinstance(config, AutobertKnowledgeConfig):
        return AutobertKnowledgeForSequenceClassification(config)
    return AutoModelForSequenceClassification.from_config(config)


class AutobertEnsembleForSequenceClassification(PreTrainedModel):
    """Sequence classifiers (``members``) whose class probabilities are averaged with ``config.weights``.

    The state dict is ``members.{i}.<the member's own key>``. ``model.base_model``
    is the first member's encoder, for code that looks for one.
    """

    config_class = AutobertEnsembleConfig
    base_model_prefix = "members"
    # The wrapper has no attention of its own: the members decide what they support.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(self, config: AutobertEnsembleConfig):
        if not config.members:
            raise ValueError("an ensemble needs at least one member; give members=[config.to_dict(), ...]")
        super().__init__(config)
        self.members = nn.ModuleList(_build_member(c) for c in config.member_configs())
        self.num_labels = config.num_labels
        self.post_init()

    @property
    def base_model(self) -> nn.Module:
        return self.members[0].base_model

    def get_input_embeddings(self):
        return self.members[0].get_input_embeddings()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids, **kwargs}
        weighted = []
        for member, weight in zip(self.members, self.config.weights):
            if weight == 0:
                continue  # a member Caruana's selection left out: nothing it says can count
            accepted = inspect.signature(member.forward).parameters
            # Only what was given and the member takes: DistilBERT has no token_type_ids.
            logits = member(**{k: v for k, v in given.items() if v is not None and k in accepted}).logits
            weighted.append(torch.log_softmax(logits.float(), dim=-1) + math.log(weight))
        # log(sum_i w_i p_i), computed in log space: a member sure of a class (p near 0 elsewhere) cannot underflow.
        logits = torch.logsumexp(torch.stack(weighted), dim=0)
        loss = None if labels is None else nn.functional.nll_loss(logits.view(-1, self.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)


def build_ensemble(models: list, weights: list | None = None) -> AutobertEnsembleForSequenceClassification:
    """One model of trained sequence classifiers, their weights copied in.

    Args:
        models: Trained classifiers (transformers' own, or autobert's pooled or knowledge heads)
            with the same labels.
        weights: One non-negative weight per model (normalised to sum to 1); default: equal.

    Raises:
        ValueError: no models, weights that do not match them, or models with different labels.
    """
    if not models:
        raise ValueError("build_ensemble needs at least one model")
    labels = models[0].config.id2label
    for i, model in enumerate(models[1:], 1):
        if model.config.id2label != labels:
            raise ValueError(f"model {i} has the labels {model.config.id2label}, model 0 has {labels}: an ensemble's "
                             "members must classify into the same labels, in the same order")
    config = AutobertEnsembleConfig(
        members=[m.config.to_dict() for m in models], weights=weights,
        id2label=dict(labels), label2id=dict(models[0].config.label2id),
    )
    ensemble = AutobertEnsembleForSequenceClassification(config)
    for member, model in zip(ensemble.members, models):
        member.load_state_dict(model.state_dict())
    return ensemble.to(next(models[0].parameters()).device)


# save_pretrained then writes ``auto_map`` into config.json and copies this file (and those it imports) beside the
# weights.
AutobertEnsembleConfig.register_for_auto_class()
AutobertEnsembleForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
