"""Scoring texts with a trained model: the folder ``autobert train`` wrote, or any transformers classifier.

A model is scored the way training scored it: texts go through the recipe's
own tokenization (the ``autobert_tokenize`` hook, with the recipe's parameters
and settings: a ``truncation`` strategy keeps the same tokens), in batches of
the evaluation's size, each padded to its longest text. A folder without
``autobert.yaml`` (a plain transformers classifier) is tokenized by its
tokenizer, truncated to its length (at most :data:`PLAIN_MAX_LENGTH`).

Also here: the weight average of models of one architecture (a model soup,
Wortsman et al. 2022, "Model soups"), and the size and speed figures of a
model folder.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from autobert.config.schema import FrozenConfig, dump_yaml, load_frozen, load_yaml, parse_config
from autobert.config.settings import declared_settings, resolve_settings
from autobert.errors import AutobertError, ConfigError, PluginError
from autobert.run.data import _read_table, _Unreadable
from autobert.run.device import device_kind
from autobert.run.plugin_manager import PluginManager, get_plugin_manager
from autobert.trial_run import TrialRun

__all__ = ["Classifier", "average_weights", "inference_device", "inference_ms_per_1000", "load_classifier",
           "model_size_bytes", "plain_encoder", "predict_probabilities", "read_table", "recipe_encoder", "soup"]

#: The tokenizer's fields a model reads, those the pipeline's collator pads. (Not imported from
#: ``autobert.run.pipeline``: that would bring the Trainer and Optuna into every prediction.)
TOKENIZER_KEYS = ("input_ids", "attention_mask", "token_type_ids")
#: Texts per batch: the evaluation batch of training (the pipeline's ``per_device_eval_batch_size``).
BATCH_SIZE = 64
#: The longest input a plain transformers folder is given, whatever its tokenizer allows.
PLAIN_MAX_LENGTH = 512
#: How autobert's own heads name themselves in config.json (``model_type``).
ENSEMBLE_TYPE = "autobert-ensemble"
KNOWLEDGE_TYPE = "autobert-knowledge"
#: Files whose bytes are a model's weights.
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin")
_FOLDER_HINT = "give the folder `autobert train --output` wrote"

#: Texts in, the model's padded input tensors out (``input_ids``, ``attention_mask``, ``token_type_ids``).
Encoder = Callable[[list[str]], dict[str, torch.Tensor]]


# ---------------------------------------------------------------------------
# Weight averages (soups)
# ---------------------------------------------------------------------------


def _shares(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0 / n] * n
    weights = [float(w) for w in weights]
    if len(weights) != n:
        raise ValueError(f"{n} models need {n} weights, got {len(weights)}")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be non-negative, finite and not all 0, got {weights}")
    total = sum(weights)
    return [w / total for w in weights]


def average_weights(state_dicts: list[dict[str, torch.Tensor]],
                    weights: Sequence[float] | None = None) -> dict[str, torch.Tensor]:
    """The weighted average of state dicts of one architecture.

    Floating tensors are averaged (in float64, then back to their own dtype);
    integer and boolean buffers (counters, position ids) are taken from the first.

    Args:
        state_dicts: Two or more ``model.state_dict()`` with the same keys and shapes.
        weights: One non-negative weight per state dict, normalised to sum to 1 (default: equal).

    Raises:
        ValueError: no state dicts, weights that do not match them, or a key or a shape that
            differs from the first state dict's (the message names the first such key).
    """
    if not state_dicts:
        raise ValueError("average_weights needs at least one state dict")
    shares = _shares(weights, len(state_dicts))
    first = state_dicts[0]
    for i, other in enumerate(state_dicts[1:], 1):
        for key, tensor in first.items():
            if key not in other:
                raise ValueError(f"{key}: in the first state dict, not in state dict {i}; only models of one "
                                 "architecture can be averaged")
            if tuple(other[key].shape) != tuple(tensor.shape):
                raise ValueError(f"{key}: shape {tuple(tensor.shape)} in the first state dict, "
                                 f"{tuple(other[key].shape)} in state dict {i}; only models of one architecture "
                                 "can be averaged")
        extra = next((key for key in other if key not in first), None)
        if extra is not None:
            raise ValueError(f"{extra}: in state dict {i}, not in the first; only models of one architecture can be "
                             "averaged")
    averaged: dict[str, torch.Tensor] = {}
    for key, tensor in first.items():
        if not tensor.is_floating_point():
            averaged[key] = tensor.detach().clone()
            continue
        total = torch.zeros(tensor.shape, dtype=torch.float64, device=tensor.device)
        for share, state in zip(shares, state_dicts):
            total += share * state[key].detach().to(device=tensor.device, dtype=torch.float64)
        averaged[key] = total.to(tensor.dtype)
    return averaged


def soup(models: list, weights: Sequence[float] | None = None):
    """A copy of the first model with the (weighted) average of the models' weights.

    Raises:
        ValueError: the models' architectures differ (see :func:`average_weights`).
    """
    if not models:
        raise ValueError("soup needs at least one model")
    souped = copy.deepcopy(models[0])
    souped.load_state_dict(average_weights([m.state_dict() for m in models], weights), strict=True)
    return souped


# ---------------------------------------------------------------------------
# Encoding texts as training did
# ---------------------------------------------------------------------------


def _padded(tokenizer: Any, encoded: dict[str, Any]) -> dict[str, torch.Tensor]:
    """One batch's fields padded to its longest row, as the pipeline's collator pads them."""
    fields = {key: encoded[key] for key in TOKENIZER_KEYS if key in encoded}
    rows = [dict(zip(fields, values)) for values in zip(*fields.values())]
    return dict(tokenizer.pad(rows, return_tensors="pt"))


def recipe_encoder(frozen: FrozenConfig, pm: PluginManager, tokenizer: Any, *,
                   params: dict[str, Any] | None = None) -> Encoder:
    """Tokenize as the recipe's training did: the ``autobert_tokenize`` hook with the recipe's run.

    Args:
        frozen: The frozen config the model was trained on (its ``autobert.yaml``).
        pm: The plugin manager of its techniques (``get_plugin_manager(only=frozen.provenance.plugins)``).
        tokenizer: The model's tokenizer.
        params: The recipe's parameters (default: ``frozen.params``); an ensemble's member passes its own.

    Returns:
        A function from a batch of texts to its padded input tensors.
    """
    params = frozen.params if params is None else dict(params)
    run = TrialRun(
        study=frozen, params=params, seed=frozen.seed, tokenizer=tokenizer,
        label_names=list(frozen.data.label_names or []),
        # Tokenizing writes nothing: the run's folders are named, never created.
        workdir=frozen.study_dir, cache_dir=frozen.cache_path,
        settings=resolve_settings(frozen, declared_settings(pm)), hooks=pm.hook, precision=frozen.precision,
        techniques=tuple(pm.techniques), plugin_manager=pm,
    )

    def encode(texts: list[str]) -> dict[str, torch.Tensor]:
        encoded = pm.hook.autobert_tokenize(texts=list(texts), tokenizer=tokenizer, max_length=frozen.max_length,
                                            run=run)
        return _padded(tokenizer, dict(encoded))

    return encode


def plain_encoder(tokenizer: Any, max_length: int) -> Encoder:
    """Tokenize with the tokenizer alone, truncated to ``max_length`` tokens (a folder without ``autobert.yaml``)."""

    def encode(texts: list[str]) -> dict[str, torch.Tensor]:
        return _padded(tokenizer, dict(tokenizer(list(texts), truncation=True, max_length=max_length)))

    return encode


# ---------------------------------------------------------------------------
# Probabilities
# ---------------------------------------------------------------------------


def inference_device(spec: str | None = None) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a torch device; default: the first GPU if there is one, else the CPU.

    Raises:
        AutobertError: ``spec`` is not a device, or this machine has no such GPU.
    """
    if spec is None:
        return torch.device(device_kind())
    spec = spec.strip()
    if not re.fullmatch(r"cpu|cuda(?::\d+)?", spec):
        raise AutobertError(f"--device {spec!r}: give cpu, cuda (the first GPU) or cuda:N (e.g. cuda:1)")
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise AutobertError(f"--device {spec}: torch sees no CUDA GPU on this machine; use --device cpu")
    index, count = int(spec.partition(":")[2] or 0), torch.cuda.device_count()
    if index >= count:
        raise AutobertError(f"--device {spec}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}; "
                            "choose one of those")
    return torch.device("cuda", index)


def _model_inputs(model: Any, inputs: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The inputs the model's forward takes (DistilBERT has no token_type_ids), on ``device``."""
    parameters = inspect.signature(model.forward).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return {k: v.to(device) for k, v in inputs.items() if takes_any or k in parameters}


def _batch_probabilities(model: Any, inputs: dict[str, torch.Tensor], device: torch.device) -> np.ndarray:
    logits = model(**_model_inputs(model, inputs, device)).logits
    return torch.softmax(logits.double(), dim=-1).cpu().numpy()


def _device_of(model: Any) -> torch.device:
    return next(model.parameters()).device


def predict_probabilities(model: Any, encoder: Encoder, texts: Sequence[str], *, batch_size: int = BATCH_SIZE,
                          device: torch.device | str | None = None,
                          on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Class probabilities (the softmax of the logits) of every text, in order.

    Args:
        model: A sequence classifier; put in eval mode (and on ``device`` when given).
        encoder: Texts to padded inputs (:func:`recipe_encoder`, :func:`plain_encoder`).
        texts: The texts.
        batch_size: Texts per forward pass (default: the evaluation batch of training).
        device: Where to run (default: where the model is).
        on_batch: Called after each batch with the number of texts it held.

    Returns:
        A float64 array of shape ``(len(texts), number of classes)`` whose rows sum to 1.
    """
    model.eval()
    if device is not None:
        model.to(device)
    device = _device_of(model)
    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start:start + batch_size])
            rows.append(_batch_probabilities(model, encoder(batch), device))
            if on_batch is not None:
                on_batch(len(batch))
    return np.concatenate(rows) if rows else np.zeros((0, model.config.num_labels))


# ---------------------------------------------------------------------------
# A model folder
# ---------------------------------------------------------------------------


@dataclass
class Classifier:
    """A model folder loaded to score texts: the model, its tokenizer, its labels, its encoding.

    Attributes:
        model: The sequence classifier (a single model, a soup, or an
            ``AutobertEnsembleForSequenceClassification``), in eval mode on ``device``.
        tokenizer: Its tokenizer.
        label_names: Label names by class id (``config.id2label``).
        encoder: Texts to the model's inputs, as training encoded them.
        folder: Where it was loaded from.
        device: Where it runs.
        text_column: The data column its texts came from in training (``data.text_column``), else ``text``.
        frozen: The frozen config beside it (``autobert.yaml``), if any.
        member_encoders: For an ensemble whose members were trained on recipes of their own, each
            member's encoder (in the order of ``model.members``); empty otherwise.
        notes: Facts worth telling whoever uses it once (how it is encoded, where that differs from training).
    """

    model: Any
    tokenizer: Any
    label_names: list[str]
    encoder: Encoder
    folder: Path
    device: torch.device
    text_column: str = "text"
    frozen: FrozenConfig | None = None
    member_encoders: list[Encoder] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def predict_probabilities(self, texts: Sequence[str], *, batch_size: int = BATCH_SIZE,
                              on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Class probabilities of every text (see :func:`predict_probabilities`); an ensemble's members each
        read their own recipe's encoding, and their probabilities are averaged with the ensemble's weights."""
        if not self.member_encoders:
            return predict_probabilities(self.model, self.encoder, texts, batch_size=batch_size, device=self.device,
                                         on_batch=on_batch)
        self.model.eval()
        members = list(zip(self.model.members, self.model.config.weights, self.member_encoders))
        probabilities = np.zeros((len(texts), len(self.label_names)))
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = list(texts[start:start + batch_size])
                encoded: dict[int, dict[str, torch.Tensor]] = {}  # members sharing a recipe share its encoding
                for member, weight, encoder in members:
                    if weight == 0:
                        continue
                    if id(encoder) not in encoded:
                        encoded[id(encoder)] = encoder(batch)
                    probabilities[start:start + len(batch)] += (
                        weight * _batch_probabilities(member, encoded[id(encoder)], self.device))
                if on_batch is not None:
                    on_batch(len(batch))
        return probabilities

    def predict(self, texts: Sequence[str], *, batch_size: int = BATCH_SIZE) -> list[str]:
        """The most probable label's name for every text."""
        probabilities = self.predict_probabilities(texts, batch_size=batch_size)
        return [self.label_names[i] for i in probabilities.argmax(axis=1)]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


class _Quiet:
    """transformers' logging and progress bars held back while a folder loads: autobert says what matters."""

    def __enter__(self) -> None:
        from transformers.utils import logging as hf_logging

        self.verbosity, self.bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()

    def __exit__(self, *exc: Any) -> None:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(self.verbosity)
        if self.bars:
            hf_logging.enable_progress_bar()


def _refuse_knowledge(config: Any, folder: Path) -> None:
    types = [getattr(config, "model_type", "")]
    if types[0] == ENSEMBLE_TYPE:
        types += [member.get("model_type", "") for member in getattr(config, "members", None) or []]
    if KNOWLEDGE_TYPE in types:
        raise AutobertError(
            f"{folder} reads one external knowledge vector per text (the knowledge technique), which a data file "
            "cannot give it: call the model with knowledge_vectors yourself (see its README.md)"
        )


def _load_frozen(path: Path) -> FrozenConfig:
    """The frozen config beside a model, the hand-written recipe's included.

    ``autobert train`` of a hand-written recipe records no search value (``provenance.value`` is None,
    left out when written), which :func:`load_frozen` requires; such a file is read with the value None.
    """
    try:
        return load_frozen(path)
    except ConfigError as exc:
        try:
            raw = load_yaml(path.read_text(encoding="utf-8-sig"))
        except Exception:
            raise exc from None
        provenance = raw.get("provenance") if isinstance(raw, dict) else None
        if not isinstance(provenance, dict) or "value" in provenance:
            raise
        provenance["value"] = None
        try:
            return parse_config(dump_yaml(raw), str(path), path.parent.resolve(), FrozenConfig)  # type: ignore
        except ConfigError:
            raise exc from None


def _plugin_manager(frozen: FrozenConfig) -> PluginManager:
    try:
        return get_plugin_manager(only=frozen.provenance.plugins)
    except PluginError as exc:
        recorded = ", ".join(f"{name} from {source}" for name, source in frozen.provenance.plugins.items())
        raise PluginError(f"{exc}. This model was trained with: {recorded}; install them to encode texts as "
                          "its training did") from None


def _member_encoders(model: Any, frozen: FrozenConfig, pm: PluginManager, tokenizer: Any,
                     notes: list[str]) -> list[Encoder]:
    """Each ensemble member's own recipe encoding, where ``autobert.yaml`` records the members' recipes."""
    combination = getattr(frozen.provenance, "combination", None) or {}
    members = [m for m in combination.get("members") or [] if isinstance(m, dict)]
    if not members:
        return []
    recipes = [m.get("params") for m in members]
    if len(recipes) != len(model.members) or not all(isinstance(r, dict) for r in recipes):
        notes.append(f"autobert.yaml records {len(members)} member recipe(s) for the ensemble's "
                     f"{len(model.members)} members; every member reads the recipe's own encoding")
        return []
    by_recipe: dict[str, Encoder] = {}
    encoders = []
    for recipe in recipes:
        key = json.dumps(recipe, sort_keys=True, default=str)
        if key not in by_recipe:
            by_recipe[key] = recipe_encoder(frozen, pm, tokenizer, params=recipe)
        encoders.append(by_recipe[key])
    return encoders


def load_classifier(folder: str | Path, device: torch.device | str | None = None, *,
                    pm: PluginManager | None = None) -> Classifier:
    """Load a model folder to score texts: ``autobert train``'s output, or any transformers text classifier.

    A single model, a soup and an ensemble load alike (``AutoModelForSequenceClassification``
    with ``trust_remote_code=True``: autobert's heads are remote code saved beside the weights).
    With ``autobert.yaml`` beside it, texts are encoded by the recipe's techniques
    (:func:`recipe_encoder`), an ensemble's members each by their own recipe where the frozen
    config records them (``provenance.combination.members``); without it, by the tokenizer
    alone (:func:`plain_encoder`, truncated to the tokenizer's length, at most :data:`PLAIN_MAX_LENGTH`).

    Args:
        folder: The model folder.
        device: ``cpu``, ``cuda``, ``cuda:N`` or a torch device (default: the first GPU if there is one).
        pm: The plugin manager of the recipe's techniques (default:
            ``get_plugin_manager(only=frozen.provenance.plugins)``).

    Raises:
        AutobertError: not a folder, no ``config.json``, not a sequence classifier, weights or a
            tokenizer that cannot be loaded, a model that needs inputs a text cannot give; each
            message says what to do. ``ConfigError`` for an invalid ``autobert.yaml``,
            ``PluginError`` for a technique of its recipe that is not installed.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    if not folder.exists():
        raise AutobertError(f"model folder not found: {folder}; {_FOLDER_HINT}")
    if not folder.is_dir():
        raise AutobertError(f"not a transformers or autobert model folder: {folder} is a file; {_FOLDER_HINT}")
    if not (folder / "config.json").is_file():
        raise AutobertError(f"not a transformers or autobert model folder: {folder} (it has no config.json); "
                            f"{_FOLDER_HINT}")
    device = device if isinstance(device, torch.device) else inference_device(device)
    with _Quiet():
        try:
            config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        except Exception as exc:
            raise AutobertError(f"{folder / 'config.json'} cannot be read ({type(exc).__name__}: {_first_line(exc)}); "
                                f"{_FOLDER_HINT}") from None
        architectures = list(getattr(config, "architectures", None) or [])
        if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
            raise AutobertError(f"{folder} holds a {', '.join(architectures)}, not a sequence classifier; predict "
                                f"needs a model trained to classify texts: {_FOLDER_HINT}")
        _refuse_knowledge(config, folder)
        try:
            model, info = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True,
                                                                             output_loading_info=True)
        except ValueError as exc:
            if "Unrecognized configuration class" in str(exc):
                raise AutobertError(f"{folder} holds a {type(config).__name__} model, which transformers cannot load "
                                    f"as a sequence classifier; {_FOLDER_HINT}") from None
            raise AutobertError(f"cannot load the weights in {folder} ({_first_line(exc)}); the folder is incomplete "
                                "or damaged: copy it again in full, or train it again") from None
        except Exception as exc:
            raise AutobertError(f"cannot load the weights in {folder} ({type(exc).__name__}: {_first_line(exc)}); the "
                                "folder is incomplete or damaged: copy it again in full, or train it again") from None
        missing = list(info.get("missing_keys") or [])
        if missing:
            shown = ", ".join(sorted(missing)[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise AutobertError(f"the weights in {folder} lack {len(missing)} tensor(s) its config.json needs "
                                f"({shown}); they are not this model's: copy the folder again in full, or train it "
                                "again")
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        except Exception as exc:
            raise AutobertError(f"{folder} has no tokenizer that loads ({type(exc).__name__}: {_first_line(exc)}); "
                                "save the model's tokenizer beside it (tokenizer.save_pretrained(folder))") from None
    model.to(device).eval()
    label_names = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]

    notes: list[str] = []
    frozen_path = folder / "autobert.yaml"
    if not frozen_path.is_file():
        limit = min(int(getattr(tokenizer, "model_max_length", PLAIN_MAX_LENGTH) or PLAIN_MAX_LENGTH), PLAIN_MAX_LENGTH,
                    int(getattr(config, "max_position_embeddings", None) or PLAIN_MAX_LENGTH))
        notes.append(f"{folder} has no autobert.yaml: texts are tokenized by its tokenizer alone, "
                     f"truncated to {limit} tokens")
        return Classifier(model=model, tokenizer=tokenizer, label_names=label_names,
                          encoder=plain_encoder(tokenizer, limit), folder=folder, device=device, notes=notes)
    frozen = _load_frozen(frozen_path)
    pm = pm or _plugin_manager(frozen)
    member_encoders = (_member_encoders(model, frozen, pm, tokenizer, notes)
                       if getattr(config, "model_type", "") == ENSEMBLE_TYPE else [])
    return Classifier(model=model, tokenizer=tokenizer, label_names=label_names,
                      encoder=recipe_encoder(frozen, pm, tokenizer), folder=folder, device=device,
                      text_column=frozen.data.text_column, frozen=frozen, member_encoders=member_encoders, notes=notes)


# ---------------------------------------------------------------------------
# Data to score
# ---------------------------------------------------------------------------


def read_table(path: str | Path, key: str = "DATA"):
    """A data file as a pandas frame, read as a study file's data is (CSV, TSV, JSON lines, Parquet, a datasets folder).

    Raises:
        AutobertError: the file is missing, unreadable, or has no rows; the message names it and the fix.
    """
    path = Path(path)
    if not path.exists():
        raise AutobertError(f"{key}: file not found: {path}; give a CSV, TSV, JSON lines or Parquet file of texts")
    try:
        frame, _ = _read_table(path, key)
    except _Unreadable as exc:
        raise AutobertError(str(exc)) from None
    except Exception as exc:
        raise AutobertError(f"{key}: cannot read {path} ({type(exc).__name__}: {_first_line(exc)}); check the file is "
                            "a CSV, TSV, JSON lines or Parquet file") from None
    if len(frame) == 0:
        raise AutobertError(f"{key}: {path} has no rows (only a header); write one row per text to label")
    return frame


# ---------------------------------------------------------------------------
# Figures for the model card
# ---------------------------------------------------------------------------


def model_size_bytes(folder: str | Path) -> int:
    """The bytes of a model folder's weights (its ``*.safetensors`` and ``pytorch_model*.bin`` files)."""
    folder = Path(folder)
    return sum(path.stat().st_size for pattern in WEIGHT_FILES for path in folder.glob(pattern) if path.is_file())


def inference_ms_per_1000(classifier: Classifier, texts: Sequence[str], *, batch_size: int = BATCH_SIZE) -> float:
    """Milliseconds the classifier takes to score 1,000 texts on its device, encoding included.

    ``texts`` (e.g. the validation split's) are repeated or cut to 1,000; one small batch runs
    first, untimed, so that one-off start-up costs do not count.

    Raises:
        ValueError: ``texts`` is empty.
    """
    if not texts:
        raise ValueError("inference_ms_per_1000 needs at least one text")
    sample = (list(texts) * math.ceil(1000 / len(texts)))[:1000]
    classifier.predict_probabilities(sample[:8], batch_size=batch_size)
    start = time.perf_counter()
    classifier.predict_probabilities(sample, batch_size=batch_size)  # ends on the CPU: the GPU's work is done
    return (time.perf_counter() - start) * 1000.0
