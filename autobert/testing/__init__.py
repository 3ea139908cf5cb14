"""Tools for testing autobert and technique plugins on tiny, real models.

``make_tiny_model`` builds a 2-layer BERT (hidden size 32) with a WordPiece
tokenizer built from local text, in about a second; ``write_study`` writes a
study file over a synthetic task that such a model learns in seconds. Plugin
authors subclass :class:`TechniqueConformance` (see its docstring).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from autobert.config.schema import dump_yaml

from autobert.testing._conformance import TechniqueConformance

POSITIVE = ["good", "great", "fine", "lovely", "superb", "brilliant"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring", "terrible"]
FILLER = ["the", "movie", "film", "plot", "was", "is", "really", "quite", "a", "story", "acting", "and", "it", "cast"]


def synthetic_rows(n: int, seed: int = 0, fillers: tuple[int, int] = (4, 10)) -> list[tuple[str, int]]:
    """Sentences whose label is decided by one sentiment word among ``fillers`` (a range) filler words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = [rng.choice(FILLER) for _ in range(rng.randint(*fillers))]
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label else NEGATIVE))
        rows.append((" ".join(words), label))
    return rows


def tiny_vocabulary(texts: list[str], size: int = 400) -> list[str]:
    """A WordPiece vocabulary of ``texts``: the same list, in the same order, in every process.

    Special tokens, every character (alone and as ``##`` continuation), then the
    texts' words (BERT's lowercasing and splitting), most frequent first and ties
    alphabetical, up to ``size`` tokens. Every word of ``texts`` is one token
    (while ``size`` allows); an unknown word splits into characters.

    Not ``tokenizers``' ``WordPieceTrainer``: it breaks ties between equally
    frequent pairs in the order of Rust hash maps, which are seeded afresh in every
    process (``PYTHONHASHSEED`` does not reach them), so the vocabulary's token ids,
    and some of its subword pieces, changed from one run to the next. A word then
    got another embedding row of the seeded initialisation, and the tiny models
    trained on it (the task-guided masking strategies' task model and masker among
    them) were not reproducible across processes.
    """
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    counts = Counter(word for text in texts for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    characters = sorted({c for word in counts for c in word})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters, *(f"##{c}" for c in characters)]
    known = set(vocab)
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if w not in known]
    return vocab + words[:max(0, size - len(vocab))]


def make_tiny_model(path: str | Path, texts: list[str] | None = None, *, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """Save a tiny randomly initialised BERT and a WordPiece tokenizer over ``texts`` (:func:`tiny_vocabulary`)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    texts = texts or [t for t, _ in synthetic_rows(500)]
    vocab = tiny_vocabulary(texts)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(str(path))
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=hidden * 2, max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(path))
    return path


def write_study(
    directory: str | Path, *, name: str = "tiny", n_train: int = 400, n_validation: int = 80,
    only: list[str] | None = None, **overrides: Any,
) -> Path:
    """Write a synthetic task, a tiny model and a study file over them; return the study path.

    Keyword arguments override top-level study keys, e.g.
    ``write_study(tmp, techniques={"finetune": {"epochs": 1}})``. ``only`` disables
    every installed technique but these, so a test does not depend on what else
    is installed.
    """
    directory = Path(directory)
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    rows = synthetic_rows(n_train + 2 * n_validation, seed=1)
    splits = {"train": rows[:n_train], "validation": rows[n_train:n_train + n_validation], "test": rows[n_train + n_validation:]}
    for split, split_rows in splits.items():
        lines = ["text,label"] + [f"{t},{l}" for t, l in split_rows]
        (data / f"{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    model = directory / "tiny-bert"
    if not (model / "config.json").exists():
        make_tiny_model(model, [t for t, _ in rows])
    study = {
        "name": name,
        "model": "tiny-bert",
        "data": {"train": "data/train.csv", "validation": "data/validation.csv", "test": "data/test.csv",
                 "label_names": ["negative", "positive"]},
        "metric": "accuracy",
        "max_length": 32,
        "budget": {"trials": 2},
        "pruner": {"name": "none"},
        # Tests of other behaviour draw from the sampler alone; tests/test_portfolio.py covers the warm start.
        "warm_start": "none",
        "techniques": {"finetune": {"learning_rate": {"low": 1e-4, "high": 5e-3, "log": True}, "epochs": 3,
                                    "batch_size": 16, "warmup_ratio": 0.0}},
    }
    if only is not None:
        from autobert.run.plugin_manager import available_technique_names  # here: keeps import autobert.testing light

        study["disable"] = [t for t in available_technique_names() if t not in only]
    study.update(overrides)
    path = directory / f"{name}.yaml"
    path.write_text(dump_yaml(study), encoding="utf-8")
    return path


__all__ = ["make_tiny_model", "tiny_vocabulary", "write_study", "synthetic_rows", "TechniqueConformance"]
