"""`autobert predict` labels a data file with a trained model; ensembles and soups of trained models."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification
from transformers import pipeline

from autobert.cli import main
from autobert.heads import AutobertPooledForSequenceClassification, build_ensemble
from autobert.run.inference import average_weights, soup
from autobert.testing import synthetic_rows, write_study
from cli_helpers import run_cli

LABELS = {0: "negative", 1: "positive"}
MAX_LENGTH = 32  # write_study's max_length
# Truncation is in the recipe (at its default, head) so that an ensemble's members can differ in it.
RECIPE = {"finetune": {"learning_rate": 5e-3, "epochs": 4, "batch_size": 16, "warmup_ratio": 0.0,
                       "weight_decay": 0.0},
          "truncation": {"strategy": "head"}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The folder `autobert train` writes for a hand-written recipe (finetune and truncation) on the tiny task."""
    root = tmp_path_factory.mktemp("predict")
    study = write_study(root, name="pred", n_train=160, n_validation=32, only=["finetune", "truncation"],
                        techniques=RECIPE)
    assert main(["train", str(study), "--output", str(root / "model")]) == 0
    return root / "model"


def texts(n: int = 40, seed: int = 7) -> list[str]:
    return [text for text, _ in synthetic_rows(n, seed=seed)]


def write_csv(path: Path, column: str, values: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([column, "id"])
        writer.writerows([value, i] for i, value in enumerate(values))
    return path


def probabilities(model, tokenizer, batch: list[str], **encoded) -> np.ndarray:
    """The model's own softmax over ``batch``, tokenized as training does (truncated to the study's max_length)."""
    inputs = encoded or tokenizer(batch, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
    with torch.no_grad():
        return torch.softmax(model.eval()(**inputs).logits.double(), dim=-1).numpy()


def test_predict_labels_every_row_in_order_with_the_models_own_probabilities(trained, tmp_path):
    given = texts()
    out = tmp_path / "labels.csv"
    assert main(["predict", str(trained), str(write_csv(tmp_path / "in.csv", "text", given)),
                 "--output", str(out), "--probabilities", "--device", "cpu"]) == 0
    with out.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["label", "p_negative", "p_positive"] and len(rows) == len(given)
    written = np.array([[float(r["p_negative"]), float(r["p_positive"])] for r in rows])
    np.testing.assert_allclose(written.sum(axis=1), 1.0, atol=1e-12)
    model = AutoModelForSequenceClassification.from_pretrained(trained)
    own = probabilities(model, AutoTokenizer.from_pretrained(trained), given)
    np.testing.assert_allclose(written, own, atol=1e-6)
    assert [r["label"] for r in rows] == [LABELS[i] for i in own.argmax(axis=1)]
    assert len({r["label"] for r in rows}) == 2  # the tiny model learned the task: both labels occur


def test_jsonl_output_holds_a_label_and_a_probabilities_object_per_row(trained, tmp_path):
    given = texts(12)
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"review": t}) + "\n" for t in given), encoding="utf-8")
    out = tmp_path / "labels.jsonl"
    assert main(["predict", str(trained), str(data), "--output", str(out), "--text-column", "review",
                 "--probabilities"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(given)
    assert all(set(r) == {"label", "probabilities"} and set(r["probabilities"]) == {"negative", "positive"}
               for r in rows)
    assert all(r["label"] == max(r["probabilities"], key=r["probabilities"].get) for r in rows)


def _members(trained: Path):
    """Two trained-looking members of different heads: the trained [CLS] model and a mean-pooled one."""
    cls_model = AutoModelForSequenceClassification.from_pretrained(trained)
    torch.manual_seed(3)
    pooled = AutobertPooledForSequenceClassification.from_encoder(
        str(trained.parent / "tiny-bert"), pooling="mean", id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    return cls_model, pooled


def _saved_ensemble(trained: Path, folder: Path, weights: list[float]):
    """The two members built into an ensemble and saved with the tokenizer: the members, the tokenizer."""
    cls_model, pooled = _members(trained)
    build_ensemble([cls_model, pooled], weights).save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(trained)
    tokenizer.save_pretrained(folder)
    return cls_model, pooled, tokenizer


def test_an_ensemble_loads_in_the_transformers_pipeline_and_averages_its_members_probabilities(trained, tmp_path):
    folder = tmp_path / "ensemble"
    cls_model, pooled, tokenizer = _saved_ensemble(trained, folder, [1.0, 3.0])
    assert {"_ensemble_model.py", "_pooled_model.py", "_knowledge_model.py"} <= {p.name for p in folder.iterdir()}

    classify = pipeline("text-classification", model=str(folder), trust_remote_code=True, top_k=None)
    assert not type(classify.model).__module__.startswith("autobert")  # the folder's own code, not autobert's
    given = texts(6)
    scored = classify(given)
    got = np.array([[next(s["score"] for s in row if s["label"] == name) for name in ("negative", "positive")]
                    for row in scored])
    expected = 0.25 * probabilities(cls_model, tokenizer, given) + 0.75 * probabilities(pooled, tokenizer, given)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_predict_feeds_each_ensemble_member_its_own_recipes_encoding(trained, tmp_path):
    folder = tmp_path / "ensemble"
    cls_model, pooled, tokenizer = _saved_ensemble(trained, folder, [0.5, 0.5])
    frozen = yaml.safe_load((trained / "autobert.yaml").read_text(encoding="utf-8"))
    head, tail = (dict(frozen["provenance"]["params"], **{"truncation.strategy": s}) for s in ("head", "tail"))
    frozen["provenance"]["combination"] = {"kind": "ensemble", "members": [
        {"trial": 0, "seed": 0, "weight": 0.5, "params": head}, {"trial": 1, "seed": 0, "weight": 0.5, "params": tail}]}
    (folder / "autobert.yaml").write_text(yaml.safe_dump(frozen, sort_keys=False), encoding="utf-8")

    given = [" ".join([text] * 8) for text in texts(4)]  # longer than max_length: head and tail keep different tokens
    out = tmp_path / "labels.csv"
    assert main(["predict", str(folder), str(write_csv(tmp_path / "in.csv", "text", given)), "--output", str(out),
                 "--probabilities"]) == 0
    with out.open(encoding="utf-8") as f:
        written = np.array([[float(r["p_negative"]), float(r["p_positive"])] for r in csv.DictReader(f)])
    ends = [[tokenizer.cls_token_id, *tokenizer(t, add_special_tokens=False)["input_ids"][-(MAX_LENGTH - 2):],
             tokenizer.sep_token_id] for t in given]
    tails = {"input_ids": torch.tensor(ends), "attention_mask": torch.ones(len(ends), MAX_LENGTH, dtype=torch.long),
             "token_type_ids": torch.zeros(len(ends), MAX_LENGTH, dtype=torch.long)}
    expected = 0.5 * probabilities(cls_model, tokenizer, given) + 0.5 * probabilities(pooled, tokenizer, given, **tails)
    np.testing.assert_allclose(written, expected, atol=1e-6)


def _tiny_classifier(seed: int, num_labels: int = 2) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                                                    num_attention_heads=2, intermediate_size=32, num_labels=num_labels))


def test_a_soup_of_two_models_is_the_average_of_their_weights_tensor_by_tensor():
    first, second = _tiny_classifier(0), _tiny_classifier(1)
    souped = soup([first, second]).state_dict()
    a, b = first.state_dict(), second.state_dict()
    assert souped.keys() == a.keys()
    for key, tensor in souped.items():
        expected = (a[key] + b[key]) / 2 if tensor.is_floating_point() else a[key]
        assert torch.equal(tensor, expected), key
    assert not torch.equal(first.state_dict()["classifier.weight"], souped["classifier.weight"])  # a copy


def test_average_weights_refuses_state_dicts_of_different_shapes_naming_the_key():
    with pytest.raises(ValueError, match=r"classifier\.weight: shape \(2, 16\) in the first state dict, \(3, 16\)"):
        average_weights([_tiny_classifier(0).state_dict(), _tiny_classifier(0, num_labels=3).state_dict()])


def _missing_column(trained, tmp_path):
    data = write_csv(tmp_path / "in.csv", "sentence", texts(3))
    return [str(trained), str(data), "--output", str(tmp_path / "out.csv")], "has no column 'text' (its columns: " \
        "'sentence', 'id'); name the column of texts with --text-column"


def _empty_file(trained, tmp_path):
    (tmp_path / "in.csv").write_text("text\n", encoding="utf-8")
    return [str(trained), str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")], "has no rows"


def _not_a_model(trained, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello", encoding="utf-8")
    data = write_csv(tmp_path / "in.csv", "text", texts(3))
    return [str(tmp_path / "notes"), str(data), "--output", str(tmp_path / "out.csv")], \
        "not a transformers or autobert model folder"


def _unknown_suffix(trained, tmp_path):
    data = write_csv(tmp_path / "in.csv", "text", texts(3))
    return [str(trained), str(data), "--output", str(tmp_path / "out.txt")], "cannot write a '.txt' file"


def _a_file_in_the_way(trained, tmp_path):
    data = write_csv(tmp_path / "in.csv", "text", texts(3))
    (tmp_path / "taken").write_text("", encoding="utf-8")
    return [str(trained), str(data), "--output", str(tmp_path / "taken" / "out.csv")], "is a file, not a folder"


@pytest.mark.parametrize("case", [_missing_column, _empty_file, _not_a_model, _unknown_suffix, _a_file_in_the_way],
                         ids=lambda case: case.__name__.strip("_"))
def test_predict_exits_2_with_the_fix_and_writes_nothing(case, trained, tmp_path):
    argv, message = case(trained, tmp_path)
    rc, output = run_cli("predict", *argv)
    assert rc == 2, output
    assert message in " ".join(output.split())
    out = Path(argv[argv.index("--output") + 1])
    assert not out.exists() and not list(tmp_path.rglob(f".{out.name}.*"))  # not even write_atomic's temporary file
