"""Knowledge injection: one external vector per text, fused into the classifier.

The user supplies the vectors (a knowledge-graph embedding of each document's
entity, a sentence embedding from another model, metadata features...) through
one of three sources, given as settings under ``techniques.knowledge``:

- ``column``: a column of the data files holding each row's vector (a list in
  parquet/JSON/``datasets`` folders; in CSV/TSV a JSON list ``"[0.1, 0.2]"`` or
  numbers separated by spaces or commas);
- ``vectors``: one ``.npy`` file per split, ``{split}`` in the path standing for
  ``train``, ``validation`` and ``test`` (``vectors/{split}.npy``), each a
  float array of shape ``(rows of the split, dim)``, in the split's row order;
- ``key_column`` + ``table``: a column of keys mapped through a ``{key: vector}``
  file: ``.json`` (an object of lists), ``.npz`` (one array per key, as
  ``numpy.savez(path, **vectors)`` writes) or ``.pt`` (a dict of tensors or
  lists, as ``torch.save`` writes); keys compare as strings.

Every split of the study needs its vectors, all of one dimension, finite;
validation reads them all before the first trial and names a missing file, a
misaligned row count, an unknown key or a wrong dimension.

With a source set, the technique searches ``knowledge.inject`` (``none``, the
neutral choice; ``embeddings``; ``last_layer``), ``knowledge.fusion`` (``add``,
``concat``, ``gated``), ``knowledge.tokens`` (``cls`` or ``all``, at the
embeddings only), ``knowledge.projection`` (width the vectors are projected to)
and ``knowledge.dropout``. Without a source it searches nothing and does nothing.

How it composes: the vectors travel as the dataset column
``knowledge_vectors``, which autobert's collator stacks into a tensor and the
trainer hands to the model because the model's ``forward`` takes it. The model
is whatever the other techniques built (the default [CLS] head, a ``pooling``
head), wrapped by ``autobert_build_model`` as a hook wrapper in
:class:`~autobert.heads.AutobertKnowledgeForSequenceClassification`,
which injects through forward hooks, keeps the wrapped encoder as
``base_model`` (so ``llrd``, ``reinit`` and ``multitask`` find it) and starts
as an exact no-op. The export loads with ``trust_remote_code=True``, records
the vectors' dimension and source in its config (``knowledge_dim``,
``knowledge_source``) and refuses a call without vectors of that dimension.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from autobert import Setting, hookimpl

INJECT = "knowledge.inject"
FUSION = "knowledge.fusion"
TOKENS = "knowledge.tokens"
PROJECTION = "knowledge.projection"
DROPOUT = "knowledge.dropout"

SOURCE_COLUMN = "knowledge.column"
SOURCE_VECTORS = "knowledge.vectors"
KEY_COLUMN = "knowledge.key_column"
TABLE = "knowledge.table"
SOURCE_SETTINGS = (SOURCE_COLUMN, SOURCE_VECTORS, KEY_COLUMN, TABLE)

#: The dataset column (and the model's ``forward`` argument) that carries the vectors.
COLUMN = "knowledge_vectors"
#: ``run.metadata`` key of the training vectors' per-feature (mean, std), which the model standardises with.
STANDARDIZE = "knowledge.standardize"
SPLITS = ("train", "validation", "test")
TABLE_FORMATS = (".json", ".npz", ".pt")


@hookimpl
def autobert_settings():
    return {
        SOURCE_COLUMN: Setting(None, help="a data column holding each row's vector"),
        SOURCE_VECTORS: Setting(None, path=True, help="one .npy per split, rows aligned: a path with {split}, "
                                                      "e.g. vectors/{split}.npy"),
        KEY_COLUMN: Setting(None, help="a data column of keys into `table`"),
        TABLE: Setting(None, path=True, help="a {key: vector} file (.json, .npz or .pt) for `key_column`"),
    }


@hookimpl
def autobert_search_space(space):
    # Without a vector source there is nothing to inject, so nothing to search.
    if not _has_source(space.settings):
        return
    inject = space.suggest_categorical(INJECT, ["none", "embeddings", "last_layer"])
    if inject == "none":
        return
    space.suggest_categorical(FUSION, ["add", "concat", "gated"])
    if inject == "embeddings":
        space.suggest_categorical(TOKENS, ["cls", "all"])
    space.suggest_int(PROJECTION, 16, 256, log=True)
    space.suggest_float(DROPOUT, 0.0, 0.3, valid="[0, 1)")


@hookimpl
def autobert_ablation():
    return {"off": {INJECT: "none"}, "on": {INJECT: "last_layer", FUSION: "gated", PROJECTION: 64, DROPOUT: 0.1}}


@hookimpl
def autobert_validate_study(study, settings):
    problems = _source_problems(settings)
    if problems:
        return problems
    if not _has_source(settings):
        searched = sorted(k for k in study.techniques.get("knowledge", {}) if f"knowledge.{k}" not in SOURCE_SETTINGS)
        return [f"techniques.knowledge.{name}: knowledge has no vectors to inject; set a source (column, vectors, "
                f"or key_column with table) or remove the key" for name in searched]
    dims = {}
    for split in SPLITS:
        try:
            _frame(study, split)
        except ValueError:
            continue  # no such split, or autobert's own data checks report it
        try:
            dims[split] = load_vectors(study, settings, split).shape[1]
        except ValueError as exc:
            problems.append(str(exc))
    if len(set(dims.values())) > 1:
        shown = ", ".join(f"{split} {dim}" for split, dim in dims.items())
        problems.append(f"{_source_key(settings)}: the splits' vectors differ in dimension ({shown}); "
                        "every split needs vectors of one dimension")
    return problems


# First (declared, see docs/plugin_hooks.md#order), on the rows as the data files give them: before
# distillation's teacher copies the splits and before augmentation copies training rows.
@hookimpl(tryfirst=True)
def autobert_modify_datasets(datasets, run):
    if run.params.get(INJECT, "none") == "none":
        return
    from datasets import List, Value

    for split, ds in list(datasets.items()):
        vectors = load_vectors(run.study, run.settings, split)
        if split == "train":
            run.metadata[STANDARDIZE] = (vectors.mean(axis=0), vectors.std(axis=0))
        if len(vectors) != len(ds):
            raise ValueError(f"{_source_key(run.settings)}: {len(vectors)} vectors for the {len(ds)} rows the "
                             f"{split} split has at this point; another technique changed its rows before knowledge ran")
        if COLUMN in ds.column_names:  # the split of a trial that already added them (distillation's teacher)
            ds = ds.remove_columns(COLUMN)
        datasets[split] = ds.add_column(COLUMN, list(vectors), feature=List(Value("float32")))
    run.metadata[COLUMN] = int(vectors.shape[1])


@hookimpl(wrapper=True)
def autobert_build_model(checkpoint, run):
    model = yield
    inject = run.params.get(INJECT, "none")
    if inject == "none":
        return model
    from autobert.heads import AutobertKnowledgeForSequenceClassification

    return AutobertKnowledgeForSequenceClassification.wrap(
        model, dim=run.metadata[COLUMN], inject=inject, fusion=run.params[FUSION],
        tokens=run.params.get(TOKENS, "cls"), projection=run.params[PROJECTION], dropout=run.params[DROPOUT],
        source=describe_source(run.settings), standardize=run.metadata.get(STANDARDIZE),
    )


# ---------------------------------------------------------------------------
# Reading the vectors
# ---------------------------------------------------------------------------


def _has_source(settings) -> bool:
    return any(settings.get(name) for name in SOURCE_SETTINGS)


def _source_key(settings) -> str:
    for name in (SOURCE_COLUMN, SOURCE_VECTORS, TABLE):
        if settings.get(name):
            return f"techniques.{name}"
    return "techniques.knowledge"


def _source_problems(settings) -> list[str]:
    given = [name for name in (SOURCE_COLUMN, SOURCE_VECTORS, KEY_COLUMN) if settings.get(name)]
    problems = []
    if len(given) > 1:
        problems.append(f"techniques.knowledge: {' and '.join(n.split('.', 1)[1] for n in given)} are each a source of "
                        "vectors; keep one (column, vectors, or key_column with table)")
    if bool(settings.get(KEY_COLUMN)) != bool(settings.get(TABLE)):
        missing, given_one = (TABLE, KEY_COLUMN) if settings.get(KEY_COLUMN) else (KEY_COLUMN, TABLE)
        problems.append(f"techniques.{given_one}: needs techniques.{missing} too (a column of keys and the "
                        "{key: vector} file they index)")
    template = settings.get(SOURCE_VECTORS)
    if template and "{split}" not in str(template):
        problems.append(f"techniques.{SOURCE_VECTORS}: {template} names one file; give one .npy per split with "
                        "{split} in the path, e.g. vectors/{split}.npy (train.npy, validation.npy, test.npy)")
    return problems


def describe_source(settings) -> str:
    """Where the vectors come from, in words (recorded in the exported model's config)."""
    if settings.get(SOURCE_COLUMN):
        return f"the data column {settings[SOURCE_COLUMN]!r}"
    if settings.get(SOURCE_VECTORS):
        return f"the .npy files {settings[SOURCE_VECTORS]}"
    if settings.get(TABLE):
        return f"{settings[TABLE]} indexed by the data column {settings.get(KEY_COLUMN)!r}"
    return ""


def load_vectors(study, settings, split: str):
    """The ``(rows, dim)`` float32 vectors of one split, in the split's row order.

    Raises:
        ValueError: naming the setting, the file or row, and the fix.
    """
    import numpy as np

    if settings.get(SOURCE_VECTORS):
        key = f"techniques.{SOURCE_VECTORS}"
        path = Path(str(settings[SOURCE_VECTORS]).replace("{split}", split))
        if not path.is_file():
            raise ValueError(f"{key}: no file {path} for the {split} split; write one .npy per split, "
                             f"rows in the order of data.{split}")
        try:
            vectors = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise ValueError(f"{key}: cannot read {path} as .npy ({type(exc).__name__}: {exc})") from None
        rows = len(_frame(study, split))
        if vectors.ndim != 2 or len(vectors) != rows:
            raise ValueError(f"{key}: {path} has shape {vectors.shape}, but data.{split} has {rows} rows; it needs "
                             f"shape ({rows}, dim), one vector per row in the split's order")
        where = str(path)
    elif settings.get(SOURCE_COLUMN):
        column = settings[SOURCE_COLUMN]
        key = f"techniques.{SOURCE_COLUMN}"
        frame = _frame(study, split)
        if column not in frame.columns:
            raise ValueError(f"{key}: column {column!r} is not in data.{split} (columns: "
                             f"{', '.join(map(str, frame.columns))}); set it to the column holding the vectors")
        vectors = _stack([_parse_vector(v, f"{key}: data.{split} row {i}") for i, v in enumerate(frame[column])],
                         f"{key}: data.{split}")
        where = f"column {column!r} of data.{split}"
    else:
        column = settings[KEY_COLUMN]
        key = f"techniques.{TABLE}"
        frame = _frame(study, split)
        if column not in frame.columns:
            raise ValueError(f"techniques.{KEY_COLUMN}: column {column!r} is not in data.{split} (columns: "
                             f"{', '.join(map(str, frame.columns))}); set it to the column of keys")
        table = _read_table(str(settings[TABLE]))
        keys = [str(k) for k in frame[column]]
        unknown = list(dict.fromkeys(k for k in keys if k not in table))
        if unknown:
            shown = ", ".join(repr(k) for k in unknown[:5])
            raise ValueError(f"{key}: {len(unknown)} key(s) of data.{split} are not in {settings[TABLE]} ({shown}"
                             f"{', ...' if len(unknown) > 5 else ''}); add their vectors to the table")
        vectors = _stack([table[k] for k in keys], f"{key}: data.{split}")
        where = f"{settings[TABLE]} for data.{split}"
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise ValueError(f"{key}: the vectors of {where} have shape {vectors.shape}; need one non-empty vector per row")
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        raise ValueError(f"{key}: {int(bad.sum())} vector(s) of {where} hold NaN or infinity (first: row "
                         f"{int(bad.argmax())}); replace them")
    return vectors


def _frame(study, split: str):
    from autobert.services import read_split

    return read_split(study, split)


def _parse_vector(value, where: str):
    import numpy as np

    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else [float(x) for x in text.replace(",", " ").split()]
        except ValueError:
            raise ValueError(f"{where}: cannot read a vector from {value[:60]!r}; write a JSON list [0.1, 0.2, ...] "
                             "or numbers separated by spaces") from None
    vector = np.asarray(value, dtype=np.float32)
    if vector.ndim != 1:
        raise ValueError(f"{where}: a vector must be a flat list of numbers, got shape {vector.shape}")
    return vector


def _stack(vectors: list, where: str):
    import numpy as np

    dims = {len(v) for v in vectors}
    if len(dims) > 1:
        raise ValueError(f"{where}: the vectors differ in length ({', '.join(map(str, sorted(dims)))}); "
                         "every vector needs the same dimension")
    return np.stack([np.asarray(v, dtype=np.float32) for v in vectors])


def _read_table(path: str) -> dict:
    stat = Path(path).stat() if Path(path).is_file() else None
    if stat is None:
        raise ValueError(f"techniques.{TABLE}: file not found: {path} (paths are relative to the study file's folder)")
    return _read_table_cached(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=2)
def _read_table_cached(path: str, mtime: int, size: int) -> dict:
    import numpy as np

    suffix = Path(path).suffix.lower()
    key = f"techniques.{TABLE}"
    if suffix not in TABLE_FORMATS:
        raise ValueError(f"{key}: {path} is a {suffix or 'suffix-less'} file; use .json ({{key: [numbers]}}), "
                         ".npz (numpy.savez(path, **vectors)) or .pt (torch.save of a dict)")
    try:
        if suffix == ".json":
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                raw = {k: archive[k] for k in archive.files}
        else:
            import torch

            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{key}: cannot read {path} ({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{key}: {path} holds a {type(raw).__name__}, not a {{key: vector}} mapping")
    return {str(k): (v.numpy() if hasattr(v, "numpy") else v) for k, v in raw.items()}
