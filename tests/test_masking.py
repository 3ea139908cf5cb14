"""Masking strategies: each one's masks have the properties its paper describes."""

from __future__ import annotations

import numpy as np
import pytest

from autobert.plugins.masking import (
    DynamicMasking, MaskingCollator, MaskingExample, SpanMasking, StaticMasking, WholeWordMasking, budget_for,
    encode_corpus, registered_strategies,
)
from autobert.run.plugin_manager import get_plugin_manager
from autobert.config.space import explore
from autobert.testing import make_tiny_model

STRATEGIES = {"static": StaticMasking, "dynamic": DynamicMasking, "whole_word": WholeWordMasking, "span": SpanMasking}


def example(n_words=40, seed=0, index=0, epoch=0, position=0, max_pieces=3):
    """[CLS] w w w ... [SEP] where each word has 1 to ``max_pieces`` sub-tokens (ids 10...)."""
    rng = np.random.default_rng(seed)
    pieces = rng.integers(1, max_pieces + 1, size=n_words)
    words = np.concatenate([[-1], np.repeat(np.arange(n_words), pieces), [-1]])
    ids = np.where(words < 0, 2, 10 + np.arange(len(words)) % 50)
    ids[-1] = 3
    return MaskingExample(input_ids=ids, maskable=words >= 0, word_ids=words, index=index, epoch=epoch, position=position)


def select(strategy, ex, probability=0.15, seed=0):
    rng = np.random.default_rng([seed, *strategy.rng_key(ex)])
    return np.asarray(strategy.select(ex, budget_for(ex.maskable, probability), rng), dtype=bool)


def masked_runs(selected, ex):
    """Lengths, in words, of each run of consecutive masked words."""
    words = ex.words()
    flags = [bool(selected[w].all()) for w in words]
    runs, current = [], 0
    for flag in flags + [False]:
        if flag:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    path = make_tiny_model(tmp_path_factory.mktemp("tok") / "tiny")
    return AutoTokenizer.from_pretrained(str(path))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_masks_about_fifteen_percent_of_the_maskable_tokens(name):
    strategy = STRATEGIES[name]()
    masked = maskable = 0
    for i in range(200):
        ex = example(seed=i, position=i, index=i)
        chosen = select(strategy, ex)
        masked += int(chosen.sum())
        maskable += int(ex.maskable.sum())
        assert not chosen[~ex.maskable].any()
    assert 0.13 <= masked / maskable <= 0.17


def test_whole_word_masks_every_sub_token_of_a_chosen_word_and_dynamic_does_not():
    def partial_words(strategy):
        count = 0
        for i in range(100):
            ex = example(seed=i, position=i)
            chosen = select(strategy, ex)
            count += sum(0 < chosen[w].sum() < len(w) for w in ex.words())
        return count

    assert partial_words(WholeWordMasking()) == 0
    assert partial_words(DynamicMasking()) > 0


def test_span_lengths_are_geometric_truncated_at_ten_words():
    runs = []
    for i in range(100):
        ex = example(n_words=400, seed=i, position=i, max_pieces=1)
        chosen = select(SpanMasking(), ex)
        assert not any(0 < chosen[w].sum() < len(w) for w in ex.words())
        runs += masked_runs(chosen, ex)
    runs = np.array(runs)
    # Geometric(0.2) truncated to 1..10 has mean 4.02; the budget shortens a few last spans.
    assert runs.max() <= 10 and (runs == 10).any()
    assert 3.5 <= runs.mean() <= 4.3
    assert np.mean(runs == 1) > np.mean(runs == 5)  # geometric: short spans are the most common
    # Dynamic token masking rarely masks neighbours: its runs are about one word long.
    dynamic_runs = masked_runs(select(DynamicMasking(), example(n_words=400, max_pieces=1)), example(n_words=400, max_pieces=1))
    assert np.mean(dynamic_runs) < 1.5


def batch_of(collator, rows, epoch=0, position=0, index=None):
    features = [dict(r, index=i if index is None else index, epoch=epoch, position=position + i) for i, r in enumerate(rows)]
    return collator(features)


TEXTS = ["the movie was good", "a really dull and boring plot", "the cast was superb and the story lovely", "it is fine"]


def test_static_masks_are_identical_across_epochs_with_one_duplicate(tokenizer):
    rows = encode_corpus(TEXTS, tokenizer, 32)
    strategy = StaticMasking()
    strategy.duplicates = 1
    collator = MaskingCollator(tokenizer, strategy, 0.3, seed=0)
    first = batch_of(collator, rows, epoch=0, position=0)
    later = batch_of(collator, rows, epoch=3, position=400)
    assert (first["input_ids"] == later["input_ids"]).all() and (first["labels"] == later["labels"]).all()


def test_static_masks_differ_between_duplicates_and_repeat_after_them(tokenizer):
    rows = encode_corpus(TEXTS * 4, tokenizer, 32)
    strategy = StaticMasking()
    strategy.duplicates = 2
    collator = MaskingCollator(tokenizer, strategy, 0.3, seed=0)
    epochs = [batch_of(collator, rows, epoch=e, position=100 * e) for e in range(3)]
    assert not (epochs[0]["labels"] == epochs[1]["labels"]).all()
    assert (epochs[0]["labels"] == epochs[2]["labels"]).all()


def test_dynamic_masks_change_from_one_visit_to_the_next(tokenizer):
    rows = encode_corpus(TEXTS * 4, tokenizer, 32)
    collator = MaskingCollator(tokenizer, DynamicMasking(), 0.3, seed=0)
    first = batch_of(collator, rows, epoch=0, position=0)
    again = batch_of(collator, rows, epoch=1, position=len(rows))
    assert not (first["labels"] == again["labels"]).all()


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_special_and_padding_tokens_are_never_masked_or_changed(tokenizer, name):
    rows = encode_corpus(TEXTS * 10, tokenizer, 32)
    strategy = STRATEGIES[name]()
    collator = MaskingCollator(tokenizer, strategy, 0.5, seed=1)
    batch = batch_of(collator, rows)
    special = np.isin(batch["input_ids"].numpy(), tokenizer.all_special_ids)
    for row, r in enumerate(rows):
        n = len(r["input_ids"])
        labels = batch["labels"][row].numpy()
        assert (labels[n:] == -100).all() and (batch["input_ids"][row, n:] == tokenizer.pad_token_id).all()
        is_special = ~np.asarray(r["maskable"])
        assert (labels[:n][is_special] == -100).all()
        assert (batch["input_ids"][row, :n].numpy()[is_special] == np.asarray(r["input_ids"])[is_special]).all()
    assert (batch["labels"] != -100).any() and special.any()


def test_selected_tokens_follow_the_80_10_10_rule(tokenizer):
    rows = encode_corpus(TEXTS * 200, tokenizer, 32)
    batch = batch_of(MaskingCollator(tokenizer, DynamicMasking(), 0.15, seed=0), rows)
    labels, inputs = batch["labels"].numpy(), batch["input_ids"].numpy()
    chosen = labels != -100
    as_mask = np.mean(inputs[chosen] == tokenizer.mask_token_id)
    kept = np.mean(inputs[chosen] == labels[chosen])
    assert 0.76 <= as_mask <= 0.84
    assert 0.07 <= kept <= 0.13  # plus the rare random token that equals the original
    assert not np.isin(inputs[chosen & (inputs != labels) & (inputs != tokenizer.mask_token_id)],
                       tokenizer.all_special_ids).any()


def test_masks_are_reproducible_from_the_seed(tokenizer):
    rows = encode_corpus(TEXTS * 5, tokenizer, 32)
    make = lambda seed: batch_of(MaskingCollator(tokenizer, SpanMasking(), 0.15, seed=seed), rows)
    assert (make(3)["input_ids"] == make(3)["input_ids"]).all()
    assert not (make(3)["labels"] == make(4)["labels"]).all()


def test_the_built_in_strategies_are_registered_through_the_hook():
    pm = get_plugin_manager(only=["masking"])
    assert set(registered_strategies(pm.hook)) == {"static", "dynamic", "whole_word", "span", "entropy", "selective"}


def test_masking_parameters_exist_only_in_trials_that_pretrain():
    pm = get_plugin_manager(only=["further_pretraining", "masking"])
    report = explore(pm.hook.autobert_search_space, pm.techniques, hooks=pm.hook)
    assert report.defaults["masking.strategy"].choices[0] == "dynamic"
    assert set(report.defaults["masking.strategy"].choices) == {"static", "dynamic", "whole_word", "span", "entropy", "selective"}
    assert "masking.duplicates" in report.defaults

    from optuna.trial import FixedTrial

    from autobert.config.space import SearchSpace

    space = SearchSpace(FixedTrial({"further_pretraining.stages": "none"}), pm.techniques, hooks=pm.hook)
    pm.hook.autobert_search_space(space=space)
    assert space.params == {"further_pretraining.stages": "none"}
    alone = get_plugin_manager(only=["masking"])
    space = SearchSpace(FixedTrial({}), alone.techniques, hooks=alone.hook)
    alone.hook.autobert_search_space(space=space)
    assert space.params == {}
