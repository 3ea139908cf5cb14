"""Contextual substitution (Kobayashi 2018; Wu et al. 2019): a masked LM rewrites some words.

For each new sentence, ``contextual.fraction`` of the source's words (at
least one, words with a letter or digit only) are replaced by ``[MASK]``
and filled at once by sampling from the masked language model's
predictions: the ``contextual.top_k`` most likely whole-word tokens, the
original word excluded, so every masked word changes. Sentences go through
the model in batches of ``contextual.batch_size``, which is what makes
thousands of sentences practical on a CPU. ``contextual.copies`` new sentences
per source.

Label conditioning (Wu et al.'s conditional BERT, approximated by a prompt,
since a pretrained MLM has no label embeddings): with the
``contextual.prompt`` setting, e.g. ``"{label} review:"``, each sentence is
preceded by the prompt with its label's name while the model fills the
masks, so it leans towards words that fit the label. The prompt is not part
of the new sentence.

The MLM is the ``contextual.mlm`` setting (a folder, relative to the study
file, a ``package:NAME`` model package, or a hub id), by default the study's
own model. A checkpoint without trained MLM-head weights (such as the offline
MiniLM, a sentence encoder) gets a tied-decoder head: the last hidden state
times the input embeddings, with a one-time warning. Its predictions are
much weaker than a real MLM head's; name a checkpoint with one (e.g.
``bert-base-uncased``) where you can.
"""

from __future__ import annotations

import random
import warnings
from functools import lru_cache

from autobert import FORWARD_PASS, Setting, hookimpl
from autobert.augmenters import Augmenter

FRACTION = "contextual.fraction"
COPIES = "contextual.copies"
MLM = "contextual.mlm"
PROMPT = "contextual.prompt"
TOP_K = "contextual.top_k"
BATCH_SIZE = "contextual.batch_size"
MAX_LENGTH = 128


@hookimpl
def autobert_settings():
    return {
        MLM: Setting("", help="masked LM checkpoint (folder, package:NAME or hub id); empty: the study's model"),
        PROMPT: Setting("", help="label-conditioning prompt such as '{label} review:'; empty: none"),
        TOP_K: Setting(10, help="sample each word among this many most likely tokens"),
        BATCH_SIZE: Setting(32, help="sentences per forward pass of the masked LM"),
    }


@hookimpl
def autobert_validate_study(settings):
    problems = []
    prompt = settings.get(PROMPT) or ""
    if not isinstance(prompt, str) or (prompt and "{label}" not in prompt):
        problems.append(f"techniques.contextual.prompt: {prompt!r} has no '{{label}}'; write e.g. '{{label}} review:' "
                        "or remove the key")
    for name in (TOP_K, BATCH_SIZE):
        value = settings.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"techniques.contextual.{name.split('.', 1)[1]}: {value!r} is not a positive integer")
    if not isinstance(settings.get(MLM) or "", str):
        problems.append("techniques.contextual.mlm: give a folder, package:NAME or hub id as a string")
    return problems


@hookimpl
def autobert_augmenters():
    return {"contextual": Contextual()}


@hookimpl
def autobert_ablation():
    return {"reason": "a method of augmentation: ablated with it (augmentation.ratio 0 switches every method off)"}


class Contextual(Augmenter):
    namespace = "contextual"

    def search_space(self, space):
        space.suggest_float(FRACTION, 0.1, 0.3, valid="(0, 1]")
        space.suggest_int(COPIES, 1, 4, valid="[1, inf)")

    def identity(self, run):
        described = super().identity(run)
        described["mlm"] = mlm_checkpoint(run)
        described["labels"] = list(run.label_names)
        # Batching does not change the output, only the speed.
        described["settings"].pop(BATCH_SIZE, None)
        return described

    def cost(self, params, train_size):
        copies = float(params.get(COPIES, 1))
        return copies, copies * FORWARD_PASS  # one masked-LM forward pass per new sentence

    def augment(self, texts, labels, run, seed):
        fraction = float(run.params.get(FRACTION, 0.15))
        copies = int(run.params.get(COPIES, 1))
        prompt = run.settings.get(PROMPT) or ""
        jobs = [(text, run.label_names[label]) for text, label in zip(texts, labels) for _ in range(copies)]
        out = substitute(
            jobs, fraction, mlm_checkpoint(run), prompt=prompt, top_k=int(run.settings.get(TOP_K, 10)),
            batch_size=int(run.settings.get(BATCH_SIZE, 32)), seed=seed,
        )
        return [out[i * copies:(i + 1) * copies] for i in range(len(texts))]


def mlm_checkpoint(run) -> str:
    """The MLM to use: the ``contextual.mlm`` setting resolved like the study's ``model``, or that model."""
    from autobert.services import resolve_model

    named = run.settings.get(MLM) or ""
    if not named:
        return resolve_model(run.study)
    return resolve_model(run.study.model_copy(update={"model": named}))


def substitute(
    jobs: list[tuple[str, str]], fraction: float, checkpoint: str, *, prompt: str = "", top_k: int = 10,
    batch_size: int = 32, seed: int = 0,
) -> list[str]:
    """Rewrite each ``(text, label_name)``: ``fraction`` of its words masked and sampled from the MLM."""
    import torch

    model, tokenizer, allowed = load_mlm(checkpoint)
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    vocab = tokenizer.get_vocab()
    # Batches of similar lengths waste little on padding.
    order = sorted(range(len(jobs)), key=lambda i: len(jobs[i][0]))
    results: list[str] = [""] * len(jobs)
    for start in range(0, len(order), batch_size):
        batch_ids = order[start:start + batch_size]
        batch = [jobs[i] for i in batch_ids]
        words_list, positions_list, masked = [], [], []
        for text, label in batch:
            words = text.split()
            candidates = [i for i, w in enumerate(words) if any(c.isalnum() for c in w)]
            k = min(len(candidates), max(1, round(fraction * len(words))))
            positions = sorted(rng.sample(candidates, k))
            shown = [tokenizer.mask_token if i in set(positions) else w for i, w in enumerate(words)]
            prefix = prompt.format(label=label) + " " if prompt else ""
            words_list.append(words)
            positions_list.append(positions)
            masked.append(prefix + " ".join(shown))
        enc = tokenizer(masked, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        is_mask = enc["input_ids"] == tokenizer.mask_token_id
        with torch.inference_mode():
            # Sampling happens on the CPU, with its seeded generator, wherever the model runs.
            logits = model(enc, is_mask).float().cpu().masked_fill(~allowed, float("-inf"))
        masks_before = torch.cumsum(is_mask.sum(1), 0).tolist()
        for row, (words, positions) in enumerate(zip(words_list, positions_list)):
            first = masks_before[row - 1] if row else 0
            new = list(words)
            # A mask cut off by truncation leaves its word as it was.
            for position, index in zip(positions, range(first, masks_before[row])):
                scores = logits[index].clone()
                for own in _own_ids(words[position], vocab):
                    scores[own] = float("-inf")
                top = scores.topk(top_k)
                pick = top.indices[torch.multinomial(torch.softmax(top.values, -1), 1, generator=generator)]
                new[position] = tokenizer.decode([int(pick)]).strip()
            results[batch_ids[row]] = " ".join(new)
    return results


def _own_ids(word: str, vocab: dict[str, int]) -> list[int]:
    forms = {word, word.lower(), "Ġ" + word, "▁" + word, "Ġ" + word.lower(), "▁" + word.lower()}
    return [vocab[f] for f in forms if f in vocab]


@lru_cache(maxsize=2)
def load_mlm(checkpoint: str):
    """``(predict, tokenizer, allowed)``.

    ``predict(encoding, is_mask)`` gives the vocabulary logits at the masked
    tokens only, in reading order (projecting every token onto the vocabulary
    would cost more than the encoder); ``allowed`` marks the whole-word,
    alphabetic, non-special tokens a mask may become.
    """
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    if tokenizer.mask_token is None:
        raise ValueError(f"the tokenizer of {checkpoint} has no mask token; set techniques.contextual.mlm "
                         "to a masked language model")
    model, info = AutoModelForMaskedLM.from_pretrained(checkpoint, output_loading_info=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.eval().to(device)
    prefix = model.base_model_prefix + "."
    untrained_head = [k for k in info["missing_keys"] if not k.startswith(prefix)]
    if untrained_head:
        warnings.warn(
            f"{checkpoint} has no trained masked-LM head ({len(untrained_head)} weights missing); contextual "
            "substitution uses a tied-decoder head (hidden states times the input embeddings) instead. Set "
            "techniques.contextual.mlm to a checkpoint with an MLM head for better substitutes.",
            stacklevel=2,
        )
        embeddings = model.get_input_embeddings().weight

        def head(hidden):
            return hidden @ embeddings.T
    else:
        # The MLM heads of BERT-like (`cls`) and RoBERTa-like (`lm_head`) models map hidden states to logits.
        head = getattr(model, "cls", None) or getattr(model, "lm_head", None)

    encoder = model.base_model

    def predict(enc, is_mask):
        keys = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        is_mask = is_mask.to(device)
        if head is None:
            return model(**keys).logits[is_mask]
        return head(encoder(**keys).last_hidden_state[is_mask])

    # The model's vocabulary may be padded beyond the tokenizer's; those rows are never allowed.
    size = model.get_input_embeddings().weight.shape[0]
    tokens = tokenizer.convert_ids_to_tokens(list(range(min(size, len(tokenizer)))))
    special = set(tokenizer.all_special_ids)
    allowed = torch.tensor([
        i < len(tokens) and i not in special and tokens[i] is not None and not tokens[i].startswith("##")
        and tokens[i].lstrip("Ġ▁").isalpha()
        for i in range(size)
    ])
    return predict, tokenizer, allowed
