"""No bad input gets through: a fuzzing harness over study files, data files and paths.

Each example starts from a valid tiny study and mutates it (a key missing, of the
wrong type or out of range; a data file with empty values, other encodings,
duplicates, overlap between splits; a path that is missing, a folder or a link
loop). The property, checked through the command line as a user meets it:

- ``autobert validate`` exits 0 (accepted, warnings allowed), or exits 2 with one
  error whose every problem starts with a key, names the mutated key (and the
  file and rows where there are some) and says what to do; never a traceback;
- ``autobert search`` refuses the same inputs before touching the study's
  storage (its bytes are unchanged), and trains on the accepted ones.

The normal suite runs a few dozen examples (validation only); run
``pytest tests/test_fuzz_inputs.py --hypothesis-profile=long`` for hundreds.
Every hole the harness found is kept below as an explicit regression example
(``test_regression_*``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from autobert.cli import main
from autobert.config.schema import load_study
from autobert.errors import ConfigError
from autobert.config.space import ParamSpec, apply_override
from autobert.testing import make_tiny_model, synthetic_rows
from cli_helpers import KEY, problems_of, run_cli

DELETE = object()
ONLY = ["finetune"]
# Words people use to say what to do; every problem must contain one after its key.
FIX_WORDS = re.compile(
    r"\b(add|remove|set|give|fix|write|save|choose|point|make|use|delete|check|rename|quote|list|raise|swap|drop|"
    r"install|name|keep|merge|export|start|copy|change|pip install)\b", re.I)


# ---------------------------------------------------------------------------
# The base study and how an example runs
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("fuzz-model") / "tiny-bert", [t for t, _ in synthetic_rows(300, seed=1)])


def base_rows(n: int, seed: int) -> list[list[str]]:
    return [[text, str(label)] for text, label in synthetic_rows(n, seed=seed)]


def base_study(model: Path) -> dict:
    return {
        "name": "fuzz",
        "model": str(model),
        "data": {"train": "data/train.csv", "validation": "data/validation.csv"},
        "max_length": 32,
        "budget": {"trials": 1},
        "pruner": "none",
        "disable": [],  # filled in by Example.write
        "techniques": {"finetune": {"learning_rate": 5e-3, "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0}},
    }


def csv_bytes(rows: list[list[str]], header=("text", "label"), encoding="utf-8", newline="\n") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


class Example:
    """One study folder: a study dict and its data files, written to a fresh temporary folder."""

    def __init__(self, model: Path, directory: Path):
        self.directory = directory
        self.study = base_study(model)
        self.files: dict[str, bytes] = {
            "data/train.csv": csv_bytes(base_rows(40, seed=1)),
            "data/validation.csv": csv_bytes(base_rows(16, seed=2)),
        }
        self.study_text: str | None = None

    @property
    def path(self) -> Path:
        return self.directory / "fuzz.yaml"

    def write(self) -> Path:
        from autobert.run.plugin_manager import available_technique_names

        if self.study.get("disable") == []:
            self.study["disable"] = [t for t in available_technique_names() if t not in ONLY]
        for name, content in self.files.items():
            target = self.directory / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        self.path.write_text(self.study_text if self.study_text is not None else yaml.safe_dump(self.study),
                             encoding="utf-8")
        return self.path


def assert_refused_well(rc: int, output: str, key: str, *, file: str | None = None, rows: list[int] = ()) -> list[str]:
    """Exit 2; every problem starts with a key and says what to do; one names ``key`` (and the file and rows)."""
    assert "Traceback" not in output, output
    assert rc == 2, f"expected exit 2 naming {key!r}, got {rc}:\n{output}"
    problems = problems_of(output)
    assert problems, output
    for problem in problems:
        assert KEY.match(problem), f"a problem without its key: {problem!r}"
        assert FIX_WORDS.search(problem.split(": ", 1)[1]), f"a problem without a fix: {problem!r}"
    named = [p for p in problems if KEY.match(p).group("key") == key or KEY.match(p).group("key").startswith(key + ".")
             or key.startswith(KEY.match(p).group("key") + ".")]
    assert named, f"no problem names {key!r}: {problems}"
    if file is not None:
        assert any(file in p for p in named), f"no problem of {key!r} names {file}: {named}"
    for row in rows:
        assert any(re.search(rf"\brows? (?:\d+, )*{row}\b", p) for p in named), f"row {row} not named: {named}"
    return named


# ---------------------------------------------------------------------------
# Study-file keys
# ---------------------------------------------------------------------------

TEXT = st.text(alphabet="abcxyz_", min_size=1, max_size=6)
NOT_POSITIVE = st.integers(max_value=0) | st.floats(max_value=0, allow_nan=False, allow_infinity=False)
NEGATIVE = st.integers(max_value=-1)
NOT_A_NUMBER = TEXT.map(lambda s: s + "!") | st.lists(st.integers(), max_size=2)
OUTSIDE_UNIT = st.floats(min_value=1.0001, allow_nan=False) | st.floats(max_value=-0.0001, allow_nan=False)

# key path -> strategy of values that must be refused (DELETE: a required key left out)
STUDY_MUTATIONS: dict[tuple, st.SearchStrategy] = {
    ("name",): st.just(DELETE) | st.just("has spaces") | st.just("") | st.integers(),
    ("model",): st.just(DELETE) | st.just("./no-such-model") | st.integers(),
    ("data",): st.just(DELETE) | st.just("data/train.csv") | st.integers(),
    ("data", "train"): st.just(DELETE) | st.just("") | st.just("data/nope.csv") | st.integers(),
    ("data", "validation"): st.just(DELETE) | st.just("data") | st.just("missing/validation.csv"),
    ("data", "text_column"): st.just("sentence") | st.just("label") | st.integers(),
    ("data", "label_column"): st.just("class") | st.just("text"),
    ("data", "label_names"): st.just([]) | st.just(["only"]) | st.just(["a", "a"]) | st.just("ab") | st.just([""]),
    ("max_length",): st.integers(max_value=7) | st.integers(min_value=129, max_value=10**9) | NOT_A_NUMBER,
    ("seed",): NEGATIVE | st.integers(min_value=2**32) | NOT_A_NUMBER,
    ("seeds",): st.just([]) | st.lists(NEGATIVE, min_size=1, max_size=2) | st.just([1, 1]) | st.just("0,1"),
    ("metric",): st.just("acuracy") | st.integers(),
    ("direction",): st.just("up") | st.just("max"),
    ("aggregate",): st.just("average"),
    ("aggregate_k",): st.floats(max_value=-0.001, allow_nan=False) | NOT_A_NUMBER,
    ("evaluations_per_epoch",): NOT_POSITIVE | NOT_A_NUMBER,
    ("budget", "trials"): NOT_POSITIVE | NOT_A_NUMBER,
    ("budget", "timeout"): NOT_POSITIVE | NOT_A_NUMBER,
    ("sampler", "name"): st.just("grid") | st.integers(),
    ("sampler", "seed"): NEGATIVE | st.integers(min_value=2**32),
    ("sampler", "n_startup_trials"): NEGATIVE,
    ("pruner", "name"): st.just("medain"),
    ("pruner", "n_warmup_steps"): NEGATIVE,
    ("pruner", "p_threshold"): OUTSIDE_UNIT | st.just(0),
    ("heartbeat", "interval"): NOT_POSITIVE,
    ("heartbeat", "retries"): NEGATIVE,
    ("disable",): st.just(["no_such_technique"]) | st.integers(),
    ("techniques",): st.just("finetune") | st.just(["finetune"]),
    ("techniques", "finetune", "learning_rate"):
        NOT_POSITIVE.filter(lambda v: v == v) | st.just({"low": 1e-3, "high": 1e-5}) | st.just({"low": -1.0, "high": 1e-3})
        | st.just({"low": 0, "high": 1e-3, "log": True}) | TEXT | st.just(float("inf")),
    ("techniques", "finetune", "epochs"): NOT_POSITIVE | st.just({"low": 3, "high": 1}) | st.just(1.5) | TEXT,
    ("techniques", "finetune", "warmup_ratio"): OUTSIDE_UNIT | st.just({"low": -0.5, "high": 0.1}),
    ("techniques", "finetune", "weight_decay"): st.floats(max_value=-0.0001, allow_nan=False),
    ("techniques", "finetune", "batch_size"): st.integers(max_value=0) | st.just(7) | st.just([]),
    ("techniques", "finetune", "no_such_parameter"): st.integers(),
    ("techniques", "pooing"): st.just({"kind": "mean"}),
    ("epochs",): st.integers(min_value=1, max_value=3),  # a key that is not a study key
}


def set_path(study: dict, path: tuple, value) -> None:
    node = study
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    if value is DELETE:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


def _key(path: tuple) -> str:
    return ".".join(path)


@st.composite
def study_mutations(draw):
    keys = draw(st.lists(st.sampled_from(sorted(STUDY_MUTATIONS)), min_size=1, max_size=3, unique=True))
    # A key and its parent mutated together hide each other; keep the outermost.
    keys = [k for k in keys if not any(k != o and k[:len(o)] == o for o in keys)]
    return [(k, draw(STUDY_MUTATIONS[k])) for k in keys]


def _refusal_keys(path: tuple, value) -> list[str]:
    """The key(s) a refusal of ``path = value`` may name (a technique's section is reported by its full name)."""
    key = _key(path)
    if path == ("data", "text_column") and value == "label" or path == ("data", "label_column") and value == "text":
        return ["data.label_column"]
    if path[0] == "seeds" and isinstance(value, list) and value:
        return ["seeds", "seed"]
    return [key]


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], deadline=None)
@given(mutations=study_mutations())
@example(mutations=[(("max_length",), 512)])
@example(mutations=[(("seed",), -1)])
@example(mutations=[(("techniques", "finetune", "epochs"), 0)])
@example(mutations=[(("data", "label_names"), [])])
# Holes the harness found (each message lacked its fix, or a key was hidden):
@example(mutations=[(("seeds",), [1, 1])])
@example(mutations=[(("disable",), ["no_such_technique"])])
@example(mutations=[(("techniques", "finetune", "epochs"), 1.5)])
@example(mutations=[(("techniques", "finetune", "no_such_parameter"), 0)])
@example(mutations=[(("sampler", "seed"), -1)])
@example(mutations=[(("budget", "trials"), 0)])
@example(mutations=[(("metric",), "acuracy"), (("model",), DELETE)])
def test_every_bad_study_key_is_refused_by_name_with_a_fix(model_dir, mutations):
    with tempfile.TemporaryDirectory() as tmp:
        case = Example(model_dir, Path(tmp))
        for path, value in mutations:
            set_path(case.study, path, value)
        rc, output = run_cli("validate", str(case.write()))
        try:
            load_study(case.path)
            schema_failed = False
        except ConfigError:
            schema_failed = True
    assert "Traceback" not in output, output
    assert rc == 2, f"{mutations} accepted:\n{output}"
    problems = problems_of(output)
    for problem in problems:
        assert KEY.match(problem), f"a problem without its key: {problem!r}"
        assert FIX_WORDS.search(problem.split(": ", 1)[1]), f"a problem without a fix: {problem!r}"
    for path, value in mutations:
        allowed = _refusal_keys(path, value)
        named = [p for p in problems
                 if any(KEY.match(p).group("key") in (k,) or KEY.match(p).group("key").startswith(k + ".")
                        or k.startswith(KEY.match(p).group("key") + ".") for k in allowed)]
        # A schema error stops before the data and model are looked at; the key that failed the schema is named.
        # Keys checked against the data, the model or the plugins are only reached once the file passes the schema.
        assert named or (schema_failed and path in LATER), f"{_key(path)} = {value!r} not named: {problems}"


LATER = {("data", "train"), ("data", "validation"), ("data", "text_column"), ("data", "label_column"),
         ("data", "label_names"), ("model",), ("metric",), ("disable",), ("max_length",)} | {
         p for p in STUDY_MUTATIONS if p[0] == "techniques"}


# ---------------------------------------------------------------------------
# Data files
# ---------------------------------------------------------------------------

WHITESPACE = st.text(alphabet=" \t\u00a0\u2003\u3000", min_size=0, max_size=4)
# Texts a user may well have: any printable text, quotes, commas, newlines inside (csv quotes them).
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from('",\n\r;\t'), min_size=1, max_size=40)


@st.composite
def row_indices(draw, n: int, max_size: int = 3):
    return sorted(draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=max_size, unique=True)))


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], deadline=None)
@given(data=st.data(), split=st.sampled_from(["train", "validation"]),
       kind=st.sampled_from(["empty text", "empty label", "fractional label"]))
def test_empty_texts_and_missing_or_fractional_labels_are_refused_with_their_rows(model_dir, data, split, kind):
    with tempfile.TemporaryDirectory() as tmp:
        case = Example(model_dir, Path(tmp))
        rows = base_rows(40 if split == "train" else 16, seed=1 if split == "train" else 2)
        bad = data.draw(row_indices(len(rows)))
        for i in bad:
            if kind == "empty text":
                rows[i][0] = data.draw(WHITESPACE)
            elif kind == "empty label":
                rows[i][1] = data.draw(WHITESPACE)
            else:
                rows[i][1] = str(data.draw(st.floats(0.01, 0.99)))
        case.files[f"data/{split}.csv"] = csv_bytes(rows)
        rc, output = run_cli("validate", str(case.write()))
    assert_refused_well(rc, output, f"data.{split}", file=f"{split}.csv", rows=[i + 1 for i in bad[:5]])


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], deadline=None)
@given(texts=st.lists(ANY_TEXT, min_size=1, max_size=5), data=st.data(),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]),
       newline=st.sampled_from(["\n", "\r\n"]))
def test_any_text_in_any_encoding_is_accepted_or_refused_by_name(model_dir, texts, data, encoding, newline):
    with tempfile.TemporaryDirectory() as tmp:
        case = Example(model_dir, Path(tmp))
        rows = base_rows(40, seed=1)
        where = data.draw(st.lists(st.integers(0, 39), min_size=len(texts), max_size=len(texts), unique=True))
        for i, text in zip(where, texts):
            rows[i][0] = text
        try:
            case.files["data/train.csv"] = csv_bytes(rows, encoding=encoding, newline=newline)
        except UnicodeEncodeError:
            assume(False)
        rc, output = run_cli("validate", str(case.write()))
    assert "Traceback" not in output
    if rc == 0:
        assert "ok: fuzz: train 40," in output, output  # no row lost or invented
        return
    named = assert_refused_well(rc, output, "data.train", file="train.csv")
    plain = all(t.isascii() for t in texts) or encoding in ("utf-8", "utf-8-sig", "utf-16")
    if plain:  # readable text: only its content can be refused, each row named
        assert all("row" in p for p in named), named


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], deadline=None)
@given(kind=st.sampled_from(["duplicates", "overlap", "rare class", "absent id"]), n=st.integers(1, 4))
def test_doubtful_data_is_accepted_with_a_counted_warning(model_dir, kind, n):
    with tempfile.TemporaryDirectory() as tmp:
        case = Example(model_dir, Path(tmp))
        train, validation = base_rows(40, seed=1), base_rows(16, seed=2)
        if kind == "duplicates":
            train += [list(train[i]) for i in range(n)]
        elif kind == "overlap":
            validation[:n] = [list(r) for r in train[:n]]
        elif kind == "rare class":
            train += [[f"a rare sentence number {i}", "2"] for i in range(n)]
        else:  # ids 0, 1 and n + 2: the ids between are classes without rows
            train += [["the odd one out"] * 1 + [str(n + 2)]] * 5
        case.files["data/train.csv"] = csv_bytes(train)
        case.files["data/validation.csv"] = csv_bytes(validation)
        rc, output = run_cli("validate", str(case.write()))
    assert rc == 0, output
    warnings = " ".join(line for line in output.splitlines() if line.strip())
    expected = {"duplicates": f"data\\.train \\(line \\d+\\): {n} rows? repeats? an earlier row",
                "overlap": f"data\\.validation \\(line \\d+\\): {n} of its 16 rows",
                "rare class": f"1 class has fewer than 5 training examples \\('2': {n} of {40 + n} rows\\)",
                "absent id": f"{n} of the {n + 3} classes have no training rows"}[kind]
    assert re.search(expected, warnings), output


FILE_CASES = {
    # name: (what the file becomes, key, an expected phrase)
    "empty file": (lambda p: p.write_bytes(b""), "is empty"),
    "whitespace file": (lambda p: p.write_bytes(b" \n\r\n"), "is empty"),
    "header only": (lambda p: p.write_bytes(b"text,label\n"), "no rows"),
    "folder": (lambda p: (p.unlink(), p.mkdir()), "is a folder"),
    "missing": (lambda p: p.unlink(), "file not found"),
    "broken link": (lambda p: (p.unlink(), p.symlink_to(p.parent / "nowhere.csv")), "symbolic link"),
    "link loop": (lambda p: (p.unlink(), (p.parent / "loop.csv").symlink_to(p), p.symlink_to(p.parent / "loop.csv")),
                  "symbolic link"),
    "binary": (lambda p: p.write_bytes(b"PK\x03\x04\x00\x00" * 50), "not a text file"),
    "no header": (lambda p: p.write_bytes(b"the film was good,1\nthe plot was bad,0\n"), "add a header line"),
    "ragged row": (lambda p: p.write_bytes(p.read_bytes() + b"good, very good,1\n"), "file line 42 has 3 fields"),
    "open quote": (lambda p: p.write_bytes(p.read_bytes() + b'"good movie,1\n'), "quot"),
    "unknown type": (lambda p: (p.rename(p.with_suffix(".xlsx")),), "file not found"),
}


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], deadline=None)
@given(kind=st.sampled_from(sorted(FILE_CASES)), split=st.sampled_from(["train", "validation"]))
def test_every_broken_file_or_path_is_refused_by_its_key(model_dir, kind, split):
    with tempfile.TemporaryDirectory() as tmp:
        case = Example(model_dir, Path(tmp))
        case.write()
        path = Path(tmp) / f"data/{split}.csv"
        change, phrase = FILE_CASES[kind]
        change(path)
        rc, output = run_cli("validate", str(case.path))
    key = "data.text_column" if kind == "no header" else f"data.{split}"
    named = assert_refused_well(rc, output, key, file=f"{split}.csv")
    if kind == "ragged row" and split == "validation":
        phrase = "file line 18 has 3 fields"
    assert any(phrase in p for p in named), named


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], deadline=None)
@given(kind=st.sampled_from(["extra columns", "bom", "crlf", "quoted newlines", "very long text", "jsonl", "label names"]))
def test_harmless_variants_are_normalised_and_accepted(model_dir, kind):
    with tempfile.TemporaryDirectory() as tmp:
        case = Example(model_dir, Path(tmp))
        rows = base_rows(40, seed=1)
        if kind == "extra columns":
            case.files["data/train.csv"] = csv_bytes([r + ["x", "7"] for r in rows], header=("text", "label", "source", "n"))
        elif kind == "bom":
            case.files["data/train.csv"] = csv_bytes(rows, encoding="utf-8-sig")
        elif kind == "crlf":
            case.files["data/train.csv"] = csv_bytes(rows, newline="\r\n")
        elif kind == "quoted newlines":
            case.files["data/train.csv"] = csv_bytes([[t.replace(" ", "\n", 1), label] for t, label in rows])
        elif kind == "very long text":
            rows[0][0] = "good " * 20000
            case.files["data/train.csv"] = csv_bytes(rows)
        elif kind == "jsonl":
            import json

            case.files["data/train.jsonl"] = "\n".join(json.dumps({"text": t, "label": int(l)}) for t, l in rows).encode()
            case.study["data"]["train"] = "data/train.jsonl"
        else:
            names = {"0": "negative", "1": "positive"}
            case.files["data/train.csv"] = csv_bytes([[t, f" {names[label]} "] for t, label in rows])
            case.files["data/validation.csv"] = csv_bytes([[t, names[label]] for t, label in base_rows(16, seed=2)])
        rc, output = run_cli("validate", str(case.write()))
    assert rc == 0, output
    assert "ok: fuzz: train 40, validation 16 rows, 2 labels" in output, output


# ---------------------------------------------------------------------------
# The two cases of the issue, and every hole the harness found (regression examples)
# ---------------------------------------------------------------------------


def _validate(case: Example) -> tuple[int, str]:
    return run_cli("validate", str(case.write()))


def test_issue_case_empty_label_and_empty_text_end_with_exit_2_rows_and_a_fix(model_dir, tmp_path):
    case = Example(model_dir, tmp_path)
    rows = base_rows(40, seed=1)
    rows[1][1] = ""  # row 2: no label (it used to become a class '')
    rows[2][0] = ""  # row 3: no text (it used to be trained on)
    case.files["data/train.csv"] = csv_bytes(rows)
    rc, output = _validate(case)
    named = assert_refused_well(rc, output, "data.train", file="train.csv")
    label, = [p for p in named if "no label" in p]
    assert "row 2 (file line 3)" in label and "give each row its label or delete it" in label
    text, = [p for p in named if "empty text" in p]
    assert "row 3 (file line 4)" in text and "write the text or delete the row" in text


def test_issue_case_latin1_file_ends_with_exit_2_rows_and_a_fix(model_dir, tmp_path):
    case = Example(model_dir, tmp_path)
    rows = base_rows(40, seed=1)
    rows[3][0] = "un café très bon"
    rows[6][0] = "très mauvais"
    case.files["data/train.csv"] = csv_bytes(rows, encoding="latin-1")
    rc, output = _validate(case)
    problem, = assert_refused_well(rc, output, "data.train", file="train.csv", rows=[4, 7])
    assert "not UTF-8" in problem and "Latin-1" in problem and "Save the file as UTF-8" in problem
    assert "codec can't decode" not in problem


def test_regression_single_class_training_split_is_refused(model_dir, tmp_path):
    case = Example(model_dir, tmp_path)
    case.files["data/train.csv"] = csv_bytes([r for r in base_rows(40, seed=1) if r[1] == "1"])
    named = assert_refused_well(*_validate(case), "data.train", file="train.csv")
    assert "every row has the label '1'" in named[0]


def test_regression_single_class_with_label_names_is_refused(model_dir, tmp_path):
    case = Example(model_dir, tmp_path)
    case.study["data"]["label_names"] = ["negative", "positive"]
    case.files["data/train.csv"] = csv_bytes([r for r in base_rows(40, seed=1) if r[1] == "0"])
    assert_refused_well(*_validate(case), "data.train", file="train.csv")


def test_regression_fractional_label_is_named_as_such(model_dir, tmp_path):
    case = Example(model_dir, tmp_path)
    rows = base_rows(40, seed=1)
    rows[4][1] = "0.5"
    case.files["data/train.csv"] = csv_bytes(rows)
    problem, = assert_refused_well(*_validate(case), "data.train", rows=[5])
    assert "0.5" in problem and "not a whole number" in problem


def test_regression_whole_floats_are_class_ids(model_dir, tmp_path):
    case = Example(model_dir, tmp_path)
    case.files["data/train.csv"] = csv_bytes([[t, f"{l}.0"] for t, l in base_rows(40, seed=1)])
    rc, output = _validate(case)
    assert rc == 0 and "2 labels" in output, output


def test_regression_mixed_label_column_does_not_crash(model_dir, tmp_path):
    # JSON lines: ints and a name in one column used to raise TypeError from max().
    import json

    case = Example(model_dir, tmp_path)
    rows = [{"text": t, "label": int(l)} for t, l in base_rows(40, seed=1)] + [{"text": "odd one", "label": "x"}]
    case.files["data/train.jsonl"] = "\n".join(json.dumps(r) for r in rows).encode()
    case.study["data"]["train"] = "data/train.jsonl"
    rc, output = _validate(case)
    assert "Traceback" not in output
    assert rc in (0, 2), output


def test_regression_json_nulls_are_missing_values_not_the_text_none(model_dir, tmp_path):
    import json

    case = Example(model_dir, tmp_path)
    rows = [{"text": t, "label": int(l)} for t, l in base_rows(40, seed=1)]
    rows[0]["text"], rows[5]["label"] = None, None
    case.files["data/train.jsonl"] = "\n".join(json.dumps(r) for r in rows).encode()
    case.study["data"]["train"] = "data/train.jsonl"
    named = assert_refused_well(*_validate(case), "data.train", rows=[1, 6])
    assert any("empty text" in p for p in named) and any("no label" in p for p in named)


def test_regression_utf16_with_a_byte_order_mark_is_read(model_dir, tmp_path):
    from autobert.run.data import load_task_data

    case = Example(model_dir, tmp_path)
    rows = base_rows(40, seed=1)
    # Outside ASCII and Latin-1 too, so that only a UTF-16 reading gives these texts back.
    rows[0][0], rows[7][0], rows[39][0] = "a café, naïve and “superb”", "東京 was good", "Ελληνικά 🎬 awful"
    case.files["data/train.csv"] = csv_bytes(rows, encoding="utf-16")
    rc, output = _validate(case)
    assert rc == 0, output

    train = load_task_data(load_study(case.path)).splits["train"]
    assert list(train["text"]) == [text for text, _ in rows]
    assert list(train["label"]) == [int(label) for _, label in rows]


def test_regression_empty_file_names_the_key_and_the_fix(model_dir, tmp_path):
    case = Example(model_dir, tmp_path)
    case.files["data/validation.csv"] = b""
    problem, = assert_refused_well(*_validate(case), "data.validation", file="validation.csv")
    assert "is empty" in problem and "No columns to parse" not in problem


def test_regression_ragged_row_names_the_key_and_line(model_dir, tmp_path):
    case = Example(model_dir, tmp_path)
    case.files["data/train.csv"] = csv_bytes(base_rows(40, seed=1)) + b"good, very good,1\n"
    problem, = assert_refused_well(*_validate(case), "data.train", file="train.csv")
    assert "file line 42 has 3 fields" in problem and "quoted" in problem


def test_regression_symlink_loop_is_refused_not_a_runtime_error(model_dir, tmp_path):
    case = Example(model_dir, tmp_path)
    case.write()
    loop = tmp_path / "data" / "loop.csv"
    (tmp_path / "data" / "train.csv").unlink()
    loop.symlink_to(tmp_path / "data" / "train.csv")
    (tmp_path / "data" / "train.csv").symlink_to(loop)
    rc, output = run_cli("validate", str(case.path))
    problem, = assert_refused_well(rc, output, "data.train", file="train.csv")
    assert "symbolic link" in problem


def test_regression_unreadable_file_is_refused_with_chmod(model_dir, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    case = Example(model_dir, tmp_path)
    case.write()
    (tmp_path / "data" / "train.csv").chmod(0)
    try:
        problem, = assert_refused_well(*run_cli("validate", str(case.path)), "data.train", file="train.csv")
    finally:
        (tmp_path / "data" / "train.csv").chmod(0o644)
    assert "permission denied" in problem and "chmod" in problem


def test_regression_a_plain_folder_is_not_loaded_as_a_dataset(model_dir, tmp_path):
    case = Example(model_dir, tmp_path)
    case.study["data"]["train"] = "data"
    problem, = assert_refused_well(*_validate(case), "data.train")
    assert "is a folder, not a data file" in problem


def test_regression_same_text_and_label_column_is_refused(model_dir, tmp_path):
    case = Example(model_dir, tmp_path)
    case.study["data"]["label_column"] = "text"
    assert_refused_well(*_validate(case), "data.label_column")


def test_regression_empty_label_names_are_refused(model_dir, tmp_path):
    case = Example(model_dir, tmp_path)
    case.study["data"]["label_names"] = []
    assert_refused_well(*_validate(case), "data.label_names")


def test_regression_negative_seed_is_refused_before_training(model_dir, tmp_path):
    case = Example(model_dir, tmp_path)
    case.study["seed"] = -1
    assert_refused_well(*_validate(case), "seed")


def test_regression_max_length_past_the_models_positions_is_refused(model_dir, tmp_path):
    case = Example(model_dir, tmp_path)
    case.study["max_length"] = 512
    problem, = assert_refused_well(*_validate(case), "max_length")
    assert "128" in problem and "set max_length to 128 or less" in problem


def test_regression_texts_the_tokenizer_cannot_encode_are_refused(model_dir, tmp_path):
    case = Example(model_dir, tmp_path)
    rows = [[f"{'日本語のテキスト' * (1 + i % 3)}", str(i % 2)] for i in range(40)]
    case.files["data/train.csv"] = csv_bytes(rows)
    problem, = assert_refused_well(*_validate(case), "data.train", file="train.csv")
    assert "cannot encode" in problem and "[UNK]" in problem and "choose a model" in problem


def test_regression_text_of_only_invisible_characters_is_refused(model_dir, tmp_path):
    case = Example(model_dir, tmp_path)
    rows = base_rows(40, seed=1)
    rows[7][0] = "\u200b\u200b"
    case.files["data/train.csv"] = csv_bytes(rows)
    assert_refused_well(*_validate(case), "data.train", rows=[8])


def test_regression_a_sized_classifier_head_is_reported(model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    head = tmp_path / "three-label-classifier"
    AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=3).save_pretrained(str(head))
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(str(head))
    case = Example(model_dir, tmp_path)
    case.study["model"] = str(head)
    rc, output = _validate(case)
    assert rc == 0, output
    assert "classifier with 3 labels" in output and "new 2-label head" in output


def test_regression_study_file_not_utf8_is_one_error(model_dir, tmp_path):
    case = Example(model_dir, tmp_path)
    case.write()
    case.path.write_bytes(case.path.read_bytes().replace(b"name: fuzz", b"name: fuzz\n# caf\xe9"))
    rc, output = run_cli("validate", str(case.path))
    assert rc == 2 and "not UTF-8" in output and "Traceback" not in output, output


@pytest.mark.parametrize("parameter, value", [
    ("finetune.epochs", 0), ("finetune.learning_rate", 0.0), ("finetune.learning_rate", -1e-5),
    ("finetune.warmup_ratio", 1.5), ("finetune.weight_decay", -0.01), ("llrd.decay", 0.0), ("pooling.k", 0),
    ("truncation.head_share", 2.0), ("reinit.layers", -1), ("masking.probability", 1.5),
])
def test_regression_overrides_below_a_parameters_meaningful_minimum_are_refused(parameter, value):
    from autobert.run.plugin_manager import get_plugin_manager
    from autobert.config.space import explore

    pm = get_plugin_manager()
    technique, short = parameter.split(".")
    report = explore(pm.hook.autobert_search_space, pm.techniques, {parameter: value}, hooks=pm.hook)
    problem, = [p for p in report.problems if p.startswith(f"techniques.{parameter}:")]
    spec = report.defaults[parameter]
    assert f"outside this parameter's valid range {spec.valid_range}" in problem
    assert f"give a value in {spec.valid_range}" in problem


def test_valid_values_and_ranges_within_the_meaningful_range_pass():
    spec = ParamSpec("finetune.epochs", "int", low=1, high=4, valid="[1, inf)")
    assert apply_override(spec, 10).low == 10  # past the search range, still meaningful
    assert apply_override(spec, {"low": 1, "high": 8}).high == 8
    with pytest.raises(ValueError, match=r"valid range \[1, inf\)"):
        apply_override(spec, [0, 1])


# ---------------------------------------------------------------------------
# autobert search: refused inputs leave the storage as it was; accepted ones train
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def searched(model_dir, tmp_path_factory):
    """A study folder whose storage already holds one complete trial."""
    directory = tmp_path_factory.mktemp("fuzz-search")
    case = Example(model_dir, directory)
    case.study["storage"] = f"sqlite:///{directory / 'study.db'}"
    rc, output = run_cli("search", str(case.write()), "--n-trials", "1")
    assert rc == 0, output
    return case


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _complete_trials(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]


@pytest.mark.parametrize("mutate, key", [
    (lambda c: c.files.update({"data/train.csv": csv_bytes([["café", "1"]] * 3 + base_rows(40, 1), encoding="latin-1")}),
     "data.train"),
    (lambda c: c.study.update({"max_length": 4096}), "max_length"),
    (lambda c: c.study["techniques"]["finetune"].update({"epochs": 0}), "techniques.finetune.epochs"),
])
def test_search_refuses_before_touching_the_stored_study(searched, mutate, key):
    db = searched.directory / "study.db"
    before = _digest(db)
    original = dict(searched.files), yaml.safe_dump(searched.study)
    try:
        mutate(searched)
        rc, output = run_cli("search", str(searched.write()), "--n-trials", "1")
    finally:
        searched.files, searched.study = original[0], yaml.safe_load(original[1])
        searched.write()
    assert_refused_well(rc, output, key)
    assert _digest(db) == before


def test_search_trains_on_normalised_data(searched, tmp_path):
    # A BOM, Windows line ends and an extra column: accepted, and the trial completes.
    case = Example(Path(searched.study["model"]), tmp_path)
    case.files["data/train.csv"] = b"\xef\xbb\xbf" + csv_bytes([r + ["x"] for r in base_rows(40, seed=1)],
                                                              header=("text", "label", "source"), newline="\r\n")
    case.study["storage"] = f"sqlite:///{tmp_path / 'study.db'}"
    rc, output = run_cli("search", str(case.write()), "--n-trials", "1")
    assert rc == 0, output
    assert _complete_trials(tmp_path / "study.db") == 1


@pytest.mark.parametrize("key", ["output_dir", "cache_dir"])
@pytest.mark.parametrize("kind", ["a file", "a link loop"])
def test_regression_study_folders_that_cannot_be_folders_are_refused_at_validation(model_dir, tmp_path, key, kind):
    # `search` used to end in a FileExistsError traceback (output_dir) or fail every trial (cache_dir).
    case = Example(model_dir, tmp_path)
    target = tmp_path / "taken"
    if kind == "a file":
        target.write_text("not a folder")
    else:
        (tmp_path / "other").symlink_to(target)
        target.symlink_to(tmp_path / "other")
    case.study[key] = "taken"
    problem, = assert_refused_well(*_validate(case), key)
    assert str(target) in problem


def test_regression_every_row_problem_is_reported_at_once_with_label_names(model_dir, tmp_path):
    # With data.label_names given, an empty text used to hide the unknown labels until it was fixed.
    case = Example(model_dir, tmp_path)
    case.study["data"]["label_names"] = ["0", "1"]
    rows = base_rows(40, seed=1)
    rows[0][0], rows[9][1] = "", "7"
    case.files["data/train.csv"] = csv_bytes(rows)
    named = assert_refused_well(*_validate(case), "data.train", rows=[1, 10])
    assert len(named) == 2, named


def test_warnings_go_to_stderr_and_the_command_succeeds(model_dir, tmp_path, capsys):
    case = Example(model_dir, tmp_path)
    train = base_rows(40, seed=1)
    case.files["data/validation.csv"] = csv_bytes([list(r) for r in train[:3]] + base_rows(13, seed=2))
    assert main(["validate", str(case.write())]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "3 of its 16 rows" in captured.err
    assert "warning" not in captured.out and "ok: fuzz" in captured.out
