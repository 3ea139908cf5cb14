"""A search that earns its budget: predicted costs, a deadline kept, cheap first, finalists on fresh seeds."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import yaml
from optuna.trial import TrialState

from autobert import hookimpl
from autobert.strategy.budget import Calibration, admission_cap, calibrate
from autobert.config.schema import load_frozen, load_study
from autobert.run.plugin_manager import Technique, get_plugin_manager
from autobert.study.search import export_best, open_study, run_search
from autobert.study.validation import validate_study

FINETUNE = {"learning_rate": {"low": 1e-3, "high": 5e-3, "log": True}, "epochs": 1, "batch_size": 16,
            "warmup_ratio": 0.0}


def with_technique(name: str, plugin) -> object:
    pm = get_plugin_manager(only=["finetune"])
    pm.register_technique(plugin, Technique(name, f"{__name__}:{type(plugin).__name__}", "autobert-tests", "0"))
    return pm


def started(opened) -> list:
    return [t for t in opened.trials if "not_started" not in t.user_attrs]


# ---------------------------------------------------------------------------
# The cost model
# ---------------------------------------------------------------------------


def test_every_trial_carries_predicted_and_actual_seconds(tiny_study):
    study = load_study(tiny_study(only=["finetune"]))
    pm = get_plugin_manager(only=["finetune"])
    opened = run_search(study, pm, validate_study(study, pm), n_trials=2)
    for t in opened.trials:
        assert t.user_attrs["predicted_seconds"] > 0 and t.user_attrs["seconds"] > 0
        assert t.user_attrs["cost_terms"]["finetune: training"] == 96  # 96 rows x 1 epoch
    assert "calibration" in opened.user_attrs  # the probe's figures, kept for a resumed study


def test_calibration_follows_the_study_s_finished_trials():
    prior = Calibration(overhead=1.0, seconds_per_pass=0.01, source="probe")
    done = [SimpleNamespace(state=TrialState.COMPLETE, user_attrs={"predicted_work": 100, "seconds": 1.0 + 100 * 0.05,
                                                                   "runs": 1}) for _ in range(3)]
    pruned = SimpleNamespace(state=TrialState.PRUNED, user_attrs={"predicted_work": 100, "seconds": 0.5, "runs": 1})
    assert calibrate([], prior) == prior
    learned = calibrate([*done, pruned], prior)
    assert learned.seconds_per_pass == pytest.approx(0.05)
    assert learned.seconds(1000) == pytest.approx(1.0 + 50)


def test_cheap_first_cap_starts_at_a_sixth_of_the_budget_and_follows_the_best_recipe():
    assert admission_cap(600, 500, None) == pytest.approx(100)
    assert admission_cap(600, 500, 80) == pytest.approx(160)  # twice the best recipe's cost
    assert admission_cap(600, 500, 10) == pytest.approx(100)  # never below the first share
    assert admission_cap(600, 50, 80) == pytest.approx(50)  # never past the time left


def test_the_clock_stops_a_trial_far_past_its_prediction_or_past_the_deadline():
    from autobert.run.clock import OVERRUN, SLACK, Clock, TrialStopped

    Clock(predicted=10, trial_started=time.monotonic() - (OVERRUN * 10 + SLACK - 5)).check()  # late, not yet too late
    with pytest.raises(TrialStopped, match="far past its predicted 10s"):
        Clock(predicted=10, trial_started=time.monotonic() - (OVERRUN * 10 + SLACK + 1)).check()
    with pytest.raises(TrialStopped, match="time budget"):
        Clock(deadline=time.monotonic() - 1).check()


def test_sigterm_inside_interruptible_stops_as_ctrl_c_does_and_the_handlers_come_back():
    import os
    import signal

    from autobert.run.clock import check_deadline, interruptible

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with interruptible():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises before this ends
        with pytest.raises(KeyboardInterrupt):
            check_deadline()  # the stop request outlives an interrupt that a finaliser swallowed
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    check_deadline()  # the request is cleared on the way out


def test_an_option_alone_replaces_the_study_files_whole_budget():
    from autobert.config.schema import BudgetConfig
    from autobert.strategy.budget import SearchBudget, resolve_budget

    file = BudgetConfig(trials=10, timeout=3600)
    assert resolve_budget(file) == SearchBudget(n_trials=10, timeout=3600)
    assert resolve_budget(file, n_trials=3) == SearchBudget(n_trials=3, timeout=None)
    assert resolve_budget(file, timeout=60) == SearchBudget(n_trials=None, timeout=60)
    assert resolve_budget(file, n_trials=3, timeout=60) == SearchBudget(n_trials=3, timeout=60)


class SlowStage:
    """A technique whose stage is predicted to take hours; it counts the times it really runs."""

    def __init__(self):
        self.ran = 0

    @hookimpl
    def autobert_search_space(self, space):
        space.suggest_categorical("slow.enabled", [False, True])

    @hookimpl
    def autobert_trial_cost(self, params):
        return {"stage": 1e9} if params.get("slow.enabled") else None

    @hookimpl
    def autobert_modify_datasets(self, datasets, run):
        if run.params.get("slow.enabled"):
            self.ran += 1


def test_a_trial_predicted_to_overrun_the_budget_is_never_started(tiny_study):
    study = load_study(tiny_study(only=["finetune"], budget={"timeout": 20}, finalists="none",
                                  sampler={"name": "random", "seed": 3}))
    slow = SlowStage()
    pm = with_technique("slow", slow)
    opened = run_search(study, pm, validate_study(study, pm), timeout=20, n_trials=6)
    refused = [t for t in opened.trials if t.params.get("slow.enabled")]
    assert refused and all(t.state == TrialState.PRUNED and "predicted" in t.user_attrs["not_started"] for t in refused)
    assert slow.ran == 0
    assert any(t.state == TrialState.COMPLETE for t in opened.trials)


class SlowButSwitchable(SlowStage):
    """The slow stage again, declaring how it is switched off (``autobert_ablation``)."""

    @hookimpl
    def autobert_ablation(self):
        return {"off": {"slow.enabled": False}}


def test_a_recipe_over_the_cap_runs_as_its_cheaper_variant(tiny_study):
    study = load_study(tiny_study(only=["finetune"], budget={"timeout": 20}, finalists="none",
                                  sampler={"name": "random", "seed": 3}))
    slow = SlowButSwitchable()
    pm = with_technique("slow", slow)
    opened = run_search(study, pm, validate_study(study, pm), timeout=20, n_trials=3)
    refused = [t for t in opened.trials if "not_started" in t.user_attrs]
    variants = {t.user_attrs["variant_of"]: t for t in opened.trials if "variant_of" in t.user_attrs}
    assert refused and slow.ran == 0
    for t in refused:
        assert "cheaper variant (slow off" in t.user_attrs["not_started"]
        variant = variants[t.number]
        assert variant.state == TrialState.COMPLETE and variant.params["slow.enabled"] is False
        # Everything else is the sampler's recipe, unchanged.
        assert {k: v for k, v in variant.params.items() if k != "slow.enabled"} == \
               {k: v for k, v in t.params.items() if k != "slow.enabled"}


def test_a_warm_start_recipe_over_the_budget_runs_as_its_cheaper_variant_and_keeps_its_mark(tiny_study, tmp_path):
    # A portfolio recipe that needs the slow stage cannot fit 20 s: its cheaper variant runs, and the leaderboard
    # still says which portfolio recipe it came from and what was cut.
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({"recipes": [{"name": "slow-one", "params": {
        "finetune.learning_rate": 2e-3, "slow.enabled": True}}]}))
    study = load_study(tiny_study(only=["finetune"], budget={"timeout": 20}, finalists="none", warm_start="mine.yaml",
                                  sampler={"name": "random", "seed": 3}))
    slow = SlowButSwitchable()
    pm = with_technique("slow", slow)
    opened = run_search(study, pm, validate_study(study, pm), timeout=20, n_trials=2)
    first, variant = opened.trials[:2]
    assert first.user_attrs["warm_start"] == "slow-one" and "not_started" in first.user_attrs
    assert variant.user_attrs["variant_of"] == first.number and variant.state == TrialState.COMPLETE
    assert variant.user_attrs["warm_start"] == "slow-one (slow off)"
    assert variant.params == {**first.params, "slow.enabled": False} and slow.ran == 0


class Paraphrase:
    """A third-party technique whose copies of every training row are its cost knob (``autobert_cost_knobs``)."""

    @hookimpl
    def autobert_search_space(self, space):
        if space.suggest_categorical("paraphrase.enabled", [False, True]):
            space.suggest_categorical("paraphrase.copies", [1, 2, 4, 8])

    @hookimpl
    def autobert_cost_knobs(self):
        return {"paraphrase.copies": [8, 4, 2, 1]}

    @hookimpl
    def autobert_trial_cost(self, params):
        return {"copies": 2000 * params["paraphrase.copies"]} if params.get("paraphrase.enabled") else None


class SwitchableParaphrase(Paraphrase):
    """Paraphrase again, declaring how it is switched off (``autobert_ablation``)."""

    @hookimpl
    def autobert_ablation(self):
        return {"off": {"paraphrase.enabled": False}}


RECIPE = {"finetune.learning_rate": 2e-3, "finetune.epochs": 4, "finetune.batch_size": 16, "finetune.warmup_ratio": 0.0}


def planner_for(tiny_study, pm, timeout: float, seconds_per_pass: float, **study_keys):
    """A planner over a tiny study with its calibration given (no probe), as a budgeted search builds it."""
    from autobert.strategy.planner import Planner

    study = load_study(tiny_study(only=["finetune"], finalists="none", budget={"timeout": timeout},
                                  techniques={"finetune": {**FINETUNE, "epochs": {"low": 1, "high": 4}}}, **study_keys))
    opened = open_study(study)
    opened.set_user_attr("calibration", {"overhead": 0.0, "seconds_per_pass": seconds_per_pass})
    return Planner(study, pm, validate_study(study, pm), opened, timeout=timeout, n_trials=None)


def test_a_technique_s_cost_knob_is_lowered_in_the_cheaper_variant(tiny_study):
    # 600 s: the cap is 100 s. 8 copies are 160 s of the recipe's 164 s; 4 copies fit, at 4 epochs still.
    planner = planner_for(tiny_study, with_technique("paraphrase", Paraphrase()), 600, 0.01)
    params = {**RECIPE, "paraphrase.enabled": True, "paraphrase.copies": 8}
    variant, prediction, changes = planner.cheaper_variant(params, planner.predict(params, 1))
    assert changes == ["copies 4"]
    assert variant == {**params, "paraphrase.copies": 4}
    assert prediction.seconds <= planner.cap()


def test_a_cost_knob_of_a_technique_switched_off_is_left_as_it_was(tiny_study):
    planner = planner_for(tiny_study, with_technique("paraphrase", SwitchableParaphrase()), 600, 0.01)
    params = {**RECIPE, "paraphrase.enabled": True, "paraphrase.copies": 8}
    variant, _, changes = planner.cheaper_variant(params, planner.predict(params, 1))
    assert changes == ["paraphrase off"]
    assert variant == {**params, "paraphrase.enabled": False}  # its copies no longer cost anything: not lowered


def test_with_finetune_alone_the_cheaper_variant_lowers_epochs_until_the_recipe_fits(tiny_study):
    # 120 s: the cap is 20 s. At 0.1 s per pass, 4 epochs of 96 rows (and their evaluation) cost 42.7 s,
    # 2 epochs 21.3 s, 1 epoch 10.7 s.
    planner = planner_for(tiny_study, get_plugin_manager(only=["finetune"]), 120, 0.1)
    variant, prediction, changes = planner.cheaper_variant(RECIPE, planner.predict(RECIPE, 1))
    assert changes == ["epochs 1"]
    assert variant == {**RECIPE, "finetune.epochs": 1}
    assert prediction.terms["finetune: training"] == 96 and prediction.seconds <= planner.cap()


def half_budget_planner(tiny_study, seconds_per_run: float, n_done: int = 2):
    """A 900 s search whose 4-epoch recipe is predicted at ``seconds_per_run`` (about half the budget), with
    ``n_done`` such recipes finished (no training: their parameters drawn through the study's own space)."""
    from autobert.run.pipeline import draw_params
    from autobert.strategy.planner import Planner

    pm = get_plugin_manager(only=["finetune"])
    study = load_study(tiny_study(only=["finetune"], budget={"timeout": 900},
                                  techniques={"finetune": {**FINETUNE, "epochs": {"low": 1, "high": 4}}}))
    opened = open_study(study)
    opened.set_user_attr("calibration", {"overhead": 0.0, "seconds_per_pass": 1.0})
    planner = Planner(study, pm, validate_study(study, pm), opened, timeout=900, n_trials=None)
    scale = seconds_per_run / planner.predict(RECIPE, 1).seconds
    opened.set_user_attr("calibration", {"overhead": 0.0, "seconds_per_pass": scale})
    planner._prior = None
    for i in range(n_done):
        opened.enqueue_trial({**RECIPE, "finetune.learning_rate": 2e-3 + i * 1e-4})
        opened.optimize(lambda trial: (draw_params(study, trial, pm), 0.8 + i / 100)[1], n_trials=1)
    return planner, opened


def test_a_queued_cheaper_variant_that_fits_keeps_the_search_phase_going(tiny_study):
    # A 464 s recipe started; the next (4 epochs, over the cap) runs as its 1-epoch variant. With 10 s more than
    # the variant needs left, the phase goes on: it used to end, comparing the time left with the 464 s recipe.
    planner, opened = half_budget_planner(tiny_study, 464.0)
    planner.cheapest = 464.0
    planner.main_deadline = time.monotonic() + 300  # the cap is then min(120, 300)
    variant = planner.cheaper_variant(RECIPE, planner.predict(RECIPE, 1))
    assert variant is not None and variant[2] == ["epochs 1"]
    planner.main_deadline = time.monotonic() + variant[1].seconds + 10
    planner.deadline = planner.main_deadline + 0.1
    skipped = opened.trials[-1]
    skipped.user_attrs["not_started"] = "over the cap"
    planner(opened, skipped)
    assert planner.stop_reason is None


def test_nothing_that_fits_the_time_left_ends_the_phase_and_says_what_could_have_run(tiny_study):
    planner, opened = half_budget_planner(tiny_study, 464.0)
    planner.cheapest = 116.0
    planner.main_deadline = time.monotonic() + 60
    planner.deadline = planner.main_deadline + 0.1
    stopped = []
    planner(SimpleNamespace(stop=lambda: stopped.append(True)), opened.trials[-1])  # as Optuna's callback, stopping
    assert stopped and "less than the cheapest recipe that could still run" in planner.stop_reason


def test_a_finalist_share_that_cannot_hold_one_run_goes_back_to_the_search(tiny_study):
    # 900 s with a 20 % share: 180 s for finalists, but one finalist run is predicted at 464 s. The share goes
    # back: the search may run to the budget's end (a 237 s recipe then fits in the 416 s left).
    planner, opened = half_budget_planner(tiny_study, 464.0)
    now = time.monotonic()
    planner.main_deadline, planner.deadline = now + 236, now + 416
    planner(opened, opened.trials[-1])
    assert planner.main_deadline == planner.deadline
    assert planner.returned_share and "goes back to the search" in planner.returned_share
    assert planner.stop_reason is None


def test_a_finalist_share_that_holds_a_run_is_kept(tiny_study):
    planner, opened = half_budget_planner(tiny_study, 100.0)
    now = time.monotonic()
    planner.main_deadline, planner.deadline = now + 236, now + 416
    planner(opened, opened.trials[-1])
    assert planner.deadline - planner.main_deadline == pytest.approx(180, abs=1)
    assert planner.returned_share is None


def test_the_finalists_leave_the_combination_step_its_time(tiny_study):
    # Soups are scored at the budget's end, each a validation pass (the slowest a trial measured, 3 s here) and
    # its members' loading. The finalists' runs end early enough to leave two of them their time.
    from autobert.store import record
    from autobert.strategy.planner import SOUP_OVERHEAD, SOUP_PER_PASS, SOUPS_RESERVED

    planner, opened = half_budget_planner(tiny_study, 100.0)
    assert planner.combination_seconds() == 0.0  # no trial measured a validation pass yet
    for seconds in (1.5, 3.0):  # two more search trials, each with its evaluation's runtime
        opened.optimize(lambda trial: (record.store(trial, metrics={"accuracy": 0.8, "runtime": seconds}), 0.8)[1],
                        n_trials=1)
    planner.deadline = time.monotonic() + 400
    reserve = SOUPS_RESERVED * (SOUP_PER_PASS * 3.0 + SOUP_OVERHEAD)
    assert 7 < reserve < 9
    assert planner.combination_seconds() == pytest.approx(reserve)
    assert planner.cap(finalist=True) == pytest.approx(400 - reserve, abs=1)
    assert planner.clock(None, finalist=True).deadline == pytest.approx(planner.deadline - reserve)
    # Nothing to score (ensembles are arithmetic on stored probabilities): the finalists run to the end.
    planner.study = planner.study.model_copy(update={"combine": planner.study.combine.model_copy(update={"kind": "ensemble"})})
    assert planner.cap(finalist=True) == pytest.approx(400, abs=1)


class Sleeper:
    """A technique that makes every training step slow, unbeknown to the cost model."""

    @hookimpl
    def autobert_trainer_callbacks(self, run):
        from transformers import TrainerCallback

        class Sleep(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                time.sleep(1.0)

        return [Sleep()]


def test_a_running_trial_is_stopped_at_the_deadline(tiny_study):
    study = load_study(tiny_study(only=["finetune"], finalists="none",
                                  techniques={"finetune": {**FINETUNE, "epochs": 3}}))  # 18 steps: 18 s asleep
    pm = with_technique("sleeper", Sleeper())
    data = validate_study(study, pm)
    open_study(study)  # the probe runs outside the clock in run_search too; time the search alone
    start = time.monotonic()
    opened = run_search(study, pm, data, timeout=6)
    elapsed = time.monotonic() - start
    assert elapsed < 6 * 1.05 + 3  # + one step, one evaluation and the probe of a tiny model
    stopped = [t for t in opened.trials if "stopped_reason" in t.user_attrs]
    assert stopped and stopped[0].state == TrialState.PRUNED
    assert "time budget" in stopped[0].user_attrs["stopped_reason"]


def test_every_built_in_technique_at_its_default_space_keeps_a_120_second_budget(tiny_study):
    # Every installed technique enabled at its default space; only the model and data are tiny.
    path = tiny_study(techniques={}, budget={"timeout": 120}, n_train=96)
    study = load_study(path)
    pm = get_plugin_manager(disable=study.disable)
    data = validate_study(study, pm)
    start = time.monotonic()
    opened = run_search(study, pm, data, timeout=120)
    elapsed = time.monotonic() - start
    evaluation = max(5.0, max((t.user_attrs.get("seconds", 0) for t in opened.trials), default=0) / 3)
    assert elapsed <= 126 + evaluation
    assert any(t.state == TrialState.COMPLETE for t in opened.trials)
    for t in started(opened):
        if t.state != TrialState.FAIL:
            assert "predicted_seconds" in t.user_attrs and "seconds" in t.user_attrs


# ---------------------------------------------------------------------------
# Finalists
# ---------------------------------------------------------------------------


def test_a_budgeted_search_reruns_its_finalists_on_fresh_seeds_and_exports_the_best_mean(tiny_study):
    study = load_study(tiny_study(only=["finetune"], finalists={"share": 0.5, "top": 2},
                                  sampler={"name": "random", "seed": 0}))
    pm = get_plugin_manager(only=["finetune"])
    data = validate_study(study, pm)
    opened = run_search(study, pm, data, timeout=24)
    path = export_best(study, opened, pm, data)
    frozen = load_frozen(path)
    rows = frozen.provenance.finalists
    assert rows and len(rows) >= 2
    for row in rows:
        assert row["seed_values"] and all(int(seed) not in study.run_seeds for seed in row["seed_values"])
    means = [r["mean"] for r in rows]
    assert means == sorted(means, reverse=True)
    assert frozen.provenance.trial == rows[0]["trial"]  # the best by the fresh seeds' mean, not by its one search run
    runs = [t for t in opened.trials if "finalist_of" in t.user_attrs and t.state == TrialState.COMPLETE]
    assert {t.user_attrs["finalist_of"] for t in runs} == {r["trial"] for r in rows}
    assert yaml.safe_load(path.read_text())["provenance"]["finalists"][0]["trial"] == rows[0]["trial"]


# ---------------------------------------------------------------------------
# Pruning at the same share of each trial's schedule
# ---------------------------------------------------------------------------


def test_fraction_rule_never_prunes_in_warm_up_or_before_its_first_share():
    from autobert.strategy.pruners import should_prune

    finished = [[(0.25, 0.9), (0.5, 0.9), (1.0, 0.95)]] * 3
    assert not should_prune(0.1, 0.25, 0.0, finished)  # before min_fraction (0.3)
    assert not should_prune(0.1, 0.6, 0.7, finished)  # still in warm-up
    assert should_prune(0.1, 0.6, 0.0, finished)
    assert not should_prune(0.1, 0.6, 0.0, finished[:2])  # fewer finished trials than n_startup_trials


def test_fraction_rule_compares_trials_at_the_same_share_of_their_own_schedule():
    from autobert.strategy.pruners import should_prune, value_at

    # Three finished 3-epoch trials (reports at thirds) and a 2-epoch trial at its half.
    finished = [[(1 / 3, 0.6), (2 / 3, 0.8), (1.0, 0.9)]] * 3
    assert value_at(finished[0], 0.5) == pytest.approx(0.7)
    assert not should_prune(0.72, 0.5, 0.0, finished)  # better than they were at their half
    assert should_prune(0.65, 0.5, 0.0, finished)
    assert not should_prune(0.65, 0.5, 0.0, [*finished, [(0.5, 0.6), (1.0, 0.7)]], percentile=10)  # not the worst 10 %


class Sabotage:
    """A technique that, when on, trains nothing: its trials stay at chance level."""

    @hookimpl
    def autobert_search_space(self, space):
        space.suggest_categorical("sabotage.enabled", [False, True])

    @hookimpl
    def autobert_training_arguments(self, args, run):
        if run.params.get("sabotage.enabled"):
            args["learning_rate"] = 1e-12


def test_fraction_pruner_stops_a_hopeless_trial_after_its_first_share(tiny_study):
    study = load_study(tiny_study(only=["finetune"], evaluations_per_epoch=4,
                                  pruner={"name": "fraction", "n_startup_trials": 2},
                                  techniques={"finetune": {**FINETUNE, "learning_rate": 5e-3, "epochs": 2}}))
    pm = with_technique("sabotage", Sabotage())
    data = validate_study(study, pm)
    opened = open_study(study)
    for enabled in (False, False, True):
        opened.enqueue_trial({"sabotage.enabled": enabled})
    opened = run_search(study, pm, data, n_trials=3)
    good, hopeless = opened.trials[:2], opened.trials[2]
    assert all(t.state == TrialState.COMPLETE for t in good)
    assert hopeless.state == TrialState.PRUNED
    stopped_at = max(hopeless.intermediate_values) / hopeless.user_attrs["total_steps"]
    assert 0.3 <= stopped_at < 1.0  # never before min_fraction
