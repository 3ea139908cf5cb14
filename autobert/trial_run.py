"""The run object: everything a hook may know about the trial in progress.

Light on purpose (no torch, no transformers): hookspecs, the public services
and every technique import it. The engine (:mod:`autobert.run.pipeline`) builds
one per run of a trial and hands it to the hooks as ``run``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from autobert.stage_cache import StageCache


@dataclass
class TrialRun:
    """Everything a hook may need about the trial in progress.

    Attributes:
        study: The study (or frozen) config.
        params: ``{"finetune.learning_rate": ..., ...}``: this trial's values.
        seed: The seed the trial runs with.
        tokenizer: The study model's tokenizer.
        label_names: Label names by id.
        workdir: A private folder, removed when the trial ends.
        cache_dir: A folder shared by all trials of the study.
        trial: The Optuna trial (``FixedTrial`` when replaying). Techniques
            record notes with :meth:`note`, never through the trial itself.
        metadata: Free-form notes techniques pass to each other within the trial.
        settings: ``{"technique.setting": value}``: every enabled technique's
            settings (see ``autobert_settings``), paths resolved.
        hooks: The plugin manager's hook relay (``pm.hook``), for a technique
            that offers an extension point of its own
            (``run.hooks.autobert_augmenters(settings=run.settings)``).
        precision: What the study's ``precision`` resolved to on this machine:
            ``fp32``, ``bf16`` or ``fp16``. A technique that runs a ``Trainer``
            of its own passes :attr:`precision_arguments` to it.
        techniques: The names of the techniques this trial runs with (the
            enabled ones), in registration order.
        plugin_manager: The trial's plugin manager. The engine's: a technique
            runs a sub-trial with :func:`autobert.services.train_model`, which
            uses it, instead of touching it.
        space: ``{"further_pretraining.task_steps": ParamSpec, ...}``: the
            effective spec (:class:`autobert.config.space.ParamSpec`, after the study
            file's overrides) of every parameter this trial drew, e.g. the
            range a technique saves intermediate results for. Techniques never
            read the overrides themselves.
    """

    study: Any
    params: dict[str, Any]
    seed: int
    tokenizer: Any
    label_names: list[str]
    workdir: Path
    cache_dir: Path
    trial: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    hooks: Any = None
    precision: str = "fp32"
    techniques: tuple[str, ...] = ()
    plugin_manager: Any = field(default=None, repr=False)
    space: dict[str, Any] = field(default_factory=dict, repr=False)
    #: ``TrainingArguments`` keywords for the run's precision and device (``{"bf16": True}``, ...), filled in by the
    #: engine for the process's device; a technique that builds a ``Trainer`` of its own passes them to it.
    precision_arguments: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def cache(self) -> Any:
        """The study's cache (:class:`autobert.StageCache` over :attr:`cache_dir`), shared by trials and workers.

        ``run.cache.build(kind, cache_key(described), builder, description)``
        builds an entry once (crash-safe, locked, listed by ``autobert cache ls``).
        """
        return StageCache(self.cache_dir)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.label_names)}

    def note(self, key: str, value: Any) -> None:
        """Record a note about this trial: ``run.metadata[key]``, and the trial's stored notes.

        A search stores it with the trial (shown by ``autobert best`` and the
        report, kept in the storage); a replay keeps it in memory. ``value``
        must be JSON-serialisable. Name ``key`` after the technique
        (``"further_pretraining"``).
        """
        self.metadata[key] = value
        setter = getattr(self.trial, "set_user_attr", None)
        if setter is not None:
            setter(key, value)
