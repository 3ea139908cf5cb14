"""Which part of a long text to keep (Sun et al. 2019, "How to Fine-Tune BERT for Text Classification?").

A text longer than the study's ``max_length`` must lose tokens. ``head`` keeps
the beginning (autobert's default, the neutral choice), ``tail`` the end, and
``head_tail`` the first ``head_share`` of the room and the rest from the end;
Sun et al. found the first 128 and last 382 of 510 tokens best on IMDb
(``head_share`` about 0.25).

``truncation.strategy`` is searched in {head, tail, head_tail};
``truncation.head_share`` in [0.0, 1.0], only under ``head_tail``.

The tokenizer's own truncated output is the template: its special tokens
([CLS], [SEP], or RoBERTa's <s>, </s>), ``attention_mask`` and
``token_type_ids`` are kept as they are, and only the text's tokens between
them are replaced by the ones the strategy keeps. A text that fits is never
touched, so every strategy gives the default's output for it.
"""

from __future__ import annotations

from autobert import hookimpl

STRATEGIES = ("head", "tail", "head_tail")


@hookimpl
def autobert_search_space(space):
    if space.suggest_categorical("truncation.strategy", list(STRATEGIES)) == "head_tail":
        space.suggest_float("truncation.head_share", 0.0, 1.0, valid="[0, 1]")


@hookimpl
def autobert_ablation():
    # head is the default; Sun et al. kept the first quarter and the rest from the end.
    return {"off": {"truncation.strategy": "head"},
            "on": {"truncation.strategy": "head_tail", "truncation.head_share": 0.25}}


def keep(ids: list[int], room: int, strategy: str, head_share: float = 1.0) -> list[int]:
    """The ``room`` tokens of ``ids`` that ``strategy`` keeps, in their order."""
    if len(ids) <= room:
        return ids
    head = {"head": room, "tail": 0}.get(strategy, round(room * head_share))
    return ids[:head] + ids[len(ids) - (room - head):]


@hookimpl
def autobert_tokenize(texts, tokenizer, max_length, run):
    strategy = run.params["truncation.strategy"]
    if strategy == "head":
        return None  # the default already keeps the head
    head_share = run.params.get("truncation.head_share", 1.0)
    encoded = dict(tokenizer(texts, truncation=True, max_length=max_length, return_special_tokens_mask=True))
    special = encoded.pop("special_tokens_mask")
    full = tokenizer(texts, add_special_tokens=False)["input_ids"]
    for row, (ids, mask) in enumerate(zip(full, special)):
        positions = [i for i, is_special in enumerate(mask) if not is_special]
        if len(ids) <= len(positions):
            continue  # it fits: the default's output stands
        kept = keep(ids, len(positions), strategy, head_share)
        input_ids = list(encoded["input_ids"][row])
        for position, token in zip(positions, kept):
            input_ids[position] = token
        encoded["input_ids"][row] = input_ids
    return encoded
