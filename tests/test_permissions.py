"""Files autobert writes get the permissions the user's umask gives any new file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from autobert.cli import main
from autobert.config.schema import write_atomic
from autobert.testing import write_study

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


@pytest.fixture
def umask():
    """Set the process's umask for one test, then restore it."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path: Path) -> str:
    """The mode as `ls -l` shows it (``-rw-r--r--``)."""
    return stat.filemode(path.stat().st_mode)


@pytest.mark.parametrize("mask, shown", [(0o022, "-rw-r--r--"), (0o027, "-rw-r-----"), (0o077, "-rw-------")])
def test_an_atomic_write_has_the_mode_the_umask_gives_a_new_file(tmp_path, umask, mask, shown):
    umask(mask)
    write_atomic(tmp_path / "best.yaml", "name: x\n")
    (tmp_path / "plain.txt").write_text("x")  # what open() gives a new file under this umask
    assert _mode(tmp_path / "best.yaml") == _mode(tmp_path / "plain.txt") == shown


@pytest.fixture(scope="module")
def searched_and_trained(tmp_path_factory) -> Path:
    """A search, its report and a trained model, all written under umask 022 (once for this module's tests)."""
    tmp_path = tmp_path_factory.mktemp("modes")
    old = os.umask(0o022)
    try:
        path = write_study(tmp_path, name="modes", n_train=48, n_validation=16, only=["finetune"],
                           techniques={"finetune": {"learning_rate": 3e-3, "epochs": 1, "batch_size": 16}})
        assert main(["search", str(path), "--n-trials", "2"]) == 0
        assert main(["report", str(path)]) == 0
        assert main(["train", str(tmp_path / "modes" / "best.yaml"), "--output", str(tmp_path / "model")]) == 0
    finally:
        os.umask(old)
    return tmp_path


def test_best_yaml_the_report_metrics_json_and_the_model_card_are_readable_by_others_under_umask_022(searched_and_trained):
    tmp_path = searched_and_trained
    written = [tmp_path / "modes" / "best.yaml", tmp_path / "modes" / "report" / "report.html",
               tmp_path / "model" / "metrics.json", tmp_path / "model" / "autobert.yaml", tmp_path / "model" / "README.md"]
    assert {str(p.relative_to(tmp_path)): _mode(p) for p in written} == {
        str(p.relative_to(tmp_path)): "-rw-r--r--" for p in written}
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["metric"] == "accuracy"


def _not_readable_by_others(root: Path) -> list[str]:
    """Every file or folder under ``root`` that another account could not read (locks excepted: filelock's own)."""
    return sorted(str(p.relative_to(root)) for p in [root, *root.rglob("*")]
                  if not p.is_symlink() and not p.name.endswith(".lock")
                  and not (p.stat().st_mode & stat.S_IROTH and (p.is_file() or p.stat().st_mode & stat.S_IXOTH)))


def test_every_file_of_a_trained_model_folder_and_the_searched_study_is_readable_by_others_under_umask_022(searched_and_trained):
    # safetensors writes the weights through a temporary file (0600) and the stage cache stages in mkdtemp (0700):
    # a serving process running as another user could not read model.safetensors before.
    tmp_path = searched_and_trained
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert _not_readable_by_others(tmp_path / "model") == []
    assert _not_readable_by_others(tmp_path / "modes") == []
