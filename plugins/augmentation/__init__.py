"""Training-data augmentation: the ``augmentation`` technique and its built-in methods.

- :mod:`~autobert.plugins.augmentation.technique`: the ``augmentation``
  technique (``augmentation.ratio``, ``augmentation.method``), the cache;
- :mod:`~autobert.plugins.augmentation.eda`: EDA (Wei & Zou 2019);
- :mod:`~autobert.plugins.augmentation.contextual`: contextual substitution
  with a masked language model (Kobayashi 2018; Wu et al. 2019);
- :mod:`~autobert.plugins.augmentation.backtranslation`: round trip through
  two seq2seq translation models.

Each method module is a technique of its own that registers its
:class:`Augmenter` through the ``autobert_augmenters`` hook, exactly as a
third-party package would.
"""

# The extension point lives in autobert.augmenters; re-exported here.
from autobert.augmenters import Augmenter

__all__ = ["Augmenter"]
