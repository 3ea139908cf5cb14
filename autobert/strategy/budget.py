"""Time budgets: what a trial will cost before it runs, and a search that keeps its deadline.

Three parts, used by :mod:`autobert.study.search`:

* **The cost model.** Every technique says, through ``autobert_trial_cost``,
  how much work it adds to a run, in *example passes* (one forward and
  backward pass of one training example at the study's ``max_length``). The
  search turns the summed work into seconds with two numbers it calibrates on
  the study itself: the seconds one run costs whatever it does (loading the
  model, tokenising) and the seconds per example pass. Before any trial has
  finished, a short probe (a few training steps of the study's model) gives a
  first estimate; every finished trial refines it (the median over finished
  trials, so one odd trial does not swing it). Every trial stores its
  ``predicted_seconds`` and its actual ``seconds``.
* **The clock.** With a time budget, the search has a deadline. A trial
  predicted not to fit in the time left is not started; a running trial is
  stopped at the deadline, or when it runs far past its prediction
  (:mod:`autobert.run.clock`, checked at every training step).
* **Cheap first.** A trial is only started when its predicted cost is below a
  cap that starts at a sixth of the search budget and grows with the cost of
  the best recipe found so far (twice it), the frugal rule of FLAML's CFO
  (Wu, Wang, Huang: "Frugal Optimization for Cost-related Hyperparameters",
  AAAI 2021) and BlendSearch (Wang et al., ICLR 2021): expensive recipes
  (more epochs, further pretraining, teachers, many augmented copies) are
  admitted once a cheaper one has shown that the extra time is where the
  search now is. A recipe over the cap is recorded as a pruned trial with the
  reason, so the sampler learns to draw cheaper ones; nothing is trained.

This module imports neither torch nor transformers at import time.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autobert.hookspecs import FORWARD_PASS
from autobert.store.record import TrialRecord
from autobert.strategy.declarations import passes_parameter
from autobert.run.models import load_tokenizer, resolve_model

if TYPE_CHECKING:
    from autobert.config.schema import BudgetConfig

#: The engine's own term of a prediction (every other term is ``"technique: term"``).
EVALUATION = "evaluation"
#: The cheap-first cap: the first trials may cost at most this share of the search budget ...
FIRST_SHARE = 1 / 6
#: ... and later ones this many times the cost of the best recipe so far.
GROWTH = 2.0
#: Seconds per run and per example pass assumed before the probe or any trial says otherwise.
DEFAULT_OVERHEAD = 2.0


@dataclass(frozen=True)
class Calibration:
    """Seconds = ``runs * overhead + work * seconds_per_pass``."""

    overhead: float
    seconds_per_pass: float
    source: str  # "probe", "N trials", ...

    def seconds(self, work: float, runs: int = 1) -> float:
        return runs * self.overhead + work * self.seconds_per_pass


@dataclass
class Prediction:
    """A trial's predicted cost: work per term (example passes, all runs) and seconds."""

    terms: dict[str, float]
    runs: int
    seconds: float

    @property
    def work(self) -> float:
        return sum(self.terms.values())

    def describe(self) -> str:
        big = sorted(self.terms.items(), key=lambda kv: -kv[1])[:3]
        return ", ".join(f"{name} {work:,.0f}" for name, work in big if work > 0)


def trial_work(params: dict[str, Any], study: Any, pm: Any, split_rows: dict[str, int], settings: dict[str, Any]) -> dict[str, float]:
    """``{"technique: term": example passes}`` of one run, asked of every technique's ``autobert_trial_cost``."""
    kwargs = {"params": params, "train_rows": split_rows.get("train", 0), "settings": settings,
              "cache_dir": study.cache_path, "hooks": pm.hook}
    terms: dict[str, float] = {}
    for impl in pm.hook.autobert_trial_cost.get_hookimpls():
        found = impl.function(*[kwargs[name] for name in impl.argnames]) or {}
        for name, work in found.items():
            terms[f"{impl.plugin_name}: {name}"] = float(work)
    # Evaluation is the engine's: the validation split, forward only, at each report of each pass over the data
    # (the passes a technique's cost knob counts, autobert_cost_knobs).
    counted = passes_parameter(pm)
    passes = float(params.get(counted, 1)) if counted else 1.0
    terms[EVALUATION] = split_rows.get("validation", 0) * study.evaluations_per_epoch * passes * FORWARD_PASS
    return terms


def predict(params: dict[str, Any], study: Any, pm: Any, split_rows: dict[str, int], settings: dict[str, Any],
            calibration: Calibration, runs: int) -> Prediction:
    per_run = trial_work(params, study, pm, split_rows, settings)
    terms = {name: work * runs for name, work in per_run.items()}
    return Prediction(terms=terms, runs=runs, seconds=calibration.seconds(sum(terms.values()), runs))


def calibrate(trials: list[Any], prior: Calibration | None) -> Calibration:
    """The study's calibration: from its finished trials where there are any, else ``prior``.

    A trial counts when it completed and stored its predicted work and its
    seconds; the overhead per run stays the prior's (the probe measures it
    well), the seconds per pass is the median of what the trials show.
    """
    prior = prior or Calibration(DEFAULT_OVERHEAD, 1e-3, "default")
    ratios = []
    for t in trials:
        stored = TrialRecord.from_trial(t)
        work, seconds, runs = stored.predicted_work, stored.seconds, stored.runs
        if t.state.name != "COMPLETE" or not work or not seconds:
            continue
        ratios.append(max(seconds - (runs or 1) * prior.overhead, 0.1 * seconds) / work)
    if not ratios:
        return prior
    return Calibration(prior.overhead, statistics.median(ratios), f"{len(ratios)} trial(s)")


def probe(study: Any, data: Any, steps: int = 3, batch_size: int = 16) -> Calibration:
    """Measure the study's model: seconds to load it, and seconds per example pass over a few training steps."""
    import torch
    from transformers import AutoModelForSequenceClassification


    start = time.perf_counter()
    checkpoint = resolve_model(study)
    tokenizer = load_tokenizer(checkpoint)
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the new head's "missing weights" report is expected here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=max(2, data.num_labels))
    finally:
        hf_logging.set_verbosity(verbosity)
    overhead = time.perf_counter() - start
    # A batch of similar lengths around the median, as length-grouped batches are (the default).
    texts = sorted(data.splits["train"]["text"], key=len)
    middle = max(0, len(texts) // 2 - batch_size // 2)
    texts = texts[middle:middle + batch_size] or ["probe"]
    batch = tokenizer(texts, truncation=True, max_length=study.max_length, padding=True, return_tensors="pt")
    labels = torch.zeros(len(texts), dtype=torch.long)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()
    timings = []
    for _ in range(steps + 1):  # the first step warms up the kernels
        t0 = time.perf_counter()
        loss = model(**{k: v for k, v in batch.items()}, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        timings.append(time.perf_counter() - t0)
    per_pass = statistics.median(timings[1:]) / len(texts)
    del model, optimizer
    return Calibration(overhead=overhead, seconds_per_pass=per_pass, source="probe")


def admission_cap(budget: float, remaining: float, incumbent_seconds: float | None) -> float:
    """The most a new trial may be predicted to cost (cheap first, see the module's docstring)."""
    cap = max(FIRST_SHARE * budget, GROWTH * incumbent_seconds if incumbent_seconds else 0.0)
    return min(cap, remaining)


@dataclass(frozen=True)
class SearchBudget:
    """How long a search runs: ``n_trials`` more trials and/or ``timeout`` seconds (None: no such limit)."""

    n_trials: int | None
    timeout: float | None


def resolve_budget(budget: BudgetConfig, n_trials: int | None = None, timeout: float | None = None) -> SearchBudget:
    """The search's budget: the command line's ``--n-trials`` and ``--timeout`` where given, else the study file's.

    Either option alone replaces the whole of the study file's budget, as
    ``budget: {timeout: ...}`` alone does in the file: ``--timeout 600`` runs
    as many trials as fit in ten minutes, not the file's trial count.

    >>> from autobert.config.schema import BudgetConfig
    >>> resolve_budget(BudgetConfig(trials=10, timeout=3600), timeout=600)
    SearchBudget(n_trials=None, timeout=600)
    """
    return SearchBudget(
        n_trials=n_trials if n_trials is not None else (None if timeout else budget.trials),
        timeout=timeout if timeout is not None else (None if n_trials else budget.timeout),
    )


__all__ = ["Calibration", "Prediction", "predict", "trial_work", "calibrate", "probe", "admission_cap", "SearchBudget",
           "resolve_budget"]
