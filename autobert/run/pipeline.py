"""One trial, end to end: data -> further pretraining -> fine-tuning -> evaluation.

A search trial and ``autobert train`` both call :func:`run_seeds`, which runs
:func:`run_pipeline` (one run) once per seed; the only difference is the trial
object (a live ``optuna.Trial`` or a ``FixedTrial`` replaying a frozen config).
With several seeds the recipe is drawn from the trial once and every seed
replays it through a ``FixedTrial``, so each seed trains the very same recipe.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import optuna
import torch
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from autobert.run.aggregate import aggregate, mean_std
from autobert.run.clock import check_deadline
from autobert.config.schema import StudyConfig
from autobert.permissions import follow_umask
from autobert.run.data import TaskData
from autobert.run.device import free_accelerator_memory, is_out_of_memory, resolve_precision, trainer_arguments
from autobert.errors import AutobertError, PluginError, TrialFailed
from autobert.run.plugin_manager import PluginManager, get_plugin_manager
from autobert.config.settings import declared_settings, resolve_settings
from autobert.run.models import load_tokenizer, resolve_model
from autobert.config.space import SearchSpace
from autobert.store import record
from autobert.trial_run import TrialRun

__all__ = ["run_pipeline", "run_seeds", "run_subtrial"]

TOKENIZER_KEYS = ("input_ids", "attention_mask", "token_type_ids")


class Progress(Protocol):
    """What the pipeline tells whoever shows progress (the CLI's rich display)."""

    def trial_started(self, number: int, total_steps: int) -> None: ...
    def step(self, global_step: int) -> None: ...
    def evaluated(self, global_step: int, value: float) -> None: ...


@dataclass
class TrialResult:
    value: float
    metrics: dict[str, float]
    test_metrics: dict[str, float] | None
    params: dict[str, Any]
    seconds: float
    steps: int
    # Set when the batch was halved to fit in memory (see BatchFit.record).
    batch_fit: dict[str, int] | None = None
    # The last evaluation's class probabilities (validation rows x classes), and the test split's when scored:
    # what the combination step (autobert.study.combine) ensembles. None where the model's output has no logits.
    probabilities: np.ndarray | None = None
    test_probabilities: np.ndarray | None = None
    # The run's weights averaged over its last checkpoints, scored the same way (see TailAverage); None unless asked.
    averaged: "Averaged | None" = None


@dataclass(frozen=True)
class Averaged:
    """A run's weights averaged over its last ``checkpoints`` checkpoints (``combine.kind: checkpoints``): its class
    probabilities on validation (and test), which the combination step and replay score like any run's."""

    checkpoints: int
    probabilities: np.ndarray | None
    test_probabilities: np.ndarray | None


def tail_steps(total: int, count: int) -> list[int]:
    """The steps whose weights :class:`TailAverage` averages: ``count`` evenly spaced over the second half of
    ``total`` steps, the last step included (fewer when the run has fewer steps than that)."""
    return sorted({total - round(j * total / (2 * count)) for j in range(count)} - {0})


class TailAverage(TrainerCallback):
    """Keeps the running sum of the model's floating-point weights at :func:`tail_steps`; one extra copy of them.

    Averaging the tail of training (stochastic weight averaging, Izmailov et al. 2018; "latest weight averaging",
    Kaddour 2022) finds a flatter point than the last step, at the cost of one validation pass for the average.
    The steps are fixed by the schedule, not chosen on validation: the held-out rows the combination step checks
    with stay unseen.
    """

    def __init__(self, count: int):
        self.count = count
        self.steps: set[int] = set()
        self.total: dict[str, torch.Tensor] | None = None
        self.taken = 0

    def on_train_begin(self, args, state, control, **kw):
        self.steps, self.total, self.taken = set(tail_steps(state.max_steps, self.count)), None, 0

    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step in self.steps and model is not None:
            self.add(model)

    @torch.no_grad()
    def add(self, model: torch.nn.Module) -> None:
        weights = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
        if self.total is None:
            self.total = {k: v.detach().to(torch.float32, copy=True) for k, v in weights.items()}
        else:
            for k, v in weights.items():
                self.total[k] += v.detach().to(torch.float32)
        self.taken += 1

    @torch.no_grad()
    def load_into(self, model: torch.nn.Module) -> None:
        """Replace ``model``'s floating-point weights with their average over the checkpoints taken."""
        if not self.taken:
            raise ValueError("no checkpoint was taken: the run ended before the second half of its steps")
        state = model.state_dict()
        for k, total in self.total.items():
            state[k].copy_((total / self.taken).to(state[k].dtype))

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """``model`` with the average's weights inside the block, and its own again after it (the run's model is
        what the caller and the techniques hold)."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.total}
        self.load_into(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                state = model.state_dict()
                for k, value in own.items():
                    state[k].copy_(value)


class _Collator:
    """Pads the tokenizer's fields dynamically; stacks any extra columns."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        token_part = [{k: f[k] for k in TOKENIZER_KEYS if k in f} for f in features]
        batch = dict(self.tokenizer.pad(token_part, return_tensors="pt"))
        for key in features[0]:
            if key not in TOKENIZER_KEYS:
                batch[key] = torch.tensor(np.array([f[key] for f in features]))
        return batch


class _AutobertTrainer(Trainer):
    """The transformers Trainer with the optimizer and the loss asked of the hooks."""

    def __init__(self, *a, pm: PluginManager, run: TrialRun, last: dict[str, Any] | None = None, **kw):
        super().__init__(*a, **kw)
        self.last = {} if last is None else last
        if self.label_smoother is not None:
            raise PluginError(
                "TrainingArguments.label_smoothing_factor has no effect here: autobert computes the loss "
                "through the autobert_compute_loss hook; smooth it in a loss wrapper instead "
                "(see examples/autobert-label-smoothing)"
            )
        self.pm = pm
        self.run = run
        # compute_loss returns each batch's mean loss (it ignores num_items_in_batch), so the Trainer must divide
        # it by the accumulation steps; with a model whose forward takes **kwargs it otherwise would not, and
        # gradient accumulation (the out-of-memory fallback) would multiply the gradients instead of averaging.
        self.model_accepts_loss_kwargs = False
        self._model_keys = set(inspect.signature(self.model.forward).parameters) | {"labels"}

    def _get_eval_sampler(self, eval_dataset):
        """Shortest rows first (the least padding), and the order kept, so that the evaluation's predictions are put
        back in the split's row order (see _metrics_fn): the Trainer's own length grouping for evaluation shuffles
        them, and a run's stored probabilities must line up with the rows."""
        sampler = super()._get_eval_sampler(eval_dataset)
        if sampler is None or "input_ids" not in getattr(eval_dataset, "column_names", ()):
            self.last.pop("order", None)
            return sampler
        order = np.argsort([len(ids) for ids in eval_dataset["input_ids"]], kind="stable")
        self.last["order"] = order
        return order.tolist()

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = model or self.model
            groups = self.pm.hook.autobert_optimizer_param_groups(model=model, args=self.args, run=self.run)
            groups = [g for g in groups if g["params"]]
            self.optimizer = torch.optim.AdamW(
                groups, lr=self.args.learning_rate,
                betas=(self.args.adam_beta1, self.args.adam_beta2), eps=self.args.adam_epsilon,
                weight_decay=self.args.weight_decay,
            )
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        model_inputs = {k: v for k, v in inputs.items() if k in self._model_keys}
        extras = {k: v for k, v in inputs.items() if k not in self._model_keys}
        outputs = model(**model_inputs)
        if not model.training:
            loss = outputs.loss
        else:
            loss = self.pm.hook.autobert_compute_loss(
                model=model, inputs=model_inputs, outputs=outputs, extras=extras, run=self.run
            )
            if not torch.isfinite(loss).all():
                raise TrialFailed(
                    f"the training loss became {loss.item()} at step {self.state.global_step + 1}; "
                    "lower the learning rate or narrow its range"
                )
        return (loss, outputs) if return_outputs else loss


class _Reporter(TrainerCallback):
    """Reports each evaluation to the trial (for the pruner) and to the progress display."""

    def __init__(self, trial, metric: str, progress: Progress | None):
        self.trial, self.metric, self.progress = trial, metric, progress
        self.history: list[tuple[int, float]] = []

    def on_train_begin(self, args, state, control, **kw):
        # The schedule, so that a pruner can compare trials at the same share of their own (autobert.strategy.pruners).
        record.store(self.trial, total_steps=state.max_steps, warmup_steps=args.get_warmup_steps(state.max_steps))
        if self.progress:
            self.progress.trial_started(getattr(self.trial, "number", -1), state.max_steps)

    def on_step_end(self, args, state, control, **kw):
        check_deadline()  # a time-budgeted search stops a trial at its deadline (autobert.strategy.budget)
        if self.progress:
            self.progress.step(state.global_step)

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        value = float(metrics[f"eval_{self.metric}"])
        self.history.append((state.global_step, value))
        if self.progress:
            self.progress.evaluated(state.global_step, value)
        self.trial.report(value, state.global_step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {state.global_step} with {self.metric}={value:.4f}")


def _set_seed(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def _tokenize(datasets: dict[str, Any], pm: PluginManager, run: TrialRun) -> dict[str, Any]:
    def encode(batch):
        enc = pm.hook.autobert_tokenize(
            texts=batch["text"], tokenizer=run.tokenizer, max_length=run.study.max_length, run=run
        )
        return {k: v for k, v in dict(enc).items() if k in TOKENIZER_KEYS}

    # Nothing is cached (in memory, never reloaded), so a fresh fingerprint spares datasets from
    # hashing ``encode`` and everything it closes over (the plugin manager, the run): seconds per trial.
    return {
        split: ds.map(encode, batched=True, remove_columns=["text"], load_from_cache_file=False,
                      keep_in_memory=True, new_fingerprint=uuid.uuid4().hex).rename_column("label", "labels")
        for split, ds in datasets.items()
    }


def metric_functions(pm: PluginManager) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """``{name: fn(logits, labels)}``: every metric the techniques register (``autobert_metrics``)."""
    registry: dict[str, Any] = {}
    for found in pm.hook.autobert_metrics():
        registry.update(found or {})
    return registry


def probabilities_of(logits: Any) -> np.ndarray | None:
    """The softmax of a (rows x classes) logits array, in float64; None for any other shape."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] < 2:
        return None
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _metrics_fn(pm: PluginManager, last: dict[str, Any] | None = None):
    registry = metric_functions(pm)

    def compute(prediction) -> dict[str, float]:
        logits = prediction.predictions
        logits, labels = np.asarray(logits[0] if isinstance(logits, tuple) else logits), np.asarray(prediction.label_ids)
        order = (last or {}).get("order")
        if order is not None and len(order) == len(logits):  # back in the split's row order (_get_eval_sampler)
            logits, labels = logits[np.argsort(order)], labels[np.argsort(order)]
        if last is not None:
            last["logits"] = logits  # the latest evaluation's: the run keeps its probabilities
        return {name: fn(logits, labels) for name, fn in registry.items()}

    return compute


def metric_names(pm: PluginManager) -> list[str]:
    return sorted({name for found in pm.hook.autobert_metrics() for name in (found or {})})


def draw_space(study: StudyConfig, trial: Any, pm: PluginManager) -> SearchSpace:
    """Ask every technique's search space for its parameters, drawn from ``trial``: the space, with
    ``params`` (the values) and ``specs`` (each one's effective spec)."""
    space = SearchSpace(trial, pm.techniques, study.overrides, hooks=pm.hook)
    pm.hook.autobert_search_space(space=space)
    return space


def draw_params(study: StudyConfig, trial: Any, pm: PluginManager) -> dict[str, Any]:
    """Ask every technique's search space for its parameters, drawn from ``trial``."""
    return dict(draw_space(study, trial, pm).params)


def run_pipeline(
    study: StudyConfig,
    trial: Any,
    pm: PluginManager,
    data: TaskData,
    *,
    seed: int | None = None,
    save_to: Path | None = None,
    evaluate_test: bool = False,
    progress: Progress | None = None,
    settings: dict[str, Any] | None = None,
    keep_model: Callable[[float], Path | None] | None = None,
    average_checkpoints: int = 0,
    save_averaged_to: Path | None = None,
) -> TrialResult:
    """Run one recipe once: the trial's parameters are drawn (or replayed) here.

    Args:
        study: The study or frozen config.
        trial: ``optuna.Trial`` during search; ``optuna.trial.FixedTrial`` to replay.
        pm: The plugin manager (defaults and enabled techniques).
        data: The task's loaded splits.
        seed: The seed of this run (default: the study's ``seed``).
        save_to: If given, save the trained model and tokenizer there.
        evaluate_test: Also score the test split (never during search).
        progress: Receives step and evaluation updates.
        settings: The techniques' settings (default: the study's, see
            ``autobert_settings``); a sub-trial passes its parent's.
        keep_model: Asked with the run's validation value once it is
            trained: a folder to save the model into as well (the search keeps
            the best runs' weights for soups), or None.

    Raises:
        optuna.TrialPruned: the pruner stopped the trial.
        TrialFailed: the loss diverged, or a technique could not run.
    """

    start = time.perf_counter()
    space = draw_space(study, trial, pm)
    params = dict(space.params)
    precision = resolve_precision(study.precision)  # ConfigError, with the fix, where this machine cannot run it

    checkpoint = resolve_model(study)
    study_dir = study.study_dir
    study_dir.mkdir(parents=True, exist_ok=True)
    study.cache_path.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"trial-{getattr(trial, 'number', 'fixed')}-", dir=study_dir))
    run = TrialRun(
        study=study, params=params, seed=study.seed if seed is None else seed, tokenizer=load_tokenizer(checkpoint),
        label_names=list(data.label_names), workdir=workdir, cache_dir=study.cache_path, trial=trial,
        settings=resolve_settings(study, declared_settings(pm)) if settings is None else dict(settings),
        hooks=pm.hook, precision=precision, techniques=tuple(pm.techniques), plugin_manager=pm,
        space=dict(space.specs), precision_arguments=trainer_arguments(precision),
    )
    last: dict[str, Any] = {}
    try:
        _set_seed(run.seed)
        datasets = {split: ds for split, ds in data.splits.items()}
        pm.hook.autobert_modify_datasets(datasets=datasets, run=run)
        checkpoint = pm.hook.autobert_further_pretrain(checkpoint=checkpoint, datasets=datasets, run=run) or checkpoint
        encoded = _tokenize(datasets, pm, run)

        fit = BatchFit(batch_parameters(run.params))
        while True:  # once, unless the batch does not fit in memory (see BatchFit)
            _set_seed(run.seed)
            model = pm.hook.autobert_build_model(checkpoint=checkpoint, run=run)
            pm.hook.autobert_modify_model(model=model, run=run)

            args = _training_arguments(run)
            pm.hook.autobert_training_arguments(args=args, run=run)
            fit.apply(args)
            if "eval_steps" not in args:
                args["eval_steps"] = _eval_steps(len(encoded["train"]), args, study.evaluations_per_epoch)
            if args.get("logging_strategy") == "steps" and "logging_steps" not in args:
                args["logging_steps"] = max(1, args["eval_steps"] // 4)
            training_args = TrainingArguments(**args)

            reporter = _Reporter(trial, study.metric, progress)
            tail = TailAverage(average_checkpoints) if average_checkpoints else None
            callbacks = [reporter] + ([tail] if tail else [])
            for found in pm.hook.autobert_trainer_callbacks(run=run):
                callbacks.extend(found or [])
            trainer = _AutobertTrainer(
                model=model, args=training_args, train_dataset=encoded["train"], eval_dataset=encoded["validation"],
                data_collator=_Collator(run.tokenizer), compute_metrics=_metrics_fn(pm, last), callbacks=callbacks,
                pm=pm, run=run, last=last,
            )
            # autobert shows its own progress; the trainer's printer would repeat it.
            trainer.remove_callback(PrinterCallback)
            _tensorboard_into(trainer, run)
            try:
                trainer.train()
                break
            except Exception as exc:
                if not fit.retry_after(exc, args):
                    raise
                del trainer, model

                free_accelerator_memory()
        if not reporter.history or reporter.history[-1][0] != trainer.state.global_step:
            trainer.evaluate()
        metrics = _last_evaluation(trainer.state.log_history)
        value = reporter.history[-1][1]
        probabilities = probabilities_of(last["logits"]) if "logits" in last else None
        test_metrics = test_probabilities = None
        if evaluate_test and "test" in encoded:
            test_metrics = {
                k.removeprefix("test_"): v
                for k, v in trainer.predict(encoded["test"], metric_key_prefix="test").metrics.items()
                if k.removeprefix("test_") in metric_names(pm)
            }
            test_probabilities = probabilities_of(last["logits"])
        if save_to is not None:
            save_model(trainer, run.tokenizer, Path(save_to))
        kept = keep_model(value) if keep_model is not None and math.isfinite(value) else None
        if kept is not None:
            save_model(trainer, run.tokenizer, Path(kept))
        if not math.isfinite(value):
            raise TrialFailed(f"the validation {study.metric} is {value}")
        averaged = None
        if tail is not None and tail.taken:
            # Last, once the run's own model has been scored and saved; the model is its own again after it.
            with tail.applied(trainer.model):
                averaged = Averaged(tail.taken, *_predict_averaged(trainer, encoded, last, evaluate_test))
                if save_averaged_to is not None:
                    save_model(trainer, run.tokenizer, Path(save_averaged_to))
        return TrialResult(
            value=value, metrics=metrics, test_metrics=test_metrics, params=dict(run.params),
            seconds=time.perf_counter() - start, steps=trainer.state.global_step, batch_fit=fit.record(),
            probabilities=probabilities, test_probabilities=test_probabilities, averaged=averaged,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _predict_averaged(trainer: Trainer, encoded: dict[str, Any], last: dict[str, Any],
                      evaluate_test: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The averaged model's validation (and test) probabilities, through the trainer's prediction loop."""
    found = []
    for split in ("validation", "test"):
        if split == "validation" or (evaluate_test and split in encoded):
            trainer.predict(encoded[split], metric_key_prefix=split)
            found.append(probabilities_of(last["logits"]) if "logits" in last else None)
        else:
            found.append(None)
    return found[0], found[1]


def _subtrial_manager(run: TrialRun, techniques: tuple[str, ...] | None) -> PluginManager:
    """The plugin manager of a sub-trial: the trial's own, or the part of it running ``techniques``."""
    pm = run.plugin_manager
    if pm is None:  # a run built by hand, outside a plugin manager (a test): the installed techniques it names

        return get_plugin_manager(only=list(run.techniques if techniques is None else techniques))
    return pm if techniques is None else pm.subset(techniques)


def subtrial_settings(run: TrialRun, techniques: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The settings :func:`run_subtrial` with ``techniques`` trains with: the trial's, for those techniques."""
    pm = _subtrial_manager(run, techniques)
    if techniques is None and run.plugin_manager is not None:
        return dict(run.settings)
    return resolve_settings(run.study, declared_settings(pm))


def run_subtrial(
    run: TrialRun,
    datasets: dict[str, Any],
    *,
    params: dict[str, Any],
    save_to: Path | None = None,
    seed: int | None = None,
    techniques: tuple[str, ...] | None = None,
) -> TrialResult:
    """Run a recipe inside a trial: the service behind :func:`autobert.services.train_model`.

    The trial's own plugin manager (or the part of it that runs
    ``techniques``) replays ``params`` through a ``FixedTrial`` numbered like
    the trial, so nothing reaches the trial's pruner or storage.
    """
    from optuna.trial import FixedTrial

    pm = _subtrial_manager(run, techniques)
    splits = dict(datasets)
    splits.setdefault("validation", splits["train"])
    data = TaskData(splits=splits, label_names=list(run.label_names), fingerprints={})
    settings = subtrial_settings(run, techniques)
    seed = run.seed if seed is None else seed
    # The recipe is given whole, so it replaces the study's parameter overrides: each parameter is fixed at its
    # value (a teacher's `distillation.enabled: False` where the study fixes it on, a task model's learning rate
    # outside finetune's range), so nothing contradicts it. The settings are kept.
    declared = declared_settings(pm)
    sections = {name: {key: value for key, value in section.items() if f"{name}.{key}" in declared}
                for name, section in run.study.techniques.items()}
    for name, value in params.items():
        technique, _, short = name.partition(".")
        sections.setdefault(technique, {})[short] = value
    study = run.study.model_copy(update={"seed": seed, "techniques": sections})
    return run_pipeline(study, FixedTrial(dict(params), number=getattr(run.trial, "number", 0)), pm, data,
                        seed=seed, save_to=save_to, settings=settings)


def batch_parameters(params: dict[str, Any]) -> str:
    """The recipe's batch-size parameters by name (``<technique>.batch_size``), for an out-of-memory message."""
    names = sorted(name for name in params if name.rpartition(".")[2] == "batch_size")
    return " or ".join(names) or "the batch-size parameter"


class BatchFit:
    """Halves the per-device batch of a run that ran out of memory, keeping the effective batch.

    Each retry trains from the start with half the per-device batch and twice
    the gradient accumulation, so the optimizer sees the same batches of the
    same size (the recipe is unchanged; the sums are only split in two).
    It stops at the floor: a per-device batch of 1, or an odd one, which
    cannot be halved exactly; the run then fails with the out-of-memory hint.
    """

    def __init__(self, parameters: str = "the batch-size parameter"):
        self.parameters = parameters  # what the study file narrows, for the message (batch_parameters)
        self.halvings = 0
        self.requested: int | None = None
        self.batch: int | None = None
        self.accumulation: int | None = None

    def apply(self, args: dict[str, Any]) -> None:
        """Scale ``args`` (the Trainer's keywords, as the hooks left them) by the halvings so far."""
        self.requested = int(args.get("per_device_train_batch_size", 8))
        accumulation = int(args.get("gradient_accumulation_steps", 1))
        factor = 2 ** self.halvings
        if self.halvings:
            args["per_device_train_batch_size"] = self.requested // factor
            args["gradient_accumulation_steps"] = accumulation * factor
        self.batch, self.accumulation = self.requested // factor, accumulation * factor

    def retry_after(self, exc: BaseException, args: dict[str, Any]) -> bool:
        """Whether to train again at half the batch after ``exc``.

        Raises:
            TrialFailed: out of memory at the floor, saying what was tried and what to do.
        """

        if not is_out_of_memory(exc):
            return False
        if self.batch is None or self.batch <= 1 or self.batch % 2:
            tried = (f"after halving the per-device batch from {self.requested} to {self.batch} "
                     f"(gradient accumulation {self.accumulation})" if self.halvings
                     else f"at a per-device batch of {self.batch}, which cannot be halved exactly")
            raise TrialFailed(
                f"out of memory {tried} ({type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}); "
                f"lower max_length, or narrow {self.parameters} to smaller (even) sizes"
            ) from exc
        self.halvings += 1
        return True

    def record(self) -> dict[str, int] | None:
        """``{"per_device_train_batch_size", "gradient_accumulation_steps", "requested_batch_size", "halvings"}``
        when the batch was halved, else None."""
        if not self.halvings:
            return None
        return {"per_device_train_batch_size": self.batch, "gradient_accumulation_steps": self.accumulation,
                "requested_batch_size": self.requested, "halvings": self.halvings}


def _tensorboard_into(trainer: Trainer, run: TrialRun) -> None:
    """Point the Trainer's TensorBoard callback at ``<study dir>/tensorboard/<run name>``.

    Its default is inside the trainer's output folder, which is the trial's
    temporary folder, removed when the trial ends.
    """
    for callback in trainer.callback_handler.callbacks:
        if type(callback).__name__ == "TensorBoardCallback":
            callback.logging_dir = str(run.study.study_dir / "tensorboard" / trainer.args.run_name)


def run_name(run: TrialRun) -> str:
    """``<study>-trial-<number>-seed-<seed>``: the run's name in logging integrations."""
    number = getattr(run.trial, "number", None)
    return f"{run.study.name}-trial-{'fixed' if number is None else number}-seed-{run.seed}"


def save_model(trainer: Trainer, tokenizer: Any, folder: Path) -> None:
    """Save the model and tokenizer into ``folder`` so that a failed save changes nothing there (:func:`save_folder`).

    Raises:
        AutobertError: the files could not be written, saying why.
    """

    def write(staging: Path) -> None:
        trainer.save_model(str(staging))
        tokenizer.save_pretrained(str(staging))

    save_folder(folder, write)


def save_folder(folder: Path, write: Callable[[Path], None], what: str = "the model") -> None:
    """Let ``write(staging)`` fill a temporary folder inside ``folder``, then move its files in once complete.

    A full disk (or a crash) while writing leaves the files from before as they were.

    Raises:
        AutobertError: the files could not be written, saying why (``what`` names them).
    """
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=folder))
    try:
        write(staging)
        for item in staging.iterdir():  # the staging folder is mkdtemp's 0700: its contents get the umask's modes
            follow_umask(item)
            if item.is_dir() and (folder / item.name).is_dir():
                shutil.rmtree(folder / item.name)
            os.replace(item, folder / item.name)
    except OSError as exc:
        raise AutobertError(
            f"cannot save {what} to {folder} ({exc.strerror or exc}); the files there before are unchanged. "
            "Free some space or choose another --output"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------------
# Several seeds
# ---------------------------------------------------------------------------


@dataclass
class SeedsResult:
    """One recipe run once per seed; ``value`` is the study's aggregate of the seeds' values."""

    seeds: list[int]
    results: list[TrialResult]
    value: float

    @property
    def seed_values(self) -> dict[str, float]:
        """``{"0": value, ...}`` (string keys: what Optuna's JSON user attributes keep)."""
        return {str(s): r.value for s, r in zip(self.seeds, self.results)}

    @property
    def mean_std(self) -> tuple[float, float]:
        return mean_std([r.value for r in self.results])

    @property
    def first(self) -> TrialResult:
        return self.results[0]


def run_seeds(
    study: StudyConfig,
    trial: Any,
    pm: PluginManager,
    data: TaskData,
    *,
    seeds: list[int] | None = None,
    save_to: Path | None = None,
    evaluate_test: bool = False,
    progress: Progress | None = None,
    after_seed: Callable[[int, int, list[TrialResult]], None] | None = None,
    keep_model: Callable[[int, float], Path | None] | None = None,
    after_run: Callable[[int, TrialResult], None] | None = None,
    average_checkpoints: int = 0,
) -> SeedsResult:
    """Run one recipe once per seed (default: the study's seeds) and aggregate.

    With one seed this is :func:`run_pipeline` on ``trial`` itself, so pruners
    over training steps see every evaluation. With several, the parameters are
    drawn from ``trial`` once and each seed replays them through a
    ``FixedTrial`` (which reports nothing): the trial's steps are then the seeds,
    and ``after_seed(index, seed, results_so_far)`` is where a caller reports
    them (and may raise ``optuna.TrialPruned``). Only the first seed's model is
    saved to ``save_to``. ``keep_model(seed, value)`` may give a folder for any
    seed's model (see :func:`run_pipeline`); ``after_run(seed, result)`` is
    called once each seed has trained, before ``after_seed``. ``average_checkpoints``: see :func:`run_pipeline`.
    """

    seeds = list(seeds or study.run_seeds)
    results: list[TrialResult] = []
    # What `auto` became here; the frozen config records it, so a replay trains in the same precision.
    record.store(trial, precision=resolve_precision(study.precision))
    def keep_for(seed: int) -> Callable[[float], Path | None] | None:
        return None if keep_model is None else (lambda value: keep_model(seed, value))

    if len(seeds) == 1:
        results.append(run_pipeline(study, trial, pm, data, seed=seeds[0], save_to=save_to,
                                    evaluate_test=evaluate_test, progress=progress, keep_model=keep_for(seeds[0]),
                                    average_checkpoints=average_checkpoints))
        if after_run is not None:
            after_run(seeds[0], results[-1])
    else:
        params = draw_params(study, trial, pm)
        number = getattr(trial, "number", 0)
        for index, seed in enumerate(seeds):
            replay = optuna.trial.FixedTrial(params, number=number)
            results.append(run_pipeline(study, replay, pm, data, seed=seed, save_to=save_to if index == 0 else None,
                                        evaluate_test=evaluate_test, progress=progress, keep_model=keep_for(seed),
                                        average_checkpoints=average_checkpoints))
            if after_run is not None:
                after_run(seed, results[-1])
            if after_seed is not None:
                after_seed(index, seed, results)
    fits = {str(s): r.batch_fit for s, r in zip(seeds, results) if r.batch_fit}
    if fits:
        record.store(trial, out_of_memory=fits)
    value = aggregate([r.value for r in results], study.aggregate, study.aggregate_k, study.direction)
    return SeedsResult(seeds=seeds, results=results, value=value)


def _last_evaluation(log_history: list[dict]) -> dict[str, float]:
    """The last evaluation's metrics without the ``eval_`` prefix."""
    for entry in reversed(log_history):
        if any(k.startswith("eval_") for k in entry):
            return {k.removeprefix("eval_"): v for k, v in entry.items() if k.startswith("eval_") and isinstance(v, (int, float))}
    return {}


def _training_arguments(run: TrialRun) -> dict[str, Any]:
    """What the study fixes; techniques fill in the rest through the hook."""
    return {
        "output_dir": str(run.workdir / "trainer"),
        "seed": run.seed,
        "eval_strategy": "steps",
        "save_strategy": "no",
        **_reporting(run),
        **run.precision_arguments,
        "disable_tqdm": True,
        "remove_unused_columns": False,
        "per_device_eval_batch_size": 64,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": torch.cuda.is_available(),
    }


def _reporting(run: TrialRun) -> dict[str, Any]:
    """The study's ``report_to`` as Trainer keywords; logging is on only when something receives it."""
    wanted = run.study.report_to
    targets = [t for t in ([wanted] if isinstance(wanted, str) else list(wanted)) if t != "none"]
    if not targets:
        return {"report_to": "none", "logging_strategy": "no"}
    return {"report_to": targets, "run_name": run_name(run), "logging_strategy": "steps"}


def reporting_problems(report_to: str | list[str]) -> list[str]:
    """Why the study's ``report_to`` cannot run here (an unknown or uninstalled integration), as problem lines."""
    from transformers.integrations import INTEGRATION_TO_CALLBACK, get_available_reporting_integrations

    wanted = [report_to] if isinstance(report_to, str) else list(report_to)
    problems = []
    for name in wanted:
        if name in ("none", "all"):
            continue
        if name not in INTEGRATION_TO_CALLBACK:
            problems.append(f"report_to: {name!r} is not a logging integration of the Trainer; use none or one of "
                            f"{', '.join(sorted(INTEGRATION_TO_CALLBACK))}")
        elif name not in get_available_reporting_integrations():
            problems.append(f"report_to: {name} is not installed here; pip install {name.replace('_', '-')}, or "
                            "set report_to: none")
    return problems


def _eval_steps(n_train: int, args: dict[str, Any], per_epoch: int) -> int:
    batch = args.get("per_device_train_batch_size", 8) * args.get("gradient_accumulation_steps", 1)
    steps_per_epoch = max(1, math.ceil(n_train / batch))
    return max(1, math.ceil(steps_per_epoch / per_epoch))


def quiet_transformers() -> None:
    """Silence the libraries' chatter; autobert shows its own progress."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    logging.getLogger("optuna").setLevel(logging.WARNING)
