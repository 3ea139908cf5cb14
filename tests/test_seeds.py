"""Multi-seed studies: per-seed values, their aggregate, seed-aware pruning, `train --seeds`."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from rich.console import Console

from autobert.cli import main
from autobert.config.schema import load_frozen, load_study
from autobert.study.display import leaderboard
from autobert.errors import ConfigError
from autobert.run.aggregate import aggregate
from autobert.testing import write_study

GOOD, BAD = 3e-3, 1e-9
# A recipe the tiny model learns in 30 steps (validation accuracy 0.96-1.0 on each seed) ...
LEARNS = {"learning_rate": [BAD, GOOD], "epochs": 3, "batch_size": 32, "warmup_ratio": 0.0, "weight_decay": 0.0}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models train fastest on one thread, and far faster than on two on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _study(directory: Path, name: str, **overrides) -> Path:
    overrides.setdefault("seeds", [0, 1, 2])
    overrides.setdefault("pruner", "none")
    return write_study(directory, name=name, only=["finetune"], n_train=300, techniques={"finetune": LEARNS}, **overrides)


def _stored(path: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{path.parent / name / 'study.db'}")


def _enqueue(path: Path, name: str, *learning_rates: float) -> None:
    (path.parent / name).mkdir(exist_ok=True)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{path.parent / name / 'study.db'}", direction="maximize")
    for lr in learning_rates:
        study.enqueue_trial({"finetune.learning_rate": lr})


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> Path:
    """A finished three-seed study (one trial, a penalised-spread aggregate); returns its study file."""
    directory = tmp_path_factory.mktemp("seeds")
    path = _study(directory, "three", aggregate="mean_minus_std", aggregate_k=0.5)
    _enqueue(path, "three", GOOD)
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    return path


# ---------------------------------------------------------------------------
# The aggregate
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("direction, how, expected", [
    ("maximize", "mean", 0.6), ("maximize", "median", 0.5), ("maximize", "worst", 0.4),
    ("maximize", "mean_minus_std", 0.6 - 2 * statistics.stdev([0.4, 0.5, 0.9])),
    ("minimize", "worst", 0.9), ("minimize", "mean_minus_std", 0.6 + 2 * statistics.stdev([0.4, 0.5, 0.9])),
])
def test_aggregate_follows_the_study_direction(direction, how, expected):
    assert aggregate([0.5, 0.9, 0.4], how, k=2.0, direction=direction) == pytest.approx(expected)


@pytest.mark.parametrize("how", ["mean", "median", "worst", "mean_minus_std"])
def test_three_seed_trial_stores_three_values_and_their_aggregate(tmp_path, how):
    path = _study(tmp_path, f"agg-{how}", aggregate=how)
    _enqueue(path, f"agg-{how}", GOOD)
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    (trial,) = _stored(path, f"agg-{how}").trials
    assert trial.state == TrialState.COMPLETE
    values = trial.user_attrs["seed_values"]
    assert list(values) == ["0", "1", "2"]
    assert len(set(values.values())) > 1, "the three seeds trained the same model"
    assert trial.intermediate_values == {0: values["0"], 1: values["1"], 2: values["2"]}
    v = list(values.values())
    expected = {"mean": statistics.fmean(v), "median": statistics.median(v), "worst": min(v),
                "mean_minus_std": statistics.fmean(v) - statistics.stdev(v)}[how]
    assert trial.value == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------------------
# Pruning across seeds
# ---------------------------------------------------------------------------


def test_wilcoxon_pruner_stops_bad_recipes_after_fewer_seeds_than_good_ones(tmp_path):
    # With 2 seeds compared the one-sided signed-rank p is at least 0.25, so 0.3 lets it prune after 2 of 3.
    path = _study(tmp_path, "wilcoxon", pruner={"name": "wilcoxon", "p_threshold": 0.3})
    _enqueue(path, "wilcoxon", GOOD, BAD, GOOD, BAD)
    assert main(["search", str(path), "--n-trials", "4"]) == 0
    trials = _stored(path, "wilcoxon").trials
    assert [t.params["finetune.learning_rate"] for t in trials] == [GOOD, BAD, GOOD, BAD]
    good, bad = trials[0::2], trials[1::2]
    assert all(t.state == TrialState.COMPLETE and len(t.user_attrs["seed_values"]) == 3 for t in good)
    for t in bad:
        assert t.state == TrialState.PRUNED
        assert len(t.user_attrs["seed_values"]) == 2, t.user_attrs["seed_values"]
        assert "pruned after seed 1 (2 of 3 seeds)" in t.user_attrs["pruned_reason"]


def test_step_pruners_need_one_seed_and_wilcoxon_needs_several(tmp_path):
    path = _study(tmp_path, "mismatch", pruner="median")
    with pytest.raises(ConfigError, match="pruner 'median' compares training steps within one run and needs a single seed"):
        load_study(path)
    path = _study(tmp_path, "mismatch", seeds=[0], pruner="wilcoxon")
    with pytest.raises(ConfigError, match="'wilcoxon' compares per-seed values and needs at least 2 seeds"):
        load_study(path)
    # Without a pruner key, a multi-seed study prunes across seeds.
    path = write_study(tmp_path, name="default", only=["finetune"], seeds=[0, 1])
    path.write_text(path.read_text().replace("pruner:\n  name: none\n", ""))
    assert load_study(path).pruner.name == "wilcoxon"


def test_seed_and_seeds_must_agree(tmp_path):
    path = write_study(tmp_path, name="both", only=["finetune"], seed=5, seeds=[0, 1])
    with pytest.raises(ConfigError, match=r"seed \(5\) and seeds \(\[0, 1\]\) disagree"):
        load_study(path)
    assert load_study(write_study(tmp_path, name="one", only=["finetune"], seed=7)).run_seeds == [7]
    assert load_study(write_study(tmp_path, name="many", only=["finetune"], seeds=[3, 4])).seed == 3


# ---------------------------------------------------------------------------
# Replay, `train --seeds`, leaderboard
# ---------------------------------------------------------------------------


def test_frozen_multi_seed_recipe_replays_its_aggregate_exactly(searched, tmp_path):
    best = searched.parent / "three" / "best.yaml"
    frozen = load_frozen(best)
    assert frozen.run_seeds == [0, 1, 2] and frozen.aggregate == "mean_minus_std"
    out = tmp_path / "replayed"
    assert main(["train", str(best), "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seed_values"] == frozen.provenance.seed_values
    assert metrics["value"] == frozen.provenance.value  # exactly, on CPU with the same seeds


def test_train_on_several_seeds_reports_mean_and_std(searched, tmp_path, capsys):
    best = searched.parent / "three" / "best.yaml"
    searched_values = load_frozen(best).provenance.seed_values
    out = tmp_path / "five"
    capsys.readouterr()
    assert main(["train", str(best), "--seeds", "0,1,2,3,4", "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    values = metrics["seed_values"]
    assert list(values) == ["0", "1", "2", "3", "4"]
    assert {s: values[s] for s in searched_values} == searched_values  # the same seed trains the same model
    assert metrics["mean"] == pytest.approx(statistics.fmean(values.values()))
    assert metrics["std"] == pytest.approx(statistics.stdev(values.values()))
    assert metrics["std"] > 0
    assert set(metrics["per_seed"]) == set(values) and metrics["per_seed"]["3"]["test"]["accuracy"] >= 0
    assert metrics["validation"] == metrics["per_seed"]["0"]["validation"]  # the saved model is seed 0's
    assert metrics["test_mean_std"]["accuracy"][1] >= 0
    assert (out / "config.json").exists()
    assert f"{metrics['mean']:.4f} ± {metrics['std']:.4f} over 5 seeds" in capsys.readouterr().out


def test_train_frozen_without_an_output_trains_each_seed_and_writes_nothing(searched, tmp_path, monkeypatch):
    from autobert.study.prepare import prepare_recipe
    from autobert.study.train import train_frozen

    recipe = prepare_recipe(searched.parent / "three" / "best.yaml")
    monkeypatch.chdir(tmp_path)
    trained = train_frozen(recipe.frozen, recipe.pm, recipe.data, seeds=[0, 1])
    assert trained.output is None and not list(tmp_path.iterdir())
    assert trained.seeds == [0, 1] and trained.metrics["seed_values"] == {
        s: v for s, v in recipe.frozen.provenance.seed_values.items() if s in ("0", "1")}
    spread = trained.spread("test")
    assert "accuracy" in spread and trained.metrics["test_mean_std"]["accuracy"] == list(spread["accuracy"])


def test_train_rejects_a_malformed_seed_list(searched, capsys):
    best = searched.parent / "three" / "best.yaml"
    with pytest.raises(SystemExit):
        main(["train", str(best), "--seeds", "0,x", "--output", "unused"])
    assert "not a comma-separated list of integers" in capsys.readouterr().err


def test_leaderboard_shows_mean_std_and_the_number_of_seeds(searched):
    stored = _stored(searched, "three")
    console = Console(record=True, width=200)
    console.print(leaderboard(stored, "accuracy"))
    text = console.export_text()
    (trial,) = stored.trials
    values = list(trial.user_attrs["seed_values"].values())
    assert "mean ± std" in text and "seeds" in text
    assert f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}" in text
    assert "1 complete, 0 pruned, 0 failed" in text
