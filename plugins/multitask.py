"""A multi-task auxiliary loss: examples should resemble their label's description.

Each label has a short natural-language description: the setting
``techniques.multitask.descriptions`` maps every label name to one
(``{negative: "a scathing review", positive: "a glowing review"}``); without
it, each label's name is its description. Validation refuses a mapping that
misses a label or names one the task does not have. On every training
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

from autobert import Setting, hookimpl

ENABLED = "multitask.enabled"
WEIGHT = "multitask.weight"
TEMPERATURE = "multitask.temperature"
DESCRIPTIONS = "multitask.descriptions"
ENCODER_KEYS = ("input_ids", "attention_mask", "token_type_ids")


@hookimpl
def autobert_search_space(space):
    if space.suggest_categorical(ENABLED, [False, True]):
        space.suggest_float(WEIGHT, 0.01, 1.0, log=True)
        space.suggest_float(TEMPERATURE, 0.05, 1.0, log=True)


@hookimpl
def autobert_ablation():
    return {"off": {ENABLED: False}, "on": {ENABLED: True, WEIGHT: 0.1, TEMPERATURE: 0.1}}


@hookimpl
def autobert_trial_cost(params, train_rows):
    # A second forward pass of the encoder per step (and its backward): about one more training pass.
    if not params.get(ENABLED):
        return None
    return {"second encoder pass": train_rows * float(params.get("finetune.epochs", 1))}


@hookimpl
def autobert_settings():
    return {DESCRIPTIONS: Setting(None, help="{label name: description} for every label (default: the label names)")}


@hookimpl
def autobert_validate_study(study, settings):
    descriptions = settings.get(DESCRIPTIONS)
    if descriptions is None:
        return None
    key = f"techniques.{DESCRIPTIONS}"
    if not isinstance(descriptions, dict) or not descriptions:
        return [f"{key}: give a mapping of each label name to its description, e.g. "
                "{negative: \"a scathing review\", positive: \"a glowing review\"}"]
    problems = [f"{key}.{name}: the description must be non-empty text, got {text!r}"
                for name, text in descriptions.items() if not isinstance(text, str) or not text.strip()]
    labels = _label_names(study)
    if labels is None:
        return problems  # the data cannot be read; autobert's own checks say why
    unknown = [str(n) for n in descriptions if str(n) not in labels]
    missing = [n for n in labels if n not in {str(k) for k in descriptions}]
    if unknown:
        problems.append(f"{key}: {', '.join(map(repr, unknown))} {'is not a label' if len(unknown) == 1 else 'are not labels'} "
                        f"of this task (labels: {', '.join(labels)}); describe the task's labels by name")
    if missing:
        problems.append(f"{key}: no description for {', '.join(map(repr, missing))}; describe every label "
                        f"(labels: {', '.join(labels)})")
    return problems


def descriptions_of(run) -> list[str]:
    """Each label's description, by label id: the setting's text, else the label's name."""
    given = {str(k): v for k, v in ((getattr(run, "settings", None) or {}).get(DESCRIPTIONS) or {}).items()}
    return [given.get(name, name) for name in run.label_names]


def _label_names(study) -> list[str] | None:
    if study.data.label_names:
        return list(study.data.label_names)
    from autobert.services import load_task_data
    from autobert.errors import ConfigError

    try:
        return load_task_data(study).label_names
    except ConfigError:
        return None


# The outermost wrapper (declared, see docs/plugin_hooks.md#order): the auxiliary term is added to the whole
# loss, distillation's mix included.
@hookimpl(wrapper=True, tryfirst=True)
def autobert_compute_loss(model, inputs, run):
    loss = yield
    if not run.params.get(ENABLED):
        return loss
    labels = inputs["labels"].view(-1)
    examples = cls_vectors(model, {k: v for k, v in inputs.items() if k in ENCODER_KEYS})
    descriptions = encode_descriptions(model, run.tokenizer, descriptions_of(run), examples.device)
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
