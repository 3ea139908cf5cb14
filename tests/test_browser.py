"""autobert's outputs in a real browser: report.html, and optuna-dashboard on a stored study.

Chromium comes from Debian's packages (.ci/run installs it, as it does PostgreSQL) and is
driven by Playwright from PyPI; Playwright's own browser download is not used. Without
Chromium (or Playwright) the tests skip and say why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from autobert.cli import main
from autobert.testing import write_study

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str | None:
    """The Chromium to drive: $AUTOBERT_CHROMIUM, or one on the PATH."""
    given = os.environ.get("AUTOBERT_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[test]')")
    executable = chromium()
    if executable is None:
        pytest.skip("Chromium is not installed: `apt-get install chromium` (what .ci/run does), "
                    "or point AUTOBERT_CHROMIUM at a Chromium or Chrome binary")
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def stored_study(tmp_path_factory):
    """A real study of 4 completed trials in SQLite, with its report written."""
    folder = tmp_path_factory.mktemp("web")
    path = write_study(folder, name="web", n_train=64, n_validation=16, only=["finetune"],
                       sampler={"name": "random", "seed": 0},
                       techniques={"finetune": {"learning_rate": {"low": 1e-3, "high": 5e-3, "log": True},
                                                "epochs": 1, "batch_size": [16, 32]}})
    assert main(["search", str(path), "--n-trials", "4"]) == 0
    assert main(["report", str(path)]) == 0
    return folder / "web"


def _page(browser):
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    return page, problems


def test_report_html_opens_without_console_errors_and_every_figure_decodes(browser, stored_study):
    report = stored_study / "report" / "report.html"
    page, problems = _page(browser)
    page.goto(report.as_uri())
    page.wait_for_load_state("load")
    decoded = page.evaluate("""Promise.all([...document.images].map(img => img.decode().then(
        () => ({src: img.src.slice(0, 40), width: img.naturalWidth, height: img.naturalHeight}),
        error => ({src: img.src.slice(0, 40), error: String(error)}))))""")
    page.close()
    assert problems == []
    assert len(decoded) == len(list(report.parent.glob("*.png"))) >= 3, decoded
    assert all("error" not in d and d["width"] > 0 and d["height"] > 0 for d in decoded), decoded


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dashboard(stored_study):
    executable = Path(sys.executable).parent / "optuna-dashboard"
    if not executable.exists():
        pytest.skip("optuna-dashboard is not installed (pip install -e '.[test]')")
    port = _free_port()
    server = subprocess.Popen([str(executable), f"sqlite:///{stored_study / 'study.db'}", "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/studies", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                pytest.fail(f"optuna-dashboard did not start: {server.communicate()[0][-2000:]}")
            time.sleep(0.3)
    yield url
    server.terminate()
    server.wait(timeout=30)


def test_optuna_dashboard_shows_the_stored_study_its_trial_count_and_the_metric_name(browser, dashboard):
    page, problems = _page(browser)
    page.goto(f"{dashboard}/dashboard")
    page.get_by_text("Direction: MAXIMIZE").first.wait_for(timeout=60_000)
    assert "1. web" in page.inner_text("body")  # the study list: the stored study by name

    page.goto(f"{dashboard}/dashboard/studies/1")
    page.get_by_text("Hyperparameter Importance").first.wait_for(timeout=60_000)
    # set_metric_names: the history plot's axis is the study's metric, not "Objective 0".
    page.get_by_text("accuracy", exact=True).first.wait_for(timeout=60_000)
    assert "Objective 0" not in page.inner_text("body")

    page.goto(f"{dashboard}/dashboard/studies/1/trials")
    page.get_by_text("4 Trials").wait_for(timeout=60_000)
    page.close()
    assert problems == []


def test_the_stored_study_names_its_metric_for_optunas_own_tools(stored_study):
    import optuna

    opened = optuna.load_study(study_name="web", storage=f"sqlite:///{stored_study / 'study.db'}")
    assert opened.metric_names == ["accuracy"]
