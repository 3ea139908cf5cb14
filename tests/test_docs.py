"""Every hook in the contract is documented and has a test of its own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from autobert import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(
    name for name, value in vars(hookspecs).items()
    if name.startswith("autobert_") and hasattr(value, "autobert_spec")
)


@pytest.fixture(scope="module")
def documented() -> set[str]:
    text = (ROOT / "docs" / "plugin_hooks.md").read_text(encoding="utf-8")
    return set(re.findall(r"^### (autobert_\w+)\(", text, re.MULTILINE))


@pytest.fixture(scope="module")
def test_names() -> list[str]:
    tree = ast.parse((ROOT / "tests" / "test_hooks.py").read_text(encoding="utf-8"))
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]


def test_hookspecs_are_found():
    assert "autobert_search_space" in HOOKS and "autobert_compute_loss" in HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook, documented):
    assert hook in documented, f"docs/plugin_hooks.md has no `### {hook}(...)` heading"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook, test_names):
    assert any(name.startswith(f"test_{hook}") for name in test_names), (
        f"tests/test_hooks.py has no test named test_{hook}_..."
    )


def test_documented_hooks_exist(documented):
    assert not documented - set(HOOKS), "docs/plugin_hooks.md documents hooks that hookspecs.py lacks"


def test_documented_signatures_match_the_specs():
    import inspect

    text = (ROOT / "docs" / "plugin_hooks.md").read_text(encoding="utf-8")
    for hook in HOOKS:
        params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
        assert f"### {hook}({params})\n" in text, f"the heading of {hook} should read `### {hook}({params})`"


def test_the_readme_layout_names_every_module():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = text[text.index("### Layout"):]
    layout = layout[:layout.index("```", layout.index("```") + 3)]
    package = ROOT / "autobert"
    modules = [p.name for p in package.iterdir()
               if (p.suffix == ".py" or (p.is_dir() and not p.name.startswith(("_", "."))))]
    missing = [name for name in sorted(modules)
               if not re.search(rf"^\s+{re.escape(name if name.endswith('.py') else name + '/')}\s", layout, re.M)]
    assert not missing, f"README's layout section does not list {', '.join(missing)}"


def test_the_masking_hook_names_every_built_in_strategy():
    from autobert.run.plugin_manager import get_plugin_manager
    from autobert.masking import registered_strategies

    registered = registered_strategies(get_plugin_manager(only=["masking"]).hook)
    spec = " ".join(hookspecs.autobert_masking_strategies.__doc__.split())
    assert len(registered) == 6
    assert all(f"``{name}``" in spec for name in registered), (sorted(registered), spec)
