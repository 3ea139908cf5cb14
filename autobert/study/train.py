"""A frozen config's recipe trained again on its seeds: ``autobert train``, and the benchmarks' re-training of winners.

The same code path as a search trial: :func:`autobert.run.pipeline.run_seeds`
on the frozen parameters, replayed through a ``FixedTrial``; the frozen config
only removes the choices. The model card beside the saved model is the
command's to write (:mod:`autobert.reporting.model_card` sits above this
layer), from :attr:`TrainedRecipe.metrics`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autobert.config.schema import FrozenConfig, dump_yaml, relocate, write_atomic
from autobert.errors import AutobertError
from autobert.run.aggregate import mean_std
from autobert.run.data import TaskData
from autobert.run.pipeline import Progress, SeedsResult, metric_names, run_seeds
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
        try:
            write_atomic(output / "metrics.json", json.dumps(trained.metrics, indent=2) + "\n")
            write_atomic(output / "autobert.yaml", dump_yaml(relocate(frozen, output)))
        except OSError as exc:
            raise AutobertError(f"cannot write metrics.json and autobert.yaml to {output} ({exc.strerror or exc}); "
                                "the files there before are unchanged. Free some space or choose another --output"
                                ) from None
    return trained


__all__ = ["TrainedRecipe", "train_frozen", "check_output"]
