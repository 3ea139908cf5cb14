"""`autobert ablate`: per-technique paired-seed evidence, the recommended recipe, pairing and resume.

The task is built so that one technique helps and another hurts: the label
is decided by one sentiment word among 14-20 filler words, and the tiny
2-layer BERT trains for only 20 steps. Max pooling reads the word's vector
directly and learns it on every seed; the standard [CLS] head does not learn
it in that time (it predicts one class). Layer-wise decay 0.5 slows the
embeddings and the bottom layer (0.25 and 0.5 of the base rate), which is
what max pooling needs to move, so it costs accuracy on every seed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from rich.console import Console

from autobert import hookimpl
from autobert.ablation.plan import FULL, plan
from autobert.ablation.render import rich_table
from autobert.ablation.runner import run_ablation, study_name
from autobert.ablation.stats import HELPS, HURTS, NO_EVIDENCE, paired_summary
from autobert.strategy.declarations import declared_ablations
from autobert.cli import main
from autobert.config.schema import load_frozen, load_study
from autobert.run.data import load_task_data
from autobert.errors import AutobertError
from autobert.study.search import plugin_manager_for
from autobert.testing import FILLER, NEGATIVE, POSITIVE, write_study

RECIPE = {"learning_rate": 3e-3, "epochs": 2, "batch_size": 16, "warmup_ratio": 0.0, "weight_decay": 0.0}
SEEDS = [0, 1, 2, 3, 4]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _rows(n: int, rng: random.Random) -> list[tuple[str, int]]:
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = [rng.choice(POSITIVE if label else NEGATIVE)] + [rng.choice(FILLER) for _ in range(rng.randint(14, 20))]
        rows.append((" ".join(words), label))
    return rows


def _frozen_recipe(directory: Path, name: str = "abl") -> Path:
    """Search the one fixed recipe (max pooling, llrd 0.5, reinit 0) once and export it; return best.yaml."""
    path = write_study(directory, name=name, only=["finetune", "pooling", "llrd", "reinit"], n_train=160,
                       n_validation=100, max_length=12,
                       techniques={"finetune": RECIPE, "pooling": {"kind": "max"}, "llrd": {"decay": 0.5},
                                   "reinit": {"layers": 0}})
    rng = random.Random(3)
    for split, n in (("train", 160), ("validation", 100), ("test", 100)):
        lines = ["text,label"] + [f"{t},{y}" for t, y in _rows(n, rng)]
        (directory / "data" / f"{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    return path.parent / name / "best.yaml"


@pytest.fixture(scope="module")
def ablated(tmp_path_factory) -> Path:
    """The recipe ablated on 5 seeds with the CLI (default output: beside best.yaml); returns best.yaml."""
    best = _frozen_recipe(tmp_path_factory.mktemp("ablate"))
    assert main(["ablate", str(best), "--seeds", ",".join(map(str, SEEDS)), "--test"]) == 0
    return best


def _loaded(best: Path):
    frozen = load_frozen(best)
    return frozen, plugin_manager_for(frozen), load_task_data(frozen)


# ---------------------------------------------------------------------------
# The verdicts and the recommendation
# ---------------------------------------------------------------------------


def test_ablate_reports_the_helping_technique_as_helps_and_the_harmful_one_as_hurts(ablated):
    result = json.loads((ablated.parent / "best-ablation" / "ablation.json").read_text())
    rows = {row["technique"]: row for row in result["techniques"]}

    assert set(rows) == {"pooling", "llrd"}  # reinit is at its off value: not used, so not ablated
    assert rows["pooling"]["verdict"] == HELPS and rows["pooling"]["ci95"][0] > 0
    assert rows["llrd"]["verdict"] == HURTS and rows["llrd"]["ci95"][1] < 0
    assert rows["pooling"]["switched"] == "pooling.kind max → cls"
    assert rows["llrd"]["switched"] == "llrd.decay 0.5 → 1"
    assert all(len(row["differences"]) == 5 and row["seeds"] == SEEDS for row in rows.values())
    assert result["not_ablatable"] == [{"technique": "finetune", "reason": result["not_ablatable"][0]["reason"]}]
    assert "base recipe" in result["not_ablatable"][0]["reason"]


def test_ablate_recommends_the_recipe_without_the_harmful_technique(ablated):
    out = ablated.parent / "best-ablation"
    full = load_frozen(ablated)
    recommended = load_frozen(out / "recommended.yaml")
    result = json.loads((out / "ablation.json").read_text())

    assert result["recommended"]["dropped"] == ["llrd"]
    assert recommended.params == {**full.params, "llrd.decay": 1.0}
    assert recommended.techniques["pooling"] == {"kind": "max"}
    assert recommended.provenance.value is None  # not itself trained in the search
    # It is the "without llrd" arm: `autobert train` replays that arm's seed-0 value exactly.
    train_out = out / "trained"
    assert main(["train", str(out / "recommended.yaml"), "--seeds", "0", "--output", str(train_out)]) == 0
    arm = next(a for a in result["arms"] if a["name"] == "without llrd")
    assert json.loads((train_out / "metrics.json").read_text())["value"] == arm["seed_results"]["0"]["value"]


def test_ablate_writes_markdown_json_and_a_forest_plot(ablated):
    out = ablated.parent / "best-ablation"
    text = (out / "ablation.md").read_text()

    assert (out / "forest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| pooling | pooling.kind max → cls |" in text and "| helps |" in text and "| hurts |" in text
    assert "## Recommended recipe" in text and "`llrd`" in text
    assert "- `finetune`:" in text
    assert "test Δ accuracy (not used for the verdict)" in text


def test_test_split_scores_are_reported_apart_from_the_verdict(ablated):
    result = json.loads((ablated.parent / "best-ablation" / "ablation.json").read_text())
    assert result["test"] is True
    for row in result["techniques"]:
        assert len(row["test"]["differences"]) == 5 and set(row["test"]) == {"differences", "mean_difference", "ci95",
                                                                              "wilcoxon_p"}
    assert all(r["test"]["accuracy"] >= 0 for arm in result["arms"] for r in arm["seed_results"].values())


def test_the_full_arm_replays_the_search_trial(ablated):
    result = json.loads((ablated.parent / "best-ablation" / "ablation.json").read_text())
    full = result["arms"][0]
    assert full["name"] == FULL
    assert full["seed_results"]["0"]["value"] == load_frozen(ablated).provenance.value  # the search ran seed 0


def test_report_includes_the_ablation_of_the_best_recipe(ablated, tmp_path):
    study = ablated.parent.parent / "abl.yaml"
    assert main(["report", str(study), "--output", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "Ablation of the best recipe (trial 0)" in page
    assert "pooling.kind max → cls" in page and "hurts" in page and "ablation forest plot" in page


def test_rich_table_shows_each_verdict(ablated):
    frozen, pm, data = _loaded(ablated)
    out = ablated.parent / "best-ablation"
    # Everything is stored: this only reads it back.
    ablation = run_ablation(frozen, pm, data, seeds=SEEDS, output=out, evaluate_test=True)
    console = Console(record=True, width=250)
    console.print(rich_table(ablation))
    text = console.export_text()
    assert "helps" in text and "hurts" in text and "not ablatable: finetune" in text


# ---------------------------------------------------------------------------
# Pairing and resume
# ---------------------------------------------------------------------------


class DataOrder:
    """Records, per run, the training rows in the order the batches brought them."""

    def __init__(self):
        self.runs: list[tuple[tuple, int, list[int]]] = []

    @hookimpl
    def autobert_modify_datasets(self, datasets, run):
        datasets["train"] = datasets["train"].add_column("row", list(range(len(datasets["train"]))))
        self.runs.append((tuple(sorted(run.params.items())), run.seed, []))

    @hookimpl(wrapper=True)
    def autobert_compute_loss(self, extras):
        self.runs[-1][2].extend(extras["row"].tolist())
        return (yield)


def test_arms_are_paired_same_seeds_and_same_data_order_per_seed(tmp_path):
    frozen, pm, data = _loaded(_frozen_recipe(tmp_path))
    recorder = DataOrder()
    pm.register(recorder, name="data-order")
    run_ablation(frozen, pm, data, seeds=[0, 1], output=tmp_path / "out")

    recipes = {recipe for recipe, _, _ in recorder.runs}
    assert len(recipes) == 3  # full, without pooling, without llrd
    for seed in (0, 1):
        orders = {recipe: order for recipe, s, order in recorder.runs if s == seed}
        assert set(orders) == recipes  # every arm ran on this seed
        first = next(iter(orders.values()))
        assert len(first) == 2 * 160 and sorted(first) == sorted(list(range(160)) * 2)
        assert all(order == first for order in orders.values())
    by_seed = {s: order for _, s, order in recorder.runs}
    assert by_seed[0] != by_seed[1]


class StopAt:
    """Interrupts the ablation when the ``n``-th arm/seed run starts (like Ctrl-C); records the runs started."""

    def __init__(self, n: int | None = None):
        self.n, self.started, self.skipped_runs = n, [], []

    def arm_seed_started(self, arm, seed, index, total):
        if self.n is not None and len(self.started) + 1 == self.n:
            raise KeyboardInterrupt
        self.started.append((arm, seed))

    def arm_seed_finished(self, arm, seed, value, seconds):
        pass

    def skipped(self, arm, seeds):
        self.skipped_runs.append((arm, list(seeds)))

    def trial_started(self, number, total_steps):
        pass

    def step(self, global_step):
        pass

    def evaluated(self, global_step, value):
        pass


def test_a_stopped_ablation_resumes_without_re_running_finished_arms(tmp_path):
    frozen, pm, data = _loaded(_frozen_recipe(tmp_path))
    out = tmp_path / "out"
    first = StopAt(n=4)  # full on 0 and 1, "without llrd" on 0; stopped as "without llrd" starts seed 1
    with pytest.raises(KeyboardInterrupt):
        run_ablation(frozen, pm, data, seeds=[0, 1], output=out, progress=first)
    assert first.started == [(FULL, 0), (FULL, 1), ("without llrd", 0)]
    stored = optuna.load_study(study_name=study_name(frozen), storage=f"sqlite:///{out / 'ablation.db'}")
    assert [t.state for t in stored.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert stored.trials[1].user_attrs["fail_reason"] == "interrupted"

    again = StopAt()
    ablation = run_ablation(frozen, pm, data, seeds=[0, 1], output=out, progress=again)
    assert again.started == [("without llrd", 1), ("without pooling", 0), ("without pooling", 1)]
    assert again.skipped_runs == [(FULL, [0, 1]), ("without llrd", [0])]
    assert ablation.complete and [a.ran for a in ablation.arms] == [[], [1], [0, 1]]


# ---------------------------------------------------------------------------
# Declarations, --add, statistics
# ---------------------------------------------------------------------------


def test_add_tries_a_technique_the_recipe_does_not_use_at_its_declared_default(ablated):
    frozen, pm, _ = _loaded(ablated)
    arms = plan(frozen, pm, ["reinit"]).arms
    assert [a.name for a in arms] == [FULL, "without llrd", "without pooling", "with reinit"]
    assert arms[-1].params == {**frozen.params, "reinit.layers": 2}
    with pytest.raises(AutobertError, match="--add llrd: the recipe already uses llrd"):
        plan(frozen, pm, ["llrd"])
    with pytest.raises(AutobertError, match="--add finetune: finetune declares no default to switch on"):
        plan(frozen, pm, ["finetune"])
    with pytest.raises(AutobertError, match="--add knowledge: no technique of that name"):
        plan(frozen, pm, ["knowledge"])


def test_switching_a_technique_off_drops_the_parameters_it_no_longer_draws(tmp_path):
    path = write_study(tmp_path, name="k", only=["finetune", "pooling"],
                       techniques={"finetune": RECIPE, "pooling": {"kind": "concat_last_k", "k": 2}})
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    frozen = load_frozen(tmp_path / "k" / "best.yaml")
    (_, off) = plan(frozen, plugin_manager_for(frozen)).arms
    assert "pooling.k" in frozen.params and "pooling.k" not in off.params
    assert off.config.techniques["pooling"] == {"kind": "cls"}


def test_every_built_in_technique_declares_an_off_value_or_a_reason():
    from autobert.run.plugin_manager import get_plugin_manager

    pm = get_plugin_manager()
    declared = declared_ablations(pm)
    for name, declaration in declared.items():
        if not pm.techniques[name].module.startswith("autobert.plugins."):
            continue  # a third-party technique installed here
        assert declaration.off or declaration.reason, name
        assert "no autobert_ablation hook" not in declaration.reason, name


@pytest.mark.parametrize("direction, with_values, without_values, verdict", [
    ("maximize", [0.9, 0.8, 0.85, 0.9, 0.95], [0.5, 0.5, 0.55, 0.5, 0.6], HELPS),
    ("maximize", [0.5, 0.5, 0.55, 0.5, 0.6], [0.9, 0.8, 0.85, 0.9, 0.95], HURTS),
    ("minimize", [0.5, 0.5, 0.55, 0.5, 0.6], [0.9, 0.8, 0.85, 0.9, 0.95], HELPS),
    ("maximize", [0.9, 0.5, 0.85, 0.5, 0.7], [0.5, 0.9, 0.55, 0.8, 0.6], NO_EVIDENCE),
    ("maximize", [0.7] * 5, [0.7] * 5, NO_EVIDENCE),
])
def test_paired_summary_verdict_follows_the_interval_and_the_direction(direction, with_values, without_values, verdict):
    summary = paired_summary(with_values, without_values, direction)
    assert summary["verdict"] == verdict
    low, high = summary["ci95"]
    assert low <= summary["mean_difference"] <= high
    assert 0 < summary["wilcoxon_p"] <= 1


def test_one_seed_pair_gives_no_interval_and_no_evidence():
    summary = paired_summary([0.9], [0.5])
    assert summary["verdict"] == NO_EVIDENCE and summary["mean_difference"] == pytest.approx(0.4)
