"""Entropy masking: a task model's entropy change finds the token that decides the label."""

from __future__ import annotations

import numpy as np
import pytest

from autobert.config.schema import load_study
from autobert.run.data import load_task_data
from autobert.trial_run import TrialRun
from autobert.run.models import load_tokenizer, resolve_model
from autobert.run.plugin_manager import get_plugin_manager
from autobert.plugins.further_pretraining import texts_fingerprint
from autobert.plugins.masking import MaskingCollator, MaskingContext, MaskingExample, budget_for, encode_corpus
from autobert.plugins.masking import entropy as entropy_module
from autobert.plugins.masking.entropy import EntropyMasking, entropy_scores, top_up
from autobert.config.settings import declared_settings, resolve_settings
from autobert.stage_cache import StageCache
from autobert.testing import NEGATIVE, POSITIVE, synthetic_rows, write_study

TECHNIQUES = ["finetune", "further_pretraining", "masking"]
TASK_MODEL = {"task_model_epochs": 10, "task_model_learning_rate": 2e-3, "task_model_batch_size": 16}
PARAMS = {"masking.strategy": "entropy", "masking.probability": 0.15, "masking.entropy_share": 1.0}


def make_run(directory, cache_dir):
    path = write_study(directory, n_train=240, n_validation=32, only=TECHNIQUES, techniques={"masking": TASK_MODEL})
    study = load_study(path)
    pm = get_plugin_manager(only=TECHNIQUES)
    data = load_task_data(study)
    workdir = directory / "work"
    workdir.mkdir()
    run = TrialRun(study=study, params=dict(PARAMS), seed=0, tokenizer=load_tokenizer(resolve_model(study)),
                   label_names=list(data.label_names), workdir=workdir, cache_dir=cache_dir,
                   settings=resolve_settings(study, declared_settings(pm)), hooks=pm.hook)
    return run, data


def context_for(run, data, texts, cache):
    rows = encode_corpus(texts, run.tokenizer, 32)
    return MaskingContext(stage="domain", texts=texts, examples=rows, corpus_fingerprint=texts_fingerprint(texts),
                          params=dict(run.params), seed=run.seed, key="unused", cache=cache, run=run,
                          datasets=data.splits)


# Sentences the task model never saw, each with one sentiment word among fillers.
UNSEEN = [text for text, _ in synthetic_rows(60, seed=7)]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    directory = tmp_path_factory.mktemp("entropy")
    run, data = make_run(directory, directory / "cache")
    context = context_for(run, data, UNSEEN, StageCache(directory / "cache"))
    strategy = EntropyMasking()
    strategy.prepare(context)
    return strategy, context, run, data


def decisive_positions(context, tokenizer):
    sentiment = set(tokenizer.convert_tokens_to_ids(POSITIVE + NEGATIVE))
    return [[p for p, i in enumerate(row["input_ids"]) if i in sentiment] for row in context.examples]


def test_the_entropy_score_ranks_the_planted_decisive_token_first(prepared):
    strategy, context, run, _ = prepared
    planted = decisive_positions(context, run.tokenizer)
    assert all(len(p) == 1 for p in planted)  # each sentiment word is one token of the tiny vocabulary
    first = [int(np.argmax(s)) == p[0] for s, p in zip(strategy.scores, planted)]
    assert np.mean(first) >= 0.9, np.mean(first)


def test_special_tokens_get_no_score(prepared):
    strategy, context, _, _ = prepared
    for score, row in zip(strategy.scores, context.examples):
        maskable = np.asarray(row["maskable"])
        assert np.isneginf(score[~maskable]).all() and np.isfinite(score[maskable]).all()


def test_selection_masks_the_top_tokens_within_the_budget_and_never_special_tokens(prepared):
    strategy, context, run, _ = prepared
    planted = decisive_positions(context, run.tokenizer)
    collator = MaskingCollator(run.tokenizer, strategy, 0.15, seed=0)
    features = [dict(row, index=i, epoch=0, position=i) for i, row in enumerate(context.examples)]
    batch = collator(features)
    labels = batch["labels"].numpy()
    hits = 0
    for i, row in enumerate(context.examples):
        n = len(row["input_ids"])
        chosen = labels[i, :n] != -100
        maskable = np.asarray(row["maskable"])
        assert chosen.sum() == budget_for(maskable, 0.15)
        assert not chosen[~maskable].any() and (labels[i, n:] == -100).all()
        hits += bool(chosen[planted[i][0]])
    assert hits >= 0.9 * len(context.examples)


def test_scores_come_from_the_cache_without_training_again(prepared, monkeypatch):
    _, context, run, data = prepared

    def refuse(*a, **kw):
        raise AssertionError("the task model was trained again")

    monkeypatch.setattr(entropy_module, "train_task_model", refuse)
    monkeypatch.setattr(entropy_module, "entropy_scores", refuse)
    again = EntropyMasking()
    again.prepare(context_for(run, data, UNSEEN, StageCache(run.cache_dir)))
    assert all(np.array_equal(a, b) for a, b in zip(again.scores, prepared[0].scores))


def test_a_new_corpus_is_scored_with_the_cached_task_model(prepared, monkeypatch):
    _, _, run, data = prepared
    monkeypatch.setattr(entropy_module, "train_task_model", lambda *a, **kw: pytest.fail("trained again"))
    other = EntropyMasking()
    other.prepare(context_for(run, data, UNSEEN[:10], StageCache(run.cache_dir)))
    assert len(other.scores) == 10


def test_batching_does_not_change_the_scores(prepared):
    from transformers import AutoModelForSequenceClassification

    _, context, run, _ = prepared
    cache = StageCache(run.cache_dir)
    (model_dir,) = [e.path for e in cache.entries("task-model")]
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    rows = context.examples[:8]
    one = entropy_scores(model, rows, run.tokenizer.mask_token_id, batch_size=1)
    many = entropy_scores(model, rows, run.tokenizer.mask_token_id, batch_size=64)
    for a, b in zip(one, many):
        assert np.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("share", [0.5, 1.0])
def test_top_up_takes_the_share_of_top_tokens_and_fills_the_budget_at_random(share):
    maskable = np.array([False] + [True] * 20 + [False])
    scores = np.where(maskable, np.arange(22, dtype=np.float32), -np.inf)
    for seed in range(20):
        chosen = top_up(scores, maskable, 6, share, np.random.default_rng(seed))
        assert chosen.sum() == 6 and not chosen[~maskable].any()
        top = int(round(share * 6))
        assert chosen[np.argsort(-scores)[:top]].all()


def test_an_example_without_scores_is_masked_at_random_within_the_budget():
    strategy = EntropyMasking()
    ids = np.array([2, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 3])
    example = MaskingExample(input_ids=ids, maskable=(ids != 2) & (ids != 3), word_ids=np.arange(12), index=0,
                             epoch=0, position=0)
    chosen = strategy.select(example, 3, np.random.default_rng(0))
    assert chosen.sum() == 3 and not chosen[[0, 11]].any()


def test_a_trial_pretrains_with_entropy_masks_on_the_domain_corpus_and_caches_them(tmp_path):
    import warnings

    from optuna.trial import FixedTrial

    from autobert.run.pipeline import run_pipeline
    from autobert.study.validation import validate_study

    (tmp_path / "domain.txt").write_text("\n".join(UNSEEN[:20]) + "\n", encoding="utf-8")
    path = write_study(tmp_path, n_train=48, n_validation=16, only=TECHNIQUES, techniques={
        "finetune": {"learning_rate": 5e-3, "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0, "weight_decay": 0.0},
        "further_pretraining": {"domain_corpus": "domain.txt", "batch_size": 4, "domain_steps": {"low": 2, "high": 4}},
        "masking": {**TASK_MODEL, "task_model_epochs": 1, "strategy": "entropy"},
    })
    study = load_study(path)
    pm = get_plugin_manager(only=TECHNIQUES)
    data = validate_study(study, pm)
    params = {"finetune.learning_rate": 5e-3, "finetune.epochs": 1, "finetune.batch_size": 16,
              "finetune.warmup_ratio": 0.0, "finetune.weight_decay": 0.0, "further_pretraining.stages": "domain",
              "further_pretraining.domain_steps": 2, "further_pretraining.domain_learning_rate": 1e-4, **PARAMS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_pipeline(study, FixedTrial(params), pm, data)
    kinds = sorted(e.kind for e in StageCache(study.cache_path).entries() if e.kind != "stage")
    assert kinds == ["mask", "task-model"]  # one task model, one set of scores for the domain corpus


def test_a_bad_task_model_setting_is_a_clear_error_before_any_trial(tmp_path):
    from autobert.errors import ConfigError
    from autobert.study.validation import validate_study

    path = write_study(tmp_path, only=TECHNIQUES, techniques={"masking": {"task_model_epochs": 0,
                                                                          "task_model_learning_rate": "fast"}})
    with pytest.raises(ConfigError) as error:
        validate_study(load_study(path), get_plugin_manager(only=TECHNIQUES))
    assert "techniques.masking.task_model_epochs: 0 must be an integer >= 1" in str(error.value)
    assert "techniques.masking.task_model_learning_rate: 'fast'" in str(error.value)


def test_without_a_cache_the_scores_are_computed_in_the_trial_folder(prepared):
    strategy, context, run, data = prepared
    uncached = EntropyMasking()
    uncached.prepare(context_for(run, data, UNSEEN, None))
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(uncached.scores, strategy.scores))
    assert sorted(p.name.rsplit("-", 1)[0] for p in (run.workdir / "masking").iterdir()) == ["mask", "task-model"]
