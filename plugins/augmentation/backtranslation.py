"""Back-translation: translate to a pivot language and back (Sennrich et al. 2016; Xie et al. 2020).

Two ``transformers`` sequence-to-sequence models, the settings
``backtranslation.forward_model`` (source -> pivot) and
``backtranslation.backward_model`` (pivot -> source), e.g. MarianMT English
-> German -> English (``Helsinki-NLP/opus-mt-en-de``,
``Helsinki-NLP/opus-mt-de-en``). Each may be a folder (relative to the study
file), a ``package:NAME`` model package or a hub id; a hub id needs the
network, or the models in the local Hugging Face cache. Until both are set,
back-translation registers no augmenter, so it is no choice of
``augmentation.method`` and a default search never reaches for the network.
Both directions
sample (``backtranslation.temperature``; higher gives more varied
paraphrases, as in Edunov et al. 2018), ``backtranslation.copies`` round
trips per source, in batches of ``backtranslation.batch_size``.

No translation weights ship with autobert: the tests run the plumbing through
two tiny, randomly initialised MarianMT models built from a ``MarianConfig``
and a word-level tokenizer trained on the test sentences (their output is
noise, but text).
"""

from __future__ import annotations

from functools import lru_cache

from autobert import Setting, hookimpl
from autobert.augmenters import Augmenter

TEMPERATURE = "backtranslation.temperature"
COPIES = "backtranslation.copies"
FORWARD = "backtranslation.forward_model"
BACKWARD = "backtranslation.backward_model"
BATCH_SIZE = "backtranslation.batch_size"
MAX_LENGTH = 128


@hookimpl
def autobert_settings():
    return {
        FORWARD: Setting(None, help="seq2seq model, source -> pivot language (e.g. Helsinki-NLP/opus-mt-en-de)"),
        BACKWARD: Setting(None, help="seq2seq model, pivot -> source language (e.g. Helsinki-NLP/opus-mt-de-en)"),
        BATCH_SIZE: Setting(16, help="sentences per generate() call"),
    }


@hookimpl
def autobert_validate_study(settings):
    problems = []
    models = [settings.get(FORWARD), settings.get(BACKWARD)]
    for name, value in zip((FORWARD, BACKWARD), models):
        if value is not None and (not isinstance(value, str) or not value):
            problems.append(f"techniques.backtranslation.{name.split('.', 1)[1]}: give a folder, package:NAME or hub id")
    size = settings.get(BATCH_SIZE)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        problems.append(f"techniques.backtranslation.batch_size: {size!r} is not a positive integer")
    return problems


@hookimpl
def autobert_augmenters(settings):
    if not (settings.get(FORWARD) and settings.get(BACKWARD)):
        # No choice of augmentation.method; a study asking for it is told what to set.
        return {"backtranslation": "back-translation needs two translation models; set "
                                   "techniques.backtranslation.forward_model and backward_model (folders or hub ids, "
                                   "e.g. Helsinki-NLP/opus-mt-en-de and Helsinki-NLP/opus-mt-de-en)"}
    return {"backtranslation": BackTranslation()}


@hookimpl
def autobert_ablation():
    return {"reason": "a method of augmentation: ablated with it (augmentation.ratio 0 switches every method off)"}


class BackTranslation(Augmenter):
    namespace = "backtranslation"

    def search_space(self, space):
        space.suggest_float(TEMPERATURE, 0.5, 1.2, valid="(0, inf)")
        space.suggest_int(COPIES, 1, 2, valid="[1, inf)")

    def identity(self, run):
        described = super().identity(run)
        described["models"] = [_checkpoint(run, FORWARD), _checkpoint(run, BACKWARD)]
        described["settings"].pop(BATCH_SIZE, None)
        return described

    def cost(self, params, train_size):
        # Two seq2seq models generating token by token: each about as costly as a few training passes.
        return 1.0, 4.0

    def augment(self, texts, labels, run, seed):
        copies = int(run.params.get(COPIES, 1))
        out = round_trip(
            [t for t in texts for _ in range(copies)], _checkpoint(run, FORWARD), _checkpoint(run, BACKWARD),
            temperature=float(run.params.get(TEMPERATURE, 1.0)),
            batch_size=int(run.settings.get(BATCH_SIZE, 16)), seed=seed,
        )
        return [out[i * copies:(i + 1) * copies] for i in range(len(texts))]


def _checkpoint(run, setting: str) -> str:
    from autobert.services import resolve_model

    return resolve_model(run.study.model_copy(update={"model": run.settings[setting]}))


def round_trip(texts: list[str], forward: str, backward: str, *, temperature: float = 1.0, batch_size: int = 16,
               seed: int = 0) -> list[str]:
    """``texts`` translated with ``forward`` and back with ``backward``, sampling at ``temperature``."""
    import torch

    # Loaded before seeding: building a model draws random numbers, and a cached one would not.
    load_seq2seq(forward), load_seq2seq(backward)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pivot = translate(texts, forward, temperature, batch_size)
        return translate(pivot, backward, temperature, batch_size)


def translate(texts: list[str], checkpoint: str, temperature: float, batch_size: int) -> list[str]:
    import torch

    model, tokenizer = load_seq2seq(checkpoint)
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=MAX_LENGTH,
                        return_tensors="pt")
        # A translation is seldom twice as long as its source; the decoder's positions bound it too.
        longest = min(2 * enc["input_ids"].shape[1] + 8, getattr(model.config, "max_position_embeddings", 512) - 2)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        with torch.inference_mode():
            generated = model.generate(**enc, do_sample=True, temperature=temperature, num_beams=1,
                                       max_new_tokens=longest)
        out.extend(t.strip() for t in tokenizer.batch_decode(generated, skip_special_tokens=True))
    return out


@lru_cache(maxsize=4)
def load_seq2seq(checkpoint: str):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        model = AutoModelForSeq2SeqLM.from_pretrained(checkpoint)
    except OSError as exc:
        from autobert.errors import TrialFailed

        raise TrialFailed(
            f"back-translation could not load {checkpoint!r} ({exc}); set techniques.backtranslation."
            "forward_model/backward_model to local folders, or leave backtranslation out of augmentation.method"
        ) from None
    import torch

    model.eval().to("cuda" if torch.cuda.is_available() else "cpu")
    return model, tokenizer
