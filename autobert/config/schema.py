"""Study files and frozen configs: schema, validation and the YAML round-trip.

A study file describes a search; a frozen config is the same schema with every
technique parameter fixed and a ``provenance`` section saying where it came
from. Both are immutable pydantic models. Loading reports every schema problem
at once, each with its key and line.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autobert.errors import ConfigError
from autobert.permissions import umask

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def _shorthand(value: Any, key: str) -> Any:
    """A section given as one word (``pruner: median``, ``combine: soup``) or switched off (``none``, ``false``)."""
    if value is None or value is False:
        return {key: "none"}
    return {key: value} if isinstance(value, str) else value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubSource(_Model):
    """A split taken from a ``datasets`` hub id (needs a network or a warm cache)."""

    hub: str
    config: str | None = None
    split: str


class DataConfig(_Model):
    train: str | HubSource
    validation: str | HubSource
    test: str | HubSource | None = None
    text_column: str = "text"
    label_column: str = "label"
    label_names: list[str] | None = None


class SamplerConfig(_Model):
    name: Literal["tpe", "random"] = "tpe"
    seed: int | None = Field(default=0, ge=0, le=2**32 - 1)
    n_startup_trials: int | None = Field(default=None, ge=0)


class PrunerConfig(_Model):
    # The default for one seed: docs/benchmarks/pruning_audit.md found Optuna's step-wise median pruner
    # stopping the best trial of every task it audited, and this one (10th percentile from 30 %) keeping it.
    name: Literal["median", "fraction", "successive_halving", "hyperband", "wilcoxon", "none"] = "fraction"
    # median: 1, fraction: 3 (when not given)
    n_startup_trials: int | None = Field(default=None, ge=0)
    n_warmup_steps: int = Field(default=0, ge=0)
    # fraction only: compare at the same share of each trial's own schedule, never before `min_fraction`
    # of it (nor in warm-up), and prune below this percentile of the finished trials (autobert.strategy.pruners).
    min_fraction: float = Field(default=0.3, ge=0, lt=1)
    percentile: float = Field(default=10.0, gt=0, lt=100)
    # wilcoxon only: prune when the one-sided signed-rank test against the best trial's
    # per-seed values gives p below this (with n seeds compared, p is at least 1/2**n).
    p_threshold: float = Field(default=0.1, gt=0, le=1)
    n_startup_steps: int = Field(default=2, ge=0)


# Pruners that compare intermediate values over training steps within one run.
STEP_PRUNERS = ("median", "fraction", "successive_halving", "hyperband")


class BudgetConfig(_Model):
    trials: int | None = Field(default=10, ge=1)
    timeout: float | None = Field(default=None, gt=0, description="seconds")

    @model_validator(mode="before")
    @classmethod
    def _time_alone(cls, data: Any) -> Any:
        # `budget: {timeout: 1800}` means "as many trials as fit", not "10 trials or 30 minutes".
        if isinstance(data, dict) and data.get("timeout") is not None and "trials" not in data:
            return {**data, "trials": None}
        return data


class FinalistsConfig(_Model):
    """With a time budget: the share of it kept to re-run the best ``top`` recipes on fresh seeds."""

    share: float = Field(default=0.2, ge=0, lt=1)
    top: int = Field(default=3, ge=2)


class CombineConfig(_Model):
    """The final step: the models the search and the finalists trained, combined into one (autobert.study.combine).

    ``kind``: ``auto`` picks the best of the others on validation, and a
    combination only where it beats the best single recipe by more than the
    seed noise on the half of the validation rows it was not chosen on;
    ``ensemble`` is Caruana ensemble selection over the runs' stored
    validation probabilities; ``soup`` averages the weights of runs that
    share an architecture (uniform, or greedy in Wortsman et al.'s order);
    ``checkpoints`` averages one run's weights over the last ``checkpoints``
    evenly spaced points of its training (the tail of training, as stochastic
    weight averaging does), one model at no extra training;
    ``none`` keeps the single best recipe.
    """

    kind: Literal["auto", "soup", "ensemble", "checkpoints", "none"] = "auto"
    #: The most distinct runs (recipe and seed) a combination may hold: `autobert train` trains each one.
    members: int = Field(default=5, ge=2)
    #: How many runs keep their weights (for soups): the finalists' runs and the best search trials' runs.
    #: 0 keeps none (no soups); default: ``members``.
    keep_weights: int | None = Field(default=None, ge=0)
    #: Where the runs' predictions and weights are stored (Optuna's artifact store): default
    #: ``<study dir>/artifacts``. Workers on several machines need a folder they all reach.
    artifact_dir: str | None = None
    #: The checkpoints a run averages (``checkpoints`` kind): evenly spaced over the second half of its steps,
    #: the last step included. Every run keeps one extra copy of its weights while it trains.
    checkpoints: int = Field(default=4, ge=2)

    @property
    def averages_checkpoints(self) -> int:
        """How many checkpoints each run averages (0: none; only ``auto`` and ``checkpoints`` need them)."""
        return self.checkpoints if self.kind in ("auto", "checkpoints") else 0

    @property
    def weights_kept(self) -> int:
        return self.members if self.keep_weights is None else self.keep_weights


class HeartbeatConfig(_Model):
    """How workers notice a dead worker's trial (PostgreSQL and journal storages).

    A running trial records a heartbeat every ``interval`` seconds; one whose
    last heartbeat is older than ``grace_period`` is failed by the next worker
    that starts a trial and queued again ``retries`` time(s) with the same parameters.
    """

    interval: int = Field(default=30, ge=1, description="seconds")
    grace_period: int | None = Field(default=None, ge=1, description="seconds; default 2 x interval")
    retries: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _grace_after_interval(self) -> "HeartbeatConfig":
        if self.grace_period is not None and self.grace_period <= self.interval:
            raise ValueError(
                f"heartbeat.grace_period ({self.grace_period}) must be longer than heartbeat.interval "
                f"({self.interval}), or a live worker's trial would be failed between two heartbeats; raise grace_period"
            )
        return self


class StudyRef(_Model):
    """An earlier study: its storage URL and name."""

    storage: str
    name: str


class WarmStartStudies(_Model):
    """Warm start from earlier studies: their ``top`` best recipes each."""

    studies: list[StudyRef] = Field(min_length=1)
    top: int = Field(default=3, ge=1)


class Provenance(_Model):
    study: str
    trial: int
    value: float | None
    metric: str
    autobert_version: str
    plugins: dict[str, str]
    data_fingerprint: dict[str, str]
    params: dict[str, Any]
    seed_values: dict[str, float] | None = None
    # The recipes re-run on fresh seeds at the end of a time-budgeted search, best first:
    # [{trial, search_value, seed_values: {seed: value}, mean}]
    finalists: list[dict[str, Any]] | None = None
    # Where the recipe was found, for replay's checks (absent from recipes exported before they were recorded):
    # the libraries' versions ({python, torch, transformers}) and the model's revision (a content hash of a local
    # folder, or the hub's commit).
    versions: dict[str, str] | None = None
    model_revision: str | None = None
    # The combination the search chose (autobert.study.combine): {kind, variant, members: [{trial, seed, weight,
    # params, value}], value (validation), single_value, gain, noise, reason}; `autobert train` trains every member.
    combination: dict[str, Any] | None = None
    # A hand-written recipe (no provenance in its file): what `autobert train` recorded when it first replayed it.
    hand_written: bool | None = None
    # A short hash of every key that changes what trains, so replay names the one edited since the export
    # ({max_length: sha256:1a2b3c4d, data.label_names: ..., provenance.params: ...}); see autobert.study.validation.
    recipe: dict[str, str] | None = None

    def origin(self) -> str:
        """``trial 3 of sst2-quick`` or ``the hand-written recipe sst2-quick``, for messages."""
        return f"the hand-written recipe {self.study}" if self.hand_written else f"trial {self.trial} of {self.study}"


class StudyConfig(_Model):
    """A study file. Paths in ``data`` are relative to the file's folder."""

    name: str = Field(pattern=NAME_PATTERN)
    model: str
    data: DataConfig
    metric: str = "accuracy"
    direction: Literal["maximize", "minimize"] = "maximize"
    max_length: int = Field(default=128, ge=8)
    # numpy's generators take seeds in [0, 2**32 - 1]; a negative seed failed only once training started.
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    seeds: list[Annotated[int, Field(ge=0, le=2**32 - 1)]] | None = Field(default=None, min_length=1)
    aggregate: Literal["mean", "median", "worst", "mean_minus_std"] = "mean"
    aggregate_k: float = Field(default=1.0, ge=0)
    evaluations_per_epoch: int = Field(default=1, ge=1)
    budget: BudgetConfig = BudgetConfig()
    finalists: FinalistsConfig = FinalistsConfig()
    combine: CombineConfig = CombineConfig()
    # The first trials: `builtin` (the portfolio shipped with autobert), `none`, a portfolio file, or
    # {studies: [{storage, name}], top: K} (earlier studies' best recipes); see autobert.strategy.warm_start.
    warm_start: Literal["builtin", "none"] | str | WarmStartStudies = "builtin"
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    storage: str | None = None
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    output_dir: str | None = None
    # Where stage outputs are cached (autobert.stage_cache); a path several workers share.
    cache_dir: str | None = None
    # Every Trainer a trial runs (fine-tuning, further pretraining, teachers, task models): auto is bf16 on a GPU
    # that has it, fp16 on older GPUs, fp32 on the CPU (autobert.run.device). A frozen config records what auto became.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # The Trainer's logging integrations (`tensorboard`, `wandb`, ...), run name `<study>-trial-N-seed-S`.
    report_to: str | list[str] = "none"
    disable: list[str] = []
    techniques: dict[str, dict[str, Any]] = {}

    # Where the file lives; not part of the file itself.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _seeds_and_their_pruner(cls, data: Any) -> Any:
        # `seeds` wins over `seed`; `seed` becomes its first entry, so both keys always agree.
        if not isinstance(data, dict) or not isinstance(data.get("seeds"), list) or not data["seeds"]:
            return data
        data = dict(data)
        seeds = data["seeds"]
        if "seed" in data and data["seed"] != seeds[0]:
            raise ValueError(
                f"seed ({data['seed']!r}) and seeds ({seeds!r}) disagree: `seeds` lists every seed a trial "
                "runs; remove `seed` (or make it the first of `seeds`)"
            )
        data["seed"] = seeds[0]
        if len(seeds) > 1 and "pruner" not in data:
            data["pruner"] = "wilcoxon"  # the step-axis default (median) cannot prune across seeds
        return data

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct, got {v}; remove the repeated ones")
        return v

    @field_validator("sampler", mode="before")
    @classmethod
    def _sampler_shorthand(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("finalists", mode="before")
    @classmethod
    def _finalists_off(cls, v: Any) -> Any:
        return {"share": 0} if v is None or v is False or v == "none" else v

    @field_validator("combine", mode="before")
    @classmethod
    def _combine_shorthand(cls, v: Any) -> Any:
        return _shorthand(v, "kind")

    @field_validator("warm_start", mode="before")
    @classmethod
    def _warm_start_off(cls, v: Any) -> Any:
        return "none" if v is None or v is False else v

    @field_validator("pruner", mode="before")
    @classmethod
    def _pruner_shorthand(cls, v: Any) -> Any:
        return _shorthand(v, "name")

    @field_validator("techniques", mode="before")
    @classmethod
    def _techniques_none(cls, v: Any) -> Any:
        # `pooling:` with nothing under it means "defaults".
        if isinstance(v, dict):
            return {k: ({} if p is None else p) for k, p in v.items()}
        return v

    @model_validator(mode="after")
    def _some_budget(self) -> "StudyConfig":
        if self.budget.trials is None and self.budget.timeout is None:
            raise ValueError("budget needs trials or timeout (or both); set budget.trials or budget.timeout")
        return self

    @model_validator(mode="after")
    def _pruner_fits_the_seeds(self) -> "StudyConfig":
        n = len(self.run_seeds)
        if n > 1 and self.pruner.name in STEP_PRUNERS:
            raise ValueError(
                f"pruner {self.pruner.name!r} compares training steps within one run and needs a single seed; "
                f"with {n} seeds use pruner: wilcoxon (compares per-seed values) or none"
            )
        if n == 1 and self.pruner.name == "wilcoxon":
            raise ValueError(
                "pruner 'wilcoxon' compares per-seed values and needs at least 2 seeds (seeds: [0, 1, 2]); "
                "with one seed use median, successive_halving or hyperband"
            )
        return self

    # -- derived -----------------------------------------------------------

    @property
    def run_seeds(self) -> list[int]:
        """The seeds every trial runs with: ``seeds``, or ``[seed]``."""
        return list(self.seeds) if self.seeds else [self.seed]

    @property
    def overrides(self) -> dict[str, Any]:
        """Study-file overrides keyed by full parameter name."""
        return {f"{t}.{k}": v for t, params in self.techniques.items() for k, v in params.items()}

    @property
    def study_dir(self) -> Path:
        """Where the study's storage, exports and cache live by default."""
        if self.output_dir:
            return self.resolve_path(self.output_dir)
        return self.base_dir / self.name

    @property
    def cache_path(self) -> Path:
        """The stage cache's folder: ``cache_dir`` (relative to the study file), or ``<study dir>/cache``."""
        if self.cache_dir:
            return self.resolve_path(self.cache_dir)
        return self.study_dir / "cache"

    @property
    def artifact_path(self) -> Path:
        """Where the runs' stored predictions and weights live: ``combine.artifact_dir``, or ``<study dir>/artifacts``."""
        if self.combine.artifact_dir:
            return self.resolve_path(self.combine.artifact_dir)
        return self.study_dir / "artifacts"

    @property
    def storage_url(self) -> str:
        if self.storage:
            return self.storage
        return f"sqlite:///{(self.study_dir / 'study.db').resolve()}"

    def resolve_path(self, value: str | os.PathLike) -> Path:
        path = Path(os.path.expanduser(str(value)))
        if path.is_absolute():
            return path
        try:
            return (self.base_dir / path).resolve()
        except (RuntimeError, OSError):  # a symbolic link loop: left as written, for the caller to report
            return Path(os.path.abspath(self.base_dir / path))

    def to_yaml(self) -> str:
        return dump_yaml(self.model_dump(mode="json", exclude_none=True))


class FrozenConfig(StudyConfig):
    """A study whose every technique parameter is fixed, plus its provenance."""

    provenance: Provenance

    @model_validator(mode="before")
    @classmethod
    def _precision_before_the_key(cls, data: Any) -> Any:
        # A recipe exported before `precision` existed was found in fp32; replay it so, not as `auto`.
        if isinstance(data, dict) and "precision" not in data:
            data = {**data, "precision": "fp32"}
        return data

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.provenance.params)


# ---------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-5`` as a string; people mean a float, as YAML 1.2 says."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|[-+]\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


class _Dumper(yaml.SafeDumper):
    """Quotes every string that :class:`_Loader` would read as a number (``"74234e102"``, a hash that happens to
    be all digits and one ``e``), so that a written file reads back as it was written."""


_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", _Loader.yaml_implicit_resolvers["1"][-1][1], list("-+0123456789."))


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file 0600; the renamed file gets what the umask gives any new file (0644 under 022).
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _key_lines(text: str) -> dict[tuple, int]:
    """Map each key path in a YAML document to its (1-based) line."""
    lines: dict[tuple, int] = {}

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = path + (key.value,)
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                lines[path + (i,)] = value.start_mark.line + 1
                walk(value, path + (i,))

    try:
        walk(yaml.compose(text), ())
    except yaml.YAMLError:
        pass
    return lines


def _line_of(lines: dict[tuple, int], loc: tuple) -> int | None:
    loc = tuple(loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None


def _format_pydantic(exc: ValidationError, lines: dict[tuple, int]) -> list[str]:
    problems = []
    for err in exc.errors():
        # Drop pydantic's union-branch markers such as 'str' or 'HubSource'.
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and re.fullmatch(r"[A-Z]\w*|str|int|float", p)))
        key = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(lines, loc)
        where = f"{key} (line {line})" if line else key
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key; remove it or check its spelling"
        elif err["type"] == "missing":
            msg = "required key is missing; add it"
        elif err["type"] == "value_error":  # our own validators say what to do already
            msg = msg.removeprefix("Value error, ")
        else:
            msg = f"{msg}{_got(err.get('input'))}; {_schema_fix(err['type'], msg)}"
        problems.append(f"{where}: {msg}")
    # A union failing on several branches repeats itself; keep each message once.
    return list(dict.fromkeys(problems))


def _got(value: Any) -> str:
    text = repr(value)
    return f", got {text}" if not isinstance(value, dict) and len(text) <= 60 else ""


def _schema_fix(kind: str, msg: str) -> str:
    """What to do about one of pydantic's errors (its message says only what is wrong)."""
    wanted = msg.removeprefix("Input should be ")
    if kind.startswith(("greater_than", "less_than")) or kind in ("finite_number", "multiple_of"):
        return f"give a value {wanted}"
    if kind == "literal_error":
        return "choose one of them"
    if kind == "string_pattern_mismatch":
        return "use letters, digits and _ . - only, starting with a letter or a digit"
    if kind == "too_short":
        return "give at least one value"
    if kind == "too_long":
        return "give fewer values"
    if kind.endswith(("_type", "_parsing")) or kind in ("int_from_float", "model_attributes_type"):
        return f"write {wanted}"
    return "fix the value"


def with_lines(problems: list[str], text: str) -> list[str]:
    """Add the line of each problem's key (``data.train: ...`` -> ``data.train (line 4): ...``)."""
    lines = _key_lines(text)
    out = []
    for problem in problems:
        key, sep, rest = problem.partition(": ")
        line = _line_of(lines, tuple(key.split("."))) if sep and " " not in key and "(line" not in problem else None
        out.append(f"{key} (line {line}): {rest}" if line else problem)
    return out


def parse_config(text: str, source: str, base_dir: Path, cls: type[StudyConfig] = StudyConfig) -> StudyConfig:
    """Parse YAML ``text`` into ``cls``; every schema problem is reported at once.

    Raises:
        ConfigError: listing every problem with its key and line.
    """
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        # Where the parser stopped, as the file's key and line, and what it expected: one problem that says where.
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"(top level) (line {mark.line + 1})" if mark is not None else "(top level)"
        what = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(source, [f"{where}: not valid YAML ({what}); fix the syntax there (an unclosed bracket "
                                   "or quote, a tab for indentation, a stray colon)"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the file must be a YAML mapping (key: value lines), e.g. `name: my-study`"])
    try:
        return cls.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(source, _format_pydantic(exc, _key_lines(text))) from None


def _read_text(path: Path) -> str:
    """A study file's text (UTF-8, a byte-order mark dropped), or an error saying why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise ConfigError(str(path), [f"line {line}: byte 0x{exc.object[exc.start]:02x} is not UTF-8; save the study "
                                      "file as UTF-8"]) from None
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file ({exc.strerror or exc}); make it readable "
                                      f"(chmod u+r {path})"]) from None


def load_study(path: str | os.PathLike) -> StudyConfig:
    """Read a study file (a frozen config is read as a study too)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), [f"file not found: {path}; give the path of a study YAML file"])
    text = _read_text(path)
    raw_is_frozen = "provenance:" in text
    cls = FrozenConfig if raw_is_frozen else StudyConfig
    return parse_config(text, str(path), path.parent.resolve(), cls)


def _recipe_text(path: Path) -> str:
    """A frozen config's text, or an error saying it is missing or unreadable, with the fix."""
    if not path.is_file():
        raise ConfigError(str(path), [f"file not found: {path}; export one with `autobert best STUDY.yaml`"])
    return _read_text(path)


def load_frozen(path: str | os.PathLike) -> FrozenConfig:
    path = Path(path)
    config = parse_config(_recipe_text(path), str(path), path.parent.resolve(), FrozenConfig)
    return config  # type: ignore[return-value]


def load_recipe(path: str | os.PathLike) -> StudyConfig:
    """A recipe to replay: a frozen config, or a hand-written one (a study file without ``provenance``).

    A hand-written recipe comes back as a :class:`StudyConfig`; the caller fixes its parameters
    (:func:`autobert.study.prepare.prepare_recipe`).
    """
    path = Path(path)
    text = _recipe_text(path)
    try:
        raw = load_yaml(text)
    except yaml.YAMLError:
        raw = None  # parse_config says what is wrong, with the line
    cls = StudyConfig if isinstance(raw, dict) and "provenance" not in raw else FrozenConfig
    return parse_config(text, str(path), path.parent.resolve(), cls)


def relocate(config: StudyConfig, new_dir: Path) -> dict[str, Any]:
    """The config's data as a dict whose relative paths are valid from ``new_dir``."""
    data = config.model_dump(mode="json", exclude_none=True)
    new_dir = Path(new_dir).resolve()

    def move(value: Any) -> Any:
        if isinstance(value, str) and not value.startswith(("package:", "hub:")):
            old = config.resolve_path(value)
            if old.exists() and not Path(os.path.expanduser(value)).is_absolute():
                return os.path.relpath(old, new_dir)
        return value

    for split in ("train", "validation", "test"):
        if split in data["data"]:
            data["data"][split] = move(data["data"][split])
    data["model"] = move(data["model"])
    if data.get("output_dir"):
        data["output_dir"] = move(data["output_dir"])
    if data.get("cache_dir"):
        data["cache_dir"] = move(data["cache_dir"])
    if data.get("combine", {}).get("artifact_dir"):
        data["combine"]["artifact_dir"] = move(data["combine"]["artifact_dir"])
    if isinstance(data.get("warm_start"), str) and data["warm_start"] not in ("builtin", "none"):
        data["warm_start"] = move(data["warm_start"])
    return data
