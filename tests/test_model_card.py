"""`autobert train` writes a Hub model card (README.md) that huggingface_hub parses and validates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import ModelCardData, model_index_to_eval_results

from autobert.cli import main
from autobert.config.schema import load_frozen
from autobert.testing import write_study

FINETUNE = {"learning_rate": 3e-3, "epochs": 2, "batch_size": 16, "warmup_ratio": 0.0}


def _train(tmp_path: Path, name: str, *extra: str, **study) -> tuple[Path, dict]:
    path = write_study(tmp_path, name=name, n_train=64, n_validation=32, **study)
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    out = tmp_path / "model"
    assert main(["train", str(tmp_path / name / "best.yaml"), "--output", str(out), *extra]) == 0
    return out, json.loads((out / "metrics.json").read_text())


def _validated(card: ModelCard) -> dict:
    """The card's metadata as the Hub reads it; raises where it does not validate."""
    raw = card.data.to_dict()
    ModelCardData(**raw)  # ignore_metadata_errors=False: a malformed model-index raises
    name, results = model_index_to_eval_results(raw["model-index"])
    assert name == card.data.model_name
    return raw


def test_the_model_card_has_the_hub_metadata_the_recipe_and_a_loading_snippet_that_runs(tmp_path):
    out, metrics = _train(tmp_path, "card", only=["finetune"], techniques={"finetune": FINETUNE})
    card = ModelCard.load(out / "README.md")
    raw = _validated(card)
    assert raw["library_name"] == "transformers" and raw["pipeline_tag"] == "text-classification"
    assert "autobert" in raw["tags"] and "finetune" in raw["tags"]
    assert "base_model" not in raw  # a local folder is no Hub id, and the card says so instead
    assert "not a Hub id" in card.text
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert results == {("validation", "accuracy"): round(metrics["validation"]["accuracy"], 6),
                       ("test", "accuracy"): round(metrics["test"]["accuracy"], 6)}
    # The recipe, one technique per line; fingerprints; versions.
    assert "- **finetune**: batch_size=16, epochs=2, learning_rate=0.003" in card.text
    fingerprints = load_frozen(out / "autobert.yaml").provenance.data_fingerprint
    assert all(f"| {split} | `{fp}` |" in card.text for split, fp in fingerprints.items()) and len(fingerprints) == 3
    assert "| transformers |" in card.text and "| torch |" in card.text and "precision fp32" in card.text
    assert "trust_remote_code" not in card.text  # the standard [CLS] head loads without it

    snippet = card.text.split("```python\n", 1)[1].split("```", 1)[0].replace('"MODEL"', repr(str(out)))
    scope: dict = {}
    exec(snippet, scope)  # the card's own instructions load the model and classify a sentence
    assert scope["model"].config.id2label == {0: "negative", 1: "positive"}


def test_several_seeds_a_custom_head_and_a_base_model_from_the_models_own_card(tmp_path):
    write_study(tmp_path, name="seed", only=["finetune"])  # builds tmp_path/tiny-bert
    (tmp_path / "tiny-bert" / "README.md").write_text("---\nbase_model: google-bert/bert-base-uncased\n---\n# tiny\n")
    out, metrics = _train(tmp_path, "heads", "--seeds", "0,1", only=["finetune", "pooling"],
                          techniques={"finetune": FINETUNE, "pooling": {"kind": "mean"}})
    card = ModelCard.load(out / "README.md")
    raw = _validated(card)
    assert raw["base_model"] == "google-bert/bert-base-uncased" and "pooling" in raw["tags"]
    mean, std = metrics["validation_mean_std"]["accuracy"]
    names = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert names[f"validation accuracy, mean of 2 seeds (std {std:.4f})"] == pytest.approx(mean, abs=1e-6)
    assert f"{mean:.4f} ± {std:.4f}" in card.text
    assert "trust_remote_code=True" in card.text
    snippet = card.text.split("```python\n", 1)[1].split("```", 1)[0].replace('"MODEL"', repr(str(out)))
    exec(snippet, {})
