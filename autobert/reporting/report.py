"""A study's report: one self-contained HTML file and its figures as PNGs.

The figures are read from the stored Optuna study only (no training, no data):
optimisation history, parameter importances (fANOVA), parallel coordinates,
the metric by choice of each categorical technique parameter, and the per-seed
spread of the top recipes. A figure that the study cannot support yet (too few
trials, one seed, no categorical parameter) is skipped with a note in the HTML;
the report never fails for lack of data.
"""

from __future__ import annotations

import base64
import html
import io
import math
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from autobert.config.schema import StudyConfig, write_atomic
from autobert.config.space import format_value
from autobert.errors import AutobertError
from autobert.run.aggregate import mean_std
from autobert.store.record import StudyRecord, TrialRecord
from autobert.ablation.render import find_ablation
from autobert.store.storage import make_storage
from autobert.strategy.planner import trial_summary


class _Skip(Exception):
    """A figure the study cannot support yet; the message is the note shown instead."""


@dataclass
class Figure:
    """One figure of the report: a PNG file, or the reason it was skipped."""

    key: str
    title: str
    caption: str
    png: bytes | None = None
    note: str | None = None


def load_stored_study(study: StudyConfig, storage: str | None = None) -> optuna.Study:
    """The study as stored, without creating one.

    Raises:
        AutobertError: the storage holds no study of that name.
    """
    try:
        return optuna.load_study(study_name=study.name, storage=make_storage(study, storage))
    except KeyError:
        raise AutobertError(
            f"no study named {study.name!r} in {storage or study.storage_url}; run `autobert search` first"
        ) from None


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]


def _ranked(study: optuna.Study) -> list[FrozenTrial]:
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted(_complete(study), key=lambda t: t.value, reverse=maximize)


def _seed_values(trial: FrozenTrial) -> dict[str, float]:
    return {str(k): float(v) for k, v in (TrialRecord.from_trial(trial).seed_values or {}).items()}


def _varying_categoricals(trials: list[FrozenTrial]) -> list[str]:
    """Categorical parameters that took more than one value among ``trials``."""
    names = sorted({n for t in trials for n, d in t.distributions.items() if isinstance(d, CategoricalDistribution)})
    return [n for n in names if len({repr(t.params.get(n)) for t in trials if n in t.params}) > 1]


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def _optimization_history(study: optuna.Study, metric: str, top: int):
    from optuna.visualization.matplotlib import plot_optimization_history

    if not _complete(study):
        raise _Skip("no completed trial yet")
    return plot_optimization_history(study, target_name=metric).figure


def _importances(study: optuna.Study, metric: str, top: int):
    from optuna.visualization.matplotlib import plot_param_importances

    complete = _complete(study)
    if len(complete) < 2:
        raise _Skip(f"needs at least 2 completed trials (has {len(complete)})")
    varying = sorted({n for t in complete for n in t.params
                      if len({repr(u.params.get(n)) for u in complete}) > 1})
    if not varying:
        raise _Skip("every completed trial has the same parameters, so none can explain the metric")
    try:
        import sklearn  # noqa: F401  (fANOVA fits random forests with scikit-learn)

        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        how = "fANOVA"
    except ImportError:
        evaluator, how = None, "Optuna's default evaluator (scikit-learn is missing, so no fANOVA)"
    try:
        axes = plot_param_importances(study, evaluator=evaluator, params=varying, target_name=metric)
    except (ValueError, RuntimeError) as exc:
        raise _Skip(f"importances could not be computed yet ({exc})") from None
    axes.set_title(f"Hyperparameter importances ({how})", loc="left")  # replaces Optuna's own title
    return axes.figure


def _parallel_coordinates(study: optuna.Study, metric: str, top: int):
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    complete = _complete(study)
    if len(complete) < 2:
        raise _Skip(f"needs at least 2 completed trials (has {len(complete)})")
    varying = sorted({n for t in complete for n in t.params if len({repr(u.params.get(n)) for u in complete}) > 1})
    if not varying:
        raise _Skip("every completed trial has the same parameters")
    return plot_parallel_coordinate(study, params=varying, target_name=metric).figure


def _technique_effect(study: optuna.Study, metric: str, top: int):
    import matplotlib.pyplot as plt
    import numpy as np

    complete = _complete(study)
    names = _varying_categoricals(complete)
    if not names:
        raise _Skip("no categorical technique parameter took more than one value among the completed trials")
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, name in zip(axes.flat, names):
        choices = sorted({repr(t.params[name]) for t in complete if name in t.params})
        groups = [[t.value for t in complete if repr(t.params.get(name)) == c and name in t.params] for c in choices]
        ax.boxplot(groups, showmeans=True)
        for i, values in enumerate(groups, 1):
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=14, alpha=0.7, color="tab:blue", zorder=3)
        ax.set_xticks(range(1, len(choices) + 1))
        ax.set_xticklabels([f"{c.strip(chr(39))}\n(n={len(g)})" for c, g in zip(choices, groups)], fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.set_ylabel(metric)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"{metric} by choice (completed trials; box = quartiles, triangle = mean)")
    fig.tight_layout()
    return fig


def _seed_spread(study: optuna.Study, metric: str, top: int):
    import matplotlib.pyplot as plt

    ranked = [t for t in _ranked(study) if len(_seed_values(t)) > 1][:top]
    if not ranked:
        raise _Skip("no completed trial ran on more than one seed (set `seeds:` in the study file)")
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(ranked) + 2), 4))
    for i, t in enumerate(ranked, 1):
        seeds = _seed_values(t)
        values = list(seeds.values())
        mean, std = mean_std(values)
        ax.errorbar([i], [mean], yerr=[std], fmt="o", color="black", capsize=5, zorder=2)
        ax.scatter([i] * len(values), values, s=22, alpha=0.7, color="tab:orange", zorder=3)
        ax.scatter([i], [t.value], marker="_", s=300, color="tab:green", zorder=4)
    ax.set_xticks(range(1, len(ranked) + 1))
    ax.set_xticklabels([f"#{t.number}" for t in ranked])
    ax.set_xlabel("trial (best first)")
    ax.set_ylabel(metric)
    ax.set_title(f"Per-seed {metric} of the top recipes\n(dots: seeds; bar: mean ± std; green: the trial's value)", fontsize=10)
    fig.tight_layout()
    return fig


FIGURES: list[tuple[str, str, str, Callable]] = [
    ("optimization_history", "Optimisation history", "The value of every completed trial, and the best so far.",
     _optimization_history),
    ("param_importances", "Parameter importances",
     "How much of the metric's variation each parameter explains (fANOVA over the completed trials).", _importances),
    ("parallel_coordinate", "Parallel coordinates",
     "Each line is a completed trial through its parameter values, coloured by the metric.", _parallel_coordinates),
    ("technique_effect", "Per-technique effect",
     "The metric by choice of each categorical technique parameter, with its spread.", _technique_effect),
    ("seed_spread", "Per-seed spread of the top recipes",
     "How much each top recipe moves with the seed.", _seed_spread),
]


def make_figures(study: optuna.Study, metric: str, top: int = 10) -> list[Figure]:
    """Draw every figure; one that cannot be drawn becomes a note, never an error."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figures = []
    for key, title, caption, draw in FIGURES:
        figure = Figure(key, title, caption)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's matplotlib module is experimental and says so
                fig = draw(study, metric, top)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
            plt.close(fig)
            figure.png = buffer.getvalue()
        except _Skip as exc:
            figure.note = f"Skipped: {exc}."
        except Exception as exc:  # a plotting library surprise must not cost the rest of the report
            figure.note = f"Skipped: could not draw it ({type(exc).__name__}: {exc})."
        finally:
            plt.close("all")
        figures.append(figure)
    return figures


# ---------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------


def _table(study: optuna.Study, metric: str, top: int) -> str:
    ranked = _ranked(study)[:top]
    if not ranked:
        return "<p class='note'>No completed trial yet.</p>"
    multi = any(len(_seed_values(t)) > 1 for t in ranked)
    head = ["rank", "trial", metric] + (["mean ± std", "seeds"] if multi else []) + ["time", "recipe"]
    rows = []
    for rank, t in enumerate(ranked, 1):
        stored = TrialRecord.from_trial(t)
        warm = stored.warm_start
        cells = [str(rank), str(t.number) + (f"<br><small>warm start: {html.escape(str(warm))}</small>" if warm else ""),
                 f"{t.value:.4f}"]
        if multi:
            values = list(_seed_values(t).values())
            mean, std = mean_std(values) if values else (math.nan, math.nan)
            cells += [f"{mean:.4f} ± {std:.4f}" if values else "", str(len(values))]
        cells.append(f"{stored.seconds or 0:.0f}s")
        cells.append("<br>".join(f"{html.escape(n)}={html.escape(format_value(v))}" for n, v in sorted(t.params.items())))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #eee; }
.note { color: #8a6d3b; background: #fcf8e3; padding: 0.5em 1em; }
figcaption { color: #555; font-size: 0.9em; }
"""


def render_html(study: optuna.Study, config: StudyConfig, figures: list[Figure], top: int = 10) -> str:
    counts = trial_summary(study)
    seconds = sum(TrialRecord.from_trial(t).seconds or 0 for t in study.get_trials(deepcopy=False))
    seeds = ", ".join(map(str, config.run_seeds))
    name = html.escape(study.study_name)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>autobert report: {name}</title><style>{_STYLE}</style></head><body>",
        f"<h1>autobert study <code>{name}</code></h1>",
        f"<p>{html.escape(config.direction)} {html.escape(config.metric)} on seed(s) {seeds}"
        f" (aggregate: {html.escape(config.aggregate)}); pruner {html.escape(config.pruner.name)}.<br>"
        f"{counts.get('complete', 0)} complete, {counts.get('pruned', 0)} pruned, {counts.get('fail', 0)} failed, "
        f"{counts.get('running', 0)} running; {seconds / 60:.1f} min of trials. "
        f"Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.</p>",
        f"<h2>Top recipes</h2>{_table(study, config.metric, top)}",
    ]
    warm = StudyRecord.from_study(study).warm_start or {}
    if warm.get("enqueued") or warm.get("skipped"):
        skipped = "; ".join(f"{html.escape(k)}: {html.escape(v)}" for k, v in (warm.get("skipped") or {}).items())
        parts.append(f"<p>Warm start from {html.escape(str(warm.get('source')))}: "
                     f"{html.escape(', '.join(warm.get('enqueued') or [])) or 'no recipe'} ran first"
                     + (f"; skipped: {skipped}" if skipped else "") + ".</p>")
    for figure in figures:
        parts.append(f"<h2 id='{figure.key}'>{html.escape(figure.title)}</h2><figure>")
        if figure.png is not None:
            data = base64.b64encode(figure.png).decode("ascii")
            parts.append(f"<img alt='{html.escape(figure.title)}' src='data:image/png;base64,{data}'>")
        else:
            parts.append(f"<p class='note'>{html.escape(figure.note or 'Skipped.')}</p>")
        parts.append(f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>")
    parts.append(_ablation_section(study, config))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _ablation_section(study: optuna.Study, config: StudyConfig) -> str:
    """The ablation of the study's best recipe (``autobert ablate``), when one is stored under the study's folder."""
    ranked = _ranked(study)
    found = find_ablation(config.study_dir, study.study_name, ranked[0].number, ranked[0].params) if ranked else None
    if found is None:
        return ""
    parts = [f"<h2 id='ablation'>Ablation of the best recipe (trial {ranked[0].number})</h2>",
             f"<p>From <code>{html.escape(found['folder'])}</code>: every arm on seeds "
             f"{', '.join(map(str, found['seeds']))}; Δ = with the technique − without it (validation "
             f"{html.escape(found['metric'])}), 95 % t interval over the seed pairs."
             + ("" if found.get("complete") else " <b>Incomplete</b>: some arms have not finished every seed.")
             + "</p>"]
    head = ["technique", "switched", "Δ", "95 % CI", "Wilcoxon p", "extra time / seed", "verdict"]
    rows = []
    def number(value, spec: str, unit: str = "") -> str:  # JSON keeps a missing interval (one seed) as null
        return "—" if value is None else f"{value:{spec}}{unit}"

    for row in found.get("techniques", []):
        low, high = row["ci95"]
        cells = [row["technique"] + (" (added)" if row["kind"] == "added" else ""), row["switched"],
                 number(row["mean_difference"], "+.4f"),
                 "—" if low is None or high is None else f"[{low:+.4f}, {high:+.4f}]",
                 number(row["wilcoxon_p"], ".3f"), number(row["extra_seconds"], "+.1f", " s"), row["verdict"]]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    parts.append("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
                 + "".join(rows) + "</tbody></table>")
    if found.get("not_ablatable"):
        parts.append("<p>Not ablatable: " + "; ".join(html.escape(f"{n['technique']} ({n['reason']})")
                                                     for n in found["not_ablatable"]) + ".</p>")
    if found.get("recommended"):
        dropped = ", ".join(found["recommended"]["dropped"]) or "nothing"
        parts.append(f"<p>Recommended recipe (drops {html.escape(dropped)}): "
                     f"<code>{html.escape(str(Path(found['folder']) / 'recommended.yaml'))}</code></p>")
    forest = Path(found["folder"]) / "forest.png"
    if forest.is_file():
        data = base64.b64encode(forest.read_bytes()).decode("ascii")
        parts.append(f"<figure><img alt='ablation forest plot' src='data:image/png;base64,{data}'></figure>")
    return "\n".join(parts)


def write_report(config: StudyConfig, output: Path | None = None, storage: str | None = None, top: int = 10) -> Path:
    """Write ``report.html`` and one PNG per drawable figure; return the HTML's path.

    Args:
        config: The study file.
        output: The folder (default ``<study dir>/report``).
        storage: A storage URL other than the study's.
        top: Recipes in the table and the per-seed figure.

    Raises:
        AutobertError: the study is not in the storage.
    """
    study = load_stored_study(config, storage)
    output = Path(output) if output else config.study_dir / "report"
    output.mkdir(parents=True, exist_ok=True)
    figures = make_figures(study, config.metric, top)
    for figure in figures:
        path = output / f"{figure.key}.png"
        if figure.png is not None:
            path.write_bytes(figure.png)
        else:
            path.unlink(missing_ok=True)  # a stale figure from an earlier report would mislead
    path = output / "report.html"
    write_atomic(path, render_html(study, config, figures, top))
    return path


__all__ = ["write_report", "make_figures", "render_html", "load_stored_study", "Figure"]
