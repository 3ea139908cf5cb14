"""Loading techniques through the entry-point group, and the errors when that fails."""

from __future__ import annotations

import importlib.metadata
import sys
import types

import pytest

import autobert.run.plugin_manager as plugin_manager
from autobert import hookimpl
from autobert.errors import PluginError
from autobert.run.plugin_manager import ENTRY_POINT_GROUP, Technique, get_plugin_manager


@pytest.fixture
def extra_entry_points(monkeypatch):
    """Add entry points beside the installed ones."""
    added: list[importlib.metadata.EntryPoint] = []
    real = plugin_manager._entry_points
    monkeypatch.setattr(plugin_manager, "_entry_points", lambda: sorted([*real(), *added], key=lambda e: e.name))
    return added


def _module(name: str, **functions) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, fn in functions.items():
        setattr(module, key, fn)
    sys.modules[name] = module
    return module


def test_builtin_finetune_loads_through_the_entry_point_group():
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert eps["finetune"] == "autobert.plugins.finetune"
    pm = get_plugin_manager()
    assert pm.techniques["finetune"].distribution == "autobert"
    assert pm.get_plugin("finetune").__name__ == "autobert.plugins.finetune"


def test_plugin_that_fails_to_import_names_its_entry_point_and_the_fix(extra_entry_points):
    extra_entry_points.append(importlib.metadata.EntryPoint("broken", "no_such_module_xyz", ENTRY_POINT_GROUP))
    with pytest.raises(PluginError) as info:
        get_plugin_manager()
    text = str(info.value)
    assert "technique 'broken'" in text and "broken = no_such_module_xyz" in text
    assert "ModuleNotFoundError" in text and "--disable broken" in text
    # ... and disabling it is the way out.
    assert "broken" not in get_plugin_manager(disable=["broken"]).techniques


def test_hook_with_an_unknown_argument_is_refused(extra_entry_points):
    @hookimpl
    def autobert_search_space(space, tokenizer):
        pass

    _module("bad_args_plugin", autobert_search_space=autobert_search_space)
    extra_entry_points.append(importlib.metadata.EntryPoint("badargs", "bad_args_plugin", ENTRY_POINT_GROUP))
    with pytest.raises(PluginError, match=r"technique 'badargs' \(bad_args_plugin.*tokenizer"):
        get_plugin_manager()


def test_unknown_hook_name_is_refused():
    @hookimpl
    def autobert_serch_space(space):
        pass

    pm = get_plugin_manager()
    module = _module("typo_plugin", autobert_serch_space=autobert_serch_space)
    with pytest.raises(PluginError, match="unknown hook.*autobert_serch_space"):
        pm.register_technique(module, Technique("typo", "typo_plugin", "typo-dist", "1.0"))
    assert "typo" not in pm.techniques


def test_two_techniques_with_one_name_are_refused():
    pm = get_plugin_manager()
    with pytest.raises(PluginError, match="same name"):
        pm.register_technique(_module("again"), Technique("finetune", "again", "other-dist", "2.0"))


def test_only_loads_exactly_the_named_techniques_and_reports_missing_ones():
    assert set(get_plugin_manager(only=["finetune"]).techniques) == {"finetune"}
    with pytest.raises(PluginError, match="gone are not installed"):
        get_plugin_manager(only=["finetune", "gone"])


def test_plugins_command_lists_sources_and_spaces(capsys):
    from autobert.cli import main

    import json

    assert main(["plugins", "--json"]) == 0
    listing = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    finetune = listing["finetune"]
    assert finetune["source"].startswith("autobert ")
    lr = {p["name"]: p for p in finetune["parameters"]}["finetune.learning_rate"]
    assert lr["kind"] == "float" and lr["log"] is True
