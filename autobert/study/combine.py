"""The combination step: the runs the search and the finalists trained, combined into one model, or not.

Every completed run stores its validation probabilities, and the best runs
their weights (:mod:`autobert.store.artifacts`). At the end of a search this
module builds the candidates from them:

- ``ensemble``: Caruana ensemble selection with replacement over every
  stored run's probabilities (:func:`autobert.strategy.combine.ensemble_selection`),
  at most ``combine.members`` distinct runs;
- ``soup``: the weights averaged over runs that share an architecture: the
  best recipe's runs (``uniform``, a seed soup) and Wortsman et al.'s
  ``greedy`` soup over every run whose weights were kept. A soup is one model
  at the inference cost of one;
- ``checkpoints``: each of the best recipe's runs averaged over its own last
  ``combine.checkpoints`` checkpoints while it trained
  (:class:`autobert.run.pipeline.TailAverage`): one model, no extra training.

**Not fooling ourselves.** The validation rows are split in two fixed halves
(:func:`autobert.strategy.combine.halves`): members and weights are chosen
on half A, and the candidate is scored on half B against the best single
recipe's runs on the same rows. ``combine.kind: auto`` keeps a combination
only where that held-out gain is larger than the noise: the larger of the
seed noise (the standard deviation of the best recipe's runs on half B; the
finalists ran it on seeds the search never saw) and the gain's bootstrap
standard deviation over the half-B rows (how much it moves with which rows
were held out). The chosen kind's members are then chosen again on all the
rows, which is what ``autobert train`` replays.

The result is stored with the study (:attr:`StudyRecord.combination`) in one
write, with the runs it was built from: a study killed during this step, or
resumed with more runs, builds it again from its stored runs.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
from optuna.trial import TrialState

from autobert.config.schema import StudyConfig
from autobert.errors import AutobertError
from autobert.run.data import TaskData
from autobert.run.pipeline import metric_functions
from autobert.run.plugin_manager import PluginManager
from autobert.store import artifacts, record
from autobert.store.record import StudyRecord, TrialRecord
from autobert.strategy import combine as arithmetic
from autobert.strategy.planner import winner

#: Config keys that do not change a model's architecture (a soup's members may differ in them).
_NOT_ARCHITECTURE = ("_name_or_path", "transformers_version", "dtype", "torch_dtype", "architectures")


@dataclass(frozen=True)
class Run:
    """One trained run: a recipe on one seed, with what it stored."""

    trial: int          # the trial that ran it (a finalist run is a trial of its own)
    seed: int
    recipe: int         # the search trial whose recipe it is (a finalist's finalist_of, else ``trial``)
    params: dict[str, Any]
    value: float        # its validation value, as the trial recorded it
    probabilities: np.ndarray
    weights: str | None  # the artifact id of its saved model, when kept
    averaged: np.ndarray | None = None  # its weights averaged over its last checkpoints: their probabilities
    checkpoints: int = 0                # how many checkpoints that average took

    @property
    def key(self) -> str:
        return f"{self.trial}:{self.seed}"


def stored_runs(study: StudyConfig, opened: optuna.Study, data: TaskData) -> list[Run]:
    """Every completed run whose validation probabilities are stored for this validation split, best first."""
    store = artifacts.artifact_store(study)
    fingerprint = data.fingerprints.get("validation")
    rows = len(data.splits["validation"])
    runs = []
    for trial in opened.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        stored = TrialRecord.from_trial(trial)
        if not stored.predictions:
            continue
        weights = artifacts.kept_weights(store, trial) if stored.weights else {}
        for seed, entry in stored.predictions.items():
            value = (stored.seed_values or {}).get(seed, trial.value)
            if entry.get("fingerprint") != fingerprint or entry.get("rows") != rows or value is None:
                continue  # another validation split (the data changed since): not comparable row by row
            try:
                probabilities = artifacts.load_probabilities(store, entry)
            except (OSError, ValueError, KeyError):
                continue  # its file is gone (a store moved or cleaned by hand): the run cannot take part
            averaged, count = None, 0
            if entry.get("checkpoints"):
                try:
                    averaged = artifacts.load_probabilities(store, entry["checkpoints"])
                    count = int(entry["checkpoints"].get("count") or 0)
                except (OSError, ValueError, KeyError):
                    pass  # the run takes part without its average
            recipe = int(stored.finalist_of) if stored.finalist_of is not None else trial.number
            runs.append(Run(trial.number, int(seed), recipe, dict(trial.params), float(value), probabilities,
                            weights.get(seed), averaged, count))
    maximize = opened.direction == optuna.study.StudyDirection.MAXIMIZE
    runs.sort(key=lambda r: (r.value, -r.trial, -r.seed), reverse=maximize)
    return runs


class _Soups:
    """Makes and scores soups of stored runs, loading each run's model once."""

    def __init__(self, study: StudyConfig, pm: PluginManager, data: TaskData, runs: list[Run], folder: Path,
                 deadline: float | None):
        self.study, self.pm, self.runs, self.folder, self.deadline = study, pm, runs, folder, deadline
        self.texts = list(data.splits["validation"]["text"])
        self.store = artifacts.artifact_store(study)
        self._models: dict[int, Any] = {}
        self._scored: dict[tuple[int, ...], np.ndarray | None] = {}
        self.skipped: str | None = None

    def model(self, index: int):
        from autobert.run.inference import load_classifier

        if index not in self._models:
            run = self.runs[index]
            where = artifacts.unpack_weights(self.store, run.weights, self.folder / run.key.replace(":", "-"))
            self._models[index] = load_classifier(where)
        return self._models[index]

    def architecture(self, index: int) -> str:
        config = self.model(index).model.config.to_dict()
        return json.dumps({k: v for k, v in config.items() if k not in _NOT_ARCHITECTURE and "dropout" not in k},
                          sort_keys=True, default=str)

    def probabilities(self, members: list[int]) -> np.ndarray | None:
        """The soup's validation probabilities, or None: no shared architecture, or no time left."""
        from autobert.run.inference import predict_probabilities, recipe_encoder, soup

        key = tuple(members)
        if key in self._scored:
            return self._scored[key]
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.skipped = "the time budget ran out before every soup was scored"
            return None
        first = self.model(members[0])
        if any(self.architecture(i) != self.architecture(members[0]) for i in members[1:]):
            self._scored[key] = None
            return None
        try:
            souped = soup([self.model(i).model for i in members])
        except ValueError:
            self._scored[key] = None
            return None
        # Encoded as the first member's recipe trained (its truncation, its max_length), as `autobert train` scores it.
        encoder = recipe_encoder(self.study, self.pm, first.tokenizer, params=self.runs[members[0]].params)
        self._scored[key] = predict_probabilities(souped, encoder, self.texts)
        return self._scored[key]


def _member(run: Run, weight: float) -> dict[str, Any]:
    return {"trial": run.trial, "seed": run.seed, "recipe": run.recipe, "weight": round(float(weight), 6),
            "value": run.value, "params": dict(run.params)}


def combine(study: StudyConfig, pm: PluginManager, data: TaskData, opened: optuna.Study, *,
            deadline: float | None = None, say: Callable[[str], None] = lambda message: None,
            runs: list[Run] | None = None) -> dict[str, Any] | None:
    """Build the candidates from the stored runs and choose (see the module's docstring); None: nothing to combine.

    Returns what :attr:`StudyRecord.combination` stores: ``kind`` (``ensemble``,
    ``soup``, ``checkpoints`` or ``none``), ``variant``, ``checkpoints`` (how
    many, for that kind), ``members`` (each ``{trial, seed,
    recipe, weight, value, params}``), ``value`` (on all the validation rows),
    ``single`` (the best recipe's trial and mean value over its runs),
    ``holdout`` (the check on half B), ``candidates``, ``reason`` and
    ``library`` (the runs it was built from). ``runs``: :func:`stored_runs`, when the caller has read them.
    """
    start = time.monotonic()
    wanted = study.combine.kind
    if wanted == "none":
        return None
    runs = stored_runs(study, opened, data) if runs is None else runs
    best = winner(opened)
    if best is None or len(runs) < 2:
        return None
    labels = np.asarray(data.splits["validation"]["label"])
    metric = metric_functions(pm).get(study.metric)
    if metric is None:
        raise AutobertError(f"combine: no technique computes the metric {study.metric!r}; set `combine: none`")
    maximize = study.direction == "maximize"
    sign = 1.0 if maximize else -1.0
    half_a, half_b = arithmetic.halves(len(labels), seed=study.seed)
    every = np.arange(len(labels))

    def on(rows: np.ndarray, probabilities: np.ndarray) -> float:
        return arithmetic.metric_value(probabilities[rows], labels[rows], metric)

    single_runs = [r for r in runs if r.recipe == best.number]
    if not single_runs:
        return None  # the winner stored no probabilities (a study from before they were stored)
    single_b = [on(half_b, r.probabilities) for r in single_runs]
    single = {"trial": best.number, "runs": len(single_runs),
              "value": float(np.mean([on(every, r.probabilities) for r in single_runs])),
              "holdout": float(np.mean(single_b))}
    seed_noise = float(np.std(single_b, ddof=1)) if len(single_b) > 1 else None
    library = [r.probabilities for r in runs]
    candidates: list[dict[str, Any]] = []

    # -- ensemble: chosen on half A, checked on half B, chosen again on every row --
    if wanted in ("auto", "ensemble"):
        on_a = arithmetic.ensemble_selection(library, labels, metric, maximize, half_a, max_members=study.combine.members)
        final = arithmetic.ensemble_selection(library, labels, metric, maximize, max_members=study.combine.members)
        members = [_member(runs[i], w) for i, w in enumerate(final) if w > 0]
        if len(members) >= 2:
            held_out = arithmetic.mix(library, on_a)
            candidates.append({"kind": "ensemble", "variant": "caruana", "members": members, "probabilities": held_out,
                               "holdout": on(half_b, held_out),
                               "value": on(every, arithmetic.mix(library, final))})

    # -- soups: one model; the runs whose weights were kept --
    with_weights = [i for i, r in enumerate(runs) if r.weights]
    if wanted in ("auto", "soup") and len(with_weights) >= 2:
        with tempfile.TemporaryDirectory(prefix="autobert-soup-", dir=study.study_dir) as folder:
            soups = _Soups(study, pm, data, runs, Path(folder), deadline)

            def score_a(members: list[int]) -> tuple[float, float] | None:
                probabilities = soups.probabilities(members)
                if probabilities is None:
                    return None
                return arithmetic.score(probabilities[half_a], labels[half_a], metric, maximize)

            def add(variant: str, members: list[int]) -> None:
                probabilities = soups.probabilities(members)
                if len(members) >= 2 and probabilities is not None:
                    weight = 1.0 / len(members)
                    candidates.append({"kind": "soup", "variant": variant, "probabilities": probabilities,
                                       "members": [_member(runs[i], weight) for i in members],
                                       "holdout": on(half_b, probabilities),
                                       "value": on(every, probabilities)})

            seed_soup = [i for i in with_weights if runs[i].recipe == best.number][:study.combine.members]
            add("uniform", seed_soup)
            greedy = arithmetic.greedy_soup(with_weights[:study.combine.members], score_a)
            if greedy != seed_soup:
                add("greedy", greedy)
            if soups.skipped:
                say(f"combination: {soups.skipped}")

    # -- checkpoints: the best recipe's runs, each averaged over its own last checkpoints (one model) --
    averaged = [r for r in single_runs if r.averaged is not None]
    if wanted in ("auto", "checkpoints") and averaged:
        # Run by run against the same runs' last weights (a paired gain); `autobert train` replays the best run's.
        paired = float(np.mean([on(half_b, r.averaged) - on(half_b, r.probabilities) for r in averaged]))
        candidates.append({"kind": "checkpoints", "variant": f"last {averaged[0].checkpoints}",
                           "checkpoints": averaged[0].checkpoints, "members": [_member(averaged[0], 1.0)],
                           "probabilities": averaged[0].averaged, "holdout": single["holdout"] + paired,
                           "value": on(every, averaged[0].averaged)})

    for candidate in candidates:
        candidate["gain"] = sign * (candidate["holdout"] - single["holdout"])
    # The best on the held-out half; one model (a soup, an average) first where they tie, instead of several.
    candidates.sort(key=lambda c: (c["gain"], c["kind"] != "ensemble"), reverse=True)
    chosen = next((c for c in candidates if wanted in ("auto", c["kind"])), None)
    # Two noises, and the gain must clear the larger: the seed noise (how much one run of the best recipe moves by
    # luck; from two or three runs a loose estimate, sometimes near 0 by chance) and the gain's bootstrap standard
    # deviation over the held-out rows (how much it moves with which rows were held out).
    bootstrap = (arithmetic.bootstrap_std(chosen["probabilities"], [r.probabilities for r in single_runs], labels,
                                          half_b, metric) if chosen is not None else None)
    noise_from = "seeds" if seed_noise is not None and seed_noise >= (bootstrap or 0.0) else "bootstrap"
    noise = (seed_noise if noise_from == "seeds" else bootstrap) or 0.0
    noise_text = (f"{noise:.4f}, the " + ("seed noise of the best recipe's runs" if noise_from == "seeds" else
                                           "gain's bootstrap standard deviation over the held-out rows")
                  + (f"; the other was {bootstrap:.4f}" if noise_from == "seeds" and bootstrap is not None else
                     f"; the other was {seed_noise:.4f}" if seed_noise is not None else
                     "; one run of the best recipe, so no seed noise"))
    if chosen is None:
        reason = (f"no {wanted if wanted != 'auto' else 'combination'} could be made from {len(runs)} stored run(s)"
                  + ("" if with_weights else "; no run kept its weights, so no soup"))
    elif wanted == "auto" and not chosen["gain"] > noise:
        reason = (f"the best combination ({chosen['kind']}, {chosen['variant']}) gained {chosen['gain']:+.4f} on the "
                  f"held-out half, not more than the noise ({noise_text}): the single recipe is kept")
        chosen = None
    else:
        reason = (f"{chosen['kind']} ({chosen['variant']}) gained {chosen['gain']:+.4f} {study.metric} on the held-out "
                  f"half of the validation rows (noise {noise_text})"
                  + (" (asked for by combine.kind)" if wanted != "auto" else ""))
    result = {
        "kind": chosen["kind"] if chosen else "none",
        "variant": chosen["variant"] if chosen else None,
        "members": chosen["members"] if chosen else [],
        **({"checkpoints": chosen["checkpoints"]} if chosen and chosen["kind"] == "checkpoints" else {}),
        "value": chosen["value"] if chosen else single["value"],
        "single": single,
        "holdout": {"rows": int(len(half_b)), "noise": noise, "seed_noise": seed_noise, "bootstrap_noise": bootstrap,
                    "gain": chosen["gain"] if chosen else (candidates[0]["gain"] if candidates else 0.0),
                    "noise_from": noise_from},
        "candidates": [{k: c[k] for k in ("kind", "variant", "value", "holdout", "gain")} | {"members": len(c["members"])}
                       for c in candidates],
        "reason": reason,
        "library": sorted(r.key for r in runs),
        "seconds": round(time.monotonic() - start, 2),
    }
    return result


def combination_for(study: StudyConfig, pm: PluginManager, data: TaskData, opened: optuna.Study, *,
                    deadline: float | None = None, say: Callable[[str], None] = lambda message: None,
                    ) -> dict[str, Any] | None:
    """The study's stored combination when it was built from the runs stored now; else built again and stored."""
    if study.combine.kind == "none":
        return None
    stored = StudyRecord.from_study(opened).combination
    runs = stored_runs(study, opened, data)
    if (stored and stored.get("asked") == study.combine.model_dump(mode="json")
            and sorted(r.key for r in runs) == stored.get("library")):
        return stored
    result = combine(study, pm, data, opened, deadline=deadline, say=say, runs=runs)
    if result is not None:
        result["asked"] = study.combine.model_dump(mode="json")
        record.store_study(opened, combination=result)
    return result


def describe(combination: dict[str, Any] | None, metric: str) -> str:
    """One line: what was chosen and why."""
    if not combination:
        return "combination: none (fewer than two stored runs)"
    if combination["kind"] == "none":
        return f"combination: none; {combination['reason']}"
    members = combination["members"]
    what = (f"{len(members)} runs" if combination["kind"] != "checkpoints"
            else f"trial {members[0]['trial']}'s run on seed {members[0]['seed']}")
    return (f"combination: {combination['kind']} ({combination['variant']}) of {what}, {metric} "
            f"{combination['value']:.4f} on validation (single recipe {combination['single']['value']:.4f}); "
            f"{combination['reason']}")


__all__ = ["Run", "stored_runs", "combine", "combination_for", "describe"]
