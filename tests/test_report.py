"""`autobert report`: a self-contained HTML report and PNG figures of a stored study.

The report reads only the stored study, so these tests store real trials in a
real SQLite storage (no training) and run the command on them.
"""

from __future__ import annotations

import base64
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from autobert.cli import main
from autobert.testing import write_study

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ("optimization_history", "param_importances", "parallel_coordinate", "technique_effect", "seed_spread")
DISTRIBUTIONS = {
    "finetune.learning_rate": FloatDistribution(1e-5, 1e-2, log=True),
    "pooling.kind": CategoricalDistribution(["cls", "mean", "max"]),
    "llrd.decay": FloatDistribution(0.8, 1.0),
}


def _store(path: Path, name: str, trials: list[optuna.trial.FrozenTrial]) -> None:
    (path.parent / name).mkdir(exist_ok=True)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{path.parent / name / 'study.db'}", direction="maximize")
    study.add_trials(trials)


def _trial(i: int, seeds: int = 3, state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    kind = ["cls", "mean", "max"][i % 3]
    lr = 10 ** (-5 + 3 * ((i * 7) % 10) / 10)
    base = 0.6 + 0.1 * (kind == "mean") + 0.05 * (lr > 1e-4)
    values = {str(s): base + 0.01 * ((i + s) % 4) for s in range(seeds)}
    return create_trial(
        state=state, value=sum(values.values()) / len(values) if state == TrialState.COMPLETE else None,
        params={"finetune.learning_rate": lr, "pooling.kind": kind, "llrd.decay": 0.8 + 0.015 * i},
        distributions=DISTRIBUTIONS, user_attrs={"seed_values": values, "seconds": 10.0 + i},
        intermediate_values={s: v for s, v in enumerate(values.values())},
    )


def test_report_writes_an_html_that_embeds_every_figure_and_the_pngs(tmp_path):
    path = write_study(tmp_path, name="reported", only=["finetune"], seeds=[0, 1, 2])
    _store(path, "reported", [_trial(i) for i in range(12)] + [_trial(12, seeds=2, state=TrialState.PRUNED)])
    out = tmp_path / "report-out"
    assert main(["report", str(path), "--output", str(out)]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "reported" in html
    assert "12 complete, 1 pruned, 0 failed" in html
    for figure in FIGURES:
        png = (out / f"{figure}.png").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 2000, figure
        assert base64.b64encode(png).decode("ascii") in html, f"{figure} is not embedded in the HTML"
    assert "Skipped" not in html
    assert "fANOVA" in html
    assert "mean ± std" in html  # the top-recipes table of a multi-seed study


def test_report_on_a_study_with_too_few_trials_skips_figures_with_a_note(tmp_path):
    path = write_study(tmp_path, name="early", only=["finetune"])
    _store(path, "early", [_trial(0, seeds=1), _trial(1, seeds=1, state=TrialState.FAIL)])
    out = tmp_path / "report-out"
    assert main(["report", str(path), "--output", str(out)]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert (out / "optimization_history.png").read_bytes().startswith(PNG_MAGIC)
    for figure in ("param_importances", "parallel_coordinate", "technique_effect", "seed_spread"):
        assert not (out / f"{figure}.png").exists(), figure
    assert "Skipped: needs at least 2 completed trials (has 1)" in html
    assert "Skipped: no completed trial ran on more than one seed" in html


def test_report_without_a_stored_study_says_to_search_first(tmp_path, capsys):
    path = write_study(tmp_path, name="unsearched", only=["finetune"])
    (tmp_path / "unsearched").mkdir()
    optuna.create_study(study_name="other", storage=f"sqlite:///{tmp_path / 'unsearched' / 'study.db'}")
    assert main(["report", str(path)]) == 2
    assert "run `autobert search` first" in capsys.readouterr().err
