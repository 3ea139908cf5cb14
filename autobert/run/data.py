"""Loading the task's splits, mapping labels to ids, and fingerprinting the data.

Every row is checked while loading: a problem (an empty text, a missing label, a
file that is not UTF-8) is an error naming the split's key, the file, the rows
and the fix; a doubt (duplicates, rows shared between splits, a class with very
few examples) is a warning with its count, kept in :attr:`TaskData.warnings`.
A UTF-8 byte-order mark and Windows line ends are accepted as they are.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autobert.config.schema import DataConfig, HubSource, StudyConfig
from autobert.errors import ConfigError
from autobert.stage_cache import content_key

SPLITS = ("train", "validation", "test")
FILE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
# A class with fewer training examples than this gets a warning: it can hardly be learned or scored.
FEW_EXAMPLES = 5
# Row numbers shown in one message; the rest are counted.
SHOWN_ROWS = 5
_WHOLE = re.compile(r"[+-]?\d+(?:\.0*)?")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
class TaskData:
    """The task's splits with columns ``text`` (str) and ``label`` (int id).

    ``warnings`` lists what loading found doubtful but not wrong (each names its
    key and count); ``lines`` maps a split to each row's line in its file (CSV
    and TSV files), so later checks can name rows the way an editor shows them.
    """

    splits: dict[str, Any]
    label_names: list[str]
    fingerprints: dict[str, str]
    warnings: tuple[str, ...] = ()
    lines: dict[str, list[int]] = field(default_factory=dict, repr=False, compare=False)
    files: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def rows(self, split: str, indices: list[int]) -> str:
        """``rows 3, 7 (file lines 4, 8)`` for 0-based row ``indices`` of ``split``."""
        return describe_rows(indices, self.lines.get(split))


def describe_rows(indices: list[int], lines: list[int] | None = None) -> str:
    """Rows are counted from 1 after the header; ``lines`` adds each row's line in the file."""
    shown = list(indices)[:SHOWN_ROWS]
    text = ("row " if len(indices) == 1 else "rows ") + ", ".join(str(i + 1) for i in shown)
    if len(indices) > len(shown):
        text += f" and {len(indices) - len(shown)} more"
    if lines:
        text += f" (file line{'s' if len(shown) > 1 else ''} {', '.join(str(lines[i]) for i in shown)})"
    return text


# ---------------------------------------------------------------------------
# Reading one file
# ---------------------------------------------------------------------------


class _Unreadable(ValueError):
    """A data file that cannot be read; the message names the key, the file and the fix."""


def _decode(raw: bytes, path: Path, key: str, separator: str | None) -> str:
    """The file's text: UTF-8, with a byte-order mark (UTF-8, UTF-16 or UTF-32) taken as it says."""
    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
                       (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if raw.startswith(bom):
            try:
                return raw.decode(codec)
            except UnicodeDecodeError:
                break
    if b"\x00" in raw[:4096]:
        raise _Unreadable(
            f"{key}: {path} is not a text file (it holds NUL bytes: a binary file, or UTF-16 without a byte-order "
            "mark); save the data as UTF-8 CSV, TSV or JSON lines, or as Parquet (.parquet)"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        first = raw[exc.start:exc.start + 1].hex()
        latin = raw.decode("latin-1")
        bad_lines = [n for n, line in enumerate(raw.split(b"\n"), 1) if not _is_utf8(line)]
        where = f"file line{'s' if len(bad_lines) > 1 else ''} {', '.join(map(str, bad_lines[:SHOWN_ROWS]))}"
        if len(bad_lines) > SHOWN_ROWS:
            where += f" and {len(bad_lines) - SHOWN_ROWS} more"
        if separator is not None:
            starts = _row_lines(latin, separator)
            if starts:
                rows = [i for i, start in enumerate(starts) if any(start <= n < _next(starts, i) for n in bad_lines)]
                header_bad = 1 in bad_lines
                if rows:
                    where = describe_rows(rows, starts) + (" and the header" if header_bad else "")
        snippet = latin.split("\n")[bad_lines[0] - 1].strip()[:60]
        return_hint = "Latin-1 / Windows-1252" if raw[exc.start] >= 0xA0 else "another encoding (Windows-1252, Mac Roman, ...)"
        raise _Unreadable(
            f"{key}: {path} is not UTF-8: {where} hold{'s' if where.startswith(('row ', 'file line ')) else ''} bytes that "
            f"are not UTF-8 (the first, 0x{first}, in {snippet!r}); it looks like {return_hint}. Save the file as "
            f"UTF-8 (a spreadsheet's 'CSV UTF-8', or `iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}`)"
        ) from None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _next(starts: list[int], i: int) -> int:
    return starts[i + 1] if i + 1 < len(starts) else 1 << 62


def _row_lines(text: str, separator: str) -> list[int] | None:
    """Each data row's first line in ``text`` (a CSV/TSV with a header), skipping blank lines as pandas does."""
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
        starts, end = [], 0
        for record in reader:
            if record:
                starts.append(end + 1)
            end = reader.line_num
        return starts[1:]
    except csv.Error:
        return None


def _read_table(path: Path, key: str = "data"):
    """Read a local file or ``datasets`` folder into a pandas frame, and each row's line (CSV/TSV) or None."""
    import pandas as pd

    if path.is_dir():
        if not any((path / name).exists() for name in ("state.json", "dataset_info.json", "dataset_dict.json")):
            raise _Unreadable(
                f"{key}: {path} is a folder, not a data file; point at the file itself (e.g. {path}/train.csv) "
                "or at a folder saved with datasets' save_to_disk"
            )
        from datasets import DatasetDict, load_from_disk

        try:
            loaded = load_from_disk(str(path))
        except Exception as exc:
            raise _Unreadable(f"{key}: cannot load the datasets folder {path} ({type(exc).__name__}: {_first_line(exc)}); "
                              "save it again with Dataset.save_to_disk, or export it as CSV") from None
        if isinstance(loaded, DatasetDict):
            raise _Unreadable(f"{key}: {path} holds several splits ({', '.join(loaded)}); point at one split's folder")
        return loaded.to_pandas(), None
    if not path.is_file():
        raise _Unreadable(f"{key}: {path} is not a regular file (a device or a pipe); point at a data file")
    kind = FILE_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise _Unreadable(
            f"{key}: {path}: unknown file type {path.suffix!r}; use .csv, .tsv, .json, .jsonl, .parquet "
            "or a folder saved with datasets' save_to_disk"
        )
    try:
        raw = path.read_bytes()
    except PermissionError:
        raise _Unreadable(f"{key}: {path} cannot be read (permission denied); make it readable "
                          f"(chmod u+r {path}) or copy the data somewhere readable") from None
    except OSError as exc:
        raise _Unreadable(f"{key}: {path} cannot be read ({exc.strerror or exc}); check the file and the disk") from None
    if not raw.strip():
        raise _Unreadable(f"{key}: {path} is empty; write a header line (e.g. text,label) and one row per example")
    if kind == "parquet":
        try:
            return pd.read_parquet(io.BytesIO(raw)), None
        except Exception as exc:
            raise _Unreadable(f"{key}: {path} is not a readable Parquet file ({type(exc).__name__}: {_first_line(exc)}); "
                              "write it again, or save the data as CSV") from None
    separator = {"csv": ",", "tsv": "\t"}.get(kind)
    text = _decode(raw, path, key, separator)
    if kind == "json":
        lines = path.suffix.lower() == ".jsonl" or not text.lstrip().startswith("[")
        try:
            return pd.read_json(io.StringIO(text), lines=lines, dtype=False), None
        except Exception as exc:
            raise _Unreadable(
                f"{key}: {path} is not valid JSON{' lines' if lines else ''} ({_first_line(exc)}); write one object "
                "per line ({\"text\": ..., \"label\": ...}) or one array of such objects"
            ) from None
    try:
        frame = pd.read_csv(io.StringIO(text), sep=separator, keep_default_na=False, dtype=str)
    except pd.errors.EmptyDataError:
        raise _Unreadable(f"{key}: {path} has no header line; write one (e.g. text,label) above the rows") from None
    except pd.errors.ParserError as exc:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if found:
            expected, line, saw = found.groups()
            name = "comma" if separator == "," else "tab"
            raise _Unreadable(
                f"{key}: {path} file line {line} has {saw} fields where the header has {expected}; a text holding a "
                f"{name} must be quoted (\"like, this\"), or that row has a field too many: fix it"
            ) from None
        raise _Unreadable(f"{key}: {path} cannot be parsed as {kind.upper()} ({_first_line(exc)}); check its quoting "
                          "(every opening \" needs its closing \")") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    lines = _row_lines(text, separator)
    return frame, (lines if lines is not None and len(lines) == len(frame) else None)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def _read_source(source: str | HubSource, study: StudyConfig, key: str):
    """The split's frame and its rows' lines in the file (None where rows are not lines)."""
    if isinstance(source, HubSource):
        from datasets import load_dataset

        try:
            return load_dataset(source.hub, source.config, split=source.split).to_pandas(), None
        except Exception as exc:
            raise _Unreadable(
                f"{key}: could not load {source.hub!r} split {source.split!r} from the hub "
                f"({type(exc).__name__}: {_first_line(exc)}); check the id and your network, or use a local file"
            ) from None
    path = study.resolve_path(source)
    if not source.strip():
        raise _Unreadable(f"{key}: the path is empty; give the split's file (e.g. data/{key.split('.')[-1]}.csv)")
    if not path.exists():
        given = Path(os.path.expanduser(source))
        given = given if given.is_absolute() else study.base_dir / given
        if os.path.islink(given) or os.path.islink(path):
            link = given if os.path.islink(given) else path
            raise _Unreadable(f"{key}: {link} is a symbolic link to nothing (it points at {os.readlink(link)}: a broken "
                              "link, or links pointing at each other); point the link at the file, or write the "
                              "file's own path")
        raise _Unreadable(
            f"{key}: file not found: {path} (paths are relative to the study file's folder); "
            "fix the path, or write {hub: ID, split: NAME} for a hub dataset"
        )
    try:
        return _read_table(path, key)
    except _Unreadable:
        raise
    except Exception as exc:
        raise _Unreadable(f"{key}: cannot read {path} ({type(exc).__name__}: {_first_line(exc)}); check the file "
                          "is a CSV, TSV, JSON lines or Parquet file") from None


def read_split(study: StudyConfig, split: str):
    """One split's raw table (a pandas frame) with every column, rows in the order the split's ``Dataset`` has.

    For techniques that read columns besides text and label (e.g. a column of vectors).
    CSV and TSV columns are read as text.

    Raises:
        ValueError: the study has no such split, or its file cannot be read; the message says why.
    """
    source = getattr(study.data, split, None)
    if source is None:
        raise ValueError(f"data.{split}: the study has no {split} split")
    return _read_source(source, study, f"data.{split}")[0]


def fingerprint(texts: list[str], labels: list[int]) -> str:
    """A hash of the rows, in order (recorded in frozen configs: its value must not change)."""
    return content_key((json.dumps([text, label]).encode() for text, label in zip(texts, labels)), 16)


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, pandas' NA
    except (TypeError, ValueError):
        return False


def _label(value: Any) -> tuple[str, Any]:
    """``("missing", None)``, ``("id", int)``, ``("fraction", value)`` or ``("name", str)``."""
    if _missing(value):
        return "missing", None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalars
    if isinstance(value, bool):
        return "id", int(value)
    if isinstance(value, int):
        return "id", value
    if isinstance(value, float):
        if not math.isfinite(value):
            return "fraction", value
        return ("id", int(value)) if value.is_integer() else ("fraction", value)
    text = str(value).strip()
    if not text:
        return "missing", None
    if _WHOLE.fullmatch(text):
        return "id", int(float(text))
    if _NUMBER.fullmatch(text):
        return "fraction", text
    return "name", text


def _text(value: Any) -> str | None:
    if _missing(value):
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else str(value)


# ---------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------


@dataclass
class _Split:
    key: str
    path: str
    frame: Any
    lines: list[int] | None

    def rows(self, indices: list[int]) -> str:
        return describe_rows(indices, self.lines)


def load_task_data(study: StudyConfig) -> TaskData:
    """Load and check every split of ``study``; all problems are reported at once.

    Raises:
        ConfigError: a file is missing or unreadable, a column is missing, a
            text is empty, a label is missing, fractional or unknown, the
            training split has a single class.
    """
    from datasets import Dataset

    cfg = study.data
    problems: list[str] = []
    warnings: list[str] = []
    loaded: dict[str, _Split] = {}
    if cfg.text_column == cfg.label_column:
        problems.append(f"data.label_column: the same column ({cfg.label_column!r}) as data.text_column; "
                        "name the column holding the labels")
    names_given = len(problems)
    if cfg.label_names is not None:
        if len(set(cfg.label_names)) != len(cfg.label_names):
            repeated = sorted(n for n, c in Counter(cfg.label_names).items() if c > 1)
            problems.append(f"data.label_names: {', '.join(map(repr, repeated))} repeat(s); give each label once")
        if len(cfg.label_names) < 2:
            problems.append(f"data.label_names: {len(cfg.label_names)} name(s) given; a classifier needs two or more "
                            "(or remove the key to read the labels from data.train)")
        if any(not n.strip() for n in cfg.label_names):
            problems.append("data.label_names: an empty name; give every label a name")
    names_ok = len(problems) == names_given
    for split in SPLITS:
        source = getattr(cfg, split)
        if source is None:
            continue
        key = f"data.{split}"
        try:
            frame, lines = _read_source(source, study, key)
        except _Unreadable as exc:
            problems.append(str(exc))
            continue
        where = source if isinstance(source, str) else f"{source.hub} ({source.split})"
        shown = str(study.resolve_path(source)) if isinstance(source, str) else where
        columns = [str(c) for c in frame.columns]
        missing = [c for c in (cfg.text_column, cfg.label_column) if c not in columns]
        for column in missing:
            which = "text_column" if column == cfg.text_column else "label_column"
            hint = ""
            if len(missing) == 2 and len(frame):
                hint = (f"; if the first line is a row of data rather than a header, add a header line "
                        f"({cfg.text_column},{cfg.label_column}) at the top of {shown}")
            problems.append(
                f"data.{which}: column {column!r} is not in {key} {shown} (columns: "
                f"{', '.join(columns)}); set data.{which} to one of them{hint}"
            )
        if len(columns) != len(set(columns)):
            problems.append(f"{key}: {shown} names a column twice ({', '.join(sorted(c for c, n in Counter(columns).items() if n > 1))}); "
                            "give every column its own name")
            continue
        if not missing:
            if len(frame) == 0:
                problems.append(f"{key}: {shown} has a header but no rows; add one row per example")
                continue
            loaded[split] = _Split(key, shown, frame, lines)
    if problems or "train" not in loaded:
        raise ConfigError("study file", problems)

    texts: dict[str, list[str]] = {}
    values: dict[str, list[tuple[str, Any]]] = {}
    for split, part in loaded.items():
        raw_texts = [_text(v) for v in part.frame[cfg.text_column].tolist()]
        empty = [i for i, t in enumerate(raw_texts) if t is None or not t.strip()]
        if empty:
            problems.append(
                f"{part.key}: {part.path}: {len(empty)} row{'s have' if len(empty) > 1 else ' has'} an empty text "
                f"(column {cfg.text_column!r}), {part.rows(empty)}; write the text or delete the row"
            )
        texts[split] = [t if t is not None else "" for t in raw_texts]
        values[split] = [_label(v) for v in part.frame[cfg.label_column].tolist()]
        no_label = [i for i, (kind, _) in enumerate(values[split]) if kind == "missing"]
        if no_label:
            problems.append(
                f"{part.key}: {part.path}: {len(no_label)} row{'s have' if len(no_label) > 1 else ' has'} no label "
                f"(column {cfg.label_column!r}), {part.rows(no_label)}; give each row its label or delete it "
                "(autobert never guesses a label)"
            )
        fractions = [i for i, (kind, _) in enumerate(values[split]) if kind == "fraction"]
        if fractions:
            shown_values = ", ".join(dict.fromkeys(str(values[split][i][1]) for i in fractions[:SHOWN_ROWS]))
            problems.append(
                f"{part.key}: {part.path}: label{'s' if len(fractions) > 1 else ''} {shown_values} at "
                f"{part.rows(fractions)} {'are' if len(fractions) > 1 else 'is'} not a whole number; labels are class "
                "ids (0, 1, ...) or class names: fix those rows (a regression target is not supported)"
            )

    names = _label_names(cfg, values["train"], names_ok)
    splits, prints, ids_by_split = {}, {}, {}
    for split, part in loaded.items() if names else ():
        ids = _label_ids(values[split], names, part, cfg, problems)
        if ids is not None:
            ids_by_split[split] = ids
    if not problems and names:
        counts = Counter(ids_by_split["train"])
        present = [names[i] for i in sorted(counts)]
        if len(present) < 2:
            part = loaded["train"]
            problems.append(
                f"data.train: {part.path}: every row has the label {present[0]!r}; a classifier needs examples "
                "of two or more classes: add rows of the other classes"
            )
        absent = [n for i, n in enumerate(names) if i not in counts]
        if absent and len(present) >= 2:
            warnings.append(
                f"data.train: {len(absent)} of the {len(names)} classes have no training rows ({', '.join(map(repr, absent[:10]))}); "
                + ("the labels are read as class ids 0..{0}, so every id in between is a class: if they are "
                   "names, list them in data.label_names".format(len(names) - 1) if not cfg.label_names else
                   "the model can never predict them: add examples or remove them from data.label_names")
            )
        few = {names[i]: c for i, c in sorted(counts.items()) if c < FEW_EXAMPLES}
        if few and len(present) >= 2:
            warnings.append(
                f"data.train: {len(few)} class{'es have' if len(few) > 1 else ' has'} fewer than {FEW_EXAMPLES} "
                f"training examples ({', '.join(f'{n!r}: {c}' for n, c in list(few.items())[:10])} of "
                f"{len(ids_by_split['train'])} rows); it can hardly be learned or scored: add examples or merge the class"
            )
    if problems:
        raise ConfigError("study file", problems)
    warnings.extend(_duplicates(loaded, texts, ids_by_split))
    for split in loaded:
        splits[split] = Dataset.from_dict({"text": texts[split], "label": ids_by_split[split]})
        prints[split] = fingerprint(texts[split], ids_by_split[split])
    return TaskData(splits, names, prints, tuple(warnings),
                    {s: p.lines for s, p in loaded.items() if p.lines}, {s: p.path for s, p in loaded.items()})


def _label_names(cfg: DataConfig, train: list[tuple[str, Any]], names_ok: bool) -> list[str] | None:
    if cfg.label_names:
        return list(cfg.label_names) if names_ok else None
    kinds = {kind for kind, _ in train}
    if kinds - {"id", "name"}:
        return None  # missing or fractional labels are reported already
    if kinds == {"id"}:  # class ids: 0 .. the largest
        return [str(i) for i in range(max(0, max(v for _, v in train)) + 1)]
    return sorted({str(v) for _, v in train})


def _label_ids(values: list[tuple[str, Any]], names: list[str], part: _Split, cfg: DataConfig,
               problems: list[str]) -> list[int] | None:
    """Each row's class id: a name is looked up; a whole number is an id, unless it is itself a name."""
    index = {n: i for i, n in enumerate(names)}
    numbered = names == [str(i) for i in range(len(names))]
    ids, unknown = [], []
    for i, (kind, value) in enumerate(values):
        if kind not in ("id", "name"):
            return None  # reported already
        found = index.get(str(value))
        if kind == "id" and (numbered or (found is None and cfg.label_names)):
            found = value if 0 <= value < len(names) else None
        if found is None:
            unknown.append(i)
        else:
            ids.append(found)
    if unknown:
        shown = ", ".join(dict.fromkeys(repr(values[i][1]) for i in unknown[:SHOWN_ROWS]))
        listed = ", ".join(map(repr, names[:20])) + (" ..." if len(names) > 20 else "")
        source = "data.label_names" if cfg.label_names else "data.train"
        ids_hint = f" nor an id 0..{len(names) - 1}" if cfg.label_names else ""
        problems.append(
            f"{part.key}: {part.path}: label(s) {shown} at {part.rows(unknown)} are not among the {len(names)} "
            f"labels of {source} ({listed}){ids_hint}; fix those rows, or list every label in data.label_names"
        )
        return None
    return ids


def _duplicates(loaded: dict[str, _Split], texts: dict[str, list[str]], ids: dict[str, list[int]]) -> list[str]:
    found = []
    for split, part in loaded.items():
        seen: dict[tuple[str, int], int] = {}
        repeats, conflicts, label_of = [], [], {}
        for i, (text, label) in enumerate(zip(texts[split], ids[split])):
            norm = text.strip()
            if (norm, label) in seen:
                repeats.append(i)
            seen.setdefault((norm, label), i)
            if norm in label_of and label_of[norm] != label:
                conflicts.append(i)
            label_of.setdefault(norm, label)
        if repeats:
            found.append(f"{part.key}: {len(repeats)} row{'s repeat' if len(repeats) > 1 else ' repeats'} an earlier "
                         f"row (same text and label), {part.rows(repeats)}; repeated rows weigh more in training and "
                         "scoring: remove them unless meant")
        if conflicts:
            found.append(f"{part.key}: {len(conflicts)} row{'s repeat' if len(conflicts) > 1 else ' repeats'} an "
                         f"earlier row's text with another label, {part.rows(conflicts)}; check which label is right")
    train = {t.strip() for t in texts["train"]}
    for split in ("validation", "test"):
        if split not in loaded:
            continue
        shared = [i for i, t in enumerate(texts[split]) if t.strip() in train]
        if shared:
            n = len(texts[split])
            found.append(f"data.{split}: {len(shared)} of its {n} rows ({100 * len(shared) / n:.0f} %) also appear "
                         f"in data.train, {loaded[split].rows(shared)}; their scores are optimistic: remove them from "
                         f"one of the two splits")
    return found
