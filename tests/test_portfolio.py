"""Portfolios and the warm start: recipes scored across tasks, chosen greedily, and run first."""

from __future__ import annotations

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from autobert.cli import main
from autobert.config.schema import load_study
from autobert.errors import ConfigError
from autobert.run.plugin_manager import get_plugin_manager
from autobert.strategy.portfolio import (Recipe, ScoreMatrix, build, builtin_portfolio, coverage, fit_recipe, greedy,
                                leave_one_task_out, load_recipes, read_matrix, study_space)
from autobert.study.search import init_study, run_search
from autobert.study.validation import validate_study
from autobert.testing import write_study

FINETUNE = {"learning_rate": {"low": 1e-5, "high": 5e-3, "log": True}, "epochs": [1, 2], "batch_size": 16,
            "warmup_ratio": 0.0}


# The tiny model learns its synthetic task in 30 steps at 3e-3 and nothing at 1e-9 (tests/test_seeds.py).
LEARNS = {"learning_rate": {"low": 1e-9, "high": 5e-3, "log": True}, "epochs": 3, "batch_size": 32,
          "warmup_ratio": 0.0, "weight_decay": 0.0}


def recipe(name: str, lr: float, epochs: int = 1, batch_size: int = 16, **more) -> dict:
    return {"name": name, "params": {"finetune.learning_rate": lr, "finetune.epochs": epochs,
                                     "finetune.batch_size": batch_size,
                                     "finetune.warmup_ratio": 0.0, "finetune.weight_decay": 0.0, **more}}


def waiting(opened) -> list:
    return [t for t in opened.get_trials(deepcopy=False) if t.state == TrialState.WAITING]


# ---------------------------------------------------------------------------
# Evaluate and build
# ---------------------------------------------------------------------------


def test_portfolio_evaluate_and_build_end_to_end_and_resume(tmp_path):
    tasks = [write_study(tmp_path / name, name=name, only=["finetune"], warm_start="none",
                         techniques={"finetune": LEARNS}, n_train=300, n_validation=48) for name in ("alpha", "beta")]
    candidates = tmp_path / "candidates.yaml"
    candidates.write_text(yaml.safe_dump({"recipes": [
        recipe("fast", 3e-3, 3, 32), recipe("slow", 1e-9, 3, 32), recipe("pooled", 3e-3, **{"pooling.kind": "mean"})]}))
    storage = f"sqlite:///{tmp_path / 'scores.db'}"
    args = ["portfolio", "evaluate", *map(str, tasks), "--candidates", str(candidates), "--storage", storage,
            "--seeds", "0,1"]
    assert main(args) == 0

    matrix = read_matrix(storage)
    assert matrix.tasks == ["alpha", "beta"]
    assert matrix.candidates == ["fast", "slow"]  # `pooled` needs a technique the tasks do not enable: skipped
    assert all(len(matrix.values[t][c]) == 2 for t in matrix.tasks for c in matrix.candidates)  # two seeds each
    stored = optuna.load_study(study_name="portfolio.alpha", storage=storage)
    assert {t.user_attrs["candidate"] for t in stored.trials} == {"fast", "slow"}

    # The same command again runs nothing: every (candidate, task, seed) is stored.
    before = len(stored.trials)
    assert main(args) == 0
    assert len(optuna.load_study(study_name="portfolio.alpha", storage=storage).trials) == before

    output = tmp_path / "portfolio.yaml"
    assert main(["portfolio", "build", "--storage", storage, "--size", "2", "--output", str(output)]) == 0
    built = load_recipes(output)
    assert [r.name for r in built.recipes][0] == built.provenance["best_single"]["recipe"] == "fast"
    assert matrix.mean("alpha", "fast") > matrix.mean("alpha", "slow")  # the scores are real: the recipes differ
    normalised = matrix.normalised()
    assert built.provenance["coverage"] >= max(coverage(normalised, [c]) for c in matrix.candidates)
    assert built.provenance["tasks"] == ["alpha", "beta"]
    assert "finetune" in built.provenance["techniques_won"]


def test_portfolio_build_refuses_an_unknown_task_to_exclude(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.create_study(storage=storage, study_name="unrelated")
    assert main(["portfolio", "build", "--storage", storage, "--size", "2", "--output", str(tmp_path / "p.yaml")]) == 2
    assert "no portfolio evaluation named 'portfolio'" in capsys.readouterr().err


def test_greedy_portfolio_covers_the_tasks_better_than_any_single_recipe():
    # a wins task 1, b wins task 2, c is second-best on both: c alone is the best single recipe.
    matrix = ScoreMatrix(
        values={"t1": {"a": [0.90], "b": [0.60], "c": [0.85]}, "t2": {"a": [0.50], "b": [0.80], "c": [0.75]}},
        params={"a": {}, "b": {}, "c": {}}, directions={"t1": "maximize", "t2": "maximize"}, seconds={})
    normalised = matrix.normalised()
    assert greedy(normalised, 1) == ["c"]
    chosen = greedy(normalised, 2)
    assert coverage(normalised, chosen) > max(coverage(normalised, [c]) for c in "abc")
    assert build(matrix, 2).provenance["coverage"] == pytest.approx(coverage(normalised, chosen), abs=1e-4)


def test_once_every_task_is_covered_the_next_pick_is_the_best_overall_not_the_first_name():
    # a and b are each the best on one task: after them no pick raises the coverage. "aa" is poor everywhere,
    # "z" second-best everywhere: z is the more useful third recipe, whatever the alphabet says.
    matrix = ScoreMatrix(
        values={"t1": {"a": [0.9], "b": [0.5], "aa": [0.1], "z": [0.6]},
                "t2": {"a": [0.5], "b": [0.9], "aa": [0.1], "z": [0.6]}},
        params={c: {} for c in ("a", "b", "aa", "z")}, directions={"t1": "maximize", "t2": "maximize"}, seconds={})
    normalised = matrix.normalised()
    assert sorted(greedy(normalised, 2)) == ["a", "b"] and coverage(normalised, ["a", "b"]) == pytest.approx(1.0)
    assert greedy(normalised, 3)[2] == "z"


def test_leave_one_task_out_builds_each_portfolio_without_its_task():
    matrix = ScoreMatrix(
        values={"t1": {"a": [0.9], "b": [0.1]}, "t2": {"a": [0.8], "b": [0.2]}, "t3": {"a": [0.1], "b": [0.9]}},
        params={"a": {}, "b": {}}, directions=dict.fromkeys(("t1", "t2", "t3"), "maximize"), seconds={})
    rows = {r["task"]: r for r in leave_one_task_out(matrix, 1)}
    # Held out, t3 is scored with the recipe the other two tasks chose (a), not with its own winner (b).
    assert rows["t3"]["portfolio"] == ["a"] and rows["t3"]["portfolio_value"] == pytest.approx(0.1)
    assert rows["t3"]["oracle"] == "b"


def test_a_malformed_portfolio_file_reports_every_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"recipes": [{"name": "x", "params": {"learning_rate": 1}},
                                                {"name": "x", "params": {"finetune.epochs": 1}, "colour": "red"},
                                                {"name": "y"}]}))
    with pytest.raises(ConfigError) as exc:
        load_recipes(path)
    text = str(exc.value)
    assert "'learning_rate' is not namespaced" in text
    assert "used twice" in text and "unknown key(s) colour" in text and "recipes[2]: needs `params:`" in text


# ---------------------------------------------------------------------------
# Fitting a recipe to a study's space
# ---------------------------------------------------------------------------


def test_a_recipe_outside_the_space_is_moved_to_the_nearest_allowed_value_or_skipped(tiny_study):
    study = load_study(tiny_study(only=["finetune", "pooling"], warm_start="none",
                                  techniques={"finetune": FINETUNE | {"learning_rate": {"low": 1e-3, "high": 5e-3}},
                                              "pooling": {"kind": ["cls", "mean"]}}))
    pm = get_plugin_manager(only=["finetune", "pooling"])
    effective, off = study_space(study, pm)

    fitted = fit_recipe(Recipe("slow", recipe("slow", 1e-4)["params"] | {"finetune.epochs": 3}), effective, off,
                        pm.techniques)
    assert fitted.skipped is None
    assert fitted.params["finetune.learning_rate"] == pytest.approx(1e-3) and fitted.params["finetune.epochs"] == 2
    assert any(note.startswith("finetune.learning_rate 0.0001 -> 0.001") for note in fitted.adjusted)
    assert fitted.params["pooling.kind"] == "cls"  # not named by the recipe: its off value

    other = fit_recipe(Recipe("r", {"pooling.kind": "max"}), effective, off, pm.techniques)
    assert other.skipped and "pooling.kind='max' is not allowed here" in other.skipped
    missing = fit_recipe(Recipe("r", {"llrd.decay": 0.9}), effective, off, pm.techniques)
    assert missing.skipped and "uses llrd (llrd.decay=0.9)" in missing.skipped
    off_anyway = fit_recipe(Recipe("r", {"llrd.decay": 1.0, "finetune.epochs": 1}), effective, off, pm.techniques)
    assert off_anyway.skipped is None and "llrd.decay" not in off_anyway.params  # switched off: nothing to carry


# ---------------------------------------------------------------------------
# The warm start
# ---------------------------------------------------------------------------


def test_a_default_study_starts_with_the_built_in_portfolio(tmp_path):
    path = write_study(tmp_path, techniques={"finetune": FINETUNE}, n_train=64, n_validation=32)
    raw = yaml.safe_load(path.read_text())
    raw.pop("warm_start", None)  # the default
    path.write_text(yaml.safe_dump(raw))
    study = load_study(path)
    assert study.warm_start == "builtin"
    pm = get_plugin_manager(disable=study.disable)
    opened = init_study(study, pm)
    record = opened.user_attrs["warm_start"]
    assert record["source"] == "the built-in portfolio"
    names = [r.name for r in builtin_portfolio().recipes]
    assert record["enqueued"] and set(record["enqueued"]) | set(record["skipped"]) == set(names)
    assert [t.user_attrs["warm_start"] for t in waiting(opened)] == record["enqueued"]

    ran = run_search(study, pm, validate_study(study, pm), n_trials=1)
    first = ran.trials[0]
    assert first.state == TrialState.COMPLETE and first.user_attrs["warm_start"] == record["enqueued"][0]
    from rich.console import Console

    from autobert.study.display import leaderboard

    console = Console(width=200, record=True)
    console.print(leaderboard(ran, "accuracy"))
    assert f"warm start: {record['enqueued'][0]}" in console.export_text()


def test_warm_start_none_enqueues_nothing(tiny_study):
    study = load_study(tiny_study(only=["finetune"], warm_start="none"))
    opened = init_study(study, get_plugin_manager(only=["finetune"]))
    assert waiting(opened) == [] and opened.user_attrs["warm_start"]["enqueued"] == []


def test_a_warm_start_from_an_earlier_study_enqueues_its_top_recipes(tmp_path):
    first = write_study(tmp_path / "first", name="first", only=["finetune"], warm_start="none",
                        techniques={"finetune": FINETUNE}, budget={"trials": 3}, n_train=64, n_validation=32)
    pm = get_plugin_manager(only=["finetune"])
    earlier = load_study(first)
    done = run_search(earlier, pm, validate_study(earlier, pm), n_trials=3)
    top = sorted((t for t in done.trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)[:2]

    second = write_study(tmp_path / "second", name="second", only=["finetune"], techniques={"finetune": FINETUNE},
                         warm_start={"studies": [{"storage": earlier.storage_url, "name": "first"}], "top": 2},
                         n_train=64, n_validation=32)
    study = load_study(second)
    messages = []
    from autobert.study.search import open_study
    from autobert.strategy import warm_start

    opened = open_study(study)
    record = warm_start.enqueue(study, opened, pm, messages.append)
    assert record["enqueued"] == [f"first#{t.number}" for t in top]
    assert [t.system_attrs["fixed_params"] for t in waiting(opened)] == [t.params for t in top]
    assert any("2 recipe(s) enqueued" in m for m in messages)
    assert warm_start.enqueue(study, opened, pm) is None  # once per study, never again on resume


def test_a_warm_start_recipe_that_does_not_fit_is_adjusted_or_skipped_with_a_message(tmp_path):
    portfolio = tmp_path / "mine.yaml"
    portfolio.write_text(yaml.safe_dump({"recipes": [
        recipe("too-slow", 1e-6), recipe("needs-llrd", 1e-3, **{"llrd.decay": 0.9})]}))
    path = write_study(tmp_path, only=["finetune"], warm_start="mine.yaml", techniques={"finetune": FINETUNE},
                       n_train=64, n_validation=32)
    study = load_study(path)
    messages = []
    from autobert.strategy import warm_start
    from autobert.study.search import open_study

    record = warm_start.enqueue(study, open_study(study), get_plugin_manager(only=["finetune"]), messages.append)
    assert record["enqueued"] == ["too-slow"]
    assert "finetune.learning_rate 1e-06 -> 1e-05" in record["adjusted"]["too-slow"][0]
    assert "uses llrd" in record["skipped"]["needs-llrd"]
    assert any("needs-llrd skipped: uses llrd" in m for m in messages)


def test_a_missing_warm_start_file_is_a_clear_error(tiny_study, capsys):
    path = tiny_study(only=["finetune"], warm_start="nowhere.yaml")
    assert main(["search", str(path), "--n-trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "nowhere.yaml" in err and "file not found" in err


def test_the_built_in_portfolio_ships_with_its_provenance():
    portfolio = builtin_portfolio()
    assert 2 <= len(portfolio.recipes) <= 8
    provenance = portfolio.provenance
    assert set(provenance["tasks"]) == {"sst2", "cr", "mpqa", "mr", "subj", "sst5"}
    assert provenance["coverage"] >= provenance["best_single"]["coverage"]
    assert "techniques_won" in provenance and "techniques_not_chosen" in provenance


def test_queued_recipes_do_not_outlive_the_search_phase(tmp_path):
    # Warm-start recipes still queued when a time budget's search phase ends would be run before the finalists'.
    from autobert.study.search import discard_queued

    opened = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    opened.enqueue_trial({"x": 1}, user_attrs={"warm_start": "late"})
    opened.enqueue_trial({"x": 2}, user_attrs={"finalist_of": 0, "finalist_seed": 1})
    assert discard_queued(opened, "not started: the search phase ended first") == [0]
    late, finalist = opened.get_trials(deepcopy=False)
    assert late.state == TrialState.PRUNED and late.user_attrs["not_started"].endswith("ended first")
    assert late.datetime_start is not None and late.datetime_complete is not None  # dated like any other trial
    assert finalist.state == TrialState.WAITING
    assert opened.ask().number == 1  # the finalist run is what the next trial runs


@pytest.mark.parametrize("url", ["sqlite:///{dir}/old/study.db", "journal:///{dir}/old/study.journal"])
def test_a_warm_start_from_a_study_that_is_not_there_is_a_clear_error_and_creates_nothing(tmp_path, url):
    from autobert.errors import AutobertError
    from autobert.strategy.portfolio import candidates_from_study

    url = url.format(dir=tmp_path)
    with pytest.raises(ConfigError, match="no such file .*old/study"):
        candidates_from_study(url, "sst2-quick", 2, tmp_path)
    with pytest.raises(AutobertError, match="no such file"):
        read_matrix(url)
    assert not (tmp_path / "old").exists()  # no empty database left behind
