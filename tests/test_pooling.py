"""The pooling technique: what each kind feeds the classifier, and that its export stands alone.

Models are built through the technique's own ``autobert_build_model`` on a tiny
2-layer, 32-wide BERT; the end-to-end tests run `autobert search` and
`autobert train` and load the output with plain transformers.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import optuna
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertModel, pipeline
from transformers.dynamic_module_utils import get_imports

from autobert.run import defaults
from autobert.cli import main
from autobert.config.schema import load_frozen
from autobert.trial_run import TrialRun
from autobert.plugins import pooling
from autobert.config.space import SearchSpace
from autobert.run.plugin_manager import get_plugin_manager
from autobert.testing import TechniqueConformance, make_tiny_model, write_study

HIDDEN = 32
LABELS = ["negative", "positive"]
TEXTS = ["a great film", "the plot was dull and boring", "it is a really lovely story"]

# The width of the vector each kind hands the classifier, on the 2-layer model.
WIDTHS = {"mean": HIDDEN, "max": HIDDEN, "concat_last_k": 2 * HIDDEN, "scalar_mix": HIDDEN, "cnn_all_cls": HIDDEN}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


def trial_run(params: dict, seed: int = 0) -> TrialRun:
    """What ``autobert_build_model`` reads of a trial: its parameters and labels."""
    return TrialRun(study=None, params=params, seed=seed, tokenizer=None, label_names=LABELS,
                    workdir=None, cache_dir=None)


def build(checkpoint: Path, kind: str, k: int | None = None, seed: int = 0):
    """The model a trial with ``pooling.kind=kind`` trains, seeded as the pipeline seeds it."""
    run = trial_run({"pooling.kind": kind, **({"pooling.k": k} if k is not None else {})}, seed)
    torch.manual_seed(seed)
    model = pooling.autobert_build_model(checkpoint=str(checkpoint), run=run)
    if model is None:  # cls: autobert's default model
        torch.manual_seed(seed)
        model = defaults.autobert_build_model(checkpoint=str(checkpoint), run=run)
    return model.eval()


def classifier_input(model, **inputs) -> torch.Tensor:
    """What the classifier received: the pooled vector(s)."""
    seen = []
    handle = model.classifier.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        model(**inputs)
    handle.remove()
    return seen[0]


def test_k_is_searched_only_with_concat_last_k():
    def drawn(params):
        space = SearchSpace(optuna.trial.FixedTrial(params), ["pooling"])
        pooling.autobert_search_space(space)
        return space.params

    assert drawn({"pooling.kind": "mean"}) == {"pooling.kind": "mean"}
    assert drawn({"pooling.kind": "concat_last_k", "pooling.k": 3}) == {"pooling.kind": "concat_last_k", "pooling.k": 3}


def test_cls_leaves_the_model_to_the_default(tiny_bert):
    assert pooling.autobert_build_model(checkpoint=str(tiny_bert), run=trial_run({"pooling.kind": "cls"})) is None


@pytest.mark.parametrize("kind", sorted(WIDTHS))
def test_each_kind_feeds_the_classifier_a_vector_of_its_width(tiny_bert, kind):
    model = build(tiny_bert, kind, k=2 if kind == "concat_last_k" else None)
    tokens = AutoTokenizer.from_pretrained(tiny_bert)(TEXTS, padding=True, return_tensors="pt")

    assert model.classifier.in_features == WIDTHS[kind]
    assert classifier_input(model, **tokens).shape == (len(TEXTS), WIDTHS[kind])
    assert model(**tokens).logits.shape == (len(TEXTS), len(LABELS))


@pytest.mark.parametrize("layers, k, width", [(2, 4, 2 * HIDDEN), (4, 3, 3 * HIDDEN)])
def test_concat_last_k_concatenates_k_layers_capped_by_the_layer_count(tmp_path, layers, k, width):
    model = build(make_tiny_model(tmp_path / "bert", layers=layers), "concat_last_k", k=k)
    assert model.classifier.in_features == width
    assert model.config.pooling_k == min(k, layers)


@pytest.mark.parametrize("kind", sorted(WIDTHS))
def test_each_kind_gives_other_logits_than_cls(tiny_bert, kind):
    tokens = AutoTokenizer.from_pretrained(tiny_bert)(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        cls_logits = build(tiny_bert, "cls")(**tokens).logits
        logits = build(tiny_bert, kind)(**tokens).logits

    assert logits.shape == cls_logits.shape
    assert not torch.allclose(logits, cls_logits, atol=1e-4)


@pytest.mark.parametrize("kind", sorted(WIDTHS))
def test_the_encoder_starts_from_the_pretrained_weights(tiny_bert, kind):
    model = build(tiny_bert, kind)
    pretrained = BertModel.from_pretrained(tiny_bert).state_dict()
    encoder = model.base_model.state_dict()

    assert isinstance(model.base_model, BertModel)
    assert encoder.keys() == {k for k in pretrained if not k.startswith("pooler.")}
    assert all(torch.equal(encoder[k], pretrained[k]) for k in encoder)


@pytest.mark.parametrize("kind", ["mean", "max"])
def test_masked_pooling_ignores_padding(tiny_bert, kind):
    model = build(tiny_bert, kind)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    alone = tokenizer(TEXTS[:1], return_tensors="pt")
    padded = tokenizer(TEXTS[:1], padding="max_length", max_length=24, return_tensors="pt")
    assert padded["input_ids"].shape[1] > alone["input_ids"].shape[1]

    torch.testing.assert_close(classifier_input(model, **padded), classifier_input(model, **alone))


def train_recipe(tmp_path: Path, kind: str, n_train: int, epochs: int) -> tuple[Path, dict]:
    """`autobert search` one trial with ``pooling.kind=kind``, then `autobert train` its recipe."""
    path = write_study(
        tmp_path, name=f"pool-{kind}", n_train=n_train, n_validation=32, only=["finetune", "pooling"],
        techniques={"finetune": {"learning_rate": 3e-3, "epochs": epochs, "batch_size": 16, "warmup_ratio": 0.0},
                    "pooling": {"kind": kind}},
    )
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    best = path.parent / f"pool-{kind}" / "best.yaml"
    out = tmp_path / "model"
    assert main(["train", str(best), "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["value"] == load_frozen(best).provenance.value  # exactly: the same code path, seeded
    return out, metrics


def test_cnn_all_cls_export_loads_with_remote_code_and_predicts_as_trained(tmp_path):
    # Enough training that the model tells the classes apart, so its predictions say something.
    out, metrics = train_recipe(tmp_path, "cnn_all_cls", n_train=400, epochs=3)

    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "_pooled_model.AutobertPooledConfig",
        "AutoModelForSequenceClassification": "_pooled_model.AutobertPooledForSequenceClassification",
    }
    # What transformers checks before running the copied code: it needs nothing but torch and transformers.
    imports = {m for m in get_imports(out / "_pooled_model.py") if m not in sys.stdlib_module_names}
    assert imports == {"torch", "transformers"}

    model, info = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.config.pooling == "cnn_all_cls" and model.config.id2label == dict(enumerate(LABELS))

    with open(tmp_path / "data" / "validation.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts = [r["text"] for r in rows]
    classify = pipeline("text-classification", model=str(out), trust_remote_code=True)
    predicted = [p["label"] for p in classify(texts)]
    tokens = AutoTokenizer.from_pretrained(out)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model.eval()(**tokens).logits
    assert predicted == [LABELS[i] for i in logits.argmax(-1).tolist()]
    # The same predictions as the trained model: the validation accuracy it was scored with.
    accuracy = sum(p == LABELS[int(r["label"])] for p, r in zip(predicted, rows)) / len(rows)
    assert accuracy == metrics["validation"]["accuracy"] > 0.9


def test_cls_export_needs_no_remote_code(tmp_path):
    out, _ = train_recipe(tmp_path, "cls", n_train=96, epochs=1)

    assert "auto_map" not in json.loads((out / "config.json").read_text())
    assert not list(out.glob("*.py"))
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert type(model).__name__ == "BertForSequenceClassification"


class TestPoolingConformance(TechniqueConformance):
    """autobert's conformance suite: entry point, namespaced space, a trial end to end, and that mean pooling
    (its documented default) trains another model than the [CLS] head."""

    technique = "pooling"
    study_overrides = {"n_train": 32, "n_validation": 16, "only": ["finetune", "pooling"],
                       "techniques": {"finetune": {"epochs": 1, "batch_size": 16}}}

    @pytest.fixture
    def plugin_manager(self):
        return get_plugin_manager(only=["finetune", "pooling"])
