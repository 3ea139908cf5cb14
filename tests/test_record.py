"""One typed trial record: what a trial stores, under the keys stored studies have always used."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from autobert.store import record
from autobert.store.record import KEYS, StudyRecord, TrialRecord
from autobert.store.storage import open_storage

ROOT = Path(__file__).resolve().parent.parent

EVERY_FIELD = TrialRecord(
    worker="host:1", seed=0, seeds=[0, 1], precision="bf16", predicted_seconds=12.5, predicted_work=340.0,
    cost_terms={"finetune: training": 300.0, "evaluation": 40.0}, runs=2, finalist_of=3, finalist_seed=7, variant_of=2,
    warm_start="r1 (distillation off)", candidate="r1", recipe={"finetune.learning_rate": 1e-3}, total_steps=40,
    warmup_steps=4, steps=40, seconds=11.2, seed_values={"0": 0.8, "1": 0.82}, metrics={"accuracy": 0.81},
    out_of_memory={"0": {"batch_size": 8}}, fail_reason="failed", pruned_reason="pruned", stopped_reason="stopped",
    not_started="over the cap", arm="full", arm_key="abc", technique="llrd", changes={"llrd.enabled": False},
    arm_params={"finetune.epochs": 1}, seed_results={"0": {"value": 0.8, "seconds": 3.0}},
    notes={"further_pretraining": ["task: cache hit"]},
)


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_a_record_written_to_a_trial_reads_back_the_same(tmp_path, storage):
    opened = optuna.create_study(storage=None if storage == "memory" else f"sqlite:///{tmp_path / 'record.db'}")
    trial = opened.ask()

    EVERY_FIELD.write(trial)
    opened.tell(trial, 0.8)

    assert TrialRecord.from_trial(opened.trials[0]) == EVERY_FIELD
    assert TrialRecord.from_trial(trial) == EVERY_FIELD  # the live trial reads the same


def test_the_stored_keys_are_the_ones_stored_studies_use():
    assert KEYS == {name: name for name in KEYS if name != "arm_params"} | {"arm_params": "params"}
    assert set(KEYS) == {
        "worker", "seed", "seeds", "precision", "predicted_seconds", "predicted_work", "cost_terms", "runs",
        "finalist_of", "finalist_seed", "variant_of", "warm_start", "candidate", "recipe", "total_steps",
        "warmup_steps", "steps", "seconds", "seed_values", "metrics", "predictions", "weights", "out_of_memory",
        "fail_reason", "pruned_reason",
        "stopped_reason", "not_started", "arm", "arm_key", "technique", "changes", "arm_params", "seed_results",
    }
    assert record.FAILED_TRIAL == "failed_trial" and record.HEARTBEAT == "autobert:heartbeat"


def test_a_trial_stored_before_the_newer_attributes_reads_them_as_none():
    old = create_trial(value=0.7, params={"finetune.learning_rate": 1e-3},
                       distributions={"finetune.learning_rate": FloatDistribution(1e-4, 1e-2, log=True)},
                       user_attrs={"seconds": 30.0, "seed_values": {"0": 0.7}, "pet": "3 patterns"},
                       system_attrs={"failed_trial": 4})

    stored = TrialRecord.from_trial(old)

    assert stored.seconds == 30.0 and stored.seed_values == {"0": 0.7}
    assert stored.predicted_seconds is None and stored.cost_terms is None and stored.precision is None
    assert not stored.is_finalist and not stored.is_skipped and not stored.is_warm_start and stored.reason == ""
    assert stored.notes == {"pet": "3 patterns"}
    assert stored.retry_of == 4


def test_a_stand_in_without_attributes_reads_an_empty_record():
    assert TrialRecord.from_trial(object()) == TrialRecord()


def test_store_writes_only_the_fields_given_and_refuses_an_unknown_one():
    trial = optuna.trial.FixedTrial({})

    record.store(trial, seconds=1.5, technique=None)

    assert trial.user_attrs == {"seconds": 1.5, "technique": None}
    with pytest.raises(TypeError):
        record.store(trial, secnds=1.5)
    with pytest.raises(TypeError, match="system attribute"):
        record.store(trial, retry_of=3)


def test_a_queued_trial_starts_with_its_record_none_fields_left_out():
    opened = optuna.create_study()

    record.enqueue(opened, {}, variant_of=2, warm_start=None)

    assert opened.trials[0].state == TrialState.WAITING
    assert opened.trials[0].user_attrs == {"variant_of": 2}


def test_a_study_record_round_trips_and_reads_absent_fields_as_none():
    opened = optuna.create_study()

    record.store_study(opened, portfolio="portfolio", task="sst2", rows={"train": 64})

    assert StudyRecord.from_study(opened) == StudyRecord(portfolio="portfolio", task="sst2", rows={"train": 64})
    assert opened.user_attrs == {"portfolio": "portfolio", "task": "sst2", "rows": {"train": 64}}
    with pytest.raises(TypeError):
        record.store_study(opened, metrc="accuracy")


def test_the_stored_portfolio_journal_reads_through_the_record(tmp_path):
    journal = tmp_path / "portfolio-scores.journal"
    shutil.copy(ROOT / "docs" / "benchmarks" / "portfolio-scores.journal", journal)
    backend = open_storage(f"journal:///{journal}", must_exist=True)

    studies = optuna.get_all_study_summaries(storage=backend)

    assert studies and all(StudyRecord.from_study(s).portfolio == "portfolio" for s in studies)
    trials = [t for s in studies for t in optuna.load_study(study_name=s.study_name, storage=backend).trials]
    records = [TrialRecord.from_trial(t) for t in trials]
    assert all(r.stored() == t.user_attrs for r, t in zip(records, trials))  # every key known, every value kept
    assert all(r.candidate is not None or r.retry_of is not None for r in records)  # a lost run's retry: its original's
    assert any(r.retry_of is not None for r in records)
    assert {n for r in records for n in r.notes} == {"further_pretraining", "pet"}
    complete = [r for r, t in zip(records, trials) if t.state == TrialState.COMPLETE]
    assert complete and all(r.seconds is not None and r.seed_values and r.heartbeat is not None for r in complete)


# ---------------------------------------------------------------------------
# No trial attribute outside the record
# ---------------------------------------------------------------------------

ATTRIBUTE_API = {"user_attrs", "system_attrs", "set_user_attr", "set_system_attr", "set_trial_user_attr",
                 "set_trial_system_attr"}
#: The plugin contract may not import the engine (import-linter): ``TrialRun.note`` writes a technique's own key.
ALLOWED = {"autobert/store/record.py": None, "autobert/trial_run.py": {"note"}}


def attribute_uses(path: Path) -> list[tuple[int, str | None]]:
    """``(line, enclosing function)`` of every reach for Optuna's attribute API in ``path``."""
    found = []

    def visit(node: ast.AST, function: str | None) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if (isinstance(node, ast.Attribute) and node.attr in ATTRIBUTE_API
                or isinstance(node, ast.keyword) and node.arg in ATTRIBUTE_API
                or isinstance(node, ast.Constant) and node.value in ATTRIBUTE_API):
            found.append((getattr(node, "lineno", 0), function))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(ast.parse(path.read_text(encoding="utf-8")), None)
    return found


def test_no_module_outside_the_record_reads_or_writes_trial_attributes():
    offenders = []
    for path in sorted((ROOT / "autobert").rglob("*.py")):
        where = path.relative_to(ROOT).as_posix()
        allowed = ALLOWED.get(where, set())
        if allowed is None:
            continue
        offenders += [f"{where}:{line}" for line, function in attribute_uses(path) if function not in allowed]
    assert not offenders, (f"trial attributes used outside autobert/store/record.py: {offenders}; read a trial with "
                           "TrialRecord.from_trial(trial) and write it with record.store(trial, field=value)")
