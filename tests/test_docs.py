"""The documentation says what the code does: every hook, study-file key, technique, command and module is
documented in the site's pages (docs/, built by mkdocs.yml), every page is in the site, and the README stays short."""

from __future__ import annotations

import argparse
import ast
import re
import typing
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from autobert import hookspecs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HOOKS = sorted(
    name for name, value in vars(hookspecs).items()
    if name.startswith("autobert_") and hasattr(value, "autobert_spec")
)


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def table_rows(text: str) -> list[list[str]]:
    """The body rows of every Markdown table in ``text``, as lists of cells (a `\\|` inside a cell is kept)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|[\s|:-]+\|$", line):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


# -- hooks: docs/plugin_hooks.md ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def documented() -> set[str]:
    return set(re.findall(r"^### (autobert_\w+)\(", page("plugin_hooks.md"), re.MULTILINE))


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

    text = page("plugin_hooks.md")
    for hook in HOOKS:
        params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
        assert f"### {hook}({params})\n" in text, f"the heading of {hook} should read `### {hook}({params})`"


def test_the_masking_hook_names_every_built_in_strategy():
    from autobert.run.plugin_manager import get_plugin_manager
    from autobert.masking import registered_strategies

    registered = registered_strategies(get_plugin_manager(only=["masking"]).hook)
    spec = " ".join(hookspecs.autobert_masking_strategies.__doc__.split())
    assert len(registered) == 6
    assert all(f"``{name}``" in spec for name in registered), (sorted(registered), spec)


# -- the study file: docs/study-file.md, docs/frozen-configs.md ----------------------------------------------


def nested_models(annotation) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (``str | HubSource``, ``list[StudyRef]``, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in nested_models(arg)]


def sub_keys(model: type[BaseModel]) -> set[str]:
    """Every key below a nested model, at any depth (``data``: train, ..., hub, config, split)."""
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        for inner in nested_models(field.annotation):
            keys |= sub_keys(inner)
    return keys


def study_keys() -> dict[str, typing.Any]:
    from autobert.config.schema import StudyConfig

    return {name: field for name, field in StudyConfig.model_fields.items() if not field.exclude}


@pytest.fixture(scope="module")
def key_rows() -> list[list[str]]:
    """The rows of the study file's key table: `key` | default | meaning."""
    text = page("study-file.md")
    return [row for row in table_rows(text) if len(row) == 3 and row[0].startswith("`")]


@pytest.mark.parametrize("key", sorted(study_keys()))
def test_study_file_key_is_documented(key, key_rows):
    rows = [row for row in key_rows if re.search(rf"`{key}(\.\w+)?`", row[0])]
    assert rows, f"docs/study-file.md's key table has no row for `{key}`"
    text = " ".join(" ".join(row) for row in rows)
    nested = [model for model in nested_models(study_keys()[key].annotation)]
    missing = sorted(sub for model in nested for sub in sub_keys(model) if not re.search(rf"\b{sub}\b", text))
    assert not missing, f"docs/study-file.md's row for `{key}` does not name {', '.join(missing)}"


def test_documented_study_file_keys_exist(key_rows):
    keys = study_keys()
    stale = []
    for row in key_rows:
        for name in re.findall(r"`([\w.]+)`", row[0]):
            top, _, sub = name.partition(".")
            if top not in keys:
                stale.append(name)
            elif sub and not any(sub in model.model_fields for model in nested_models(keys[top].annotation)):
                stale.append(name)
    assert not stale, f"docs/study-file.md documents keys the study file does not have: {stale}"


def test_the_refusals_table_is_documented():
    text = page("study-file.md")
    assert "## What is refused, warned about and normalised" in text
    header = "| input | refused (exit 2) | warned about (with counts) | normalised / accepted |"
    assert header in text


def test_frozen_config_provenance_keys_are_documented():
    from autobert.config.schema import FrozenConfig, Provenance, StudyConfig

    text = page("frozen-configs.md")
    extra = set(FrozenConfig.model_fields) - set(StudyConfig.model_fields)
    assert extra == {"provenance"} and "`provenance`" in text
    rows = {row[0] for row in table_rows(text)}
    missing = [key for key in Provenance.model_fields if f"`{key}`" not in rows]
    assert not missing, f"docs/frozen-configs.md's provenance table lacks {missing}"


# -- techniques: docs/techniques.md ---------------------------------------------------------------------------

BUILT_INS = sorted(ep.name for ep in entry_points(group="autobert.techniques") if ep.value.startswith("autobert.plugins."))


def test_built_in_techniques_are_found():
    assert {"finetune", "masking", "pooling"} <= set(BUILT_INS)


@pytest.mark.parametrize("technique", BUILT_INS)
def test_technique_has_a_row(technique):
    rows = [row for row in table_rows(page("techniques.md")) if row and row[0] == f"`{technique}`"]
    assert rows, f"docs/techniques.md's table has no row | `{technique}` | ... |"


def test_technique_parameters_and_settings_are_documented():
    from autobert.config.settings import declared_settings
    from autobert.run.plugin_manager import get_plugin_manager

    pm = get_plugin_manager(only=BUILT_INS)
    names = set(pm.effective_space().defaults) | set(declared_settings(pm))
    text = page("techniques.md")
    missing = sorted(name for name in names if not re.search(rf"\b{re.escape(name.split('.', 1)[1])}\b", text))
    assert not missing, f"docs/techniques.md does not name these parameters or settings: {missing}"


# -- commands: docs/commands.md --------------------------------------------------------------------------------


def commands() -> list[tuple[str, argparse.ArgumentParser]]:
    """Every command and sub-command of `autobert`, as ("portfolio evaluate", its parser)."""
    from autobert.cli import build_parser

    found = []

    def walk(prefix: str, parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    path = f"{prefix} {name}".strip()
                    found.append((path, sub))
                    walk(path, sub)

    walk("", build_parser())
    return found


COMMANDS = commands()


@pytest.mark.parametrize("command, parser", COMMANDS, ids=[name for name, _ in COMMANDS])
def test_command_and_its_options_are_documented(command, parser):
    rows = [" ".join(row) for row in table_rows(page("commands.md")) if f"`autobert {command}" in row[0]]
    assert rows, f"docs/commands.md has no row for `autobert {command}`"
    row = " ".join(rows)
    missing = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        for option in action.option_strings:
            if option.startswith("--") and not re.search(rf"{re.escape(option)}(?![\w-])", row):
                missing.append(option)
        if not action.option_strings and action.choices:
            missing += [f"autobert {command} {choice}" for choice in action.choices
                        if f"autobert {command} {choice}" not in row]
    assert not missing, f"docs/commands.md's row for `autobert {command}` lacks {missing}"


# -- the architecture: docs/architecture.md ----------------------------------------------------------------


def layout_tree() -> list[str]:
    """The paths the Architecture page's layout names under ``autobert/`` (``autobert/run/pipeline.py``, ...)."""
    text = page("architecture.md")
    block = text[text.index("## Layout"):]
    block = block[block.index("```") + 3:]
    block = block[block.index("\n") + 1:block.index("```")]
    stack: list[tuple[int, str]] = []
    paths = []
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        name = line.split()[0]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = "".join(part for _, part in stack) + name
        if name.endswith("/"):
            stack.append((indent, name))
        paths.append(path)
    return [path for path in paths if path.startswith("autobert/")]


def package_paths() -> set[str]:
    """Every folder and module of autobert/: subfolders walked, each package's own ``__init__.py`` left to its folder."""
    found = set()

    def walk(folder: Path, prefix: str) -> None:
        for path in folder.iterdir():
            if path.name.startswith((".", "__pycache__")):
                continue
            if path.is_dir():
                found.add(f"{prefix}{path.name}/")
                walk(path, f"{prefix}{path.name}/")
            elif path.suffix == ".py" and (path.name != "__init__.py" or prefix == "autobert/"):
                found.add(f"{prefix}{path.name}")

    walk(ROOT / "autobert", "autobert/")
    return found


def test_the_architecture_layout_names_every_module():
    listed = set(layout_tree())
    assert "autobert/" in listed and "autobert/run/pipeline.py" in listed, "the layout tree was not parsed"
    missing = sorted(package_paths() - listed)
    assert not missing, f"docs/architecture.md's layout does not list {', '.join(missing)}"


def test_the_architecture_layout_names_no_module_that_is_gone():
    stale = sorted(path for path in layout_tree() if not (ROOT / path).exists())
    assert not stale, f"docs/architecture.md's layout lists {', '.join(stale)}, which autobert/ does not have"


def test_the_architecture_page_states_the_import_linter_layers():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    arrows = " -> ".join(layer.removeprefix("autobert.") for layer in layers)
    text = " ".join(page("architecture.md").split())
    assert f"Arrows point down: {arrows};" in text, f"docs/architecture.md should say `Arrows point down: {arrows};`"
    assert "techniques see only the public API" in text


# -- the site: mkdocs.yml -------------------------------------------------------------------------------------


def nav_pages() -> list[str]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["docs_dir"] == "docs"
    pages = []

    def walk(item) -> None:
        if isinstance(item, str):
            pages.append(item)
        elif isinstance(item, dict):
            for value in item.values():
                walk(value)
        elif isinstance(item, list):
            for value in item:
                walk(value)

    walk(config["nav"])
    return pages


def test_every_page_is_in_the_nav():
    # Quick benchmark runs write git-ignored `<name>-quick.md` files beside the reports; mkdocs.yml excludes them.
    pages = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md") if "-quick" not in path.name}
    missing = sorted(pages - set(nav_pages()))
    assert not missing, f"mkdocs.yml's nav lacks {', '.join(missing)}"


def test_every_nav_entry_is_a_page():
    gone = [entry for entry in nav_pages() if not (DOCS / entry).is_file()]
    assert not gone, f"mkdocs.yml's nav names pages docs/ does not have: {gone}"


def test_the_api_reference_renders_the_public_modules():
    modules = {"hookspecs", "services", "trial_run", "masking", "augmenters", "errors", "stage_cache", "testing"}
    for module in modules:
        assert f"::: autobert.{module}\n" in page(f"reference/{module}.md")
        assert f"reference/{module}.md" in nav_pages()


# -- the README ---------------------------------------------------------------------------------------------


def test_the_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 260, f"README.md has {lines} lines; move the detail into a page of docs/ and link to it"


def test_the_readme_keeps_the_install_and_test_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "scripts/quickstart" in text and "scripts/test" in text


def test_the_readme_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = [target.split("#", 1)[0] for target in re.findall(r"\]\(([^)\s]+)\)", text)
               if not target.startswith(("http://", "https://", "#", "mailto:"))]
    assert targets, "README.md links to nothing of the repository"
    missing = sorted({target for target in targets if not (ROOT / target).exists()})
    assert not missing, f"README.md links to files that do not exist: {missing}"
