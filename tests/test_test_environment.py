"""The test command leaves the user's environment as it found it.

`scripts/test` installs the example plugin (examples/autobert-label-smoothing) into `.test-plugins/`, a folder
on the tests' PYTHONPATH only: the tests drive it through its entry point like any outside package, while the
user's `.venv` (and so `autobert plugins` and every study searched there) does not see it. `.ci/run` also
compares `autobert plugins --json` before and after `scripts/test`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_PLUGINS = ROOT / ".test-plugins"


def listed(env: dict[str, str]) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "autobert.cli", "plugins", "--json"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    data = json.loads(out)
    return sorted(t["name"] for t in (data["techniques"] if isinstance(data, dict) else data))


@pytest.mark.skipif(not (TEST_PLUGINS / "autobert_label_smoothing").is_dir(),
                    reason="the example plugin is not in .test-plugins/: run the suite through scripts/test")
def test_the_example_plugin_is_seen_by_the_tests_and_not_by_the_users_environment():
    with_tests = dict(os.environ)
    without = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    without["PYTHONPATH"] = os.pathsep.join(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                            if p and Path(p).resolve() != TEST_PLUGINS.resolve())
    assert "label_smoothing" in listed(with_tests)
    assert "label_smoothing" not in listed(without)
