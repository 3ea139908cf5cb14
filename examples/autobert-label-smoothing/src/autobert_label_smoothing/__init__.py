"""Label smoothing (Szegedy et al. 2016): train against softened targets.

Each one-hot target is mixed with the uniform distribution, so the true class
gets ``1 - factor + factor / K`` and every other class ``factor / K``. This
discourages over-confident logits and often helps on small or noisy data.

A complete third-party technique: the package's ``pyproject.toml`` registers
this module in the ``autobert.techniques`` entry-point group as
``label_smoothing``, which is the namespace of its one parameter
(``label_smoothing.factor``) and its key in a study file::

    techniques:
      label_smoothing:
        factor: 0.1                      # fix it, or
        # factor: {low: 0.0, high: 0.1}  # narrow the range searched
"""

from __future__ import annotations

from numbers import Real

from autobert import hookimpl

__version__ = "0.1.0"

FACTOR = "label_smoothing.factor"


@hookimpl
def autobert_search_space(space):
    space.suggest_float(FACTOR, 0.0, 0.2)


@hookimpl
def autobert_validate_study(study):
    override = study.techniques.get("label_smoothing", {}).get("factor")
    if isinstance(override, dict):
        values = [override[k] for k in ("low", "high") if k in override]
    else:
        values = override if isinstance(override, list) else [override]
    # Non-numbers are reported by autobert's own override check.
    bad = [v for v in values if isinstance(v, Real) and not isinstance(v, bool) and not 0.0 <= v < 1.0]
    if bad:
        return [
            f"techniques.label_smoothing.factor: {bad[0]!r} is outside [0, 1); at 1 the labels "
            "would be ignored entirely; use a small value such as 0.1"
        ]
    return None


@hookimpl(wrapper=True)
def autobert_compute_loss(inputs, outputs, run):
    # autobert's trainer asks this hook for the loss instead of using
    # transformers' label smoother, so TrainingArguments(label_smoothing_factor=...)
    # would be silently ignored: the smoothing has to happen here.
    loss = yield
    factor = run.params[FACTOR]
    if not factor:
        return loss
    # Imported here so that `autobert plugins` lists the technique without loading torch.
    import torch.nn.functional as F

    logits = outputs.logits.view(-1, outputs.logits.size(-1))
    labels = inputs["labels"].view(-1)
    # Swap the plain cross-entropy inside `loss` for the smoothed one, so that
    # terms other techniques added around it are kept.
    plain = F.cross_entropy(logits, labels)
    smoothed = F.cross_entropy(logits, labels, label_smoothing=factor)
    return loss - plain + smoothed
