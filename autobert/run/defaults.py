"""Default implementations: what a trial does when no technique says otherwise.

Registered first, so that every technique's implementation is called before
these (pluggy calls the last registered first) and a ``firstresult`` answer
from a technique wins.
"""

from __future__ import annotations

import numpy as np

from autobert.hookspecs import hookimpl
from autobert.run.models import parameter_groups


@hookimpl
def autobert_tokenize(texts, tokenizer, max_length):
    return tokenizer(texts, truncation=True, max_length=max_length)


@hookimpl
def autobert_build_model(checkpoint, run):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        checkpoint, num_labels=run.num_labels, id2label=run.id2label, label2id=run.label2id
    )


@hookimpl
def autobert_optimizer_param_groups(model, args):
    return parameter_groups(model, args.learning_rate, args.weight_decay)


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
