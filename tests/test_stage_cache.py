"""The stage cache: one build per key, never a half-written entry, safe across processes."""

from __future__ import annotations

import multiprocessing
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
    cache.build("further_pretraining", "abc-0000008", write_files("x"), {"stage": "task", "steps": 8})
    cache.get("further_pretraining", "abc-0000008")
    cache.staging("further_pretraining", "abc-0000016")

    assert main(["cache", "ls", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "abc-0000008" in out and "stage=task" in out and "1 hits" in out and "1 unfinished build" in out

    assert main(["cache", "prune", str(tmp_path / "cache")]) == 0
    assert list(cache.leftovers()) == [] and cache.keys("further_pretraining") == ["abc-0000008"]
    assert main(["cache", "prune", str(tmp_path / "cache"), "--all"]) == 0
    assert cache.keys("further_pretraining") == []
