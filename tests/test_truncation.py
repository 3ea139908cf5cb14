"""The truncation technique: which tokens of a long text reach the model.

Every word of the tiny tokenizer's vocabulary is one token, so a text of
distinct words shows exactly which positions each strategy keeps.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from optuna.trial import TrialState
from transformers import AutoTokenizer

from autobert import hookimpl
from autobert.config.schema import load_study
from autobert.run.plugin_manager import Technique, get_plugin_manager
from autobert.study.search import run_search
from autobert.study.validation import validate_study
from autobert.testing import FILLER, NEGATIVE, POSITIVE, TechniqueConformance, make_tiny_model, write_study

MAX_LENGTH = 12
ROOM = MAX_LENGTH - 2  # [CLS] and [SEP]
LONG_TEXT = " ".join(FILLER + POSITIVE + NEGATIVE)  # 26 distinct one-token words
SHORT_TEXTS = ["the plot was good", "a", "awful acting and a dull story"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return AutoTokenizer.from_pretrained(str(make_tiny_model(tmp_path_factory.mktemp("tiny-bert"))))


@pytest.fixture(scope="module")
def pm():
    return get_plugin_manager(only=["truncation"])


def encode(pm, tokenizer, texts, strategy, head_share=None, max_length=MAX_LENGTH):
    params = {"truncation.strategy": strategy}
    if head_share is not None:
        params["truncation.head_share"] = head_share
    return dict(pm.hook.autobert_tokenize(
        texts=texts, tokenizer=tokenizer, max_length=max_length, run=SimpleNamespace(params=params)
    ))


def words(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def with_specials(tokenizer, ids):
    return [tokenizer.cls_token_id, *ids, tokenizer.sep_token_id]


def test_head_keeps_the_first_tokens(pm, tokenizer):
    full = words(tokenizer, LONG_TEXT)

    ids = encode(pm, tokenizer, [LONG_TEXT], "head")["input_ids"][0]

    assert ids == with_specials(tokenizer, full[:ROOM])


def test_tail_keeps_the_last_tokens(pm, tokenizer):
    full = words(tokenizer, LONG_TEXT)

    ids = encode(pm, tokenizer, [LONG_TEXT], "tail")["input_ids"][0]

    assert ids == with_specials(tokenizer, full[-ROOM:])


def test_head_tail_keeps_the_head_share_from_the_start_and_the_rest_from_the_end(pm, tokenizer):
    full = words(tokenizer, LONG_TEXT)

    ids = encode(pm, tokenizer, [LONG_TEXT], "head_tail", head_share=0.3)["input_ids"][0]

    assert ids == with_specials(tokenizer, full[:3] + full[-7:])


@pytest.mark.parametrize(("head_share", "same_as"), [(0.0, "tail"), (1.0, "head")])
def test_head_tail_at_the_ends_of_its_range_is_tail_or_head(pm, tokenizer, head_share, same_as):
    assert (encode(pm, tokenizer, [LONG_TEXT], "head_tail", head_share=head_share)
            == encode(pm, tokenizer, [LONG_TEXT], same_as))


@pytest.mark.parametrize("strategy", ["tail", "head_tail"])
def test_truncated_text_keeps_mask_and_token_types_of_one_full_length_sequence(pm, tokenizer, strategy):
    encoded = encode(pm, tokenizer, [LONG_TEXT], strategy, head_share=0.5)

    assert set(encoded) == {"input_ids", "token_type_ids", "attention_mask"}
    assert encoded["attention_mask"] == [[1] * MAX_LENGTH]
    assert encoded["token_type_ids"] == [[0] * MAX_LENGTH]


@pytest.mark.parametrize("strategy", ["head", "tail", "head_tail"])
def test_texts_that_fit_are_encoded_exactly_as_by_the_default(pm, tokenizer, strategy):
    batch = [SHORT_TEXTS[0], LONG_TEXT, *SHORT_TEXTS[1:]]
    default = dict(tokenizer(batch, truncation=True, max_length=MAX_LENGTH))

    encoded = encode(pm, tokenizer, batch, strategy, head_share=0.25)

    short_rows = [0, 2, 3]
    for key in default:
        assert [encoded[key][i] for i in short_rows] == [default[key][i] for i in short_rows]
    assert set(encoded) == set(default)


def test_a_study_can_fix_the_strategy_and_the_model_sees_the_tails(tmp_path):
    seen = []

    class Probe:
        @hookimpl(wrapper=True)
        def autobert_compute_loss(self, inputs):
            for ids, mask in zip(inputs["input_ids"].tolist(), inputs["attention_mask"].tolist()):
                seen.append(tuple(i for i, m in zip(ids, mask) if m))
            return (yield)

    path = write_study(
        tmp_path, n_train=32, n_validation=16, max_length=8, only=["finetune", "truncation"],
        techniques={"finetune": {"learning_rate": 1e-3, "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0},
                    "truncation": {"strategy": "tail"}},
    )
    study = load_study(path)
    pm = get_plugin_manager(only=["finetune", "truncation"])
    pm.register_technique(Probe(), Technique("probe", f"{__name__}:Probe", "autobert-tests", "0"))
    data = validate_study(study, pm)

    trial = run_search(study, pm, data, n_trials=1).trials[0]

    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
    assert trial.params["truncation.strategy"] == "tail"
    assert "truncation.head_share" not in trial.params  # only searched under head_tail
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "tiny-bert"))
    texts = list(data.splits["train"]["text"])
    tails = {tuple(with_specials(tokenizer, words(tokenizer, t)[-6:])) for t in texts}
    heads = {tuple(with_specials(tokenizer, words(tokenizer, t)[:6])) for t in texts}
    assert len(seen) == len(texts)
    assert set(seen) <= tails
    assert set(seen) - heads  # long texts really lost their beginnings


class TestTruncationConformance(TechniqueConformance):
    """autobert's conformance suite: entry point, namespaced space, a trial end to end."""

    technique = "truncation"
    # 8 tokens: most sentences (5 to 11 words) are cut, so head and head_tail train on different tokens.
    study_overrides = {"n_train": 32, "n_validation": 16, "only": ["finetune", "truncation"], "max_length": 8,
                       "techniques": {"finetune": {"epochs": 1, "batch_size": 16}}}

    @pytest.fixture
    def plugin_manager(self):
        return get_plugin_manager(only=["finetune", "truncation"])
