"""Classification heads a technique may build its model on, beside transformers' own.

Each head's module imports nothing but torch and transformers (and, for the
knowledge head, the pooled head beside it): ``save_pretrained`` copies it next
to the weights, so an exported model loads with plain transformers
(``trust_remote_code=True``), without autobert.

- :class:`AutobertPooledForSequenceClassification`: an encoder with a pooling
  of its token vectors (``cls``, ``mean``, ``max``, ...) and a linear
  classifier; built by the ``pooling`` technique.
- :class:`AutobertKnowledgeForSequenceClassification`: the pooled head with an
  external vector per text fused in; built by the ``knowledge`` technique.
- :class:`AutobertEnsembleForSequenceClassification`: several trained
  classifiers as one, their probabilities averaged with weights; built by
  :func:`build_ensemble` when the search chose an ensemble.

Imported on demand (they import torch and transformers)::

    from autobert.heads import AutobertPooledForSequenceClassification
"""

from __future__ import annotations

__all__ = ["AutobertEnsembleConfig", "AutobertEnsembleForSequenceClassification",
           "AutobertKnowledgeForSequenceClassification", "AutobertPooledConfig",
           "AutobertPooledForSequenceClassification", "build_ensemble"]


def __getattr__(name: str):
    if name in ("AutobertPooledConfig", "AutobertPooledForSequenceClassification"):
        from autobert.heads import _pooled_model  # on first use: keeps torch out of `import autobert.heads`

        return getattr(_pooled_model, name)
    if name in ("AutobertKnowledgeConfig", "AutobertKnowledgeForSequenceClassification"):
        from autobert.heads import _knowledge_model  # on first use, as above

        return getattr(_knowledge_model, name)
    if name in ("AutobertEnsembleConfig", "AutobertEnsembleForSequenceClassification", "build_ensemble"):
        from autobert.heads import _ensemble_model  # on first use, as above

        return getattr(_ensemble_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
