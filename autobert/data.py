"""Loading the task's splits, mapping labels to ids, and fingerprinting the data."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autobert.config import DataConfig, HubSource, StudyConfig
from autobert.errors import ConfigError

SPLITS = ("train", "validation", "test")
FILE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


@dataclass(frozen=True)
class TaskData:
    """The task's splits with columns ``text`` (str) and ``label`` (int id)."""

    splits: dict[str, Any]
    label_names: list[str]
    fingerprints: dict[str, str]

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def _read_table(path: Path):
    """Read a local file or ``datasets`` folder into a pandas frame."""
    import pandas as pd

    if path.is_dir():
        from datasets import DatasetDict, load_from_disk

        loaded = load_from_disk(str(path))
        if isinstance(loaded, DatasetDict):
            raise ValueError(
                f"{path} holds several splits ({', '.join(loaded)}); point at one split's folder"
            )
        return loaded.to_pandas()
    kind = FILE_FORMATS.get(path.suffix.lower())
    if kind == "csv":
        return pd.read_csv(path, keep_default_na=False)
    if kind == "tsv":
        return pd.read_csv(path, sep="\t", keep_default_na=False)
    if kind == "json":
        return pd.read_json(path, lines=path.suffix.lower() == ".jsonl" or _is_json_lines(path))
    if kind == "parquet":
        return pd.read_parquet(path)
    raise ValueError(
        f"{path}: unknown file type {path.suffix!r}; use .csv, .tsv, .json, .jsonl, .parquet "
        "or a folder saved with datasets' save_to_disk"
    )


def _is_json_lines(path: Path) -> bool:
    with open(path, encoding="utf-8") as f:
        return not f.read(1).lstrip().startswith("[")


def _read_source(source: str | HubSource, study: StudyConfig, key: str):
    if isinstance(source, HubSource):
        from datasets import load_dataset

        try:
            return load_dataset(source.hub, source.config, split=source.split).to_pandas()
        except Exception as exc:
            raise ValueError(
                f"{key}: could not load {source.hub!r} split {source.split!r} from the hub "
                f"({type(exc).__name__}: {exc}); check the id and your network, or use a local file"
            ) from None
    path = study.resolve_path(source)
    if not path.exists():
        raise ValueError(
            f"{key}: file not found: {path} (paths are relative to the study file's folder); "
            "fix the path, or write {hub: ID, split: NAME} for a hub dataset"
        )
    try:
        return _read_table(path)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"{key}: cannot read {path}: {type(exc).__name__}: {exc}") from None


def read_split(study: StudyConfig, split: str):
    """One split's raw table (a pandas frame) with every column, rows in the order the split's ``Dataset`` has.

    For techniques that read columns besides text and label (e.g. a column of vectors).

    Raises:
        ValueError: the study has no such split, or its file cannot be read; the message says why.
    """
    source = getattr(study.data, split, None)
    if source is None:
        raise ValueError(f"data.{split}: the study has no {split} split")
    return _read_source(source, study, f"data.{split}")


def fingerprint(texts: list[str], labels: list[int]) -> str:
    h = hashlib.sha256()
    for text, label in zip(texts, labels):
        h.update(json.dumps([text, label]).encode())
    return h.hexdigest()[:16]


def _label_names(cfg: DataConfig, frames: dict[str, Any], problems: list[str]) -> list[str] | None:
    train = frames["train"][cfg.label_column]
    is_int = all(isinstance(v, int) or (hasattr(v, "is_integer") and float(v).is_integer()) for v in train.tolist()[:1000])
    if cfg.label_names:
        if len(set(cfg.label_names)) != len(cfg.label_names):
            problems.append("data.label_names: names repeat; give each label once")
            return None
        return list(cfg.label_names)
    if is_int:
        return [str(i) for i in range(int(max(train.tolist())) + 1)]
    return sorted({str(v) for v in train.tolist()})


def _label_ids(values: list, names: list[str], key: str, problems: list[str]) -> list[int] | None:
    index = {n: i for i, n in enumerate(names)}
    ids, unknown = [], []
    for v in values:
        if isinstance(v, str) and v in index:
            ids.append(index[v])
        elif not isinstance(v, str) and float(v).is_integer() and 0 <= int(v) < len(names):
            ids.append(int(v))
        else:
            unknown.append(v)
    if unknown:
        shown = ", ".join(repr(u) for u in list(dict.fromkeys(unknown))[:5])
        problems.append(
            f"{key}: label(s) {shown} are not among the {len(names)} labels {names}; "
            "fix the data or list every label in data.label_names"
        )
        return None
    return ids


def load_task_data(study: StudyConfig) -> TaskData:
    """Load and check every split of ``study``; all problems are reported at once.

    Raises:
        ConfigError: a file is missing or unreadable, a column is missing, a
            label is unknown.
    """
    from datasets import Dataset

    cfg = study.data
    problems: list[str] = []
    frames: dict[str, Any] = {}
    for split in SPLITS:
        source = getattr(cfg, split)
        if source is None:
            continue
        key = f"data.{split}"
        try:
            frame = _read_source(source, study, key)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        missing = [c for c in (cfg.text_column, cfg.label_column) if c not in frame.columns]
        for column in missing:
            which = "text_column" if column == cfg.text_column else "label_column"
            problems.append(
                f"data.{which}: column {column!r} is not in {key} (columns: "
                f"{', '.join(map(str, frame.columns))}); set data.{which} to one of them"
            )
        if not missing:
            if len(frame) == 0:
                problems.append(f"{key}: the split has no rows")
            frames[split] = frame
    if problems or "train" not in frames:
        raise ConfigError("study file", problems)

    names = _label_names(cfg, frames, problems)
    splits, prints = {}, {}
    for split, frame in frames.items() if names else ():
        labels = _label_ids(frame[cfg.label_column].tolist(), names, f"data.{split}", problems)
        if labels is None:
            continue
        texts = [str(t) for t in frame[cfg.text_column].tolist()]
        splits[split] = Dataset.from_dict({"text": texts, "label": labels})
        prints[split] = fingerprint(texts, labels)
    if problems:
        raise ConfigError("study file", problems)
    if len(names) < 2:
        raise ConfigError("study file", [f"data.{cfg.label_column}: only one label ({names}); a classifier needs two or more"])
    return TaskData(splits, names, prints)
