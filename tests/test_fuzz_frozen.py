"""No frozen config replays other than it was found: a fuzzing harness over exported configs.

Each example starts from a frozen config a real search exported and mutates it as a user, a script or a move
to another machine would: a technique dropped or renamed, a value of another type, an added key, broken YAML,
another version in the provenance, the data pointing elsewhere. The property, through `autobert train` as a user
meets it:

- exit 0 with the exact replay (the search's validation value, no warning), or exit 0 with a clear warning
  (a flag that allows the change was given), or
- exit 2 with one error whose every problem starts with a key, naming the mutated key, and nothing written to
  the output folder;
- never a traceback.

The normal suite runs a dozen examples; ``pytest tests/test_fuzz_frozen.py --hypothesis-profile=long`` runs
hundreds. Every hole the harness found is kept as an explicit ``@example``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cli_helpers import KEY, RECIPE, export_recipe, problems_of, run_cli

@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    return export_recipe(tmp_path_factory.mktemp("fuzz-frozen"), "ff")


# ---------------------------------------------------------------------------
# Mutations: (what it does to the raw config or its text, the key a refusal must name, flags that allow it)
# ---------------------------------------------------------------------------

DELETE = object()


def set_path(raw: dict, path: tuple, value) -> None:
    node = raw
    for part in path[:-1]:
        node = node.setdefault(part, {}) if isinstance(node, dict) else node
    if value is DELETE:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


ODD_VALUES = st.sampled_from(["fast", [1, 2], {"low": 1}, None, True, -1, 0, 1.5, 10**9, "", "1e-3"])

mutations = st.one_of(
    # a technique dropped from the techniques section, or from everywhere
    st.just(("drop", ("techniques", "finetune"), DELETE, "techniques.finetune")),
    st.just(("drop everywhere", None, None, "provenance")),
    # a technique renamed in the techniques section, or in the provenance's plugins
    st.just(("rename", ("techniques",), "finetuned", "techniques.finetune")),
    st.just(("rename", ("provenance", "plugins"), "finetuned", "techniques.finetuned")),
    # a value of another type or out of range
    st.tuples(st.just("set"), st.sampled_from([("techniques", "finetune", k) for k in RECIPE]), ODD_VALUES,
              st.just("techniques.finetune")),
    st.tuples(st.just("set"), st.sampled_from([("max_length",), ("seed",), ("evaluations_per_epoch",), ("metric",),
                                               ("precision",), ("aggregate",), ("seeds",)]), ODD_VALUES, st.just("")),
    # an added key
    st.tuples(st.just("set"), st.sampled_from([("extra",), ("techniques", "finetune", "extra"), ("provenance", "extra"),
                                               ("data", "extra")]), st.just(1), st.just("extra")),
    # broken YAML
    st.tuples(st.just("text"), st.sampled_from(["techniques: [\n", "\t- x\n", "name: : :\n", "provenance: {\n"]),
              st.none(), st.just("")),
    # another version in the provenance
    st.tuples(st.just("set"), st.sampled_from([("provenance", "plugins", "finetune"), ("provenance", "autobert_version"),
                                               ("provenance", "versions", "torch"),
                                               ("provenance", "versions", "transformers"),
                                               ("provenance", "model_revision")]),
              st.sampled_from(["autobert 0.0.1", "9.9.9", "sha256:0000"]), st.just("provenance")),
    # the data pointing elsewhere
    st.tuples(st.just("set"), st.sampled_from([("data", "train"), ("data", "validation"), ("model",)]),
              st.sampled_from(["missing.csv", "../data/test.csv", "../data", "/dev/null"]), st.just("")),
)


def mutate(exported: Path, mutation, target: Path) -> Path:
    kind, path, value, _ = mutation
    text = exported.read_text(encoding="utf-8")
    if kind == "text":
        text = text.replace("techniques:\n", path + "techniques:\n", 1)
    else:
        raw = yaml.safe_load(text)
        if kind == "drop everywhere":
            raw["techniques"].pop("finetune")
            raw["provenance"]["plugins"].pop("finetune")
            raw["provenance"]["params"] = {}
        elif kind == "rename":
            node = raw
            for part in path:
                node = node[part]
            node[value] = node.pop("finetune")
        else:
            set_path(raw, path, value)
        text = yaml.safe_dump(raw, sort_keys=False)
    target.write_text(text, encoding="utf-8")
    return target


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], deadline=None)
@given(mutation=mutations, allow=st.sampled_from([(), ("--allow-version-change",), ("--allow-data-change",)]))
@example(mutation=("set", ("provenance", "versions", "torch"), "9.9.9", "provenance"), allow=("--allow-version-change",))
@example(mutation=("set", ("techniques", "finetune", "epochs"), 1.5, "techniques.finetune"), allow=())
@example(mutation=("set", ("seeds",), [1, 2], ""), allow=())
@example(mutation=("set", ("data", "train"), "../data/test.csv", ""), allow=("--allow-data-change",))
@example(mutation=("drop everywhere", None, None, "provenance"), allow=())
@example(mutation=("text", "techniques: [\n", None, ""), allow=())  # hole 1: broken YAML named no key or line
@example(mutation=("set", ("model",), "missing.csv", ""), allow=("--allow-version-change",))  # holes 2-5: a model that
@example(mutation=("set", ("model",), "/dev/null", ""), allow=("--allow-version-change",))  # is not one, allowed as
@example(mutation=("set", ("model",), "../data/test.csv", ""), allow=("--allow-version-change",))  # a revision change,
@example(mutation=("set", ("model",), "../data", ""), allow=("--allow-version-change",))  # failed in training
def test_every_mutated_frozen_config_replays_exactly_warns_or_is_refused_by_key(exported, tmp_path_factory, mutation, allow):
    work = tmp_path_factory.mktemp("example")
    path = mutate(exported, mutation, exported.parent / f"{work.name}.yaml")
    out = work / "out"
    rc, output = run_cli("train", str(path), "--output", str(out), *allow)
    assert "Traceback" not in output, output
    if rc == 0:
        metrics = yaml.safe_load((out / "metrics.json").read_text(encoding="utf-8"))
        exact = metrics["validation"]["accuracy"] == metrics["search_value"]
        assert exact or "warning:" in output, f"{mutation}: trained something else without a word:\n{output}"
        return
    assert rc == 2, f"{mutation}: exit {rc}\n{output}"
    problems = problems_of(output)
    assert problems, output
    for problem in problems:
        assert KEY.match(problem), f"a problem without its key: {problem!r}"
    assert not out.exists() or not any(out.iterdir()), "a refused replay wrote into the output folder"
