"""Pattern-exploiting further pretraining (Schick & Schütze 2021, PET).

Before fine-tuning, the masked-language model learns the task as a cloze test:
each training text is put into a pattern (``pet.pattern``, default
``"{text} It was [MASK]."``) and the model predicts, at the ``[MASK]``, the
verbalizer word of the text's label (``pet.verbalizer``, default: the label
names). The loss is a cross-entropy over the verbalizer words' logits at the
mask position only: nothing else is predicted. The resulting encoder is the
starting point of classification fine-tuning (with the MLM head dropped).

PET composes with ``further_pretraining``: it wraps ``autobert_further_pretrain``
and continues from whatever the domain/task MLM stages produced (or from the
study's model). It is opt-in: its parameters (``pet.enabled`` and, when on,
``pet.steps``, ``pet.learning_rate``) exist only in studies whose file has a
``techniques.pet`` section, because its default verbalizer (the label names)
must be words of the model's vocabulary, which arbitrary label names are not.
``autobert validate`` reports a label word that is not one vocabulary token,
naming the word, its tokens and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from autobert import Setting, hookimpl

ENABLED = "pet.enabled"
STEPS = "pet.steps"
LEARNING_RATE = "pet.learning_rate"
PATTERN = "pet.pattern"
VERBALIZER = "pet.verbalizer"
BATCH_SIZE = "pet.batch_size"
TEXT, MASK = "{text}", "[MASK]"
DEFAULT_PATTERN = "{text} It was [MASK]."
WEIGHT_DECAY = 0.01
_SALT = 0x706574


@hookimpl
def autobert_settings():
    return {
        PATTERN: Setting(DEFAULT_PATTERN, help="the cloze pattern: {text} is the input, [MASK] the label word's place"),
        VERBALIZER: Setting(None, help="{label name: word}, each word one vocabulary token (default: the label names)"),
        BATCH_SIZE: Setting(16, help="batch size of the PET stage"),
    }


@hookimpl
def autobert_search_space(space):
    if "pet" not in space.configured:
        return  # opt-in (see the module docstring)
    if space.suggest_categorical(ENABLED, [False, True]):
        space.suggest_int(STEPS, 16, 256, log=True)
        space.suggest_float(LEARNING_RATE, 2e-5, 1e-4, step=2e-5, valid="(0, inf)")


@hookimpl
def autobert_ablation():
    return {"off": {ENABLED: False}, "on": {ENABLED: True, STEPS: 64, LEARNING_RATE: 4e-5}}


@hookimpl
def autobert_validate_study(study, settings, space):
    if ENABLED not in space or not space[ENABLED].can_be(True):
        return []  # not opted in, or fixed off
    problems = []
    try:
        check_pattern(settings.get(PATTERN, DEFAULT_PATTERN))
    except ValueError as exc:
        problems.append(str(exc))
    size = settings.get(BATCH_SIZE, 16)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        problems.append(f"techniques.{BATCH_SIZE}: {size!r} must be an integer >= 1")
    try:
        from autobert.services import load_task_data, load_tokenizer, resolve_model

        tokenizer = load_tokenizer(resolve_model(study))
        names = study.data.label_names or load_task_data(study).label_names
    except Exception:
        return problems  # the model or the data is unreadable: autobert's own checks say why
    try:
        verbalizer_ids(tokenizer, list(names), settings.get(VERBALIZER))
    except ValueError as exc:
        problems.append(str(exc))
    return problems


@hookimpl(wrapper=True)
def autobert_further_pretrain(checkpoint, datasets, run):
    pretrained = yield  # the domain/task MLM stages, if any
    if not run.params.get(ENABLED):
        return pretrained
    start = pretrained or checkpoint
    out = pet_stage(start, datasets, run)
    report = f"pet: {run.params[STEPS]} steps from {'the further-pretrained encoder' if pretrained else 'the model'}"
    run.note("pet", report)
    return out


# --------------------------------------------------------------------------
# Pattern and verbalizer
# --------------------------------------------------------------------------


def check_pattern(pattern: Any) -> str:
    """``pattern`` if it has one ``{text}`` and one ``[MASK]``; else ValueError saying what to fix."""
    if not isinstance(pattern, str) or pattern.count(TEXT) != 1 or pattern.count(MASK) != 1:
        raise ValueError(f"techniques.{PATTERN}: {pattern!r} must contain {TEXT} and {MASK} once each, "
                         f"e.g. {DEFAULT_PATTERN!r}")
    return pattern


def verbalizer_ids(tokenizer: Any, label_names: list[str], verbalizer: dict[str, str] | None) -> list[int]:
    """The vocabulary id of each label's word, in label order.

    Raises:
        ValueError: a label has no word, a word is not exactly one known
            token, or two labels share a word; the message names the fix.
    """
    where = f"techniques.{VERBALIZER}"
    words = dict(verbalizer) if verbalizer else {name: name for name in label_names}
    missing = [name for name in label_names if name not in words]
    if missing:
        raise ValueError(f"{where}: no word for label(s) {', '.join(map(repr, missing))}; map every label "
                         f"({', '.join(label_names)}) to a word")
    ids, bad = [], []
    for name in label_names:
        word = str(words[name])
        tokens = tokenizer.tokenize(word)
        token_id = tokenizer.convert_tokens_to_ids(tokens[0]) if len(tokens) == 1 else None
        if token_id is None or token_id == tokenizer.unk_token_id:
            bad.append(f"{word!r} (label {name!r}) is {tokens} in the model's vocabulary")
        ids.append(token_id)
    if bad:
        source = "the verbalizer" if verbalizer else "the label names (the default verbalizer)"
        raise ValueError(f"{where}: a label word must be a single vocabulary token, but in {source} "
                         f"{'; '.join(bad)}; set {where} to one-token words, e.g. "
                         f"{{{', '.join(f'{n}: good' if i else f'{n}: bad' for i, n in enumerate(label_names[:2]))}}}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{where}: two labels share a word; give each label its own word")
    return ids


def cloze_batch(texts: list[str], tokenizer: Any, pattern: str, max_length: int):
    """``(input_ids, attention_mask, mask_positions)``: each text in the pattern, truncated so the mask survives."""
    import torch

    room = max_length - len(tokenizer(pattern.replace(TEXT, "").replace(MASK, tokenizer.mask_token))["input_ids"])
    filled = []
    for text in texts:
        tokens = tokenizer.tokenize(text)
        if len(tokens) > max(room, 1):
            text = tokenizer.convert_tokens_to_string(tokens[:max(room, 1)])
        filled.append(pattern.replace(TEXT, text).replace(MASK, tokenizer.mask_token))
    enc = tokenizer(filled, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    ids = enc["input_ids"]
    positions = (ids == tokenizer.mask_token_id).int().argmax(dim=1)
    return ids, enc["attention_mask"], positions


def pet_loss(model: Any, input_ids, attention_mask, mask_positions, label_word_ids: list[int], labels):
    """Cross-entropy over the verbalizer words' logits at each example's mask position, and nowhere else."""
    import torch
    import torch.nn.functional as F

    from autobert.services import mlm_head

    head = mlm_head(model)
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    at_mask = hidden[torch.arange(len(input_ids)), mask_positions]
    if head is None:  # a model whose MLM head is not one module: project every position, keep the mask's
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[torch.arange(len(input_ids)), mask_positions]
    else:
        logits = head(at_mask)
    return F.cross_entropy(logits[:, label_word_ids].float(), labels)


# --------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------


def pet_stage(checkpoint: str, datasets: dict, run) -> str:
    """Train the MLM on the cloze task for ``pet.steps`` steps; return the saved encoder's folder."""
    import torch

    from autobert.errors import TrialFailed
    from autobert.services import load_mlm, parameter_groups

    try:
        pattern = check_pattern(run.settings.get(PATTERN, DEFAULT_PATTERN))
        word_ids = verbalizer_ids(run.tokenizer, list(run.label_names), run.settings.get(VERBALIZER))
    except ValueError as exc:
        raise TrialFailed(str(exc)) from None
    texts = [str(t) for t in datasets["train"]["text"]]
    labels = np.asarray(datasets["train"]["label"], dtype=np.int64)
    steps, lr = int(run.params[STEPS]), float(run.params[LEARNING_RATE])
    batch_size = int(run.settings.get(BATCH_SIZE, 16))

    torch.manual_seed(run.seed)
    model = load_mlm(checkpoint)
    model.train()
    optimizer = torch.optim.AdamW(parameter_groups(model, lr, WEIGHT_DECAY), lr=lr)
    order: list[int] = []
    epoch = 0
    for _ in range(steps):
        while len(order) < batch_size:
            order.extend(np.random.default_rng([run.seed, _SALT, epoch]).permutation(len(texts)).tolist())
            epoch += 1
        batch, order = order[:batch_size], order[batch_size:]
        ids, attention, positions = cloze_batch([texts[i] for i in batch], run.tokenizer, pattern, run.study.max_length)
        loss = pet_loss(model, ids, attention, positions, word_ids, torch.as_tensor(labels[batch]))
        if not torch.isfinite(loss):
            raise TrialFailed(f"the PET loss became {loss.item()}; lower pet.learning_rate")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    out = Path(run.workdir) / "pet" / "model"
    model.save_pretrained(str(out))
    run.tokenizer.save_pretrained(str(out))
    return str(out)
