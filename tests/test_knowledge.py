"""Knowledge injection: external vectors reach the model at training, evaluation and prediction time.

The synthetic task's labels depend only on each row's 8-dimensional vector
(the sign of a fixed projection); the texts are the usual synthetic sentences,
whose sentiment words are now noise. A tiny BERT cannot beat chance from the
text, and learns the task once the vectors are injected.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from optuna.trial import FixedTrial, TrialState
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from autobert.cli import main
from autobert.config.schema import dump_yaml, load_frozen, load_study
from autobert.errors import ConfigError
from autobert.stage_cache import StageCache
from autobert.trial_run import TrialRun
from autobert.run.models import load_tokenizer
from autobert.run.pipeline import run_pipeline
from autobert.run.plugin_manager import get_plugin_manager
from autobert.plugins import knowledge
from autobert.heads._knowledge_model import AutobertKnowledgeForSequenceClassification
from autobert.study.search import export_best, run_search
from autobert.study.validation import validate_study
from autobert.config.settings import declared_settings, resolve_settings
from autobert.config.space import explore
from autobert.testing import TechniqueConformance, write_study

DIM = 8
SPLITS = ("train", "validation", "test")
TECHNIQUES = ["finetune", "knowledge"]
# Enough steps for the tiny model to read the vectors through either injection point.
FINETUNE = {"learning_rate": 5e-3, "epochs": 8, "batch_size": 16, "warmup_ratio": 0.0, "weight_decay": 0.0}
INJECTED = {"knowledge.projection": 32, "knowledge.dropout": 0.0}


def vector_task(directory: Path, *, n_train: int = 400, n_validation: int = 64, name: str = "knowledge",
                source: dict | None = None, techniques: dict | None = None) -> Path:
    """A study whose labels are the sign of ``vector @ w``; vectors in every source format."""
    path = write_study(directory, name=name, n_train=n_train, n_validation=n_validation, only=TECHNIQUES)
    rng = np.random.default_rng(0)
    w = rng.normal(size=DIM)
    table = {}
    for split in SPLITS:
        with open(directory / "data" / f"{split}.csv", newline="", encoding="utf-8") as f:
            texts = [row["text"] for row in csv.DictReader(f)]
        vectors = rng.normal(size=(len(texts), DIM)).astype(np.float32)
        labels = (vectors @ w > 0).astype(int)
        keys = [f"{split}-{i}" for i in range(len(texts))]
        table.update({k: v.tolist() for k, v in zip(keys, vectors)})
        with open(directory / "data" / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label", "key", "vector"])
            writer.writerows([t, l, k, json.dumps(v.tolist())] for t, l, k, v in zip(texts, labels, keys, vectors))
        np.save(directory / f"{split}.npy", vectors)
    (directory / "table.json").write_text(json.dumps(table), encoding="utf-8")
    np.savez(directory / "table.npz", **{k: np.asarray(v, dtype=np.float32) for k, v in table.items()})
    torch.save({k: torch.tensor(v) for k, v in table.items()}, directory / "table.pt")
    study = load_study(path).model_dump(mode="json", exclude_none=True)
    study["techniques"] = {"finetune": FINETUNE, "knowledge": source or {"vectors": "{split}.npy"}}
    for technique, values in (techniques or {}).items():
        study["techniques"].setdefault(technique, {}).update(values)
    path.write_text(dump_yaml(study), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    directory = tmp_path_factory.mktemp("knowledge")
    path = vector_task(directory)
    study = load_study(path)
    pm = get_plugin_manager(only=TECHNIQUES)
    return SimpleNamespace(directory=directory, path=path, study=study, pm=pm, data=validate_study(study, pm))


def params(inject: str, **knowledge_params) -> dict:
    base = {f"finetune.{k}": v for k, v in FINETUNE.items()}
    if inject == "none":
        return {**base, "knowledge.inject": "none"}
    return {**base, **INJECTED, "knowledge.inject": inject, **{f"knowledge.{k}": v for k, v in knowledge_params.items()}}


def validation_rows(directory: Path) -> tuple[list[str], list[int], np.ndarray]:
    with open(directory / "data" / "validation.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [int(r["label"]) for r in rows], np.load(directory / "validation.npy")


# --------------------------------------------------------------------------
# The effect
# --------------------------------------------------------------------------


def test_injection_beats_no_injection_by_a_wide_margin_at_both_points(task):
    def accuracy(p):
        return run_pipeline(task.study, FixedTrial(p), task.pm, task.data).value

    without = accuracy(params("none"))
    at_embeddings = accuracy(params("embeddings", fusion="add", tokens="cls"))
    at_last_layer = accuracy(params("last_layer", fusion="concat"))

    assert without < 0.7  # the text says nothing about these labels
    assert at_embeddings > without + 0.25 and at_embeddings > 0.85
    assert at_last_layer > without + 0.25 and at_last_layer > 0.85


@pytest.mark.parametrize("inject, fusion, tokens", [
    ("embeddings", "add", "cls"), ("embeddings", "concat", "all"), ("embeddings", "gated", "all"),
    ("last_layer", "add", "cls"), ("last_layer", "concat", "cls"), ("last_layer", "gated", "cls"),
])
def test_the_wrapped_model_starts_as_the_model_without_knowledge(task, inject, fusion, tokens):
    checkpoint = str(task.directory / "tiny-bert")
    tokenizer = load_tokenizer(checkpoint)
    inner = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=2).eval()
    wrapped = AutobertKnowledgeForSequenceClassification.wrap(
        inner, dim=DIM, inject=inject, fusion=fusion, tokens=tokens, projection=16, dropout=0.0).eval()
    texts, _, vectors = validation_rows(task.directory)
    tokens_ = tokenizer(texts[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = inner(**tokens_).logits
        got = wrapped(**tokens_, knowledge_vectors=torch.from_numpy(vectors[:4])).logits
        # ... and the vectors do move the logits once the fusion has weights.
        for p in wrapped.knowledge.parameters():
            p.add_(0.5)
        moved = wrapped(**tokens_, knowledge_vectors=torch.from_numpy(vectors[:4])).logits

    # The tiny random model's logits are small (about 1e-3), hence absolute tolerances well below that.
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
    assert (moved - expected).abs().max() > 1e-5


# --------------------------------------------------------------------------
# Sources and their validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("source", [
    {"column": "vector"},
    {"key_column": "key", "table": "table.json"},
    {"key_column": "key", "table": "table.npz"},
    {"key_column": "key", "table": "table.pt"},
])
def test_every_source_gives_the_rows_their_vectors(task, source):
    study = task.study.model_copy(update={"techniques": {**task.study.techniques, "knowledge": source}})
    settings = resolve_settings(study, declared_settings(task.pm))
    for split in SPLITS:
        np.testing.assert_allclose(knowledge.load_vectors(study, settings, split),
                                   np.load(task.directory / f"{split}.npy"), rtol=1e-6)


def problems_of(study_path: Path, pm) -> str:
    with pytest.raises(ConfigError) as excinfo:
        validate_study(load_study(study_path), pm)
    return str(excinfo.value)


def rewrite(path: Path, **knowledge_settings) -> Path:
    study = load_study(path).model_dump(mode="json", exclude_none=True)
    study["techniques"]["knowledge"] = knowledge_settings
    out = path.with_name(f"variant-{len(list(path.parent.glob('variant-*.yaml')))}.yaml")
    out.write_text(dump_yaml(study), encoding="utf-8")
    return out


def test_a_missing_vector_file_is_reported_before_training(task, tmp_path):
    (tmp_path / "vectors").mkdir()
    for split in ("train", "validation"):  # no test file
        np.save(tmp_path / "vectors" / f"{split}.npy", np.load(task.directory / f"{split}.npy"))
    path = rewrite(task.path, vectors=str(tmp_path / "vectors" / "{split}.npy"))

    message = problems_of(path, task.pm)
    assert f"techniques.knowledge.vectors: no file {tmp_path / 'vectors' / 'test.npy'} for the test split" in message


def test_misaligned_and_wrong_dimension_vectors_are_reported_together(task, tmp_path):
    np.save(tmp_path / "train.npy", np.load(task.directory / "train.npy")[:-3])  # 3 rows short
    np.save(tmp_path / "validation.npy", np.zeros((64, DIM + 1), np.float32))  # a dimension more
    np.save(tmp_path / "test.npy", np.load(task.directory / "test.npy"))
    path = rewrite(task.path, vectors=str(tmp_path / "{split}.npy"))

    message = problems_of(path, task.pm)
    assert "has shape (397, 8), but data.train has 400 rows; it needs shape (400, dim)" in message
    assert "the splits' vectors differ in dimension (validation 9, test 8)" in message


@pytest.mark.parametrize("settings, expected", [
    ({"vectors": "one-file.npy"}, "names one file; give one .npy per split with {split} in the path"),
    ({"column": "vector", "vectors": "{split}.npy"}, "column and vectors are each a source of vectors; keep one"),
    ({"key_column": "key"}, "techniques.knowledge.key_column: needs techniques.knowledge.table too"),
    ({"column": "vectr"}, "column 'vectr' is not in data.train (columns: text, label, key, vector)"),
    ({"key_column": "key", "table": "missing.json"}, "techniques.knowledge.table: file not found"),
    ({"inject": "embeddings"}, "techniques.knowledge.inject: knowledge has no vectors to inject; set a source"),
])
def test_bad_sources_are_reported_before_training(task, settings, expected):
    assert expected in problems_of(rewrite(task.path, **settings), task.pm)


def test_unknown_keys_are_named(task, tmp_path):
    table = json.loads((task.directory / "table.json").read_text())
    del table["validation-5"]
    (tmp_path / "partial.json").write_text(json.dumps(table))
    message = problems_of(rewrite(task.path, key_column="key", table=str(tmp_path / "partial.json")), task.pm)
    assert "1 key(s) of data.validation are not in" in message and "'validation-5'" in message


def test_without_a_source_knowledge_searches_nothing_and_with_one_it_searches_its_space(task):
    unconfigured = explore(task.pm.hook.autobert_search_space, task.pm.techniques, {}, hooks=task.pm.hook)
    configured = explore(task.pm.hook.autobert_search_space, task.pm.techniques, task.study.overrides,
                         hooks=task.pm.hook)

    assert not [n for n in unconfigured.defaults if n.startswith("knowledge.")]
    assert {n for n in configured.defaults if n.startswith("knowledge.")} == {
        "knowledge.inject", "knowledge.fusion", "knowledge.tokens", "knowledge.projection", "knowledge.dropout"}
    assert configured.defaults["knowledge.inject"].choices == ("none", "embeddings", "last_layer")


# --------------------------------------------------------------------------
# Composition, replay and export
# --------------------------------------------------------------------------


def test_it_wraps_a_pooling_head_and_keeps_the_encoder_findable(task):
    from autobert.services import find_encoder
    from autobert.heads._pooled_model import AutobertPooledForSequenceClassification
    from autobert.plugins.multitask import cls_vectors

    pm = get_plugin_manager(only=["finetune", "knowledge", "pooling"])
    checkpoint = str(task.directory / "tiny-bert")
    run = TrialRun(study=task.study, params={"pooling.kind": "mean", **params("last_layer", fusion="concat")},
                   seed=0, tokenizer=load_tokenizer(checkpoint), label_names=["0", "1"], workdir=None, cache_dir=None,
                   metadata={knowledge.COLUMN: DIM}, settings=resolve_settings(task.study, declared_settings(pm)))
    model = pm.hook.autobert_build_model(checkpoint=checkpoint, run=run)

    assert isinstance(model, AutobertKnowledgeForSequenceClassification)
    assert isinstance(model.inner, AutobertPooledForSequenceClassification)
    assert model.knowledge.mix.out_features == model.inner.classifier.in_features
    assert find_encoder(model).base is model.inner.backbone
    tokens = run.tokenizer(["a good film"], return_tensors="pt")
    assert cls_vectors(model, dict(tokens)).shape == (1, model.config.hidden_size)


def test_distillation_teacher_reads_the_vectors_too(task):
    pm = get_plugin_manager(only=["distillation", *TECHNIQUES])
    study = task.study.model_copy(update={"techniques": {**task.study.techniques, "finetune": {**FINETUNE, "epochs": 1}}})
    p = {**params("last_layer", fusion="concat"), "finetune.epochs": 1, "distillation.enabled": True,
         "distillation.alpha": 0.5, "distillation.temperature": 2.0, "distillation.teachers": 1}

    result = run_pipeline(study, FixedTrial(p), pm, task.data)

    assert result.steps == 25
    (teacher,) = StageCache(study.cache_path).entries("teacher")
    assert (teacher.path / "logits.npy").is_file()


def test_autobert_train_reproduces_the_trial_and_the_export_predicts_with_vectors(tmp_path):
    path = vector_task(tmp_path, n_train=96, n_validation=32, techniques={
        "finetune": {"epochs": 2}, "knowledge": {"inject": "last_layer", "fusion": "gated", "projection": 16}})
    study = load_study(path)
    pm = get_plugin_manager(only=TECHNIQUES)
    data = validate_study(study, pm)
    opened = run_search(study, pm, data, n_trials=1)
    trial = opened.trials[0]
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
    frozen = export_best(study, opened, pm, data, tmp_path / "export" / "best.yaml")
    assert load_frozen(frozen).techniques["knowledge"]["vectors"] == "../{split}.npy"

    out = tmp_path / "model"
    assert main(["train", str(frozen), "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["value"] == trial.value

    model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True).eval()
    assert model.config.knowledge_dim == DIM and model.config.knowledge_fusion == "gated"
    assert "{split}.npy" in model.config.knowledge_source
    texts, labels, vectors = validation_rows(tmp_path)
    tokens = AutoTokenizer.from_pretrained(out)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        predicted = model(**tokens, knowledge_vectors=torch.from_numpy(vectors)).logits.argmax(-1).tolist()
    accuracy = sum(p == l for p, l in zip(predicted, labels)) / len(labels)
    assert accuracy == metrics["validation"]["accuracy"]

    with pytest.raises(ValueError, match=r"pass knowledge_vectors, a float tensor of shape \(batch, 8\)"):
        model(**tokens)
    with pytest.raises(ValueError, match=r"knowledge_vectors has shape \(32, 5\); this model needs \(32, 8\)"):
        model(**tokens, knowledge_vectors=torch.zeros(32, 5))


class TestKnowledgeConformance(TechniqueConformance):
    technique = "knowledge"

    def write_study(self, directory):
        # Vectors to inject (without a source the technique has nothing to do); one epoch over a small task.
        return vector_task(directory, n_train=32, n_validation=16, name="conformance",
                           techniques={"finetune": {"epochs": 1}})

    @pytest.fixture
    def plugin_manager(self):
        return get_plugin_manager(only=TECHNIQUES)
