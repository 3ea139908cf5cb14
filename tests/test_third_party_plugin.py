"""A pip-installed third-party technique works without any change to autobert.

The example package ``examples/autobert-label-smoothing`` is installed once per
session the way its README says (``pip install -e``). Every check then drives
the ``autobert`` command line in a subprocess, as a user would, and reads the
results back from the study's SQLite storage.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest

from autobert.testing import TechniqueConformance, write_study

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "autobert-label-smoothing"
DISTRIBUTION = "autobert-label-smoothing"
FACTOR = "label_smoothing.factor"

# Fixed so that two runs differ only in what a test changes: at this rate the
# tiny model learns a synthetic task of this size in three epochs (75 steps).
FINETUNE = {"learning_rate": 3e-3, "epochs": 3, "batch_size": 16, "warmup_ratio": 0.0, "weight_decay": 0.0}
TASK_SIZE = {"n_train": 400, "n_validation": 80}


def _env() -> dict[str, str]:
    # One thread each: the searches run side by side and the tiny model gains nothing from more.
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _console_script(name: str, module: str) -> list[str]:
    """The installed console script beside this interpreter, as a user would run it."""
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


def autobert(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*_console_script("autobert", "autobert.cli"), *args],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, (
        f"`autobert {' '.join(args)}` exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result


@pytest.fixture(scope="session")
def example_distribution() -> importlib.metadata.Distribution:
    """The example package, installed with pip unless it already is."""
    try:
        return importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pass
    pip = [sys.executable, "-m", "pip"]
    if subprocess.run([*pip, "--version"], capture_output=True).returncode != 0:
        pytest.skip(f"pip is not available to {sys.executable}, so {DISTRIBUTION} cannot be installed")
    installed = subprocess.run(
        [*pip, "install", "--no-deps", "--no-build-isolation", "--no-input", "--disable-pip-version-check",
         "-e", str(EXAMPLE)],
        capture_output=True, text=True, timeout=300,
    )
    if installed.returncode != 0:
        tail = " | ".join((installed.stderr or installed.stdout).strip().splitlines()[-5:])
        pytest.skip(f"`pip install -e {EXAMPLE.relative_to(REPO)}` failed offline (exit {installed.returncode}): {tail}")
    # Python reads the editable install's .pth file only at start-up; without this,
    # a plugin manager built later in this process would find the entry point but
    # fail to import it.
    importlib.invalidate_caches()
    if str(EXAMPLE / "src") not in sys.path:
        sys.path.append(str(EXAMPLE / "src"))
    return importlib.metadata.distribution(DISTRIBUTION)


def _study(trials: int, *options: str, **techniques) -> tuple[tuple[str, ...], dict]:
    return options, {"budget": {"trials": trials}, "techniques": {"finetune": FINETUNE, **techniques}}


# Every study this module runs: (extra command-line options, study-file keys).
STUDIES = {
    "searched": _study(2),
    "fixed": _study(2, label_smoothing={"factor": 0.1}),
    "disabled": _study(1, "--disable", "label_smoothing"),
    "factor-0.0": _study(1, label_smoothing={"factor": 0.0}),
    "factor-0.2": _study(1, label_smoothing={"factor": 0.2}),
}


@pytest.fixture(scope="module")
def studies(tmp_path_factory, example_distribution) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """Run `autobert search` on every study in STUDIES; return each one's stored trials.

    The searches are independent and mostly spend their time importing torch
    and transformers, so they run side by side.
    """
    workspace = tmp_path_factory.mktemp("third-party-plugin")
    # Only finetune beside the example: other installed techniques would draw their own
    # parameters and blur what the smoothing factor alone changes.
    paths = {name: write_study(workspace, name=name, only=["finetune", "label_smoothing"], **TASK_SIZE, **keys)
             for name, (_, keys) in STUDIES.items()}
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 1))) as pool:
        runs = [pool.submit(autobert, "search", paths[name].name, *options, cwd=workspace)
                for name, (options, _) in STUDIES.items()]
        for run in runs:
            run.result()
    found = {}
    for name in STUDIES:
        stored = optuna.load_study(study_name=name, storage=f"sqlite:///{workspace / name / 'study.db'}")
        found[name] = stored.get_trials(deepcopy=False)
        for trial in found[name]:
            assert trial.state == optuna.trial.TrialState.COMPLETE, (name, trial.user_attrs.get("fail_reason"))
    return found


def test_plugins_lists_the_technique_with_its_distribution_and_space(example_distribution, tmp_path):
    listing = json.loads(autobert("plugins", "--json", cwd=tmp_path).stdout)
    entry = next((e for e in listing if e["name"] == "label_smoothing"), None)
    assert entry is not None, f"label_smoothing is not listed; found {[e['name'] for e in listing]}"
    assert entry["module"] == "autobert_label_smoothing"
    assert entry["source"] == f"{example_distribution.metadata['Name']} {example_distribution.version}"
    assert entry["parameters"] == [{"name": FACTOR, "kind": "float", "low": 0.0, "high": 0.2, "log": False,
                                    "valid": "[0, 1)"}]


def test_search_records_the_factor_in_every_trial(studies):
    assert len(studies["searched"]) == 2
    for trial in studies["searched"]:
        assert 0.0 <= trial.params[FACTOR] <= 0.2


def test_study_file_fixes_the_factor(studies):
    assert [t.params[FACTOR] for t in studies["fixed"]] == [0.1, 0.1]


def test_disable_removes_the_factor_from_trials(studies):
    (trial,) = studies["disabled"]
    assert FACTOR not in trial.params
    assert "finetune.learning_rate" in trial.params


def test_smoothing_changes_training(studies):
    # The validation loss is always the plain cross-entropy, so it shows what
    # training did: the same seed and recipe, only the smoothing factor differs.
    without, plain, smoothed = (
        studies[name][0].user_attrs["metrics"] for name in ("disabled", "factor-0.0", "factor-0.2")
    )
    # Factor 0 trains exactly like no plugin: any difference below is the smoothing's.
    assert plain["loss"] == pytest.approx(without["loss"], rel=1e-6)
    assert plain["accuracy"] > 0.9, f"the tiny model did not learn the task: {plain}"
    # Softened targets keep the model less confident, so its plain cross-entropy is higher.
    assert smoothed["loss"] > plain["loss"] * 1.2, (plain, smoothed)


def test_example_package_passes_its_own_conformance_tests(example_distribution, tmp_path):
    result = subprocess.run(
        [*_console_script("pytest", "pytest"), "-v", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'inner'}",
         str(EXAMPLE / "tests")],
        cwd=EXAMPLE, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    for name in (n for n in dir(TechniqueConformance) if n.startswith("test_")):
        assert f"TestLabelSmoothing::{name} PASSED" in result.stdout, result.stdout[-4000:]
