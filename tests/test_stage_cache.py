"""The stage cache: one build per key, never a half-written entry, safe across processes."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from autobert.cli import main
from autobert.stage_cache import MARKER, StageCache, cache_key


def write_files(text):
    def builder(folder: Path):
        (folder / "payload.txt").write_text(text)
    return builder


def test_an_entry_is_built_once_and_then_served(tmp_path):
    cache = StageCache(tmp_path / "cache")
    calls = []

    def builder(folder):
        calls.append(folder)
        (folder / "payload.txt").write_text("built")

    first = cache.build("teachers", "k1", builder, {"about": "test"})
    second = cache.build("teachers", "k1", builder)

    assert first == second and len(calls) == 1
    assert (first / "payload.txt").read_text() == "built" and (first / MARKER).is_file()
    assert cache.entries()[0].hits == 1 and cache.entries()[0].description == {"about": "test"}


def test_the_key_ignores_the_order_of_what_it_describes():
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})


def test_a_failing_builder_publishes_nothing_and_leaves_nothing(tmp_path):
    cache = StageCache(tmp_path / "cache")

    def broken(folder):
        (folder / "half.txt").write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        cache.build("augmented", "k", broken)

    assert cache.get("augmented", "k") is None
    assert list(cache.leftovers()) == []
    assert cache.build("augmented", "k", write_files("whole")).joinpath("payload.txt").read_text() == "whole"


def test_a_folder_without_the_completion_marker_is_never_served_and_is_replaced(tmp_path):
    cache = StageCache(tmp_path / "cache")
    crashed = cache.path("further_pretraining", "k")
    crashed.mkdir(parents=True)
    (crashed / "model.safetensors").write_text("truncated")  # a crash after the copy began, before the marker

    assert cache.get("further_pretraining", "k") is None and cache.keys("further_pretraining") == []
    entry = cache.build("further_pretraining", "k", write_files("fresh"))
    assert not (entry / "model.safetensors").exists() and (entry / "payload.txt").read_text() == "fresh"


def _build_slowly(root: str, log: str, result: str) -> None:
    def builder(folder):
        with open(log, "a") as f:
            f.write("build\n")
        time.sleep(1.0)  # long enough for the other process to arrive meanwhile
        (folder / "payload.txt").write_text("slow")

    path = StageCache(root).build("further_pretraining", "shared", builder)
    Path(result).write_text(str(path))


def test_two_processes_building_one_key_build_it_once(tmp_path):
    log = tmp_path / "builds.log"
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_build_slowly, args=(str(tmp_path / "cache"), str(log), str(tmp_path / f"r{i}")))
               for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
        assert w.exitcode == 0

    assert log.read_text().splitlines() == ["build"]
    assert (tmp_path / "r0").read_text() == (tmp_path / "r1").read_text()
    assert StageCache(tmp_path / "cache").entries()[0].hits == 1  # the waiting process reused it


def test_prune_removes_unfinished_builds_but_not_one_in_progress(tmp_path):
    cache = StageCache(tmp_path / "cache")
    cache.build("ns", "done", write_files("x"))
    dead = cache.staging("ns", "dead")
    running = cache.staging("ns", "alive")
    with cache.lock("ns", "alive"):
        removed = cache.prune()

    assert dead in removed and dead.exists() is False
    assert running.exists() and cache.get("ns", "done") is not None


def test_cache_ls_and_prune_on_the_command_line(tmp_path, capsys):
    cache = StageCache(tmp_path / "cache")
    cache.build("stage", "abc-0000008", write_files("x"), {"stage": "task", "steps": 8})
    cache.get("stage", "abc-0000008")
    cache.staging("stage", "abc-0000016")

    assert main(["cache", "ls", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "abc-0000008" in out and "stage=task" in out and "1 hits" in out and "1 unfinished build" in out

    assert main(["cache", "prune", str(tmp_path / "cache")]) == 0
    assert list(cache.leftovers()) == [] and cache.keys("stage") == ["abc-0000008"]
    assert main(["cache", "prune", str(tmp_path / "cache"), "--all"]) == 0
    assert cache.keys("stage") == []


def test_only_one_kind_is_listed_and_pruned_when_asked(tmp_path, capsys):
    cache = StageCache(tmp_path / "cache")
    cache.build("teacher", "t1", write_files("x"), {"seeds": "0"})
    cache.build("mask", "m1", write_files("x"), {"strategy": "entropy"})

    assert main(["cache", "ls", str(tmp_path / "cache"), "--kind", "mask"]) == 0
    out = capsys.readouterr().out
    assert "strategy=entropy" in out and "seeds=0" not in out
    assert main(["cache", "prune", str(tmp_path / "cache"), "--all", "--kind", "mask"]) == 0
    assert cache.keys("mask") == [] and cache.keys("teacher") == ["t1"]


# --------------------------------------------------------------------------
# Every kind: what real trials build, and a build of each kind killed mid-write
# --------------------------------------------------------------------------

TRIAL_TECHNIQUES = ["finetune", "further_pretraining", "masking", "distillation", "augmentation", "eda"]
BUILT_BY_A_TRIAL = ["augmentation", "mask", "stage", "task-model", "teacher"]


@pytest.fixture(scope="module")
def cache_of_a_trial(tmp_path_factory):
    """The cache after one trial that pretrains with entropy masks, distils and augments."""
    import warnings

    from optuna.trial import FixedTrial

    from autobert.config.schema import load_study
    from autobert.run.pipeline import run_pipeline
    from autobert.run.plugin_manager import get_plugin_manager
    from autobert.study.validation import validate_study
    from autobert.testing import write_study

    directory = tmp_path_factory.mktemp("every-kind")
    finetune = {"learning_rate": 5e-3, "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0, "weight_decay": 0.0}
    path = write_study(directory, n_train=32, n_validation=16, only=TRIAL_TECHNIQUES, techniques={
        "finetune": finetune,
        "further_pretraining": {"batch_size": 4, "task_steps": {"low": 2, "high": 2}},
        "masking": {"task_model_epochs": 1, "task_model_batch_size": 16},
    })
    study = load_study(path)
    pm = get_plugin_manager(only=TRIAL_TECHNIQUES)
    data = validate_study(study, pm)
    params = {**{f"finetune.{k}": v for k, v in finetune.items()},
              "further_pretraining.stages": "task", "further_pretraining.task_steps": 2,
              "further_pretraining.task_learning_rate": 1e-4,
              "masking.strategy": "entropy", "masking.probability": 0.15, "masking.entropy_share": 1.0,
              "distillation.enabled": True, "distillation.alpha": 0.5, "distillation.temperature": 2.0,
              "distillation.teachers": 1,
              "augmentation.ratio": 0.25, "augmentation.method": "eda", "eda.alpha": "auto", "eda.copies": "auto"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_pipeline(study, FixedTrial(params), pm, data)
    return study.cache_path


def test_cache_ls_lists_stages_teachers_task_models_masks_and_augmentations(cache_of_a_trial, capsys):
    kinds = sorted({e.kind for e in StageCache(cache_of_a_trial).entries()})
    assert kinds == BUILT_BY_A_TRIAL

    assert main(["cache", "ls", str(cache_of_a_trial)]) == 0
    out = capsys.readouterr().out
    table = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
    assert set(BUILT_BY_A_TRIAL) <= set(table)
    built_from = {e.kind: e.summary() for e in StageCache(cache_of_a_trial).entries()}
    assert "method=eda" in built_from["augmentation"] and "strategy=entropy" in built_from["mask"]
    assert "stage=task" in built_from["stage"] and "seeds=0" in built_from["teacher"]


def _crash_while_building(root: str, kind: str, key: str) -> None:
    def builder(folder):
        (folder / "half-written.bin").write_bytes(b"\0" * 1024)
        os._exit(9)  # killed mid-write: no clean-up runs

    StageCache(root).build(kind, key, builder)


@pytest.mark.parametrize("kind", [*BUILT_BY_A_TRIAL, "masker", "a-plugins-own-kind"])
def test_cache_prune_removes_a_half_written_build_of_every_kind(tmp_path, kind, capsys):
    cache = StageCache(tmp_path / "cache")
    cache.build(kind, "whole", write_files("x"))
    crash = multiprocessing.get_context("fork").Process(target=_crash_while_building,
                                                        args=(str(cache.root), kind, "half"))
    crash.start()
    crash.join(30)
    assert crash.exitcode == 9
    (leftover,) = cache.leftovers()
    assert leftover.name.startswith(".tmp-half-") and (leftover / "half-written.bin").is_file()
    assert cache.get(kind, "half") is None  # never served

    assert main(["cache", "ls", str(cache.root)]) == 0
    assert "1 unfinished build" in " ".join(capsys.readouterr().out.split())  # (the console may wrap)
    assert main(["cache", "prune", str(cache.root)]) == 0

    assert list(cache.leftovers()) == [] and not leftover.exists()
    assert cache.keys(kind) == ["whole"]
    assert cache.build(kind, "half", write_files("rebuilt")).joinpath("payload.txt").read_text() == "rebuilt"


def test_an_entry_folder_or_file_without_the_marker_is_a_leftover_of_any_kind(tmp_path):
    cache = StageCache(tmp_path / "cache")
    cache.build("teacher", "whole", write_files("x"))
    unmarked = cache.path("teacher", "unmarked")  # e.g. an older version's teacher, written without a marker
    unmarked.mkdir()
    (unmarked / "logits.npy").write_bytes(b"old")
    stray = cache.root / "augmentation" / "0123abcd.jsonl"  # an older version's augmentation rows
    stray.parent.mkdir(parents=True)
    stray.write_text("{}\n")

    assert sorted(p.name for p in cache.leftovers()) == ["0123abcd.jsonl", "unmarked"]
    assert sorted(e.key for e in cache.entries()) == ["whole"]
    cache.prune()
    assert list(cache.leftovers()) == [] and cache.keys("teacher") == ["whole"]


def test_a_build_in_progress_of_any_kind_survives_prune(tmp_path):
    cache = StageCache(tmp_path / "cache")
    for kind in BUILT_BY_A_TRIAL:
        staged = cache.staging(kind, "busy")
        with cache.lock(kind, "busy"):
            cache.prune()
        assert staged.exists()

