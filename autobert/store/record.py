"""What a trial stores on Optuna: one typed record, and the only engine module that reads or writes trial attributes.

Optuna keeps what autobert says about a trial as the trial's user attributes:
JSON values under string keys. Every key the engine writes or reads is a
field of :class:`TrialRecord`, stored under the key it has always had
(:data:`KEYS`); a stored study, a journal file and the benchmarks' records
keep reading the same way. A trial stored before a field existed reads it as
``None``. The one other writer is the plugin contract's ``TrialRun.note``
(which may not import the engine): a technique's note, under the technique's
own key, read here as :attr:`TrialRecord.notes`.

Reading::

    stored = TrialRecord.from_trial(trial)  # a FrozenTrial, a live trial or a FixedTrial
    if stored.is_finalist: ...

Writing goes field by field, as the run gets there (each field is one write
to the storage, in the order given)::

    record.store(trial, seconds=41.2)
    record.enqueue(opened, params, finalist_of=3, finalist_seed=7)  # a queued trial's record

A study's own attributes (its metric, calibration, warm start, portfolio) are
a :class:`StudyRecord`, read and written the same way.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any

#: Optuna's own system attribute on a trial queued again after its worker was lost: the lost trial's number.
FAILED_TRIAL = "failed_trial"
#: The journal storage's heartbeat (seconds since the epoch), a system attribute (autobert.store.storage).
HEARTBEAT = "autobert:heartbeat"


@dataclass(frozen=True)
class TrialRecord:
    """Everything autobert stores with a trial. ``None``: not stored (not yet, or not for this kind of trial)."""

    # -- where and how it ran -------------------------------------------------
    #: ``host:pid`` of the worker that ran it.
    worker: str | None = None
    #: The first seed it ran (a finalist: its fresh seed).
    seed: int | None = None
    #: Every seed it ran (an ablation arm: the ablation's seeds).
    seeds: list[int] | None = None
    #: What ``precision: auto`` resolved to where it ran (``fp32``, ``bf16``, ``fp16``); absent: fp32.
    precision: str | None = None

    # -- the planner's prediction, before it starts (autobert.strategy.planner) --
    predicted_seconds: float | None = None
    predicted_work: float | None = None
    #: ``{"technique: term": work}``, each term's predicted work (the zero terms left out).
    cost_terms: dict[str, float] | None = None
    #: Runs (seeds) the prediction is for.
    runs: int | None = None

    # -- why it runs: set when it is queued ----------------------------------
    #: A finalist run: the number of the search trial whose recipe it re-runs ...
    finalist_of: int | None = None
    #: ... and the fresh seed it runs on.
    finalist_seed: int | None = None
    #: A cheaper variant: the number of the trial refused for its cost.
    variant_of: int | None = None
    #: A warm-start recipe: its name, with what was cut when it is a cheaper variant (``"r1 (distillation off)"``).
    warm_start: str | None = None
    #: A portfolio evaluation: the candidate it scores ...
    candidate: str | None = None
    #: ... and its recipe as the candidate gave it.
    recipe: dict[str, Any] | None = None

    # -- its run --------------------------------------------------------------
    #: The training schedule's steps and warm-up steps (the first seed's), for the schedule-fraction pruner.
    total_steps: int | None = None
    warmup_steps: int | None = None
    #: Training steps the first seed ran.
    steps: int | None = None
    #: Wall-clock seconds of its run.
    seconds: float | None = None
    #: ``{"seed": value}``, in the order the seeds ran.
    seed_values: dict[str, float] | None = None
    #: Each validation metric's mean over the seeds.
    metrics: dict[str, float] | None = None
    #: ``{"seed": {"artifact", "fingerprint", "rows", "classes"}}``: each run's validation probabilities, stored in
    #: the study's artifact store (autobert.store.artifacts); rows in the order of the data fingerprint's split.
    #: With ``checkpoints: {"artifact", "count"}``, also those of its weights averaged over its last checkpoints.
    predictions: dict[str, dict[str, Any]] | None = None
    #: ``{"seed": artifact id}``: the runs whose trained weights are kept (for soups); an id removed when the run
    #: fell out of the kept ones is left out.
    weights: dict[str, str] | None = None
    #: ``{"seed": batch fit}`` where training ran out of memory and halved its batch.
    out_of_memory: dict[str, Any] | None = None

    # -- how it ended -----------------------------------------------------------
    fail_reason: str | None = None
    pruned_reason: str | None = None
    #: Stopped by the clock (a time budget's deadline); also its ``pruned_reason``.
    stopped_reason: str | None = None
    #: Refused by the planner or ended while queued: never started, and why.
    not_started: str | None = None

    # -- an ablation arm (autobert.ablation) --------------------------------------
    arm: str | None = None
    arm_key: str | None = None
    technique: str | None = None
    #: What the arm switches, ``{parameter: value}``.
    changes: dict[str, Any] | None = None
    #: The arm's recipe, stored as ``params``.
    arm_params: dict[str, Any] | None = field(default=None, metadata={"key": "params"})
    #: ``{"seed": {"value", "metrics", "test", "seconds", "steps"}}``.
    seed_results: dict[str, dict[str, Any]] | None = None

    # -- techniques' notes ------------------------------------------------------
    #: Every other user attribute: the notes techniques record with ``run.note(key, value)``.
    notes: dict[str, Any] = field(default_factory=dict)

    # -- Optuna's system attributes (read only: Optuna and the storage write them) --
    #: A re-run of a lost trial: the lost trial's number.
    retry_of: int | None = field(default=None, metadata={"system": FAILED_TRIAL})
    #: The journal storage's last heartbeat.
    heartbeat: float | None = field(default=None, metadata={"system": HEARTBEAT})

    @classmethod
    def from_trial(cls, trial: Any) -> "TrialRecord":
        """The record ``trial`` stores: a ``FrozenTrial``, a live ``optuna.Trial`` or a ``FixedTrial``.

        Attributes a study stored before they existed read as ``None``; keys
        that are no field are the techniques' :attr:`notes`.
        """
        values: dict[str, Any] = {}
        notes: dict[str, Any] = {}
        for key, value in (getattr(trial, "user_attrs", None) or {}).items():
            name = _FIELD_OF.get(key)
            if name is None:
                notes[key] = value
            else:
                values[name] = value
        system = getattr(trial, "system_attrs", None) or {}  # a live trial has none to read
        for name, key in SYSTEM_KEYS.items():
            if key in system:
                values[name] = system[key]
        return cls(**values, notes=notes)

    @property
    def is_finalist(self) -> bool:
        return self.finalist_of is not None

    @property
    def is_skipped(self) -> bool:
        """Never started: refused by the time budget, or ended while queued."""
        return self.not_started is not None

    @property
    def is_warm_start(self) -> bool:
        return self.warm_start is not None

    @property
    def reason(self) -> str:
        """Why it failed or was pruned (``""`` when it says nothing)."""
        return self.fail_reason or self.pruned_reason or ""

    def stored(self) -> dict[str, Any]:
        """``{stored key: value}`` of every user attribute set here (``None`` fields left out), notes last."""
        found = {KEYS[f.name]: getattr(self, f.name) for f in fields(self)
                 if f.name in KEYS and getattr(self, f.name) is not None}
        return {**found, **self.notes}

    def write(self, trial: Any) -> None:
        """Store every field set here on ``trial`` (``trial.set_user_attr``); see :func:`store`."""
        _write(trial, self.stored())


#: ``{field: stored user attribute key}``. The keys never change: stored studies are read with them.
KEYS: dict[str, str] = {f.name: f.metadata.get("key", f.name) for f in fields(TrialRecord)
                        if f.name != "notes" and "system" not in f.metadata}
#: ``{field: Optuna system attribute key}``, read only.
SYSTEM_KEYS: dict[str, str] = {f.name: f.metadata["system"] for f in fields(TrialRecord) if "system" in f.metadata}
_FIELD_OF = {key: name for name, key in KEYS.items()}


def _stored_pairs(fields_: dict[str, Any]) -> dict[str, Any]:
    """``{stored key: value}`` for keyword fields, in their order; an unknown field is a TypeError."""
    TrialRecord(**fields_)  # the dataclass refuses a field it does not have
    stored = {}
    for name, value in fields_.items():
        if name == "notes":
            stored.update(value)
        elif name in KEYS:
            stored[KEYS[name]] = value
        else:
            raise TypeError(f"{name} is an Optuna system attribute; autobert does not write it on a trial")
    return stored


def _write(trial: Any, stored: dict[str, Any]) -> None:
    setter = getattr(trial, "set_user_attr", None)
    if setter is None:  # not a trial that stores anything (a stand-in): nothing to keep
        return
    for key, value in stored.items():
        setter(key, value)


def store(trial: Any, **fields_: Any) -> None:
    """Store these fields of ``trial``'s record, one user attribute each, in the order given.

    A live trial writes them to its storage; a ``FixedTrial`` (a replay) keeps
    them in memory; an object without ``set_user_attr`` keeps nothing.
    ``notes={key: value}`` stores techniques' notes under their own keys.

    Raises:
        TypeError: a name that is no field of :class:`TrialRecord`.
    """
    _write(trial, _stored_pairs(fields_))


def store_by_id(storage: Any, trial_id: int, **fields_: Any) -> None:
    """:func:`store` through an Optuna storage, for a trial known by its id (a queued or a lost one)."""
    for key, value in _stored_pairs(fields_).items():
        storage.set_trial_user_attr(trial_id, key, value)


def store_heartbeat(storage: Any, trial_id: int, when: float) -> None:
    """The journal storage's heartbeat of a running trial (:attr:`TrialRecord.heartbeat`)."""
    storage.set_trial_system_attr(trial_id, HEARTBEAT, when)


def enqueue(opened: Any, params: dict[str, Any], **fields_: Any) -> None:
    """Queue a trial of ``params`` on the study ``opened`` whose record starts with these fields (``None`` ones left out)."""
    opened.enqueue_trial(params, user_attrs={k: v for k, v in _stored_pairs(fields_).items() if v is not None})


def without_record(trial: Any) -> Any:
    """A copy of the frozen ``trial`` with no user attributes (its system attributes kept)."""
    trial = copy.copy(trial)
    trial.user_attrs = {}
    return trial


# ---------------------------------------------------------------------------
# The study's own record
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyRecord:
    """What autobert stores with a study (Optuna's study user attributes). ``None``: not stored."""

    #: The metric the study optimises; a study cannot change it.
    metric: str | None = None
    #: The throughput probe's ``{"overhead": s, "seconds_per_pass": s}``, measured once per study.
    calibration: dict[str, float] | None = None
    #: What the warm start did: ``{"source", "enqueued", "adjusted", "skipped"}``.
    warm_start: dict[str, Any] | None = None
    #: A portfolio evaluation's task study: the evaluation's name ...
    portfolio: str | None = None
    #: ... its task ...
    task: str | None = None
    #: ... and the task's rows per split.
    rows: dict[str, int] | None = None
    #: The combination chosen at the end of the search (autobert.study.combine): kind, members, weights, values.
    combination: dict[str, Any] | None = None

    @classmethod
    def from_study(cls, study: Any) -> "StudyRecord":
        """The record of an ``optuna.Study``, a ``FrozenStudy`` or a study summary; absent attributes read ``None``."""
        attrs = getattr(study, "user_attrs", None) or {}
        return cls(**{f.name: attrs[f.name] for f in fields(cls) if f.name in attrs})


def store_study(study: Any, **fields_: Any) -> None:
    """Store these fields of the study's record (``study.set_user_attr``), in the order given."""
    StudyRecord(**fields_)  # an unknown name is a TypeError
    for name, value in fields_.items():
        study.set_user_attr(name, value)


__all__ = ["TrialRecord", "StudyRecord", "KEYS", "SYSTEM_KEYS", "FAILED_TRIAL", "HEARTBEAT", "store", "store_by_id",
           "store_heartbeat", "store_study", "enqueue", "without_record"]
