"""A frozen config's recipe trained again on its seeds: ``autobert train``, and the benchmarks' re-training of winners.

The same code path as a search trial: :func:`autobert.run.pipeline.run_seeds`
on the frozen parameters, replayed through a ``FixedTrial``; the frozen config
only removes the choices. The model card beside the saved model is the
command's to write (:mod:`autobert.reporting.model_card` sits above this
layer), from :attr:`TrainedRecipe.metrics`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from optuna.trial import FixedTrial

from autobert.config.schema import FrozenConfig, dump_yaml, relocate, write_atomic
from autobert.errors import AutobertError
from autobert.run.aggregate import mean_std
from autobert.run.data import TaskData
from autobert.run.pipeline import (Progress, SeedsResult, TrialResult, metric_functions, metric_names, run_pipeline,
                                   run_seeds, save_folder)
from autobert.strategy.combine import metric_value, mix
from autobert.run.plugin_manager import PluginManager
from autobert.study.search import replay_trial


@dataclass(frozen=True)
class TrainedRecipe:
    """A frozen recipe trained once per seed, scored on validation and test."""

    frozen: FrozenConfig
    #: One run per seed, in seed order; a saved model is the first seed's.
    runs: SeedsResult
    #: The techniques' metric names, in their order (``accuracy``, ``f1``, ...).
    metric_names: tuple[str, ...]
    #: Where the model, ``metrics.json`` and ``autobert.yaml`` were written (None: nothing was).
    output: Path | None = None

    @property
    def seeds(self) -> list[int]:
        return self.runs.seeds

    @property
    def shown(self) -> list[str]:
        """The metrics the first seed reported on validation, in the techniques' order."""
        return [n for n in self.metric_names if n in self.runs.first.metrics]

    def spread(self, split: str) -> dict[str, tuple[float, float]] | None:
        """Each metric's mean and standard deviation over the seeds on ``split`` (``validation`` or ``test``).

        None with one seed, or when a seed has no scores on ``split``.
        """
        if len(self.seeds) < 2:
            return None
        runs = [r.metrics if split == "validation" else r.test_metrics for r in self.runs.results]
        if not all(runs):
            return None
        return {n: mean_std([m[n] for m in runs]) for n in self.metric_names if n in runs[0]}

    @property
    def metrics(self) -> dict[str, Any]:
        """What ``metrics.json`` holds: the first seed's scores, the seeds' aggregate, and with several seeds each one's."""
        first, results = self.runs.first, self.runs.results
        mean, std = self.runs.mean_std
        metrics: dict[str, Any] = {
            "validation": first.metrics, "test": first.test_metrics, "value": self.runs.value,
            "metric": self.frozen.metric, "search_value": self.frozen.provenance.value,
            "seconds": round(sum(r.seconds for r in results), 2), "seeds": self.seeds,
            "aggregate": self.frozen.aggregate, "seed_values": self.runs.seed_values, "mean": mean, "std": std,
        }
        fits = {str(s): r.batch_fit for s, r in zip(self.seeds, results) if r.batch_fit}
        if fits:  # the batch was halved to fit in memory (same effective batch)
            metrics["out_of_memory"] = fits
        if len(self.seeds) > 1:
            metrics["per_seed"] = {str(s): {"validation": r.metrics, "test": r.test_metrics}
                                   for s, r in zip(self.seeds, results)}
            for split in ("validation", "test"):
                spread = self.spread(split)
                if spread is not None:
                    metrics[f"{split}_mean_std"] = {n: list(pair) for n, pair in spread.items()}
        return metrics


def check_output(folder: Path) -> None:
    """Create ``folder`` and make sure files can be written there, before anything trains.

    Raises:
        AutobertError: it cannot be created or written to.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".autobert-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise AutobertError(f"--output {folder}: cannot write there ({exc.strerror}); choose a writable folder") from None


def train_frozen(frozen: FrozenConfig, pm: PluginManager, data: TaskData, *, seeds: list[int] | None = None,
                 output: Path | None = None, progress: Progress | None = None) -> TrainedRecipe:
    """Train ``frozen``'s recipe once per seed (default: its own seeds), scoring validation and test.

    Args:
        pm: The plugin manager with exactly the recipe's techniques
            (:func:`autobert.study.search.plugin_manager_for`).
        output: A folder (checked with :func:`check_output` before training)
            for the first seed's model and tokenizer, ``metrics.json``
            (:attr:`TrainedRecipe.metrics`) and ``autobert.yaml`` (the frozen
            config, its paths relocated to resolve from there). None: nothing
            is written.
        progress: The pipeline's progress display, if any.

    Raises:
        AutobertError: ``output`` cannot be written to.
    """
    if output is not None:
        check_output(output)
    runs = run_seeds(frozen, replay_trial(frozen), pm, data, seeds=seeds, save_to=output, evaluate_test=True,
                     progress=progress)
    trained = TrainedRecipe(frozen, runs, tuple(metric_names(pm)), output)
    if output is not None:
        _write_beside(output, frozen, trained.metrics)
    return trained


# ---------------------------------------------------------------------------
# A combination: every member trained, then souped or ensembled into one folder
# ---------------------------------------------------------------------------


def member_recipe(frozen: FrozenConfig, params: dict[str, Any]) -> FrozenConfig:
    """``frozen`` with its parameters replaced by a member's recipe (the settings are kept)."""
    sections = {name: dict(section) for name, section in frozen.techniques.items()}
    for name, value in params.items():
        technique, _, short = name.partition(".")
        sections.setdefault(technique, {})[short] = value
    provenance = frozen.provenance.model_copy(update={"params": dict(params)})
    return frozen.model_copy(update={"techniques": sections, "provenance": provenance})


#: The combination kinds ``autobert train`` builds (``none`` is the single recipe).
KINDS = ("soup", "ensemble", "checkpoints")


@dataclass(frozen=True)
class TrainedMember:
    trial: int
    seed: int
    weight: float
    result: TrialResult


@dataclass(frozen=True)
class TrainedCombination:
    """A frozen config's combination trained: every member, once per seed offset; the first offset's is saved."""

    frozen: FrozenConfig
    kind: str
    variant: str
    #: ``{offset: [member, ...]}``: offset 0 is the members' own seeds (the exact replay).
    members: dict[int, list[TrainedMember]]
    #: ``{offset: {"validation": {...}, "test": {...}}}``: the combination's scores.
    scores: dict[int, dict[str, dict[str, float] | None]]
    metric_names: tuple[str, ...]
    seconds: float
    output: Path | None = None
    extra: dict[str, Any] | None = None

    @property
    def offsets(self) -> list[int]:
        return list(self.scores)

    @property
    def value(self) -> float:
        return self.scores[self.offsets[0]]["validation"][self.frozen.metric]

    def spread(self, split: str) -> dict[str, tuple[float, float]] | None:
        if len(self.offsets) < 2 or not all(self.scores[o].get(split) for o in self.offsets):
            return None
        return {n: mean_std([self.scores[o][split][n] for o in self.offsets]) for n in self.metric_names
                if n in self.scores[self.offsets[0]][split]}

    @property
    def metrics(self) -> dict[str, Any]:
        first = self.offsets[0]
        combination = self.frozen.provenance.combination or {}
        metrics: dict[str, Any] = {
            "kind": self.kind, "variant": self.variant, "metric": self.frozen.metric,
            "validation": self.scores[first]["validation"], "test": self.scores[first]["test"],
            "value": self.value, "search_value": combination.get("value"),
            "single_search_value": (combination.get("single") or {}).get("value"),
            "seconds": round(self.seconds, 2), "seed_offsets": self.offsets,
            **({"checkpoints": combination.get("checkpoints")} if self.kind == "checkpoints" else {}),
            "members": [{"trial": m.trial, "seed": m.seed, "weight": m.weight, "validation": m.result.metrics,
                         "test": m.result.test_metrics, "seconds": round(m.result.seconds, 2)}
                        for m in self.members[first]],
            **(self.extra or {}),
        }
        if len(self.offsets) > 1:
            metrics["per_offset"] = {str(o): self.scores[o] for o in self.offsets}
            for split in ("validation", "test"):
                spread = self.spread(split)
                if spread is not None:
                    metrics[f"{split}_mean_std"] = {n: list(pair) for n, pair in spread.items()}
        return metrics


def _scores(pm: PluginManager, probabilities: np.ndarray | None, labels: np.ndarray) -> dict[str, float] | None:
    if probabilities is None:
        return None
    return {name: metric_value(probabilities, labels, fn) for name, fn in metric_functions(pm).items()}


def train_combination(frozen: FrozenConfig, pm: PluginManager, data: TaskData, *, offsets: list[int] | None = None,
                      output: Path | None = None, progress: Progress | None = None) -> TrainedCombination:
    """Train every member of ``frozen``'s combination and combine them as the search did.

    Each member is its recipe on its seed plus the offset (offset 0, the
    default, is the members' own seeds: the exact replay of what the search
    scored). An ensemble's value is the weighted average of its members'
    probabilities; a soup's is its averaged weights' own predictions, and so
    is ``checkpoints``' (its one member's weights averaged over its last
    checkpoints while it trains). The
    first offset's combination is saved to ``output``: a soup as one plain
    checkpoint, an ensemble as one folder whose model averages its members
    (``trust_remote_code=True``), with ``metrics.json`` and ``autobert.yaml``.

    Raises:
        AutobertError: ``frozen`` records no combination, or ``output`` cannot be written to.
    """
    from autobert.run.inference import inference_ms_per_1000, load_classifier, model_size_bytes

    combination = frozen.provenance.combination
    if not combination or combination.get("kind") not in KINDS:
        raise AutobertError(f"{frozen.name}: the recipe records no combination to train; train it with --single")
    if output is not None:
        check_output(output)
    kind, members = combination["kind"], combination["members"]
    offsets = list(offsets or [0])
    labels = {split: np.asarray(ds["label"]) for split, ds in data.splits.items()}
    start = time.perf_counter()
    trained: dict[int, list[TrainedMember]] = {}
    scores: dict[int, dict[str, dict[str, float] | None]] = {}
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="members-", dir=output or frozen.study_dir) as scratch:
        for offset in offsets:
            folders, runs = [], []
            for index, member in enumerate(members):
                recipe = member_recipe(frozen, member["params"])
                seed = int(member["seed"]) + offset
                folder = Path(scratch) / f"offset-{offset}-member-{index}"
                saved = folder if kind == "soup" or offset == offsets[0] else None
                result = run_pipeline(recipe, FixedTrial(dict(member["params"]), number=int(member["trial"])), pm,
                                      data, seed=seed, evaluate_test=True, progress=progress,
                                      save_to=saved if kind != "checkpoints" else None,
                                      average_checkpoints=int(combination.get("checkpoints") or 0),
                                      save_averaged_to=saved if kind == "checkpoints" else None)
                runs.append(TrainedMember(int(member["trial"]), seed, float(member["weight"]), result))
                folders.append(folder)
            trained[offset] = runs
            weights = [m.weight for m in runs]
            if kind == "ensemble":
                scores[offset] = {}
                for split, attribute in (("validation", "probabilities"), ("test", "test_probabilities")):
                    arrays = [getattr(m.result, attribute) for m in runs]
                    if split in labels:
                        mixed = None if any(a is None for a in arrays) else mix(arrays, weights)
                        scores[offset][split] = _scores(pm, mixed, labels[split])
            elif kind == "checkpoints":
                averaged = runs[0].result.averaged
                if averaged is None:
                    raise AutobertError(f"{frozen.name}: the run took no checkpoint to average; train it with --single")
                scores[offset] = {"validation": _scores(pm, averaged.probabilities, labels["validation"]),
                                  "test": _scores(pm, averaged.test_probabilities, labels["test"])
                                  if "test" in labels else None}
            else:
                scores[offset] = _soup_scores(frozen, pm, data, members[0]["params"], folders, labels,
                                              Path(scratch) / f"offset-{offset}-soup")
            scores[offset].setdefault("test", None)
            if offset == offsets[0] and output is not None:
                one_model = folders[0] if kind == "checkpoints" else Path(scratch) / f"offset-{offset}-soup"
                _save_combination(kind, folders, weights, one_model, output)
        seconds = time.perf_counter() - start
        if output is not None:
            classifier = load_classifier(output)
            extra["inference_ms_per_1000"] = round(inference_ms_per_1000(classifier, list(data.splits["validation"]["text"])), 1)
            extra["size_bytes"] = model_size_bytes(output)
    combined = TrainedCombination(frozen, kind, combination.get("variant") or "", trained, scores,
                                  tuple(metric_names(pm)), seconds, output, extra)
    if output is not None:
        _write_beside(output, frozen, combined.metrics)
    return combined


def _soup_scores(frozen: FrozenConfig, pm: PluginManager, data: TaskData, params: dict[str, Any],
                 folders: list[Path], labels: dict[str, np.ndarray], into: Path) -> dict[str, dict[str, float] | None]:
    """A soup's scores: its members' weights averaged (uniformly), saved to ``into``, its own predictions scored."""
    from autobert.run.inference import load_classifier, predict_probabilities, recipe_encoder, soup

    loaded = [load_classifier(folder) for folder in folders]
    souped = soup([c.model for c in loaded])
    souped.save_pretrained(str(into))
    loaded[0].tokenizer.save_pretrained(str(into))
    encoder = recipe_encoder(member_recipe(frozen, params), pm, loaded[0].tokenizer)
    return {split: _scores(pm, predict_probabilities(souped, encoder, list(data.splits[split]["text"])), labels[split])
            for split in ("validation", "test") if split in data.splits}


def _save_combination(kind: str, folders: list[Path], weights: list[float], one_model: Path, output: Path) -> None:
    """Move the combined model into ``output``: the soup's or the averaged run's checkpoint (``one_model``), or the
    ensemble built from the members."""
    from autobert.heads import build_ensemble
    from autobert.run.inference import load_classifier

    def write(staging: Path) -> None:
        if kind != "ensemble":
            for item in one_model.iterdir():
                shutil.copy2(item, staging / item.name) if item.is_file() else shutil.copytree(item, staging / item.name)
            return
        loaded = [load_classifier(folder) for folder in folders]
        total = float(sum(weights))
        ensemble = build_ensemble([c.model for c in loaded], [w / total for w in weights])
        ensemble.save_pretrained(str(staging))
        loaded[0].tokenizer.save_pretrained(str(staging))

    save_folder(output, write, "the combined model")


def _write_beside(output: Path, frozen: FrozenConfig, metrics: dict[str, Any]) -> None:
    try:
        write_atomic(output / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        write_atomic(output / "autobert.yaml", dump_yaml(relocate(frozen, output)))
    except OSError as exc:
        raise AutobertError(f"cannot write metrics.json and autobert.yaml to {output} ({exc.strerror or exc}); "
                            "the files there before are unchanged. Free some space or choose another --output"
                            ) from None


__all__ = ["TrainedRecipe", "train_frozen", "check_output", "TrainedCombination", "train_combination", "member_recipe",
           "KINDS"]
