"""Replay checks: `autobert train` refuses what would change the result, and says what it cannot check.

Each case mutates a frozen config the search really exported (or the environment it replays in) and runs
`autobert train` as a user does: exit 2 with one error naming the key and the fix, and nothing written to
the output folder; or exit 0 with the warning or note the case calls for.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from autobert.cli import main
from autobert.testing import write_study
from cli_helpers import RECIPE, export_recipe

@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A real search's best.yaml (finetune only), and its folder."""
    return export_recipe(tmp_path_factory.mktemp("replay"), "rp")


def edited(exported: Path, tmp_path: Path, change) -> Path:
    """A copy of the exported config beside it, with ``change(raw)`` applied."""
    raw = yaml.safe_load(exported.read_text(encoding="utf-8"))
    change(raw)
    path = exported.parent / f"edited-{tmp_path.name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def train(path: Path, out: Path, *extra: str, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["train", str(path), "--output", str(out), *extra])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def refused(rc: int, output: str, out: Path, *needles: str) -> None:
    assert rc == 2, output
    assert "Traceback" not in output
    for needle in needles:
        assert needle in output, f"{needle!r} not in:\n{output}"
    assert not out.exists() or not any(out.iterdir()), "a refused replay wrote into the output folder"


def test_an_unchanged_export_replays_with_no_warning(exported, tmp_path, capsys):
    rc, output = train(exported, tmp_path / "out", capsys=capsys)
    assert rc == 0, output
    assert "warning:" not in output
    metrics = yaml.safe_load((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] == metrics["search_value"]  # exact replay on CPU


def test_installed_techniques_the_recipe_does_not_name_are_said_once(exported, tmp_path, capsys):
    rc, output = train(exported, tmp_path / "out", capsys=capsys)
    assert rc == 0
    assert output.count("installed here but not in the recipe") == 1
    assert "pooling" in output.split("installed here but not in the recipe")[1].splitlines()[0]


def test_a_technique_that_is_not_installed_is_refused_with_the_install(exported, tmp_path, capsys):
    def change(raw):
        raw["provenance"]["plugins"]["ghost"] = "autobert-ghost 1.2.3"
    rc, output = train(edited(exported, tmp_path, change), tmp_path / "out", capsys=capsys)
    refused(rc, output, tmp_path / "out", "techniques.ghost",
            "autobert-ghost 1.2.3", "pip install 'autobert-ghost==1.2.3'")


def test_a_technique_version_that_differs_is_refused_unless_allowed_then_warned(exported, tmp_path, capsys):
    def change(raw):
        raw["provenance"]["plugins"]["finetune"] = "autobert 0.0.9"
    path = edited(exported, tmp_path, change)
    rc, output = train(path, tmp_path / "out", capsys=capsys)
    refused(rc, output, tmp_path / "out", "provenance.plugins.finetune", "autobert 0.0.9", "autobert 0.1.0",
            "--allow-version-change")
    rc, output = train(path, tmp_path / "out", "--allow-version-change", capsys=capsys)
    assert rc == 0, output
    assert "warning:" in output and "autobert 0.0.9" in output and "exact replay is not guaranteed" in output


@pytest.mark.parametrize("key, value, shown", [
    (("versions", "torch"), "1.0.0", "torch 1.0.0"),
    (("versions", "transformers"), "4.0.0", "transformers 4.0.0"),
    (("autobert_version",), "0.0.1", "autobert 0.0.1"),
    (("model_revision",), "sha256:0000000000000000", "sha256:0000000000000000"),
])
def test_a_library_autobert_or_model_revision_that_differs_is_refused_naming_both(exported, tmp_path, capsys, key, value, shown):
    def change(raw):
        node = raw["provenance"]
        for k in key[:-1]:
            node = node[k]
        node[key[-1]] = value
    rc, output = train(edited(exported, tmp_path, change), tmp_path / "out", capsys=capsys)
    refused(rc, output, tmp_path / "out", shown, "--allow-version-change")


def test_a_precision_this_machine_cannot_run_is_refused_with_the_fix(exported, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: fp16 can run")

    def change(raw):
        raw["precision"] = "fp16"
    rc, output = train(edited(exported, tmp_path, change), tmp_path / "out", capsys=capsys)
    refused(rc, output, tmp_path / "out", "precision", "edit `precision`")


@pytest.mark.parametrize("value, words", [(0, "outside this parameter's valid range"), ("fast", "techniques.finetune.epochs")])
def test_a_parameter_outside_its_space_or_of_the_wrong_type_is_refused_by_key(exported, tmp_path, capsys, value, words):
    def change(raw):
        raw["techniques"]["finetune"]["epochs"] = value
        raw["provenance"]["params"]["finetune.epochs"] = value
    rc, output = train(edited(exported, tmp_path, change), tmp_path / "out", capsys=capsys)
    refused(rc, output, tmp_path / "out", "techniques.finetune.epochs", words)


def test_a_value_edited_in_the_techniques_section_only_is_refused_not_silently_ignored(exported, tmp_path, capsys):
    def change(raw):
        raw["techniques"]["finetune"]["learning_rate"] = 0.5
    rc, output = train(edited(exported, tmp_path, change), tmp_path / "out", capsys=capsys)
    refused(rc, output, tmp_path / "out", "techniques.finetune.learning_rate", "provenance.params")


def test_a_hand_written_recipe_trains_and_says_nothing_can_be_checked(exported, tmp_path, capsys):
    def change(raw):
        del raw["provenance"]
    rc, output = train(edited(exported, tmp_path, change), tmp_path / "out", capsys=capsys)
    assert rc == 0, output
    assert output.count("nothing to check it against") == 1
    written = yaml.safe_load((tmp_path / "out" / "autobert.yaml").read_text())
    assert written["provenance"]["hand_written"] is True
    assert written["provenance"]["params"]["finetune.learning_rate"] == RECIPE["learning_rate"]


def test_a_hand_written_recipe_with_a_parameter_left_open_is_refused_naming_it(exported, tmp_path, capsys):
    def change(raw):
        del raw["provenance"]
        raw["techniques"]["finetune"]["learning_rate"] = {"low": 1e-4, "high": 1e-2}
    rc, output = train(edited(exported, tmp_path, change), tmp_path / "out", capsys=capsys)
    refused(rc, output, tmp_path / "out", "techniques.finetune.learning_rate", "not fixed")


OUTSIDE_PLUGIN = textwrap.dedent('''
    """A third-party technique with a parameter of its own, installed only for the search."""
    from autobert import hookimpl

    @hookimpl
    def autobert_search_space(space):
        space.suggest_float("ghostly.scale", 0.5, 2.0)
''')


def test_a_config_made_with_an_outside_plugin_replays_without_it_as_exit_2_with_the_install_hint(tmp_path, capsys, monkeypatch):
    # A real installed distribution (a dist-info with an entry point on sys.path), present for the search only.
    site = tmp_path / "site"
    (site / "ghostly_technique").mkdir(parents=True)
    (site / "ghostly_technique" / "__init__.py").write_text(OUTSIDE_PLUGIN, encoding="utf-8")
    info = site / "autobert_ghostly-2.5.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: autobert-ghostly\nVersion: 2.5.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[autobert.techniques]\nghostly = ghostly_technique\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    path = write_study(tmp_path, name="outside", n_train=48, n_validation=16, only=["finetune", "ghostly"],
                       techniques={"finetune": dict(RECIPE)})
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    frozen = tmp_path / "outside" / "best.yaml"
    assert "ghostly: autobert-ghostly 2.5.0" in frozen.read_text()

    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(site)])
    sys.modules.pop("ghostly_technique", None)
    shutil.rmtree(site)
    rc, output = train(frozen, tmp_path / "out", capsys=capsys)
    refused(rc, output, tmp_path / "out", "techniques.ghostly", "autobert-ghostly 2.5.0",
            "pip install 'autobert-ghostly==2.5.0'")


@pytest.mark.parametrize("key, value", [("max_length", 48), ("seed", 7), ("evaluations_per_epoch", 2)])
def test_a_key_that_changes_what_trains_edited_since_the_export_is_refused_by_name(exported, tmp_path, capsys, key, value):
    def change(raw):
        raw[key] = value
    rc, output = train(edited(exported, tmp_path, change), tmp_path / "out", capsys=capsys)
    refused(rc, output, tmp_path / "out", f"{key} (line", "edited since the recipe was exported", "delete `provenance`")


def test_a_technique_removed_everywhere_is_refused_not_trained_without_it(exported, tmp_path, capsys):
    def change(raw):
        del raw["techniques"]["finetune"]
        del raw["provenance"]["plugins"]["finetune"]
        raw["provenance"]["params"] = {}
    rc, output = train(edited(exported, tmp_path, change), tmp_path / "out", capsys=capsys)
    refused(rc, output, tmp_path / "out", "provenance.plugins", "provenance.params")


def test_changed_data_is_refused_and_with_allow_data_change_trains_with_a_warning(exported, tmp_path, capsys):
    other = exported.parent / "other-train.csv"
    rows = (exported.parent.parent / "data" / "train.csv").read_text().splitlines()
    other.write_text("\n".join(rows[:-4]) + "\n", encoding="utf-8")

    def change(raw):
        raw["data"]["train"] = other.name
    path = edited(exported, tmp_path, change)
    rc, output = train(path, tmp_path / "out", capsys=capsys)
    refused(rc, output, tmp_path / "out", "data.train", "--allow-data-change")
    rc, output = train(path, tmp_path / "out", "--allow-data-change", capsys=capsys)
    assert rc == 0, output
    assert "warning:" in output and "data.train" in output


def test_a_warm_start_from_a_frozen_config_names_the_install_of_a_technique_it_lacks(exported, tmp_path):
    from autobert.config.schema import load_study
    from autobert.strategy.portfolio import fit_recipe, load_recipes, study_space
    from autobert.study.search import plugin_manager_for

    raw = yaml.safe_load(exported.read_text(encoding="utf-8"))
    raw["provenance"]["plugins"]["ghost"] = "autobert-ghost 1.2.3"
    raw["provenance"]["params"]["ghost.scale"] = 1.5
    frozen = tmp_path / "best.yaml"
    frozen.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    (recipe,) = load_recipes(frozen).recipes
    study = load_study(exported.parent.parent / "rp.yaml")
    pm = plugin_manager_for(study)
    effective, off = study_space(study, pm)
    fitted = fit_recipe(recipe, effective, off, pm.techniques)
    assert "ghost" in fitted.skipped and "pip install 'autobert-ghost==1.2.3'" in fitted.skipped
