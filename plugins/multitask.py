"""A multi-task auxiliary loss: examples should resemble their label's description.

Each label has a short natural-language description, for now its name as the
study file's ``data.label_names`` (or the data) gives it. On every training
step the descriptions are encoded with the model's own encoder (the last
layer's [CLS] vector), and so are the batch's examples; each example's cosine
similarities to the descriptions of the labels present in the batch, divided
by ``multitask.temperature``, go through a cross-entropy whose target is its
own label (an in-batch contrastive loss). The loss becomes::

    loss + weight * contrastive

The examples' vectors come from a second forward pass of ``model.base_model``,
so a step costs about twice as much; any classification head works. The
literature reports no gain from this auxiliary task; the search's neutral choice
(``enabled: false``) lets a study find that out for itself.
"""

from __future__ import annotations

from autobert import hookimpl

ENABLED = "multitask.enabled"
WEIGHT = "multitask.weight"
TEMPERATURE = "multitask.temperature"
ENCODER_KEYS = ("input_ids", "attention_mask", "token_type_ids")


@hookimpl
def autobert_search_space(space):
    if space.suggest_categorical(ENABLED, [False, True]):
        space.suggest_float(WEIGHT, 0.01, 1.0, log=True)
        space.suggest_float(TEMPERATURE, 0.05, 1.0, log=True)


@hookimpl(wrapper=True)
def autobert_compute_loss(model, inputs, run):
    loss = yield
    if not run.params.get(ENABLED):
        return loss
    labels = inputs["labels"].view(-1)
    examples = cls_vectors(model, {k: v for k, v in inputs.items() if k in ENCODER_KEYS})
    descriptions = encode_descriptions(model, run.tokenizer, list(run.label_names), examples.device)
    aux = contrastive_loss(examples, descriptions, labels, run.params[TEMPERATURE])
    return loss + run.params[WEIGHT] * aux


def cls_vectors(model, encoded: dict):
    """The last layer's [CLS] vector of each text, from the model's own encoder."""
    return model.base_model(**encoded).last_hidden_state[:, 0]


def encode_descriptions(model, tokenizer, descriptions: list[str], device):
    encoded = tokenizer(descriptions, padding=True, return_tensors="pt")
    encoded = {k: v.to(device) for k, v in encoded.items() if k in ENCODER_KEYS}
    return cls_vectors(model, encoded)


def contrastive_loss(examples, descriptions, labels, temperature: float):
    """Cross-entropy of each example over the descriptions of the batch's labels.

    Args:
        examples: ``(batch, hidden)`` example vectors.
        descriptions: ``(num_labels, hidden)`` description vectors, by label id.
        labels: ``(batch,)`` label ids.
        temperature: Divides the cosine similarities.
    """
    import torch
    import torch.nn.functional as F

    present, target = torch.unique(labels, return_inverse=True)
    scores = F.normalize(examples, dim=-1) @ F.normalize(descriptions[present], dim=-1).T
    return F.cross_entropy(scores / temperature, target)
