"""Further pretraining: masked-language-model stages before fine-tuning.

``further_pretraining.stages`` (Sun et al. 2019; Gururangan et al. 2020, "Don't
Stop Pretraining"):

- ``none``: fine-tune the pretrained encoder as it is;
- ``task``: MLM on the task's own training texts (labels ignored), then fine-tune;
- ``domain``: MLM on the study's unlabeled in-domain corpus, then fine-tune;
- ``domain+task``: the domain stage, then the task stage, then fine-tune.

Each stage searches its number of steps (``<stage>_steps``, log scale) and its
learning rate (``<stage>_learning_rate``); the masking strategy and probability
come from the ``masking`` technique. A stage trains ``AutoModelForMaskedLM`` with
the transformers ``Trainer``; a checkpoint without an MLM head (the offline
MiniLM) gets one whose decoder is tied to the word embeddings, with a warning.

Stages are cached (the study's cache, kind ``stage``) under a key of
everything they depend on: the
starting model (or the previous stage's key and steps), the corpus, the
tokenizer, the masking strategy and its parameters, the learning rate, batch
size, warmup, maximum length and seed. Steps are a prefix: the learning rate is
constant after a fixed warmup, the data order and every mask are functions of
the seed and the step, and dropout is re-seeded at every step, so the first
``k`` steps of a longer run are exactly a shorter run. A stage therefore saves
(model, optimizer and scheduler) at every power of two of its step range and at
the requested count; a later trial asking for a cached count reuses it, and one
asking for more resumes from the largest cached prefix. Cold cache, warm cache
and no cache give the same model.
"""

from __future__ import annotations

import json
import math
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from autobert import Setting, cache_key, check_deadline, hookimpl
from autobert.services import load_mlm, mlm_head, model_identity, tokenizer_identity
from autobert.stage_cache import content_key

STAGES = "further_pretraining.stages"
CORPUS = "further_pretraining.domain_corpus"
COLUMN = "further_pretraining.domain_column"
BATCH_SIZE = "further_pretraining.batch_size"
WARMUP = "further_pretraining.warmup_steps"
USE_CACHE = "further_pretraining.cache"

#: The stages each choice runs, in order.
PLAN = {"none": (), "task": ("task",), "domain": ("domain",), "domain+task": ("domain", "task")}
STEPS_RANGE = (32, 1024)
LR_RANGE = (2e-5, 1e-4, 2e-5)  # low, high, step: few distinct values, so trials share cached stages
WEIGHT_DECAY = 0.01
#: The kind of the stages' cache entries.
KIND = "stage"
#: Bump when what a stage computes changes, so that old cache entries are not reused.
CACHE_VERSION = 2
_SALT = 0x7374726D

def steps_param(stage: str) -> str:
    return f"further_pretraining.{stage}_steps"


def lr_param(stage: str) -> str:
    return f"further_pretraining.{stage}_learning_rate"


# --------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------


@hookimpl
def autobert_settings():
    return {
        CORPUS: Setting(None, path=True, help=(
            "the unlabeled in-domain corpus of the domain stages: a .txt file (one document per line), a .csv/.tsv/"
            ".json/.jsonl/.parquet file (see domain_column), a datasets save_to_disk folder, or {hub: ID, split: S}")),
        COLUMN: Setting("text", help="the text column of a tabular domain corpus"),
        BATCH_SIZE: Setting(32, help="MLM batch size of every stage"),
        WARMUP: Setting(0, help="warmup steps of every stage (then a constant learning rate)"),
        USE_CACHE: Setting(True, help="cache stages under the study's cache_dir; false trains every stage anew"),
    }


@hookimpl
def autobert_search_space(space):
    # Domain stages exist only where the study names a corpus (a setting), so that a
    # study that does not mention further pretraining never asks for one.
    domain = ["domain", "domain+task"]
    if space.settings.get(CORPUS):
        stages = space.suggest_categorical(STAGES, ["none", "task", *domain])
    else:
        stages = space.suggest_categorical(STAGES, ["none", "task"], unavailable=dict.fromkeys(domain, (
            "the domain stages need a domain corpus; set techniques.further_pretraining.domain_corpus "
            "(e.g. data/movies.txt)")))
    for stage in PLAN[stages]:
        space.suggest_int(steps_param(stage), *STEPS_RANGE, log=True, valid="[1, inf)")
        space.suggest_float(lr_param(stage), LR_RANGE[0], LR_RANGE[1], step=LR_RANGE[2], valid="(0, inf)")


@hookimpl
def autobert_ablation():
    return {"off": {STAGES: "none"}, "on": {STAGES: "task", steps_param("task"): 256, lr_param("task"): 4e-5}}


@hookimpl
def autobert_trial_cost(params, settings):
    # Masked-LM steps of the stage's batch size; a cached stage is predicted all the same
    # (its key needs the corpus and the model), and the search's calibration absorbs it.
    batch = float(settings.get(BATCH_SIZE, 32))
    stages = PLAN.get(params.get(STAGES, "none"), ())
    return {f"{stage} stage": batch * float(params.get(steps_param(stage), 0)) for stage in stages} or None


@hookimpl
def autobert_validate_study(study, settings, space):
    problems = []
    corpus = settings.get(CORPUS)
    if corpus is not None:
        try:
            texts = load_corpus(corpus, settings.get(COLUMN, "text"))
            if not texts:
                problems.append(f"techniques.further_pretraining.domain_corpus: {corpus} has no non-empty document")
        except ValueError as exc:
            problems.append(f"techniques.further_pretraining.domain_corpus: {exc}")
    if STAGES in space and set(space[STAGES].choices) - {"none"} and "masking" in study.disable:
        problems.append("disable: further pretraining needs the masking technique (its masking strategy); "
                        "remove masking from disable, or fix techniques.further_pretraining.stages: none")
    for name in (BATCH_SIZE, WARMUP):
        value = settings.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name == BATCH_SIZE else 0):
            problems.append(f"techniques.further_pretraining.{name.split('.', 1)[1]}: {value!r} must be an integer "
                            f"{'>= 1' if name == BATCH_SIZE else '>= 0'}")
    return problems


@hookimpl
def autobert_further_pretrain(checkpoint, datasets, run):
    stages = PLAN[run.params.get(STAGES, "none")]
    if not stages:
        return None
    start_key: Any = model_identity(checkpoint)
    report = []
    for stage in stages:
        texts = corpus_texts(stage, datasets, run)
        checkpoint, start_key, outcome = pretraining_stage(stage, checkpoint, start_key, texts, datasets, run)
        report.append(f"{stage}: {run.params[steps_param(stage)]} steps, {outcome}")
    run.note("further_pretraining", report)
    return checkpoint


# --------------------------------------------------------------------------
# Corpora
# --------------------------------------------------------------------------


def corpus_texts(stage: str, datasets: dict, run) -> list[str]:
    """The stage's corpus: the domain corpus, or the task's training texts (labels ignored)."""
    if stage == "task":
        return [str(t) for t in datasets["train"]["text"]]
    corpus = run.settings.get(CORPUS)
    if corpus is None:
        from autobert.errors import ConfigError

        raise ConfigError("study file", ["techniques.further_pretraining.domain_corpus: the domain stage needs a "
                                         "corpus; set it, or choose stages none or task"])
    return load_corpus(corpus, run.settings.get(COLUMN, "text"))


def load_corpus(source: Any, column: str = "text") -> list[str]:
    """Read a domain corpus (see the ``domain_corpus`` setting); non-empty documents, in order.

    Raises:
        ValueError: it cannot be read or lacks ``column``; the message says why and what to do.
    """
    if isinstance(source, dict):
        return list(_load_hub(json.dumps(source, sort_keys=True), column))
    path = Path(str(source))
    if not path.exists():
        raise ValueError(f"{path} not found (relative paths are resolved against the study file's folder)")
    stamp = (str(path.resolve()), path.stat().st_mtime_ns, column)
    return list(_load_path(*stamp))


@lru_cache(maxsize=4)
def _load_path(path: str, _mtime: int, column: str) -> tuple[str, ...]:
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if p.is_dir():
            import datasets as hf

            loaded = hf.load_from_disk(path)
            if isinstance(loaded, hf.DatasetDict):
                loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
            if column not in loaded.column_names:
                raise ValueError(f"{p} has no column {column!r} (columns: {', '.join(loaded.column_names)}); set domain_column")
            values = loaded[column]
        elif suffix in (".txt", ".text", ""):
            values = p.read_text(encoding="utf-8").splitlines()
        else:
            import pandas as pd

            readers = {".csv": pd.read_csv, ".tsv": lambda f: pd.read_csv(f, sep="\t"), ".json": pd.read_json,
                       ".jsonl": lambda f: pd.read_json(f, lines=True), ".parquet": pd.read_parquet}
            if suffix not in readers:
                raise ValueError(f"{p}: unknown file type {suffix!r}; use .txt (one document per line), .csv, .tsv, "
                                 ".json, .jsonl, .parquet or a datasets folder")
            frame = readers[suffix](p)
            if column not in frame.columns:
                raise ValueError(f"{p} has no column {column!r} (columns: {', '.join(map(str, frame.columns))}); "
                                 "set techniques.further_pretraining.domain_column")
            values = frame[column].dropna().tolist()
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"cannot read {p}: {type(exc).__name__}: {exc}") from None
    return tuple(t for t in (str(v).strip() for v in values) if t)


@lru_cache(maxsize=2)
def _load_hub(described: str, column: str) -> tuple[str, ...]:
    spec = json.loads(described)
    if "hub" not in spec:
        raise ValueError("a datasets source is {hub: ID, config: NAME, split: SPLIT}")
    try:
        import datasets as hf

        loaded = hf.load_dataset(spec["hub"], spec.get("config"), split=spec.get("split", "train"))
    except Exception as exc:
        raise ValueError(f"cannot load {spec['hub']!r} with datasets: {type(exc).__name__}: {exc}") from None
    if column not in loaded.column_names:
        raise ValueError(f"{spec['hub']} has no column {column!r}; set domain_column")
    return tuple(t for t in (str(v).strip() for v in loaded[column]) if t)


def texts_fingerprint(texts: list[str]) -> str:
    return content_key(text.encode("utf-8") + b"\0" for text in texts)


# --------------------------------------------------------------------------
# Identities (cache keys)
# --------------------------------------------------------------------------


def _exact(value: Any) -> Any:
    # Stepped floats come back as 6.000000000000001e-05; one key for one intended value.
    return float(f"{value:.10g}") if isinstance(value, float) else value


# --------------------------------------------------------------------------
# One stage
# --------------------------------------------------------------------------


def save_points(spec, steps: int) -> list[int]:
    """The step counts the study's range can ask for, up to ``steps``: every power of two
    inside the range, its ends, and ``steps`` itself (or every choice of a list).

    ``spec`` is the steps parameter's effective spec (``run.space``); without one, ``steps`` alone.
    """
    if spec is None:
        return [steps]
    if spec.kind == "categorical":
        points = {int(c) for c in spec.choices}
    else:
        low, high = int(spec.low), int(spec.high)
        points = {low, high} | {2 ** k for k in range(int(math.log2(max(1, low))), int(math.log2(max(1, high))) + 1)
                                if low <= 2 ** k <= high}
    return sorted(p for p in points | {steps} if 0 < p <= steps)


def pretraining_stage(stage: str, checkpoint: str, start_key: Any, texts: list[str], datasets: dict, run):
    """Run (or fetch) one stage; returns ``(checkpoint, key of its output, what the cache did)``."""
    from autobert.masking import registered_strategies, strategy_key

    steps = int(run.params[steps_param(stage)])
    lr = _exact(run.params[lr_param(stage)])
    strategy_name = run.params.get("masking.strategy")
    strategies = registered_strategies(getattr(run, "hooks", None))
    if strategy_name is None or strategy_name not in strategies:
        from autobert.errors import TrialFailed

        raise TrialFailed(f"further pretraining needs a masking strategy, but the trial has "
                          f"masking.strategy={strategy_name!r} (registered: {', '.join(strategies) or 'none'}); "
                          "enable the masking technique")
    strategy = strategies[strategy_name]()
    masking_params = {k: _exact(v) for k, v in run.params.items() if k.startswith("masking.")}
    corpus_print = texts_fingerprint(texts)
    described = {
        "version": CACHE_VERSION, "start": start_key, "corpus": corpus_print,
        "tokenizer": tokenizer_identity(run.tokenizer), "max_length": run.study.max_length,
        "masking": strategy.identity(masking_params, run), "learning_rate": lr, "seed": run.seed,
        "batch_size": run.settings.get(BATCH_SIZE, 32), "warmup_steps": run.settings.get(WARMUP, 0),
        "weight_decay": WEIGHT_DECAY,
    }
    if getattr(run, "precision", "fp32") != "fp32":  # a stage trained in bf16 or fp16 is another checkpoint
        described["precision"] = run.precision
    key = cache_key(described)
    output_key = f"{key}@{steps}"
    job = _StageJob(stage, checkpoint, texts, corpus_print, strategy, masking_params, lr, datasets, run,
                    strategy_print=strategy_key(strategy, masking_params, run))

    if not run.settings.get(USE_CACHE, True):
        out = run.workdir / f"further-pretraining-{stage}"
        job.train(out / "trainer", steps, resume_from=None, save_at=[], publish=None)
        job.trainer.save_model(str(out / "model"))
        return str(out / "model"), output_key, "not cached"

    cache = run.cache
    name = entry_name(key, steps)
    hit = cache.get(KIND, name)
    if hit is not None:
        return str(hit), output_key, "cache hit"
    with cache.lock(KIND, key):
        hit = cache.get(KIND, name)
        if hit is not None:
            return str(hit), output_key, "cache hit (built by another worker)"
        cached = [s for s in (entry_steps(k) for k in cache.keys(KIND, key + "-")) if s is not None and s < steps]
        start = max(cached, default=0)
        resume = cache.get(KIND, entry_name(key, start)) if start else None
        description = {"stage": stage, "strategy": strategy_name, "learning_rate": lr, "seed": run.seed,
                       "corpus_documents": len(texts), "masking": masking_params, "start": start_key}

        def publish(step: int, folder: Path) -> None:
            run.tokenizer.save_pretrained(str(folder))
            cache.commit(KIND, entry_name(key, step), folder, {**description, "steps": step})

        staging = cache.staging(KIND, name)
        try:
            job.train(staging, steps, resume_from=resume,
                      save_at=[p for p in save_points(run.space.get(steps_param(stage)), steps) if p > start], publish=publish)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    outcome = f"resumed from the cached {start} steps" if start else "built"
    return str(cache.path(KIND, name)), output_key, outcome


def entry_name(key: str, steps: int) -> str:
    return f"{key}-{steps:07d}"


def entry_steps(name: str) -> int | None:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


class _StageJob:
    """Everything one stage trains with; :meth:`train` runs the ``Trainer``."""

    def __init__(self, stage, checkpoint, texts, corpus_print, strategy, masking_params, lr, datasets, run, strategy_print):
        self.stage, self.checkpoint, self.texts, self.corpus_print = stage, checkpoint, texts, corpus_print
        self.strategy, self.masking_params, self.lr, self.datasets, self.run = strategy, masking_params, lr, datasets, run
        self.strategy_print = strategy_print
        self.trainer = None

    def train(self, output_dir: Path, steps: int, *, resume_from: Path | None, save_at: list[int], publish) -> None:
        import torch
        from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

        from autobert.masking import MaskingCollator, MaskingContext, encode_corpus

        run = self.run
        rows = encode_corpus(self.texts, run.tokenizer, run.study.max_length)
        probability = float(self.masking_params.get("masking.probability", 0.15))
        self.strategy.prepare(MaskingContext(
            stage=self.stage, texts=self.texts, examples=rows, corpus_fingerprint=self.corpus_print,
            params=self.masking_params, seed=run.seed,
            key=cache_key({"corpus": self.corpus_print, "tokenizer": tokenizer_identity(run.tokenizer),
                           "max_length": run.study.max_length, "masking": self.strategy_print, "seed": run.seed}),
            cache=run.cache if run.settings.get(USE_CACHE, True) else None,
            run=run, datasets=self.datasets,
        ))
        batch_size = int(run.settings.get(BATCH_SIZE, 32))
        set_seed(run.seed)
        model = load_mlm(str(resume_from) if resume_from else self.checkpoint)

        seed = run.seed

        class Reseed(TrainerCallback):
            # Dropout depends on the step alone, so a resumed run equals an uninterrupted one.
            def on_step_begin(self, args, state, control, **kw):
                torch.manual_seed(seed * 1_000_003 + state.global_step)

        class Publish(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                check_deadline()  # a time-budgeted search stops a long stage too
                if state.global_step in save_at:
                    control.should_save = True

            def on_save(self, args, state, control, **kw):
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if publish is not None and folder.is_dir():
                    publish(state.global_step, folder)

        class StageTrainer(Trainer):
            def _get_train_sampler(self, train_dataset=None):
                return torch.utils.data.SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                return masked_only_loss(model, inputs) if not return_outputs else super().compute_loss(
                    model, inputs, return_outputs, num_items_in_batch)

        args = TrainingArguments(
            output_dir=str(output_dir), max_steps=steps, per_device_train_batch_size=batch_size,
            learning_rate=self.lr, lr_scheduler_type="constant_with_warmup",
            warmup_steps=int(run.settings.get(WARMUP, 0)), weight_decay=WEIGHT_DECAY, seed=run.seed,
            save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
            remove_unused_columns=False, dataloader_num_workers=0,
            dataloader_pin_memory=torch.cuda.is_available(),
            **getattr(run, "precision_arguments", {}),  # the study's precision, as fine-tuning trains
        )
        self.trainer = StageTrainer(
            model=model, args=args, train_dataset=VisitStream(rows, steps * batch_size, run.seed),
            data_collator=MaskingCollator(run.tokenizer, self.strategy, probability, run.seed),
            processing_class=run.tokenizer, callbacks=[Reseed(), Publish()],
        )
        from transformers import PrinterCallback

        self.trainer.remove_callback(PrinterCallback)
        self.trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)


def masked_only_loss(model, inputs):
    """The MLM loss with the vocabulary projection computed at the masked positions only.

    The same loss as ``model(**inputs).loss``, without projecting the ~85% of
    positions that have no label onto the whole vocabulary (the costliest
    matrix product of a small encoder). Falls back to the full forward for a
    model whose head is not one module (``cls`` as in BERT, ``lm_head`` as in RoBERTa).
    """
    import torch.nn.functional as F

    head = mlm_head(model)
    if head is None:
        return model(**inputs).loss
    labels = inputs["labels"]
    encoder_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    hidden = model.base_model(**encoder_inputs).last_hidden_state
    chosen = labels != -100
    logits = head(hidden[chosen])
    return F.cross_entropy(logits.float(), labels[chosen])


class VisitStream:
    """The stage's training stream: epoch after epoch, each a seeded permutation of the corpus.

    Item ``j`` is a function of the seed and ``j`` alone, so the first ``k``
    batches of a long run are exactly a short run's batches.
    """

    def __init__(self, rows: list[dict[str, Any]], length: int, seed: int):
        self.rows, self.length, self.seed = rows, length, seed
        self._orders: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders[epoch] = np.random.default_rng([self.seed, _SALT, epoch]).permutation(len(self.rows))
        return self._orders[epoch]

    def __getitem__(self, position: int) -> dict[str, Any]:
        epoch, offset = divmod(int(position), len(self.rows))
        index = int(self.order(epoch)[offset])
        return {**self.rows[index], "index": index, "epoch": epoch, "position": int(position)}
