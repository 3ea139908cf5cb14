"""How trained runs are combined, as arithmetic on validation probabilities: no models, no storage.

- :func:`ensemble_selection` is Caruana et al.'s (2004) forward selection with
  replacement, as AutoGluon's ``WeightedEnsemble`` runs it: start empty, add
  the run that makes the averaged probabilities score best, repeat; a run may
  be added again, so the weights are counts.
- :func:`greedy_soup` is the order of Wortsman et al. (2022): runs sorted by
  their own validation score, each kept in the soup only if the soup scores no
  worse with it.
- :func:`halves` splits the validation rows in two fixed halves: what is
  chosen on one half is checked on the other, so a combination that only fits
  the noise of the rows it was picked on does not win (see
  :mod:`autobert.study.combine`).

Scores compare the study's metric first and the log loss second, so that a
tie in accuracy (a few hundred rows) is broken by the better probabilities.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

#: Rounds of ensemble selection (AutoGluon's default ensemble size is 25 in its tabular presets' first layer).
ROUNDS = 25

Metric = Callable[[np.ndarray, np.ndarray], float]


def halves(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of ``range(rows)`` in a fixed random order (the same for every run of the study)."""
    order = np.random.default_rng(seed).permutation(rows)
    middle = rows // 2
    return np.sort(order[:middle]), np.sort(order[middle:])


def score(probabilities: np.ndarray, labels: np.ndarray, metric: Metric, maximize: bool) -> tuple[float, float]:
    """``(metric, -log loss)`` oriented so that larger is better: what the selections compare."""
    value = float(metric(np.log(np.clip(probabilities, 1e-12, 1.0)), labels))
    picked = probabilities[np.arange(len(labels)), labels]
    log_loss = float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))
    return (value if maximize else -value, -log_loss)


def metric_value(probabilities: np.ndarray, labels: np.ndarray, metric: Metric) -> float:
    """The study's metric of averaged probabilities (the metric takes logits: their log is one)."""
    return float(metric(np.log(np.clip(probabilities, 1e-12, 1.0)), labels))


def mix(library: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The weighted average of the runs' probabilities (weights need not sum to 1)."""
    total = float(sum(weights))
    mixed = np.zeros_like(np.asarray(library[0], dtype=np.float64))
    for probabilities, weight in zip(library, weights):
        if weight:
            mixed += np.asarray(probabilities, dtype=np.float64) * (weight / total)
    return mixed


def ensemble_selection(library: Sequence[np.ndarray], labels: np.ndarray, metric: Metric, maximize: bool,
                       rows: np.ndarray | None = None, *, rounds: int = ROUNDS, max_members: int = 5) -> list[float]:
    """Caruana ensemble selection with replacement: a weight per run of ``library`` (summing to 1).

    Args:
        library: Each run's probabilities (rows x classes), rows in the same order.
        labels: The rows' label ids.
        metric: The study's metric, ``fn(logits, labels)``.
        maximize: Whether larger values of the metric are better.
        rows: The rows to select on (default: all).
        rounds: Additions, each of one run (the same run may be added again).
        max_members: The most distinct runs it may use; once reached, only those are added again.
    """
    if not library:
        raise ValueError("ensemble selection needs at least one run")
    rows = np.arange(len(labels)) if rows is None else np.asarray(rows)
    picked = [np.asarray(p, dtype=np.float64)[rows] for p in library]
    target = np.asarray(labels)[rows]
    counts = np.zeros(len(library), dtype=int)
    total = np.zeros_like(picked[0])
    for step in range(rounds):
        allowed = (range(len(library)) if np.count_nonzero(counts) < max_members
                   else np.flatnonzero(counts).tolist())
        best, best_key = None, None
        for index in allowed:
            key = score((total + picked[index]) / (step + 1), target, metric, maximize)
            if best_key is None or key > best_key:
                best, best_key = index, key
        counts[best] += 1
        total += picked[best]
    return (counts / counts.sum()).tolist()


def bootstrap_std(candidate: np.ndarray, singles: Sequence[np.ndarray], labels: np.ndarray, rows: np.ndarray,
                  metric: Metric, *, resamples: int = 200, seed: int = 0) -> float:
    """The standard deviation, over bootstrap resamples of ``rows``, of the candidate's metric minus the mean of the
    single runs' metric on the same resample: how much the held-out gain moves with which rows were held out.

    The noise the held-out check uses where the best recipe ran once and its seed noise is unknown.
    """
    rng = np.random.default_rng(seed)
    rows = np.asarray(rows)
    gains = []
    for _ in range(resamples):
        picked = rng.choice(rows, size=len(rows), replace=True)
        single = np.mean([metric_value(p[picked], labels[picked], metric) for p in singles])
        gains.append(metric_value(candidate[picked], labels[picked], metric) - single)
    return float(np.std(gains, ddof=1))


def greedy_soup(order: Sequence[int], evaluate: Callable[[list[int]], tuple[float, float] | None]) -> list[int]:
    """Wortsman et al.'s greedy soup: runs in ``order`` (best first), each kept if the soup's score does not drop.

    ``evaluate(members)`` scores the soup of those runs (larger is better,
    like :func:`score`), or returns None when it cannot be made (the members do
    not share an architecture, or time ran out): that run is left out.
    """
    members = [order[0]]
    best = evaluate(members)
    for index in order[1:]:
        candidate = evaluate([*members, index])
        if candidate is not None and best is not None and candidate >= best:
            members, best = [*members, index], candidate
    return members


__all__ = ["halves", "score", "metric_value", "mix", "ensemble_selection", "greedy_soup", "bootstrap_std", "ROUNDS"]
