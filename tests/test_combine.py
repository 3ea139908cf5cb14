"""The combination step: what the runs store, how soups and ensembles are chosen, and that `autobert train` replays them.

The searches train a tiny BERT on a synthetic task, each recipe on two seeds, so that every recipe has runs to
soup and ensemble.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from autobert.cli import main
from autobert.config.schema import load_study
from autobert.store import artifacts
from autobert.store.record import StudyRecord, TrialRecord
from autobert.strategy.combine import ensemble_selection, greedy_soup, halves, mix
from autobert.testing import write_study


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(axis=1) == labels).mean())


def search(root: Path, name: str, trials: int = 3, **combine) -> Path:
    """A finished search over the tiny task: ``trials`` recipes on seeds 0 and 1, finetune only; returns the study
    file."""
    path = write_study(root, name=name, n_train=400, n_validation=40, only=["finetune"], seeds=[0, 1],
                       pruner={"name": "none"}, budget={"trials": trials}, combine=combine or {"kind": "auto"},
                       techniques={"finetune": {"learning_rate": {"low": 1e-3, "high": 5e-3, "log": True}, "epochs": 2,
                                                "batch_size": 16, "warmup_ratio": 0.0}})
    assert main(["search", str(path)]) == 0
    return path


def opened(path: Path) -> optuna.Study:
    study = load_study(path)
    return optuna.load_study(study_name=study.name, storage=study.storage_url)


@pytest.fixture(scope="module")
def ensemble_study(tmp_path_factory) -> Path:
    return search(tmp_path_factory.mktemp("combine-ensemble"), "ens", kind="ensemble")


@pytest.fixture(scope="module")
def soup_study(tmp_path_factory) -> Path:
    return search(tmp_path_factory.mktemp("combine-soup"), "soup", kind="soup")


@pytest.fixture(scope="module")
def checkpoints_study(tmp_path_factory) -> Path:
    return search(tmp_path_factory.mktemp("combine-checkpoints"), "avg", trials=1, kind="checkpoints", checkpoints=3)


# -- the arithmetic -------------------------------------------------------------------------------------------------


def test_ensemble_selection_picks_the_better_member():
    labels = np.array([0, 1] * 50)
    right = np.eye(2)[labels] * 0.8 + 0.1              # every row right, confidently
    wrong = np.eye(2)[1 - labels] * 0.8 + 0.1          # every row wrong
    weights = ensemble_selection([wrong, right], labels, accuracy, maximize=True)
    assert weights == [0.0, 1.0]


def test_ensemble_selection_mixes_members_that_err_on_different_rows():
    labels = np.zeros(4, dtype=int)
    # Each member is sure and wrong on one row, unsure and right on the others: together they get every row right.
    a = np.array([[0.1, 0.9], [0.6, 0.4], [0.6, 0.4], [0.6, 0.4]])
    b = np.array([[0.6, 0.4], [0.1, 0.9], [0.6, 0.4], [0.6, 0.4]])
    c = np.array([[0.99, 0.01], [0.99, 0.01], [0.4, 0.6], [0.4, 0.6]])  # wrong on two rows
    weights = ensemble_selection([a, b, c], labels, accuracy, maximize=True, max_members=3)
    assert accuracy(np.log(mix([a, b, c], weights)), labels) == 1.0
    assert sum(weights) == pytest.approx(1.0)
    assert accuracy(np.log(a), labels) == accuracy(np.log(b), labels) == 0.75  # no single member gets there


def test_ensemble_selection_keeps_to_its_member_cap():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    library = [rng.dirichlet([1, 1], 60) for _ in range(8)]
    weights = ensemble_selection(library, labels, accuracy, maximize=True, max_members=3)
    assert np.count_nonzero(weights) <= 3


def test_the_greedy_soup_keeps_a_run_only_if_the_soup_does_not_get_worse():
    scores = {(0,): (0.8, 0.0), (0, 1): (0.7, 0.0), (0, 2): (0.85, 0.0), (0, 2, 3): (0.85, -0.1)}
    members = greedy_soup([0, 1, 2, 3], lambda m: scores.get(tuple(m)))
    assert members == [0, 2]  # 1 made it worse; 3 kept the metric but its log loss was worse


def test_the_validation_halves_are_disjoint_fixed_and_cover_every_row():
    a, b = halves(33)
    assert set(a) | set(b) == set(range(33)) and not set(a) & set(b)
    assert np.array_equal(a, halves(33)[0])


def test_the_tail_average_takes_evenly_spaced_steps_of_the_second_half():
    from autobert.run.pipeline import tail_steps

    assert tail_steps(8, 4) == [5, 6, 7, 8]
    assert tail_steps(100, 4) == [62, 75, 88, 100]
    assert tail_steps(3, 4) == [2, 3]  # a short run averages what it has
    assert tail_steps(1, 4) == [1]


def test_the_tail_average_is_the_mean_of_the_weights_it_took():
    import torch

    from autobert.run.pipeline import TailAverage

    model = torch.nn.Linear(3, 2)
    model.register_buffer("steps", torch.tensor([7]))  # not a weight: left as it is
    tail, seen = TailAverage(3), []
    for value in (1.0, 2.0, 6.0):
        with torch.no_grad():
            model.weight.fill_(value)
            model.bias.fill_(-value)
        seen.append(model.weight.clone())
        tail.add(model)
    with tail.applied(model):
        assert torch.allclose(model.weight, torch.stack(seen).mean(0))
        assert torch.allclose(model.bias, torch.full((2,), -3.0))
        assert model.steps.item() == 7
    assert torch.equal(model.weight, seen[-1])  # the run's own weights again after the block
    with pytest.raises(ValueError, match="no checkpoint"):
        TailAverage(2).load_into(model)


# -- what the search stores --------------------------------------------------------------------------------------------


def test_every_run_stores_its_validation_probabilities(ensemble_study):
    study = load_study(ensemble_study)
    store = artifacts.artifact_store(study)
    complete = [t for t in opened(ensemble_study).trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    for trial in complete:
        stored = TrialRecord.from_trial(trial)
        assert sorted(stored.predictions) == ["0", "1"]
        for seed, entry in stored.predictions.items():
            probabilities = artifacts.load_probabilities(store, entry)
            assert probabilities.shape == (40, 2)
            assert np.allclose(probabilities.sum(axis=1), 1.0)
            labels = np.array([int(line.rsplit(",", 1)[1]) for line in
                               (ensemble_study.parent / "data" / "validation.csv").read_text().splitlines()[1:]])
            # The stored probabilities are the ones the run was scored with.
            assert accuracy(np.log(probabilities), labels) == pytest.approx(stored.seed_values[seed])
        # Optuna's artifact record names the files too (the dashboard lists them).
        assert any(key.startswith("artifacts:") for key in trial.system_attrs)


def test_only_the_best_trials_keep_their_weights(tmp_path):
    path = search(tmp_path, "keep", kind="ensemble", keep_weights=1)
    trials = [t for t in opened(path).trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 3
    store = artifacts.artifact_store(load_study(path))
    keeping = [t for t in trials if artifacts.kept_weights(store, t)]
    best = max(trials, key=lambda t: t.value)
    assert [t.number for t in keeping] == [best.number]
    on_disk = [f for f in load_study(path).artifact_path.iterdir() if f.is_file()]
    # two seeds' probabilities per trial, and one model per seed of the one trial kept: the others' were removed
    assert len(on_disk) == 2 * len(trials) + 2


# -- choosing and replaying ------------------------------------------------------------------------------------------


def test_the_search_records_the_ensemble_and_the_leaderboard_shows_it(ensemble_study, capsys):
    combination = StudyRecord.from_study(opened(ensemble_study)).combination
    assert combination["kind"] == "ensemble" and combination["variant"] == "caruana"
    assert 2 <= len(combination["members"]) <= 5
    assert sum(m["weight"] for m in combination["members"]) == pytest.approx(1.0, abs=1e-5)
    best = yaml.safe_load((ensemble_study.parent / "ens" / "best.yaml").read_text())
    assert best["provenance"]["combination"]["members"] == combination["members"]
    assert "provenance.combination" in best["provenance"]["recipe"]
    capsys.readouterr()
    assert main(["best", str(ensemble_study)]) == 0
    shown = capsys.readouterr().out
    assert "★" in shown and "combination: ensemble (caruana)" in " ".join(shown.split())


def test_the_ensemble_replays_exactly_and_loads_in_a_pipeline(ensemble_study, tmp_path, capsys):
    from transformers import pipeline

    best = ensemble_study.parent / "ens" / "best.yaml"
    out = tmp_path / "model"
    assert main(["train", str(best), "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == "ensemble"
    assert metrics["validation"]["accuracy"] == metrics["search_value"]  # exact replay on CPU
    assert metrics["inference_ms_per_1000"] > 0 and metrics["size_bytes"] > 0
    assert "## Combination" in (out / "README.md").read_text()
    classify = pipeline("text-classification", model=str(out), trust_remote_code=True)
    assert classify(["a b c"])[0]["label"] in ("negative", "positive")


def test_single_trains_the_best_recipe_alone(ensemble_study, tmp_path):
    best = ensemble_study.parent / "ens" / "best.yaml"
    out = tmp_path / "single"
    assert main(["train", str(best), "--output", str(out), "--single"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "kind" not in metrics
    assert metrics["value"] == metrics["search_value"]
    assert json.loads((out / "config.json").read_text())["model_type"] != "autobert-ensemble"


def test_the_soup_replays_exactly_and_is_one_plain_checkpoint(soup_study, tmp_path):
    from transformers import AutoModelForSequenceClassification

    combination = StudyRecord.from_study(opened(soup_study)).combination
    assert combination["kind"] == "soup", combination["reason"]
    out = tmp_path / "soup"
    assert main(["train", str(soup_study.parent / "soup" / "best.yaml"), "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] == metrics["search_value"]
    souped = AutoModelForSequenceClassification.from_pretrained(out)
    assert type(souped).__name__ == "BertForSequenceClassification"
    # The soup is no member: its weights differ from every member's own model.
    assert len(metrics["members"]) >= 2


def test_the_checkpoints_average_is_stored_chosen_and_replayed_exactly(checkpoints_study, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    study = load_study(checkpoints_study)
    store = artifacts.artifact_store(study)
    for trial in [t for t in opened(checkpoints_study).trials if t.state == optuna.trial.TrialState.COMPLETE]:
        for entry in TrialRecord.from_trial(trial).predictions.values():  # every run stored its average's too
            assert entry["checkpoints"]["count"] == 3
            assert artifacts.load_probabilities(store, entry["checkpoints"]).shape == (40, 2)
    combination = StudyRecord.from_study(opened(checkpoints_study)).combination
    assert combination["kind"] == "checkpoints" and combination["variant"] == "last 3", combination["reason"]
    assert combination["checkpoints"] == 3 and len(combination["members"]) == 1
    best = checkpoints_study.parent / "avg" / "best.yaml"
    out = tmp_path / "averaged"
    assert main(["train", str(best), "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == "checkpoints" and metrics["checkpoints"] == 3
    assert metrics["validation"]["accuracy"] == metrics["search_value"]  # exact replay on CPU
    assert "last 3 checkpoints" in (out / "README.md").read_text()
    # One plain checkpoint, and not the run's last weights (which the search kept): the average changed the model.
    member = combination["members"][0]
    trial = opened(checkpoints_study).trials[member["trial"]]
    kept = artifacts.unpack_weights(store, artifacts.kept_weights(store, trial)[str(member["seed"])], tmp_path / "last")
    averaged = AutoModelForSequenceClassification.from_pretrained(out).state_dict()
    last = AutoModelForSequenceClassification.from_pretrained(kept).state_dict()
    changed = [k for k in last if not torch.equal(averaged[k], last[k])]
    assert "classifier.weight" in changed and len(changed) > len(last) // 2


def test_an_edited_member_is_refused_by_replay(ensemble_study, tmp_path, capsys):
    raw = yaml.safe_load((ensemble_study.parent / "ens" / "best.yaml").read_text())
    raw["provenance"]["combination"]["members"][0]["seed"] += 7
    edited = ensemble_study.parent / "ens" / "edited.yaml"
    edited.write_text(yaml.safe_dump(raw, sort_keys=False))
    capsys.readouterr()
    assert main(["train", str(edited), "--output", str(tmp_path / "o")]) == 2
    assert "provenance.combination" in capsys.readouterr().err


def test_a_search_killed_in_the_combination_phase_loses_nothing(tmp_path):
    path = write_study(tmp_path, name="killed", n_train=96, n_validation=32, only=["finetune"], seeds=[0, 1],
                       pruner={"name": "none"}, budget={"trials": 2}, combine={"kind": "soup"},
                       techniques={"finetune": {"learning_rate": 3e-3, "epochs": 1, "batch_size": 16,
                                                "warmup_ratio": 0.0}})
    script = textwrap.dedent(f"""
        import os, signal, sys
        import autobert.run.inference as inference
        def killed(*args, **kwargs):  # the soup is being scored: SIGKILL, as the OOM killer or a lost node would
            os.kill(os.getpid(), signal.SIGKILL)
        inference.predict_probabilities = killed
        from autobert.cli import main
        sys.exit(main(["search", {str(path)!r}]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == -9, done.stdout + done.stderr
    stored = opened(path)
    assert StudyRecord.from_study(stored).combination is None  # it never got to write it
    complete = [t for t in stored.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2 and all(TrialRecord.from_trial(t).weights for t in complete)
    # `autobert best` builds the combination from what was stored, and it replays exactly.
    assert main(["best", str(path), "--export", str(tmp_path / "best.yaml")]) == 0
    combination = yaml.safe_load((tmp_path / "best.yaml").read_text())["provenance"]["combination"]
    assert combination["kind"] == "soup"
    out = tmp_path / "model"
    assert main(["train", str(tmp_path / "best.yaml"), "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] == combination["value"]


def test_combine_none_stores_nothing(tmp_path):
    path = write_study(tmp_path, name="plain", n_train=96, n_validation=32, only=["finetune"], combine="none",
                       budget={"trials": 2})
    assert main(["search", str(path)]) == 0
    assert not load_study(path).artifact_path.exists()
    best = yaml.safe_load((tmp_path / "plain" / "best.yaml").read_text())
    assert "combination" not in best["provenance"]


# -- the held-out check, on runs built by hand --------------------------------------------------------------------


def _study_of_runs(tmp_path: Path, runs: dict[int, list[np.ndarray]], labels: np.ndarray, kind: str = "auto"):
    """A stored study whose trial i ran once per array of ``runs[i]`` (seeds 0, 1, ...), with those probabilities."""
    from datasets import Dataset

    from autobert.config.schema import StudyConfig
    from autobert.run.data import TaskData
    from autobert.run.plugin_manager import get_plugin_manager
    from autobert.store import record

    study = StudyConfig.model_validate({
        "name": "by-hand", "model": "unused", "base_dir": tmp_path, "combine": {"kind": kind, "keep_weights": 0},
        "data": {"train": "t.csv", "validation": "v.csv"}})
    data = TaskData(splits={"validation": Dataset.from_dict({"text": ["x"] * len(labels), "label": labels.tolist()})},
                    label_names=["a", "b"], fingerprints={"validation": "fp"})
    study.study_dir.mkdir()
    opened = optuna.create_study(study_name="by-hand", storage=study.storage_url, direction="maximize")
    store = artifacts.artifact_store(study)
    for number, arrays in runs.items():
        trial = opened.ask({"finetune.learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-3)})
        values = {}
        for seed, probabilities in enumerate(arrays):
            artifacts.save_probabilities(store, trial, seed, probabilities, "fp")
            values[str(seed)] = accuracy(np.log(probabilities), labels)
        record.store(trial, seed_values=values)
        opened.tell(trial, float(np.mean(list(values.values()))))
    return study, get_plugin_manager(only=["finetune"]), data, opened


def _confident(labels: np.ndarray, right: np.ndarray, sure: float = 0.9) -> np.ndarray:
    """Probabilities that pick the true label on the rows where ``right`` is true, the other label elsewhere."""
    picked = np.where(right, labels, 1 - labels)
    return np.eye(2)[picked] * (2 * sure - 1) + (1 - sure)


def test_auto_keeps_the_single_recipe_when_the_choice_does_not_hold_on_the_held_out_rows(tmp_path):
    from autobert.study.combine import combine

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    half_a, half_b = halves(400)
    on_a = np.isin(np.arange(400), half_a)
    # Each of the best recipe's runs is lucky on one half of the rows: whatever is chosen on half A
    # does worse on half B than the recipe's runs do on average.
    lucky_on_a = _confident(labels, rng.random(400) < np.where(on_a, 0.90, 0.65))
    lucky_on_b = _confident(labels, rng.random(400) < np.where(on_a, 0.65, 0.90))
    study, pm, data, opened = _study_of_runs(tmp_path, {0: [lucky_on_a, lucky_on_b]}, labels)
    result = combine(study, pm, data, opened)
    assert result["kind"] == "none", result["reason"]
    assert result["candidates"] and result["candidates"][0]["gain"] <= result["holdout"]["noise"]
    assert "not more than the noise" in result["reason"]
    holdout = result["holdout"]  # both noises measured; the larger one decides
    assert holdout["noise"] == max(holdout["seed_noise"], holdout["bootstrap_noise"]) > 0


def test_auto_chooses_an_ensemble_that_beats_the_single_recipe_beyond_the_noise(tmp_path):
    from autobert.study.combine import combine

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)
    thirds = rng.integers(0, 3, 400)
    # The best recipe's three runs, each sure and wrong on its own third of the rows, unsure but right elsewhere:
    # each is right on two thirds of the rows, the three averaged on every row.
    runs = [np.where((thirds == k)[:, None], _confident(labels, np.zeros(400, bool), 0.9),
                     _confident(labels, np.ones(400, bool), 0.8)) for k in range(3)]
    weak = _confident(labels, rng.random(400) < 0.55)
    study, pm, data, opened = _study_of_runs(tmp_path, {0: runs, 1: [weak]}, labels)
    result = combine(study, pm, data, opened)
    assert result["kind"] == "ensemble", result["reason"]
    assert result["value"] > result["single"]["value"] + 0.2
    assert result["holdout"]["gain"] > result["holdout"]["noise"]


def test_the_bootstrap_noise_measures_how_much_the_gain_moves_with_the_rows():
    from autobert.strategy.combine import bootstrap_std

    labels = np.zeros(200, dtype=int)
    single = _confident(labels, np.arange(200) >= 100)       # right on half the rows
    same = bootstrap_std(single, [single], labels, np.arange(200), accuracy)
    assert same == 0.0
    better = _confident(labels, np.arange(200) >= 90)        # also right on 10 more rows: +5 points
    spread = bootstrap_std(better, [single], labels, np.arange(200), accuracy)
    assert 0.008 < spread < 0.025  # about sqrt(10) / 200: ten rows decide the gain
