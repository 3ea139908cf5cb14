"""Self-knowledge distillation: learn from a teacher trained with the same recipe.

When ``distillation.enabled``, the trial first fine-tunes a teacher with its
own recipe but distillation off (``distillation.teachers`` teachers with seeds
``seed, seed + 1, ...`` whose logits are averaged: a self-ensemble), keeps the
teacher's logits on the training split, and then trains the student from the
same starting point on::

    alpha * KL(softmax(teacher / T) || softmax(student / T)) * T**2 + (1 - alpha) * loss

where ``loss`` is whatever the other techniques compute (cross-entropy by
default) (Hinton et al. 2015; Furlanello et al. 2018, "Born-Again Neural
Networks").

The teacher is a sub-trial (:func:`autobert.services.train_model`): the very
same pipeline with the trial's own techniques (those without parameters too)
and this trial's parameters with distillation off, so it never recurses and
never reports to this trial's pruner. Its logits are
an entry of kind ``teacher`` in the study's cache (``autobert cache ls``), the
key hashing the recipe without the ``distillation.*`` parameters, the seeds,
the training data's fingerprint and the model, so trials that differ only in
``alpha`` or ``T`` train the teacher once. Only the training split gets the ``teacher_logits``
column; evaluation is untouched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from autobert import FORWARD_PASS, cache_key, hookimpl

ENABLED = "distillation.enabled"
ALPHA = "distillation.alpha"
TEMPERATURE = "distillation.temperature"
TEACHERS = "distillation.teachers"
COLUMN = "teacher_logits"
#: Bump when what a cache entry holds changes, so that old entries are not reused.
CACHE_VERSION = 2
#: The kind of the teachers' cache entries.
KIND = "teacher"


@hookimpl
def autobert_search_space(space):
    if space.suggest_categorical(ENABLED, [False, True]):
        space.suggest_float(ALPHA, 0.1, 0.9, valid="[0, 1]")
        space.suggest_float(TEMPERATURE, 1.0, 8.0, valid="(0, inf)")
        # One teacher by default; a study widens the range to search self-ensembles.
        space.suggest_int(TEACHERS, 1, 1, valid="[1, inf)")


@hookimpl
def autobert_ablation():
    return {"off": {ENABLED: False}, "on": {ENABLED: True, ALPHA: 0.5, TEMPERATURE: 2.0, TEACHERS: 1}}


@hookimpl
def autobert_trial_cost(params, train_rows):
    if not params.get(ENABLED):
        return None
    # Each teacher is a fine-tuning run of the same recipe, then a forward pass for its logits.
    # (Predicted even when the teacher is cached: the key needs the run; the calibration absorbs it.)
    teachers = int(params.get(TEACHERS, 1))
    return {"teachers": teachers * train_rows * float(params.get("finetune.epochs", 1)),
            "teacher logits": teachers * train_rows * FORWARD_PASS}


# A plain implementation, on purpose (the order is declared, see docs/plugin_hooks.md#order): after
# knowledge (tryfirst), which adds its vectors to the rows the data files give, and before augmentation
# (trylast), which copies training rows, so that the teacher sees the task's own rows and every row
# augmentation copies carries its teacher logits.
@hookimpl
def autobert_modify_datasets(datasets, run):
    if not run.params.get(ENABLED):
        return
    from autobert.services import fingerprint

    train = datasets["train"]
    seeds = [run.seed + i for i in range(run.params[TEACHERS])]
    train_print = fingerprint(list(train["text"]), list(train["label"]))
    key = teacher_key(run, seeds, train_print)
    description = {"seeds": ",".join(map(str, seeds)), "rows": len(train), "model": run.study.model}
    for attempt in range(2):
        entry = run.cache.build(KIND, key, lambda folder: _train_teachers(folder, datasets, seeds, train_print, run),
                                description)
        logits = _read_logits(entry, len(train))
        if logits is not None:
            break
        run.cache.discard(KIND, key)  # unreadable or of another size: rebuilt, never served
    else:
        raise RuntimeError(f"the teachers' logits just built in {entry} do not fit the training split "
                           f"({len(train)} rows)")
    datasets["train"] = train.add_column(COLUMN, [row.tolist() for row in logits])


def _read_logits(entry: Path, rows: int):
    """The cached logits, or ``None`` where the entry does not hold one row per training row."""
    import numpy as np

    try:
        logits = np.load(entry / "logits.npy")
    except (OSError, ValueError):
        return None
    return logits if len(logits) == rows else None


@hookimpl(wrapper=True)
def autobert_compute_loss(outputs, extras, run):
    loss = yield
    if not run.params.get(ENABLED) or COLUMN not in extras:
        return loss
    import torch.nn.functional as F

    alpha, t = run.params[ALPHA], run.params[TEMPERATURE]
    student = outputs.logits.view(-1, outputs.logits.size(-1))
    teacher = extras[COLUMN].to(device=student.device, dtype=student.dtype).view_as(student)
    soft = F.kl_div(F.log_softmax(student / t, dim=-1), F.log_softmax(teacher / t, dim=-1),
                    reduction="batchmean", log_target=True)
    return alpha * soft * t * t + (1.0 - alpha) * loss


def teacher_params(params: dict) -> dict:
    """The trial's parameters with distillation off: the teacher's recipe."""
    return {**{k: v for k, v in params.items() if not k.startswith("distillation.")}, ENABLED: False}


def teacher_key(run, seeds: list[int], train_fingerprint: str) -> str:
    """A hash of everything the teacher's logits depend on, and of nothing distillation searches."""
    from autobert.services import resolve_model

    study = run.study
    described = {
        "version": CACHE_VERSION,
        "params": teacher_params(run.params),
        "seeds": seeds,
        "train": train_fingerprint,
        "model": resolve_model(study),
        "labels": list(run.label_names),
        "max_length": study.max_length,
        # Other techniques' settings shape the teacher too (finetune.group_by_length, a vector file, ...).
        "settings": {k: v for k, v in (run.settings or {}).items() if not k.startswith("distillation.")},
        # The teacher runs with every technique of the trial, those without parameters too.
        "techniques": sorted(getattr(run, "techniques", ()) or ()),
    }
    if getattr(run, "precision", "fp32") != "fp32":  # teachers train in the study's precision; fp32 keeps old keys
        described["precision"] = run.precision
    return cache_key(described)


def _train_teachers(folder: Path, datasets: dict, seeds: list[int], train_print: str, run) -> None:
    """Train one teacher per seed, average their logits on ``train`` into ``folder`` (the cache's staging folder)."""
    import numpy as np

    from autobert.services import predict_logits, train_model

    all_logits = []
    for i, seed in enumerate(seeds):
        # A sub-trial with the trial's own techniques (its plugin manager), the recipe with distillation off.
        model_dir = folder / f"teacher-{i}"
        result = train_model(run, datasets, params=teacher_params(run.params), seed=seed, save_to=model_dir)
        all_logits.append(predict_logits(run, model_dir, datasets["train"]))
        (folder / f"teacher-{i}.json").write_text(json.dumps({"seed": seed, "value": result.value}) + "\n")
        shutil.rmtree(model_dir)
    np.save(folder / "logits.npy", np.mean(all_logits, axis=0).astype(np.float32))
