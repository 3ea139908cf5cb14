"""Selective masking (Gu et al. 2020): the buffer procedure and the masker find the token that decides the label."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autobert.config.schema import load_study
from autobert.run.data import load_task_data
from autobert.trial_run import TrialRun
from autobert.run.models import load_tokenizer, resolve_model
from autobert.run.plugin_manager import get_plugin_manager
from autobert.plugins.further_pretraining import texts_fingerprint
from autobert.plugins.masking import MaskingCollator, MaskingContext, budget_for, encode_corpus
from autobert.plugins.masking.selective import SelectiveMasking, buffer_labels, select_marked
from autobert.config.settings import declared_settings, resolve_settings
from autobert.stage_cache import StageCache
from autobert.testing import FILLER, NEGATIVE, POSITIVE, synthetic_rows, write_study

TECHNIQUES = ["finetune", "further_pretraining", "masking"]
SETTINGS = {"task_model_epochs": 10, "task_model_learning_rate": 2e-3, "task_model_batch_size": 16,
            "masker_epochs": 15, "masker_learning_rate": 5e-3}
PARAMS = {"masking.strategy": "selective", "masking.probability": 0.15, "masking.selective_share": 1.0}
UNSEEN = [text for text, _ in synthetic_rows(60, seed=7)]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    directory = tmp_path_factory.mktemp("selective")
    # tests/conftest.py keeps `tokenizers` single-threaded, so this tiny model is the same whatever ran before.
    path = write_study(directory, n_train=240, n_validation=32, only=TECHNIQUES, techniques={"masking": SETTINGS})
    # Sentences without a sentiment word, half of each label: without them a tiny task model learns
    # "positive unless a negative word", and the buffer procedure then finds every token of a positive
    # sentence important (its first token already gives the full confidence). With them, no label is
    # the default and each label needs its evidence, as in real sentiment data.
    rng = np.random.default_rng(0)
    fillers = [" ".join(rng.choice(FILLER, size=6)) for _ in range(40)]
    with open(directory / "data" / "train.csv", "a", encoding="utf-8") as f:
        f.write("".join(f"{text},{i % 2}\n" for i, text in enumerate(fillers)))
    study = load_study(path)
    pm = get_plugin_manager(only=TECHNIQUES)
    data = load_task_data(study)
    (directory / "work").mkdir()
    run = TrialRun(study=study, params=dict(PARAMS), seed=0, tokenizer=load_tokenizer(resolve_model(study)),
                   label_names=list(data.label_names), workdir=directory / "work", cache_dir=directory / "cache",
                   settings=resolve_settings(study, declared_settings(pm)), hooks=pm.hook)
    context = MaskingContext(stage="domain", texts=UNSEEN, examples=encode_corpus(UNSEEN, run.tokenizer, 32),
                             corpus_fingerprint=texts_fingerprint(UNSEEN), params=dict(PARAMS), seed=0, key="unused",
                             cache=StageCache(directory / "cache"), run=run, datasets=data.splits)
    strategy = SelectiveMasking()
    strategy.prepare(context)
    return strategy, context, run, data


def planted(rows, tokenizer):
    sentiment = set(tokenizer.convert_tokens_to_ids(POSITIVE + NEGATIVE))
    return [next((p for p, i in enumerate(r["input_ids"]) if i in sentiment), None) for r in rows]


def entry(run, kind):
    (found,) = [e.path for e in StageCache(run.cache_dir).entries(kind)]
    return found


def test_the_buffer_procedure_marks_the_planted_decisive_token_as_important(prepared):
    from transformers import AutoModelForSequenceClassification

    _, _, run, data = prepared
    train = data.splits["train"]
    rows = encode_corpus(list(train["text"]), run.tokenizer, 32)
    model = AutoModelForSequenceClassification.from_pretrained(str(entry(run, "task-model")))
    marks = buffer_labels(model, rows, list(train["label"]), threshold=0.01)
    labelled = [(m, p) for m, p in zip(marks, planted(rows, run.tokenizer)) if m is not None and p is not None]
    assert len(labelled) >= 0.8 * 240  # the correctly classified sentences with a sentiment word
    # Chance is about 1 in 7 tokens. The bar was set while the tiny model still changed from one process to the
    # next (its vocabulary did: see test_the_tiny_model_is_the_same_in_every_process); runs landed in 0.86-1.0.
    assert np.mean([m[p] == 1 for m, p in labelled]) >= 0.8
    # Other tokens are marked far less often (taken out of the buffer, the decisive word does not carry later ones).
    others = np.mean([v == 1 for m, p in labelled for i, v in enumerate(m) if v != -100 and i != p])
    assert others < 0.35, others
    for m, _ in labelled:
        assert m[0] == -100 and m[-1] == -100  # [CLS] and [SEP] are never labelled


def test_a_threshold_of_one_marks_every_token(prepared):
    from transformers import AutoModelForSequenceClassification

    _, _, run, data = prepared
    rows = encode_corpus(list(data.splits["train"]["text"])[:10], run.tokenizer, 32)
    model = AutoModelForSequenceClassification.from_pretrained(str(entry(run, "task-model")))
    for m in buffer_labels(model, rows, list(data.splits["train"]["label"])[:10], threshold=1.0):
        if m is not None:
            assert (m[1:-1] == 1).all()


def test_the_masker_marks_the_decisive_token_on_unseen_sentences(prepared):
    strategy, context, run, _ = prepared
    positions = planted(context.examples, run.tokenizer)
    found = [p[d] > 0.5 and int(np.argmax(p)) == d for p, d in zip(strategy.probabilities, positions)]
    assert np.mean(found) >= 0.5  # runs land between 0.6 and 1.0; a random token would win about 1 time in 7
    info = json.loads((entry(run, "masker") / "buffer.json").read_text())
    assert info["labelled"] > 0 and info["important"] >= info["labelled"] * 0.9


def test_selective_masks_respect_the_budget_and_never_special_tokens(prepared):
    strategy, context, run, _ = prepared
    positions = planted(context.examples, run.tokenizer)
    collator = MaskingCollator(run.tokenizer, strategy, 0.15, seed=0)
    batch = collator([dict(r, index=i, epoch=0, position=i) for i, r in enumerate(context.examples)])
    labels = batch["labels"].numpy()
    hits = 0
    for i, row in enumerate(context.examples):
        n = len(row["input_ids"])
        chosen = labels[i, :n] != -100
        maskable = np.asarray(row["maskable"])
        assert chosen.sum() == budget_for(maskable, 0.15)
        assert not chosen[~maskable].any() and (labels[i, n:] == -100).all()
        hits += bool(chosen[positions[i]])
    assert hits >= 0.5 * len(context.examples)  # runs land between 0.63 and 1.0; random 15 % masking: about 0.15


def test_only_marked_tokens_take_the_selected_share_and_random_ones_fill_the_budget():
    maskable = np.array([False] + [True] * 20 + [False])
    probabilities = np.where(maskable, 0.1, -np.inf).astype(np.float32)
    probabilities[[3, 7]] = [0.9, 0.8]  # two marked tokens
    for seed in range(10):
        chosen = select_marked(probabilities, maskable, 5, 1.0, np.random.default_rng(seed))
        assert chosen.sum() == 5 and chosen[[3, 7]].all() and not chosen[~maskable].any()
    chosen = select_marked(probabilities, maskable, 4, 0.25, np.random.default_rng(0))
    assert chosen.sum() == 4 and chosen[3]  # a quarter of 4: the most probable marked token only is guaranteed


def test_a_trial_pretrains_with_selective_masks_and_shares_the_task_model_with_entropy(tmp_path):
    import warnings

    from optuna.trial import FixedTrial

    from autobert.run.pipeline import run_pipeline
    from autobert.study.validation import validate_study

    (tmp_path / "domain.txt").write_text("\n".join(UNSEEN[:20]) + "\n", encoding="utf-8")
    path = write_study(tmp_path, n_train=48, n_validation=16, only=TECHNIQUES, techniques={
        "finetune": {"learning_rate": 5e-3, "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0, "weight_decay": 0.0},
        "further_pretraining": {"domain_corpus": "domain.txt", "batch_size": 4, "domain_steps": {"low": 2, "high": 4}},
        "masking": {**SETTINGS, "task_model_epochs": 1, "masker_epochs": 1},
    })
    study = load_study(path)
    pm = get_plugin_manager(only=TECHNIQUES)
    data = validate_study(study, pm)
    base = {"finetune.learning_rate": 5e-3, "finetune.epochs": 1, "finetune.batch_size": 16,
            "finetune.warmup_ratio": 0.0, "finetune.weight_decay": 0.0, "further_pretraining.stages": "domain",
            "further_pretraining.domain_steps": 2, "further_pretraining.domain_learning_rate": 1e-4,
            "masking.probability": 0.15}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_pipeline(study, FixedTrial({**base, **PARAMS}), pm, data)
        run_pipeline(study, FixedTrial({**base, "masking.strategy": "entropy", "masking.entropy_share": 1.0}), pm, data)
    built = sorted((e.kind, e.description.get("strategy")) for e in StageCache(study.cache_path).entries()
                   if e.kind != "stage")
    # One task model for both strategies; selective's masker and marks, entropy's scores.
    assert built == [("mask", "entropy"), ("mask", "selective"), ("masker", None), ("task-model", None)]


def test_the_tiny_model_is_the_same_in_every_process(tmp_path):
    """The task model's runs differed because the tiny vocabulary did (tokenizers' trainer breaks ties in the
    order of Rust hash maps, seeded per process): each word got another embedding row. Not PYTHONHASHSEED's doing."""
    import os
    import subprocess
    import sys

    script = "import sys; from autobert.testing import make_tiny_model; make_tiny_model(sys.argv[1])"
    made = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "TOKENIZERS_PARALLELISM": "false"}
        subprocess.run([sys.executable, "-c", script, str(tmp_path / hash_seed)], env=env, check=True,
                       capture_output=True)
        made.append({name: (tmp_path / hash_seed / name).read_bytes() for name in ("vocab.txt", "model.safetensors")})
    assert made[0] == made[1]
