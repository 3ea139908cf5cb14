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

The teacher is the very same pipeline: :func:`autobert.pipeline.run_pipeline`
called on a ``FixedTrial`` of this trial's parameters with distillation off,
so it never recurses and never reports to this trial's pruner. Its logits are
cached under ``<study cache>/distillation/<key>``, the key hashing the recipe
without the ``distillation.*`` parameters, the seeds, the training data's
fingerprint and the model, so trials that differ only in ``alpha`` or ``T``
train the teacher once. Only the training split gets the ``teacher_logits``
column; evaluation is untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from autobert import FORWARD_PASS, hookimpl

ENABLED = "distillation.enabled"
ALPHA = "distillation.alpha"
TEMPERATURE = "distillation.temperature"
TEACHERS = "distillation.teachers"
COLUMN = "teacher_logits"
#: Bump when what a cache entry holds changes, so that old entries are not reused.
CACHE_VERSION = 1


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


# First, so that the teacher sees the task's own data and the column is
# added before any other technique reshapes the training split.
@hookimpl(tryfirst=True)
def autobert_modify_datasets(datasets, run):
    if not run.params.get(ENABLED):
        return
    from autobert.data import fingerprint

    train = datasets["train"]
    seeds = [run.seed + i for i in range(run.params[TEACHERS])]
    train_print = fingerprint(list(train["text"]), list(train["label"]))
    entry = run.cache_dir / "distillation" / cache_key(run, seeds, train_print)
    if not (entry / "logits.npy").exists():
        _train_teachers(entry, datasets, seeds, train_print, run)
    import numpy as np

    logits = np.load(entry / "logits.npy")
    if len(logits) != len(train):
        raise RuntimeError(f"cached teacher logits in {entry} have {len(logits)} rows, the training split {len(train)}; "
                           "delete that folder and run again")
    datasets["train"] = train.add_column(COLUMN, [row.tolist() for row in logits])


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


def cache_key(run, seeds: list[int], train_fingerprint: str) -> str:
    """A hash of everything the teacher's logits depend on, and of nothing distillation searches."""
    from autobert.pipeline import resolve_model

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
    }
    if getattr(run, "precision", "fp32") != "fp32":  # teachers train in the study's precision; fp32 keeps old keys
        described["precision"] = run.precision
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _train_teachers(entry: Path, datasets: dict, seeds: list[int], train_print: str, run) -> None:
    """Train one teacher per seed, average their logits on ``train``, write ``entry`` atomically."""
    import numpy as np
    from optuna.trial import FixedTrial

    from autobert.data import TaskData
    from autobert.pipeline import run_pipeline
    from autobert.plugin_manager import get_plugin_manager

    # The techniques this trial runs with, found by their parameters. (The core does not
    # hand the plugin manager to hooks; a technique without parameters would be left out.)
    pm = get_plugin_manager(only=sorted({name.split(".", 1)[0] for name in run.params}))
    teacher_data = TaskData(splits=dict(datasets), label_names=list(run.label_names),
                            fingerprints={"train": train_print})
    # The study's distillation overrides (e.g. `enabled: true`) must not clash with the teacher's `False`.
    techniques = {k: v for k, v in run.study.techniques.items() if k != "distillation"}
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        all_logits = []
        for i, seed in enumerate(seeds):
            study = run.study.model_copy(update={"seed": seed, "techniques": techniques})
            trial = FixedTrial(teacher_params(run.params), number=getattr(run.trial, "number", 0))
            model_dir = tmp / f"teacher-{i}"
            result = run_pipeline(study, trial, pm, teacher_data, save_to=model_dir)
            all_logits.append(_logits(model_dir, datasets["train"], pm, run))
            (tmp / f"teacher-{i}.json").write_text(json.dumps({"seed": seed, "value": result.value}) + "\n")
            shutil.rmtree(model_dir)
        np.save(tmp / "logits.npy", np.mean(all_logits, axis=0).astype(np.float32))
        try:
            os.rename(tmp, entry)
        except OSError:
            if not (entry / "logits.npy").exists():
                raise
            # Another process wrote the same entry meanwhile; its logits are the same.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _logits(model_dir: Path, train, pm, run):
    """The saved teacher's logits on ``train``, in row order, encoded as the trial encodes it."""
    import inspect

    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), trust_remote_code=True)
    model.eval()
    keys = set(inspect.signature(model.forward).parameters)
    token_keys = ("input_ids", "attention_mask", "token_type_ids")
    # Columns other techniques added that the model reads (knowledge's vectors), passed as the trainer passes them.
    extra = [k for k in train.column_names if k in keys and k not in (*token_keys, "labels")]
    texts = list(train["text"])
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), 64):
            enc = pm.hook.autobert_tokenize(texts=texts[start:start + 64], tokenizer=run.tokenizer,
                                            max_length=run.study.max_length, run=run)
            enc = {k: v for k, v in dict(enc).items() if k in token_keys}
            batch = dict(run.tokenizer.pad(enc, return_tensors="pt"))
            batch.update({k: torch.tensor(np.array(train[start:start + 64][k])) for k in extra})
            out.append(model(**{k: v for k, v in batch.items() if k in keys}).logits.float().numpy())
    return np.concatenate(out)
