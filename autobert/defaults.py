"""Default implementations: what a trial does when no technique says otherwise.

Registered first, so that every technique's implementation is called before
these (pluggy calls the last registered first) and a ``firstresult`` answer
from a technique wins.
"""

from __future__ import annotations

import numpy as np

from autobert import hookimpl


@hookimpl
def autobert_tokenize(texts, tokenizer, max_length):
    return tokenizer(texts, truncation=True, max_length=max_length)


@hookimpl
def autobert_build_model(checkpoint, run):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        checkpoint, num_labels=run.num_labels, id2label=run.id2label, label2id=run.label2id
    )


NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "LayerNorm.bias", "norm.weight")


def decays(name: str) -> bool:
    """Whether weight decay applies to a parameter (never to biases and norms)."""
    return not any(name.endswith(suffix) for suffix in NO_DECAY)


@hookimpl
def autobert_optimizer_param_groups(model, args):
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if decays(n)], "weight_decay": args.weight_decay, "lr": args.learning_rate},
        {"params": [p for n, p in named if not decays(n)], "weight_decay": 0.0, "lr": args.learning_rate},
    ]


@hookimpl
def autobert_compute_loss(outputs):
    return outputs.loss


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.argmax(logits, axis=-1) == labels).mean())


def macro_f1(logits: np.ndarray, labels: np.ndarray) -> float:
    preds = np.argmax(logits, axis=-1)
    scores = []
    for c in range(logits.shape[-1]):
        tp = np.sum((preds == c) & (labels == c))
        fp = np.sum((preds == c) & (labels != c))
        fn = np.sum((preds != c) & (labels == c))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


@hookimpl
def autobert_metrics():
    return {"accuracy": accuracy, "macro_f1": macro_f1}
