"""Data augmentation: EDA's four edits, contextual substitution, back-translation, the technique and its cache."""

from __future__ import annotations

import random
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
from optuna.trial import FixedTrial, TrialState
from rich.console import Console

from autobert import hookimpl
from autobert.config.schema import load_study
from autobert.study.display import leaderboard
from autobert.errors import ConfigError
from autobert.run.pipeline import run_pipeline
from autobert.run.plugin_manager import Technique, get_plugin_manager
from autobert.plugins.augmentation import Augmenter, eda
from autobert.plugins.augmentation.backtranslation import round_trip
from autobert.plugins.augmentation.contextual import substitute
from autobert.study.search import open_study, run_search
from autobert.study.validation import validate_study
from autobert.testing import TechniqueConformance, make_tiny_model, synthetic_rows, write_study

METHODS = ["augmentation", "eda", "contextual", "backtranslation"]
TECHNIQUES = ["finetune", *METHODS]
FINETUNE = {"learning_rate": 5e-3, "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0, "weight_decay": 0.0}
N_TRAIN, N_VALIDATION = 64, 32
SENTENCE = "the acting was good and the plot was clever but the ending felt cheap".split()


@pytest.fixture(scope="module")
def moby():
    return eda.load_thesaurus("")


# --------------------------------------------------------------------------
# EDA
# --------------------------------------------------------------------------


def test_moby_thesaurus_is_read_from_the_installed_package(moby):
    assert len(moby) > 20000
    assert "fine" in moby["good"] and "dull" in moby["boring"]
    assert all(s.isalpha() and s.islower() for s in moby["good"])


def test_synonym_replacement_replaces_n_words_by_their_thesaurus_synonyms(moby):
    new = eda.synonym_replacement(SENTENCE, 2, moby, random.Random(0))

    changed = {(old, now) for old, now in zip(SENTENCE, new) if old != now}
    assert len(new) == len(SENTENCE)
    assert len({old for old, _ in changed}) == 2
    assert all(now in moby[old] for old, now in changed)
    assert not any(old in eda.STOP_WORDS for old, _ in changed)


def test_synonym_replacement_uses_a_thesaurus_file_from_the_setting(tmp_path):
    path = tmp_path / "thesaurus.txt"
    path.write_text("plot,storyline\nclever,smart,witty\n", encoding="utf-8")
    thesaurus = eda.load_thesaurus(str(path))

    new = eda.synonym_replacement(SENTENCE, 5, thesaurus, random.Random(1))

    assert [w for w in new if w not in SENTENCE] in (["storyline", "smart"], ["storyline", "witty"])


def test_random_insertion_adds_n_synonyms_of_the_sentences_words(moby):
    new = eda.random_insertion(SENTENCE, 3, moby, random.Random(0))

    added = Counter(new) - Counter(SENTENCE)
    assert len(new) == len(SENTENCE) + 3 and sum(added.values()) == 3
    assert all(any(word in moby.get(source, []) for source in SENTENCE) for word in added)


def test_random_swap_keeps_the_multiset_of_words():
    for seed in range(20):
        new = eda.random_swap(SENTENCE, 3, random.Random(seed))
        assert Counter(new) == Counter(SENTENCE)
    assert any(eda.random_swap(SENTENCE, 3, random.Random(s)) != SENTENCE for s in range(5))


def test_random_deletion_never_empties_a_sentence():
    rng = random.Random(0)
    for _ in range(200):
        new = eda.random_deletion(SENTENCE[:3], 1.0, rng)
        assert len(new) == 1 and new[0] in SENTENCE[:3]
    kept = eda.random_deletion(SENTENCE, 0.3, random.Random(0))
    assert 0 < len(kept) < len(SENTENCE) and all(w in SENTENCE for w in kept)


def test_eda_gives_the_number_of_copies_asked_for_with_the_papers_defaults_by_size(moby):
    rng = random.Random(0)
    assert len(eda.eda(" ".join(SENTENCE), 0.1, 9, moby, rng)) == 9
    assert eda.paper_defaults(500) == (0.05, 16)
    assert eda.paper_defaults(2000) == (0.05, 8)
    assert eda.paper_defaults(6920) == (0.1, 4)


# --------------------------------------------------------------------------
# Contextual substitution and back-translation on tiny models
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return str(make_tiny_model(tmp_path_factory.mktemp("mlm") / "bert"))


def test_contextual_substitution_changes_about_the_requested_fraction_of_words(tiny_bert):
    texts = [t for t, _ in synthetic_rows(40, seed=3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fraction in (0.2, 0.5):
            out = substitute([(t, "positive") for t in texts], fraction, tiny_bert, batch_size=8, seed=0)
            changed = [sum(a != b for a, b in zip(t.split(), o.split())) / len(t.split()) for t, o in zip(texts, out)]
            assert all(len(t.split()) == len(o.split()) for t, o in zip(texts, out))
            assert abs(sum(changed) / len(changed) - fraction) < 0.08


def test_contextual_substitution_is_seeded_and_the_prompt_is_not_part_of_the_text(tiny_bert):
    texts = [t for t, _ in synthetic_rows(8, seed=4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jobs = [(t, "positive") for t in texts]
        first = substitute(jobs, 0.3, tiny_bert, seed=1, prompt="{label} review :")
        again = substitute(jobs, 0.3, tiny_bert, seed=1, prompt="{label} review :")
        other = substitute(jobs, 0.3, tiny_bert, seed=2, prompt="{label} review :")
    assert first == again and first != other
    assert all(len(o.split()) == len(t.split()) for t, o in zip(texts, first))


def test_contextual_substitution_warns_once_that_a_model_without_mlm_head_gets_a_tied_decoder(tmp_path):
    model = str(make_tiny_model(tmp_path / "no-head", seed=5))
    with pytest.warns(UserWarning, match="tied-decoder head"):
        substitute([("the movie was good", "positive")], 0.5, model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        substitute([("the plot was dull", "negative")], 0.5, model)


def make_tiny_marian(path: Path, texts: list[str], seed: int) -> str:
    """A randomly initialised 1-layer MarianMT and a word-level tokenizer trained on ``texts``.

    MarianTokenizer needs sentencepiece model files; a fast tokenizer built
    with the ``tokenizers`` library needs nothing but the texts.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"]))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    tokenizer.save_pretrained(str(path))
    config = MarianConfig(
        vocab_size=tok.get_vocab_size(), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, forced_eos_token_id=1,
    )
    torch.manual_seed(seed)
    MarianMTModel(config).save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="module")
def tiny_marians(tmp_path_factory):
    folder = tmp_path_factory.mktemp("marian")
    texts = [t for t, _ in synthetic_rows(200, seed=7)]
    return make_tiny_marian(folder / "en-xx", texts, 0), make_tiny_marian(folder / "xx-en", texts, 1)


def test_back_translation_round_trips_through_two_tiny_models_and_produces_text(tiny_marians):
    forward, backward = tiny_marians
    texts = [t for t, _ in synthetic_rows(6, seed=8)]

    out = round_trip(texts, forward, backward, temperature=1.0, batch_size=4, seed=0)

    assert len(out) == len(texts)
    assert all(isinstance(t, str) and t.strip() for t in out)
    assert out == round_trip(texts, forward, backward, temperature=1.0, batch_size=4, seed=0)
    assert out != round_trip(texts, forward, backward, temperature=1.0, batch_size=4, seed=1)


# --------------------------------------------------------------------------
# The technique in a trial
# --------------------------------------------------------------------------


class Spy:
    """Sees the datasets after every other technique (``trylast``), and what augmentation noted."""

    def __init__(self):
        self.seen = []

    @hookimpl(trylast=True)
    def autobert_modify_datasets(self, datasets, run):
        self.seen.append(({split: (list(ds["text"]), list(ds["label"])) for split, ds in datasets.items()},
                          dict(run.metadata.get("augmentation", {}))))


class Counting(Augmenter):
    """A third-party method: appends a marker word; counts its calls."""

    namespace = "counting"

    def __init__(self):
        self.calls = 0

    def augment(self, texts, labels, run, seed):
        self.calls += 1
        return [[f"{t} indeed"] for t in texts]


def counting_plugin(counting):
    class Plugin:
        @hookimpl
        def autobert_augmenters(self):
            return {"counting": counting}

    return Plugin()


def plugin_manager(*extra):
    pm = get_plugin_manager(only=TECHNIQUES)
    for name, plugin in extra:
        pm.register_technique(plugin, Technique(name, f"{__name__}:{type(plugin).__name__}", "autobert-tests", "0"))
    return pm


def study_at(directory, **augmentation):
    return load_study(write_study(directory, n_train=N_TRAIN, n_validation=N_VALIDATION, only=TECHNIQUES,
                                  techniques={"finetune": FINETUNE, **augmentation}))


def params(ratio, method="eda", **more):
    out = {**{f"finetune.{k}": v for k, v in FINETUNE.items()}, "augmentation.ratio": ratio}
    if ratio:
        out["augmentation.method"] = method
    return {**out, **more}


def test_ratio_zero_leaves_the_data_untouched(tmp_path):
    study = study_at(tmp_path)
    spy = Spy()
    pm = plugin_manager(("spy", spy))
    data = validate_study(study, pm)

    run_pipeline(study, FixedTrial(params(0.0)), pm, data)

    (seen, noted), = spy.seen
    for split, ds in data.splits.items():
        assert seen[split] == (list(ds["text"]), list(ds["label"]))
    assert noted == {}
    assert not (study.study_dir / "cache" / "augmentation").exists()


def test_augmented_rows_carry_their_sources_label_and_never_reach_validation_or_test(tmp_path):
    study = study_at(tmp_path)
    counting, spy = Counting(), Spy()
    pm = plugin_manager(("counting", counting_plugin(counting)), ("spy", spy))
    data = validate_study(study, pm)

    run_pipeline(study, FixedTrial(params(0.5, "counting")), pm, data)

    (seen, noted), = spy.seen
    texts, labels = list(data.splits["train"]["text"]), list(data.splits["train"]["label"])
    new_texts, new_labels = seen["train"]
    assert (new_texts[:N_TRAIN], new_labels[:N_TRAIN]) == (texts, labels)
    added = list(zip(new_texts[N_TRAIN:], new_labels[N_TRAIN:]))
    assert len(added) == N_TRAIN // 2 == noted["rows"]
    label_of = dict(zip(texts, labels))
    assert all(label == label_of[text.removesuffix(" indeed")] for text, label in added)
    assert {label for _, label in added} == {0, 1}
    for split in ("validation", "test"):
        assert seen[split] == (list(data.splits[split]["text"]), list(data.splits[split]["label"]))


def test_augmented_rows_copy_every_other_column_of_their_source(tmp_path):
    seen_rows = []

    class Weights:
        """Adds a column before augmentation and reads the augmented rows after it."""

        @hookimpl(tryfirst=True)
        def autobert_modify_datasets(self, datasets):
            datasets["train"] = datasets["train"].map(lambda row: {"weight": float(len(row["text"]))})

    class Reader:
        @hookimpl(trylast=True)
        def autobert_modify_datasets(self, datasets):
            seen_rows.extend(datasets["train"].select(range(N_TRAIN, len(datasets["train"]))))

    study = study_at(tmp_path)
    pm = plugin_manager(("counting", counting_plugin(Counting())), ("weights", Weights()), ("reader", Reader()))
    run_pipeline(study, FixedTrial(params(0.25, "counting")), pm, validate_study(study, pm))

    assert len(seen_rows) == 16
    assert all(row["weight"] == float(len(row["text"].removesuffix(" indeed"))) for row in seen_rows)


def test_eda_in_a_trial_adds_copies_of_a_share_of_the_training_rows(tmp_path):
    study = study_at(tmp_path)
    spy = Spy()
    pm = plugin_manager(("spy", spy))
    data = validate_study(study, pm)

    run_pipeline(study, FixedTrial(params(0.25, "eda", **{"eda.alpha": 0.2, "eda.copies": 2})), pm, data)

    (seen, noted), = spy.seen
    added = seen["train"][0][N_TRAIN:]
    # 16 sources, 2 copies each, less the copies that came out equal to their source.
    assert 16 < len(added) <= 32 and noted["rows"] == len(added) and noted["method"] == "eda"
    assert not set(added) & set(data.splits["validation"]["text"])


@pytest.mark.filterwarnings("ignore:The value .* is out of the range:UserWarning")
def test_a_registered_augmenter_is_a_method_and_its_output_is_cached_across_trials(tmp_path):
    study = study_at(tmp_path)
    counting, spy = Counting(), Spy()
    pm = plugin_manager(("counting", counting_plugin(counting)), ("spy", spy))
    data = validate_study(study, pm)
    first = run_pipeline(study, FixedTrial(params(0.25, "counting")), pm, data)
    # Another learning rate: the same augmented data, from the cache.
    run_pipeline(study, FixedTrial({**params(0.25, "counting"), "finetune.learning_rate": 1e-3}), pm, data)

    assert counting.calls == 1
    assert [noted["cached"] for _, noted in spy.seen] == [False, True]
    assert spy.seen[0][0]["train"] == spy.seen[1][0]["train"]
    added = spy.seen[0][0]["train"][0][N_TRAIN:]
    assert len(added) == 16 and all(t.endswith(" indeed") for t in added)
    assert first.steps == 5  # (64 + 16) rows / batch 16

    run_pipeline(study, FixedTrial(params(0.25, "counting")), pm, data, seed=1)
    assert counting.calls == 2  # another seed augments other rows


def test_a_corrupt_cache_entry_is_rebuilt_not_served(tmp_path):
    study = study_at(tmp_path)
    counting, spy = Counting(), Spy()
    pm = plugin_manager(("counting", counting_plugin(counting)), ("spy", spy))
    data = validate_study(study, pm)
    run_pipeline(study, FixedTrial(params(0.25, "counting")), pm, data)
    entry, = (study.study_dir / "cache" / "augmentation").glob("*/rows.jsonl")
    entry.write_text(entry.read_text()[:-20], encoding="utf-8")

    run_pipeline(study, FixedTrial(params(0.25, "counting")), pm, data)

    assert counting.calls == 2
    assert spy.seen[1][0]["train"] == spy.seen[0][0]["train"]
    assert not [p for p in entry.parent.parent.iterdir() if p.name.startswith(".tmp-")]  # no temporary folder left


def test_contextual_substitution_in_a_trial_uses_the_mlm_setting(tmp_path, tiny_bert):
    study = study_at(tmp_path, contextual={"mlm": tiny_bert, "prompt": "{label} :"})
    spy = Spy()
    pm = plugin_manager(("spy", spy))
    data = validate_study(study, pm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_pipeline(study, FixedTrial(params(0.25, "contextual", **{"contextual.fraction": 0.3,
                                                                      "contextual.copies": 2})), pm, data)

    (seen, noted), = spy.seen
    assert noted["rows"] == len(seen["train"][0]) - N_TRAIN > 16
    assert not any(":" in t for t in seen["train"][0][N_TRAIN:])


def test_a_study_searches_method_and_ratio_and_the_leaderboard_shows_them(tmp_path):
    study = study_at(tmp_path, augmentation={"ratio": [0.0, 0.25], "method": ["eda", "contextual"]},
                     eda={"alpha": 0.1, "copies": 1}, contextual={"fraction": 0.2, "copies": 1})
    pm = plugin_manager()
    data = validate_study(study, pm)
    stored = open_study(study)
    for fixed in ({"augmentation.ratio": 0.25, "augmentation.method": "eda"},
                  {"augmentation.ratio": 0.25, "augmentation.method": "contextual"}, {"augmentation.ratio": 0.0}):
        stored.enqueue_trial(fixed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opened = run_search(study, pm, data, n_trials=3)

    trials = [t for t in opened.trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 3, [t.user_attrs.get("fail_reason") for t in opened.trials]
    assert {t.params.get("augmentation.method") for t in trials} == {"eda", "contextual", None}
    console = Console(record=True, width=200)
    console.print(leaderboard(opened, "accuracy"))
    shown = console.export_text()
    assert "augmentation" in shown and "method" in shown and "ratio" in shown


def test_settings_problems_are_reported_before_any_trial(tmp_path):
    study = study_at(tmp_path, eda={"thesaurus": "missing.txt"}, contextual={"prompt": "positive:", "top_k": 0})
    with pytest.raises(ConfigError) as caught:
        validate_study(study, plugin_manager())
    text = str(caught.value)
    assert "techniques.eda.thesaurus: file not found" in text
    assert "techniques.contextual.prompt" in text and "{label}" in text
    assert "techniques.contextual.top_k" in text


def test_an_unknown_method_in_the_study_names_the_registered_ones(tmp_path):
    study = study_at(tmp_path, augmentation={"method": ["eda", "synonyms"]})
    with pytest.raises(ConfigError, match="'synonyms' is not a choice.*contextual.*eda"):
        validate_study(study, plugin_manager())


def test_back_translation_is_no_choice_until_both_models_are_set(tmp_path):
    study = study_at(tmp_path, augmentation={"method": ["eda", "backtranslation"]})
    with pytest.raises(ConfigError) as caught:
        validate_study(study, plugin_manager())
    # One problem, with the method's own reason: the technique reads no override to say it.
    (problem,) = [p for p in caught.value.problems if "backtranslation" in p]
    assert problem.startswith("techniques.augmentation.method: 'backtranslation' is not available in this study: "
                              "back-translation needs two translation models; set "
                              "techniques.backtranslation.forward_model and backward_model")
    assert problem.endswith("or choose from {'contextual', 'eda'}")


def test_back_translation_in_a_trial_with_local_models(tmp_path, tiny_marians):
    forward, backward = tiny_marians
    study = study_at(tmp_path, augmentation={"ratio": 0.25, "method": "backtranslation"},
                     backtranslation={"forward_model": forward, "backward_model": backward, "copies": 1})
    spy = Spy()
    pm = plugin_manager(("spy", spy))
    data = validate_study(study, pm)

    run_pipeline(study, FixedTrial(params(0.25, "backtranslation", **{"backtranslation.temperature": 1.0,
                                                                       "backtranslation.copies": 1})), pm, data)

    (seen, noted), = spy.seen
    added = seen["train"][0][N_TRAIN:]
    assert noted["method"] == "backtranslation" and 0 < len(added) <= 16
    assert all(isinstance(t, str) and t.strip() for t in added)


class TestAugmentationConformance(TechniqueConformance):
    technique = "augmentation"
    study_overrides = {"n_train": 32, "n_validation": 16, "only": TECHNIQUES,
                       "techniques": {"finetune": {"epochs": 1, "batch_size": 16},
                                      "augmentation": {"ratio": 0.25, "method": "eda"}}}

    @pytest.fixture
    def plugin_manager(self):
        return get_plugin_manager(only=TECHNIQUES)


class TestEdaConformance(TechniqueConformance):
    """EDA is a method of augmentation, with no off value of its own: on, it is augmentation's method; off,
    augmentation is switched off (ratio 0)."""

    technique = "eda"
    study_overrides = TestAugmentationConformance.study_overrides
    on_values = {"augmentation.ratio": 0.25, "augmentation.method": "eda"}
    off_values = {"augmentation.ratio": 0.0}

    @pytest.fixture
    def plugin_manager(self):
        return get_plugin_manager(only=TECHNIQUES)


class TestContextualConformance(TestEdaConformance):
    """Contextual substitution, with the study's own tiny BERT as its masked language model."""

    technique = "contextual"
    study_overrides = {"n_train": 32, "n_validation": 16, "only": TECHNIQUES,
                       "techniques": {"finetune": {"epochs": 1, "batch_size": 16},
                                      "augmentation": {"ratio": 0.25, "method": "contextual"},
                                      "contextual": {"copies": 1}}}
    on_values = {"augmentation.ratio": 0.25, "augmentation.method": "contextual"}


class TestBacktranslationConformance(TestEdaConformance):
    """Back-translation through two tiny local MarianMT models (no download: it runs offline)."""

    technique = "backtranslation"
    on_values = {"augmentation.ratio": 0.25, "augmentation.method": "backtranslation"}

    @pytest.fixture(autouse=True)
    def _marians(self, tiny_marians):
        self.marians = tiny_marians

    def write_study(self, directory):
        forward, backward = self.marians
        return write_study(directory, name="conformance", n_train=32, n_validation=16, only=TECHNIQUES, techniques={
            "finetune": {"epochs": 1, "batch_size": 16}, "augmentation": {"ratio": 0.25, "method": "backtranslation"},
            "backtranslation": {"forward_model": forward, "backward_model": backward, "copies": 1}})
