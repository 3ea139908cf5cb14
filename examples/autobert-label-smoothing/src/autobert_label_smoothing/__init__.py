"""Label smoothing (Szegedy et al. 2016): train against softened targets.

Each one-hot target is mixed with another distribution, a share ``factor`` of
it. By default that is the uniform distribution, so the true class gets
``1 - factor + factor / K`` and every other class ``factor / K``; this
discourages over-confident logits and often helps on small or noisy data.
With the setting ``toward: confusions``, each class is smoothed toward the
classes a quick model of the trial's own recipe confuses it with
(:mod:`autobert_label_smoothing.confusions`, a cached stage of this
technique's own).

A complete third-party technique that uses autobert's public API only
(``autobert``, ``autobert.services``): the package's ``pyproject.toml``
registers this module in the ``autobert.techniques`` entry-point group as
``label_smoothing``, which is the namespace of its parameter
(``label_smoothing.factor``) and setting (``label_smoothing.toward``) and its
key in a study file::

    techniques:
      label_smoothing:
        factor: 0.1                      # fix it, or
        # factor: {low: 0.0, high: 0.1}  # narrow the range searched
        toward: confusions               # a setting: uniform (the default) or confusions
"""

from __future__ import annotations

from autobert import FORWARD_PASS, Setting, hookimpl

__version__ = "0.1.0"

FACTOR = "label_smoothing.factor"
TOWARD = "label_smoothing.toward"
#: Where the trial's targets are noted (``run.note``): each class's smoothing distribution, by label id.
TARGETS = "label_smoothing.targets"
CHOICES = ("uniform", "confusions")


@hookimpl
def autobert_settings():
    return {TOWARD: Setting("uniform", help=(
        "what the targets are smoothed toward: uniform (every class alike) or confusions (the classes a quick "
        "model of the trial's own recipe confuses each class with; trained once per recipe and cached)"))}


@hookimpl
def autobert_search_space(space):
    # `valid` is every value that makes sense (at 1 the labels would be ignored entirely): autobert
    # refuses a study-file override outside it before any trial, so the technique never reads one.
    space.suggest_float(FACTOR, 0.0, 0.2, valid="[0, 1)")


@hookimpl
def autobert_validate_study(settings):
    toward = settings.get(TOWARD, "uniform")
    if toward not in CHOICES:
        return [f"techniques.{TOWARD}: {toward!r} is not one of {', '.join(CHOICES)}; write `toward: uniform` "
                "or `toward: confusions`"]
    return None


@hookimpl
def autobert_trial_cost(params, train_rows, settings):
    if settings.get(TOWARD, "uniform") != "confusions" or not params.get(FACTOR):
        return None
    # The quick model: the recipe on half the training rows, then a forward pass over the other half.
    # (Predicted even when it is cached; the search's calibration absorbs that.)
    half = train_rows / 2
    return {"confusion model": half * float(params.get("finetune.epochs", 1)), "confusions": half * FORWARD_PASS}


# A wrapper, on purpose (autobert's declared order: wrappers come before tryfirst, plain and trylast
# implementations): it sees the task's rows before any technique changes them, the rows the quick
# model's sub-trial then takes through the trial's own techniques.
@hookimpl(wrapper=True)
def autobert_modify_datasets(datasets, run):
    if run.settings.get(TOWARD, "uniform") == "confusions" and run.params.get(FACTOR):
        from autobert_label_smoothing.confusions import confusion_targets

        run.note(TARGETS, confusion_targets(datasets, run).round(6).tolist())
    return (yield)


# The innermost loss wrapper (trylast), whatever else is installed: it swaps the plain cross-entropy
# inside the loss for the smoothed one, before any other technique's wrapper mixes or adds terms.
@hookimpl(wrapper=True, trylast=True)
def autobert_compute_loss(inputs, outputs, run):
    # autobert's trainer asks this hook for the loss instead of using
    # transformers' label smoother, so TrainingArguments(label_smoothing_factor=...)
    # would be silently ignored: the smoothing has to happen here.
    loss = yield
    factor = run.params[FACTOR]
    if not factor:
        return loss
    # Imported here so that `autobert plugins` lists the technique without loading torch.
    import torch
    import torch.nn.functional as F

    logits = outputs.logits.view(-1, outputs.logits.size(-1))
    labels = inputs["labels"].view(-1)
    plain = F.cross_entropy(logits, labels)
    targets = (getattr(run, "metadata", None) or {}).get(TARGETS)
    if targets is None:
        smoothed = F.cross_entropy(logits, labels, label_smoothing=factor)
    else:
        toward = torch.as_tensor(targets, dtype=logits.dtype, device=logits.device)[labels]
        smoothed = (1 - factor) * plain - factor * (toward * F.log_softmax(logits, dim=-1)).sum(-1).mean()
    return loss - plain + smoothed
