"""Does keeping what the search trained pay? autobert's single best recipe against its combination (soup or ensemble).

The protocol of ``benchmarks/search_strategy.py`` (same sub-sampled tasks, same encoder, same leave-one-task-out
warm start, same budget-aware engine): one autobert search per task and budget, with ``combine: auto`` (the
default). Its winner is then re-trained on fresh seeds twice:

* ``single``: the single best recipe (``autobert train --single``), on seeds 100, 101, ...;
* ``combined``: the combination the search chose (``autobert train``), every member on its own seed plus the
  fresh seed as an offset. Where ``auto`` kept the single recipe, ``combined`` is the single recipe.

``Trainer.hyperparameter_search`` is read from ``search_strategy.py``'s stored cells
(``docs/benchmarks/search_strategy-cells/<task>-hp-<budget>.json``, the same tasks, sample and fresh seeds),
not run again. Each cell writes ``<out>/<task>-<budget>.json`` and is skipped when it exists::

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/combine.py run --task sst2 --budget 300 &
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/combine.py run --task mpqa --budget 300
    python benchmarks/combine.py report
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from _common import ROOT, t_interval  # benchmarks/ is on sys.path when run as a script
import search_strategy
from search_strategy import autobert_study, counts, loto_portfolio, versions, write_splits

# The score matrix the built-in portfolio came from, as committed (runs/ is not kept between machines).
search_strategy.PORTFOLIO_STORAGE = f"journal:///{ROOT / 'docs' / 'benchmarks' / 'portfolio-scores.journal'}"

CELLS = ROOT / "docs" / "benchmarks" / "combine-cells"
HP_CELLS = ROOT / "docs" / "benchmarks" / "search_strategy-cells"
REPORT = ROOT / "docs" / "benchmarks" / "combine.md"
# Trainer.hyperparameter_search's winner souped / ensembled over seeds (benchmarks/hp_combined.py).
HP_COMBINED_CELLS = ROOT / "docs" / "benchmarks" / "combine-hp-cells"


def run_cell(task: str, budget: float, seeds: list[int], train_rows: int, size: int) -> dict:
    import optuna

    from autobert.config.schema import load_frozen
    from autobert.run.data import load_task_data
    from autobert.run.pipeline import quiet_transformers, run_seeds
    from autobert.run.plugin_manager import get_plugin_manager
    from autobert.store.record import StudyRecord
    from autobert.study.search import export_best, replay_trial, run_search
    from autobert.study.train import train_combination

    quiet_transformers()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix=f"autobert-combine-{task}-"))
    paths = write_splits(task, train_rows, work)
    portfolio, names = loto_portfolio(task, size, work)
    study = autobert_study(task, paths, work, "combined", warm_start=str(portfolio), budget={"timeout": budget})
    pm = get_plugin_manager(disable=study.disable)
    data = load_task_data(study)
    row: dict = {"task": task, "budget": budget, "portfolio": names, "seeds": seeds, "train_rows": train_rows,
                 "study_dir": str(study.study_dir)}
    start = time.perf_counter()
    opened = run_search(study, pm, data, timeout=budget)
    row["search_seconds"] = time.perf_counter() - start
    frozen = load_frozen(export_best(study, opened, pm, data))
    combination = StudyRecord.from_study(opened).combination or {}
    row.update(trials=counts(opened.trials), recipe=frozen.params, search_value=frozen.provenance.value,
               combination={k: combination.get(k) for k in ("kind", "variant", "value", "single", "holdout",
                                                           "reason", "candidates")},
               members=[{k: m[k] for k in ("trial", "seed", "weight", "value")}
                        for m in combination.get("members") or []])
    start = time.perf_counter()
    single = run_seeds(frozen, replay_trial(frozen), pm, data, seeds=seeds, evaluate_test=True)
    row["single"] = {"test": [r.test_metrics["accuracy"] for r in single.results],
                     "validation": [r.value for r in single.results], "seconds": time.perf_counter() - start}
    if combination.get("kind") in ("soup", "ensemble"):
        with tempfile.TemporaryDirectory(prefix="combined-", dir=work) as out:
            start = time.perf_counter()
            trained = train_combination(frozen, pm, data, offsets=seeds, output=Path(out))
            metrics = trained.metrics
            row["combined"] = {"test": [trained.scores[o]["test"]["accuracy"] for o in seeds],
                               "validation": [trained.scores[o]["validation"]["accuracy"] for o in seeds],
                               "seconds": time.perf_counter() - start,
                               "inference_ms_per_1000": metrics.get("inference_ms_per_1000"),
                               "size_bytes": metrics.get("size_bytes")}
    else:
        row["combined"] = dict(row["single"], same_as_single=True)
    return row


def cmd_redecide(args) -> int:
    """Decide a finished cell's combination again with the current rule, from its stored study (the runs' stored
    probabilities and weights), and record it in the cell as ``final_rule``: for a cell that ran before the rule
    changed. Where the rule now keeps the single recipe, the cell's ``single`` figures are the combined ones."""
    import optuna

    from autobert.config.schema import StudyConfig
    from autobert.run.data import load_task_data
    from autobert.run.pipeline import quiet_transformers
    from autobert.run.plugin_manager import get_plugin_manager
    from autobert.study.combine import combine

    quiet_transformers()
    path = CELLS / f"{args.task}-{int(args.budget)}.json"
    row = json.loads(path.read_text())
    folder = Path(args.study_dir)
    study = autobert_study(args.task, {s: str(folder.parent / f"{args.task}-{s}.csv")
                                       for s in ("train", "validation", "test")},
                           folder.parent, folder.name, warm_start="none", budget={"timeout": args.budget})
    study = StudyConfig.model_validate({**study.model_dump(), "base_dir": folder.parent})
    opened = optuna.load_study(study_name=folder.name, storage=study.storage_url)
    pm, data = get_plugin_manager(disable=study.disable), load_task_data(study)
    result = combine(study, pm, data, opened)
    row["final_rule"] = {k: result[k] for k in ("kind", "variant", "holdout", "reason")}
    row["final_rule"]["members"] = [{k: m[k] for k in ("trial", "seed", "weight", "value")} for m in result["members"]]
    print(f"{args.task} {int(args.budget)}: {result['kind']}; {result['reason']}")
    if args.retrain and result["kind"] != "none" and row["final_rule"]["members"] != row["members"]:
        # Another combination than the cell trained: train it on the same fresh seeds (as offsets), as `run` does.
        from autobert.strategy.planner import finalists
        from autobert.study.search import best_trial, frozen_config
        from autobert.study.train import train_combination

        frozen = frozen_config(study, pm, data, best_trial(opened), folder, finalists(opened), result)
        with tempfile.TemporaryDirectory(prefix="combined-", dir=folder.parent) as out:
            start = time.perf_counter()
            trained = train_combination(frozen, pm, data, offsets=row["seeds"], output=Path(out))
            row["final_rule"]["combined"] = {
                "test": [trained.scores[o]["test"]["accuracy"] for o in row["seeds"]],
                "validation": [trained.scores[o]["validation"]["accuracy"] for o in row["seeds"]],
                "seconds": time.perf_counter() - start, "date": date.today().isoformat(),
                "inference_ms_per_1000": trained.metrics.get("inference_ms_per_1000"),
                "size_bytes": trained.metrics.get("size_bytes")}
        print(f"  re-trained on seeds {row['seeds']}: test {_ms(row['final_rule']['combined']['test'])}")
    path.write_text(json.dumps(row, indent=1) + "\n")
    return 0


def cmd_run(args) -> int:
    CELLS.mkdir(parents=True, exist_ok=True)
    path = CELLS / f"{args.task}-{int(args.budget)}.json"
    if path.exists():
        print(f"{path} exists: skipped")
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.perf_counter()
    row = run_cell(args.task, args.budget, seeds, args.train_rows, args.portfolio_size)
    row.update(date=date.today().isoformat(), versions=versions(), seconds=time.perf_counter() - start,
               command="python benchmarks/combine.py " + " ".join(sys.argv[1:]))
    path.write_text(json.dumps(row, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


def _final_rule_note(c: dict, chosen: str) -> str:
    """What the rule as shipped (``redecide``) changed in a cell's choice, for the table's last column."""
    final = c.get("final_rule") or {}
    if not final or (final["kind"] == chosen and final.get("members", c["members"]) == c["members"]):
        return ""
    noise = final["holdout"]
    why = (f"noise {100 * noise['noise']:.2f} points from the {'seeds' if noise.get('noise_from') == 'seeds' else 'rows'}"
           f", gain {100 * noise['gain']:+.2f}")
    as_run = f"the {chosen} as run scored {_ms(c['combined']['test'])}" if chosen != "none" else ""
    if final["kind"] == "none":
        return f"; the final rule keeps the single recipe ({why}): the column shows it, {as_run}"
    picked = f"{final['kind']} ({final['variant']}) of {len(final.get('members') or [])} runs"
    if final.get("combined"):
        return f"; the final rule chooses the {picked} ({why}), re-trained on the same seeds: the column shows it" + \
               (f", {as_run}" if as_run else "")
    return f"; the final rule would choose the {picked} ({why}), not re-trained: the column shows what ran"


def combined_test(c: dict) -> list[float]:
    """The combined arm's test values under the final rule: where the rule now keeps the single recipe (the cell ran
    before the rule changed; see ``redecide``), the single recipe's; where it chose another combination, that one
    re-trained on the same fresh seeds (``redecide --retrain``)."""
    final = c.get("final_rule") or {}
    if final.get("kind") == "none" and c["combination"].get("kind") not in (None, "none"):
        return c["single"]["test"]
    if final.get("combined"):
        return final["combined"]["test"]
    return c["combined"]["test"]


def _ms(values: list[float]) -> str:
    mean = 100 * statistics.mean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}"


def _diff(a: list[float], b: list[float]) -> tuple[float, float, float]:
    return t_interval([100 * (x - y) for x, y in zip(a, b)])


def _pooled(values: list[float], tasks: list[str], without_sst5: bool) -> str:
    """The overall cell of a paired-difference row: mean and 95 % t interval over task × seed pairs."""
    _, low, high = t_interval(values)
    text = f"**{statistics.mean(values):+.2f}** [{low:+.2f}, {high:+.2f}]"
    without = [d for d, task in zip(values, tasks) if task != "sst5"]
    if without_sst5 and 1 < len(without) < len(values):
        _, low, high = t_interval(without)
        text += f"; without sst5 {statistics.mean(without):+.2f} [{low:+.2f}, {high:+.2f}]"
    return text


def hp_combined_section(budget: float, rows: list[dict], hp_cells: dict) -> list[str]:
    """The tables of ``Trainer.hyperparameter_search``'s winner souped and ensembled over seeds at one budget
    (``benchmarks/hp_combined.py``'s cells), against its single model and autobert's combination."""
    here = [hp_cells[key] for key in sorted(hp_cells) if key[1] == budget]
    if not here:
        return []
    ours = {c["task"]: c for c in rows}
    m = sorted({h["members"] for h in here})
    members = "/".join(map(str, m))
    lines = ["", f"### Trainer.hyperparameter_search's winner, souped / ensembled (M={members} seeds)", "",
             "Test accuracy (%, mean ± std over the fresh seeds). *Single* is the first member re-trained here (the "
             "search arm's own model for that fresh seed; *reproduced* counts the seeds whose test and validation accuracy "
             "equal the stored cell's: the same model); *souped* averages the M members' weights, *ensembled* their "
             "probabilities. Inference times are one core's, measured once per cell while other work shared the "
             "core: compare them within a row.", "",
             "| task | hyperparameter_search, stored | single, re-trained here (reproduced) | souped | ensembled | "
             "autobert, combined | ms per 1,000 sentences, soup / ensemble (one core) | MB, soup / ensemble | "
             "train s (all members, all seeds) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for h in here:
        n = len(h["seeds"])
        stored = [t for t in h["hp_test"] if t is not None]
        task = h["task"] + (f" (recipe of {h['same_recipe_as']}: its models)" if h.get("same_recipe_as") else "")
        cost = h.get("cost") or {}
        ms = " / ".join(f"{cost[k]['inference_ms_per_1000']:,.0f}" if k in cost else "—" for k in ("soup", "ensemble"))
        size = " / ".join(f"{cost[k]['size_bytes'] / 1e6:.0f}" if k in cost else "—" for k in ("soup", "ensemble"))
        lines.append(f"| {task} | {_ms(stored) if stored else '—'} | {_ms(h['single']['test'])} "
                     f"({sum(h['reproduced'])} of {n}) | {_ms(h['soup']['test'])} | {_ms(h['ensemble']['test'])} | "
                     f"{_ms(combined_test(ours[h['task']])) if h['task'] in ours else 'not run'} | {ms} | {size} | "
                     f"{h['train_seconds']:.0f} |")
    lines += ["", "Paired differences (test, points; per task a 95 % t interval over the fresh seeds, overall over "
              "task × seed pairs; the autobert rows over the tasks where both cells exist):", "",
              "| comparison | per task | overall |", "|---|---|---:|"]
    comparisons = (("soup", None, "hyperparameter_search souped − its single"),
                   ("ensemble", None, "hyperparameter_search ensembled − its single"),
                   (None, "soup", "autobert combined − hyperparameter_search souped"),
                   (None, "ensemble", "autobert combined − hyperparameter_search ensembled"))
    for hp_arm, against, label in comparisons:
        per_task, values, tasks = [], [], []
        for h in here:
            n = len(h["seeds"])
            if hp_arm:
                a, b = h[hp_arm]["test"], h["single"]["test"]
            elif h["task"] in ours and ours[h["task"]]["seeds"][:n] == h["seeds"]:
                a, b = combined_test(ours[h["task"]])[:n], h[against]["test"]
            else:
                continue
            mean, low, high = _diff(a, b)
            per_task.append(f"{h['task']} {mean:+.2f} [{low:+.1f}, {high:+.1f}]")
            values += [100 * (x - y) for x, y in zip(a, b)]
            tasks += [h["task"]] * n
        if values:
            lines.append(f"| {label} | {'; '.join(per_task)} | {_pooled(values, tasks, hp_arm is None)} |")
    return lines


def cmd_report(args) -> int:
    cells = [json.loads(p.read_text()) for p in sorted(CELLS.glob("*.json"))]
    hp_cells = {(h["task"], h["budget"]): h
                for h in (json.loads(p.read_text()) for p in sorted(HP_COMBINED_CELLS.glob("*.json")))}
    if not cells:
        print("no cells yet: run `python benchmarks/combine.py run --task T --budget B` first")
        return 1
    budgets = sorted({c["budget"] for c in cells})
    lines = ["# Keeping what the search trained: single recipe vs. combination (MiniLM)", "",
             f"Run on {cells[0]['date']}: {cells[0]['versions']}. Each task's cell ran in its own process, pinned to "
             "its own core with one torch thread (`OMP_NUM_THREADS=1 taskset -c N`), two cells side by side.",
             f"Data: {', '.join(sorted({c['task'] for c in cells}))} from `../shared/data`, training sets sub-sampled to "
             f"{cells[0]['train_rows']} rows (seed 1, as `search_strategy.py`), full validation (searched on) and test "
             f"(winners only). Encoder all-MiniLM-L6-v2, max length 64. Fresh seeds: {cells[0]['seeds']}.",
             "The `Trainer.hyperparameter_search` column is `search_strategy.py`'s stored cell for the same task, "
             "sample and budget (run on 2026-12-02, optuna 5.0.0), on the same fresh seeds; it was not run again.",
             "Command per cell: `" + cells[0]["command"] + "`; report: `python benchmarks/combine.py report`."]
    if hp_cells:
        first = next(iter(hp_cells.values()))
        members = "/".join(map(str, sorted({h["members"] for h in hp_cells.values()})))
        lines.append(f"The hyperparameter search's winner, souped / ensembled ({first['date']}): "
                     "`benchmarks/hp_combined.py` re-trained the stored winner's recipe (learning rate, epochs, batch "
                     f"size) with `plain_trainer.train` on the same sample, M = {members} models per fresh seed s (seeds "
                     "s, s + 1000, ...; the first is the search arm's own model for s), and averaged their weights "
                     "(uniform soup, `autobert.run.inference.soup`) or their softmax probabilities (ensemble); one "
                     "process per cell, pinned to one core, cells in `docs/benchmarks/combine-hp-cells/`. "
                     "Command per cell: `" + first["command"].split(" --")[0] + " --task T --budget B`.")
    lines.append("")
    raw = {}
    for budget in budgets:
        rows = [c for c in cells if c["budget"] == budget]
        lines += [f"## {int(budget)} s of search", "", "### Test accuracy (%, mean ± std over the fresh seeds)", "",
                  "| task | Trainer.hyperparameter_search | autobert, single best recipe | autobert, combined | "
                  "what `auto` chose |", "|---|---:|---:|---:|---|"]
        diffs: dict[str, list[float]] = {"single": [], "combined": [], "combined - single": []}
        diff_tasks: dict[str, list[str]] = {name: [] for name in diffs}
        for c in rows:
            n = len(c["seeds"])
            hp_path = HP_CELLS / f"{c['task']}-hp-{int(budget)}.json"
            hp = json.loads(hp_path.read_text())["test"][:n] if hp_path.exists() else None
            chosen = c["combination"].get("kind") or "none"
            what = (f"{chosen} ({c['combination'].get('variant')}) of {len(c['members'])} runs" if chosen != "none"
                    else "single recipe kept")
            what += _final_rule_note(c, chosen)
            lines.append(f"| {c['task']} | {_ms(hp) if hp else 'not run'} | {_ms(c['single']['test'])} | "
                         f"{_ms(combined_test(c))} | {what} |")
            if hp:
                diffs["single"] += [100 * (x - y) for x, y in zip(c["single"]["test"], hp)]
                diffs["combined"] += [100 * (x - y) for x, y in zip(combined_test(c), hp)]
                diff_tasks["single"] += [c["task"]] * n
                diff_tasks["combined"] += [c["task"]] * n
            diffs["combined - single"] += [100 * (x - y) for x, y in zip(combined_test(c), c["single"]["test"])]
            diff_tasks["combined - single"] += [c["task"]] * n
        lines += ["", "### Paired differences (test, points; 95 % t interval over task × seed pairs)", "",
                  "| comparison | per task | overall |", "|---|---|---:|"]
        for name, label in (("single", "autobert single − hyperparameter_search"),
                            ("combined", "autobert combined − hyperparameter_search"),
                            ("combined - single", "autobert combined − autobert single")):
            per_task = []
            for c in rows:
                n = len(c["seeds"])
                hp_path = HP_CELLS / f"{c['task']}-hp-{int(budget)}.json"
                if name == "combined - single":
                    a, b = combined_test(c), c["single"]["test"]
                elif hp_path.exists():
                    a = combined_test(c) if name == "combined" else c["single"]["test"]
                    b = json.loads(hp_path.read_text())["test"][:n]
                else:
                    continue
                mean, low, high = _diff(a, b)
                per_task.append(f"{c['task']} {mean:+.2f} [{low:+.1f}, {high:+.1f}]")
            values = diffs[name]
            if values:
                _, low, high = t_interval(values)
                overall = f"**{statistics.mean(values):+.2f}** [{low:+.2f}, {high:+.2f}]"
                without = [d for d, task in zip(values, diff_tasks[name]) if task != "sst5"]
                if name != "combined - single" and len(without) < len(values) and len(without) > 1:
                    _, low, high = t_interval(without)
                    overall += f"; without sst5 {statistics.mean(without):+.2f} [{low:+.2f}, {high:+.2f}]"
                lines.append(f"| {label} | {'; '.join(per_task)} | {overall} |")
        ratios = []
        for c in rows:
            hp_path = HP_CELLS / f"{c['task']}-hp-{int(budget)}.json"
            if hp_path.exists():
                hp = json.loads(hp_path.read_text())["test"][:len(c["seeds"])]
                ratios.append(f"{c['task']} {statistics.stdev(combined_test(c)) / statistics.stdev(hp):.2f}")
        if ratios:
            lines += ["", "Test std of autobert combined over the fresh seeds, as a share of the hyperparameter "
                      "search's (goal: at most 0.5): " + ", ".join(ratios) + "."]
        lines += hp_combined_section(budget, rows, hp_cells)
        lines += ["", "### What each search did and what the combination cost", "",
                  "| task | search s (of the budget) | trials | combination candidates (held-out half: gain over the "
                  "single recipe, points) | chosen | retrain s (single / combined, all seeds) | inference ms per 1,000 "
                  "sentences (one core) | size MB |",
                  "|---|---:|---|---|---|---:|---:|---:|"]
        for c in rows:
            cand = "; ".join(f"{x['kind']} {x['variant']} ({x['members']} runs) {x['gain'] * 100:+.2f}"
                             for x in c["combination"].get("candidates") or []) or "—"
            final = c.get("final_rule") or {}
            kind = final.get("kind") or c["combination"].get("kind") or "none"
            # What ships: the single recipe where the final rule keeps it, else the combination (re-trained if new).
            comb = c["single"] if kind == "none" else final.get("combined") or c["combined"]
            ms, size = comb.get("inference_ms_per_1000"), comb.get("size_bytes")
            members = final.get("members") if final else c["members"]
            cost = f"{len(members)}×" if kind == "ensemble" else "1×"
            lines.append(f"| {c['task']} | {c['search_seconds']:.0f} ({100 * c['search_seconds'] / budget:.0f} %) | "
                         f"{c['trials']} | {cand} | {kind} | {c['single']['seconds']:.0f} / {comb['seconds']:.0f} | "
                         f"{f'{ms:,.0f}' if ms is not None else '—'} ({cost} one model) | "
                         f"{f'{size / 1e6:.0f}' if size else '—'} |")
        lines.append("")
        raw[str(int(budget))] = rows
    if REPORT.exists():
        old = REPORT.read_text()
        if "## Reading" in old:
            lines += [old[old.index("## Reading"):].rstrip(), ""]
    REPORT.write_text("\n".join(lines) + "\n")
    if hp_cells:
        raw["hp_combined"] = list(hp_cells.values())
    (REPORT.with_suffix(".json")).write_text(json.dumps(raw, indent=1) + "\n")
    print(f"wrote {REPORT}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--task", required=True)
    run.add_argument("--budget", type=float, required=True)
    run.add_argument("--seeds", default="100,101,102,103,104")
    run.add_argument("--train-rows", type=int, default=500)
    run.add_argument("--portfolio-size", type=int, default=4)
    sub.add_parser("report")
    again = sub.add_parser("redecide")
    again.add_argument("--task", required=True)
    again.add_argument("--budget", type=float, required=True)
    again.add_argument("--study-dir", required=True, help="the cell's study folder (<work>/combined)")
    again.add_argument("--retrain", action="store_true",
                       help="train the final rule's combination on the cell's fresh seeds where it differs")
    args = parser.parse_args()
    return {"run": cmd_run, "report": cmd_report, "redecide": cmd_redecide}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
