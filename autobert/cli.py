"""The ``autobert`` command line."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from autobert.run.clock import clear_stop, request_stop
from autobert.errors import AutobertError, ConfigError

console = Console()
err_console = Console(stderr=True)


def _study_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", help="the study YAML file")
    p.add_argument("--storage", help="Optuna storage URL (default: SQLite file beside the study)")
    p.add_argument("--disable", action="append", default=[], metavar="NAME", help="turn a technique off (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autobert", description="Search BERT fine-tuning recipes.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("search", help="run (or resume) a study")
    _study_args(p)
    p.add_argument("--n-trials", type=int, help="run this many more trials (default: the study's budget)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--export", type=Path, help="where to write the best frozen config (default: <study dir>/best.yaml)")
    p.add_argument("--keep-stored-space", action="store_true",
                   help="resume even though the study file changed a parameter's choices or log scale: those keep the stored definition")
    p.add_argument("--init-only", action="store_true",
                   help="create the study in its storage (or check the stored one) and stop; run it once before starting several workers")
    _device_arg(p)
    p.add_argument("--workers", type=_positive, metavar="N",
                   help="start N worker processes on this machine, sharing the study (one GPU each where there are enough)")
    # A worker started by --workers: no export, no leaderboard (the parent does both once all have stopped).
    p.add_argument("--as-worker", action="store_true", help=argparse.SUPPRESS)

    p = sub.add_parser("train", help="train a frozen config's recipe")
    p.add_argument("frozen", help="a frozen config (best.yaml)")
    p.add_argument("--output", "-o", type=Path, required=True, help="folder for the model, metrics.json and the config")
    p.add_argument("--allow-data-change", action="store_true", help="train even if the data's fingerprint changed")
    p.add_argument("--seeds", type=_seed_list, metavar="S1,S2,...",
                   help="train once per seed and report mean ± std (default: the recipe's own seeds); the model saved is the first seed's")
    _device_arg(p)

    p = sub.add_parser("ablate", help="re-train a frozen recipe with each of its techniques switched off, on paired seeds")
    p.add_argument("frozen", help="a frozen config (best.yaml)")
    p.add_argument("--seeds", type=_seed_list, default=[0, 1, 2, 3, 4], metavar="S1,S2,...",
                   help="the seeds every arm trains on (default 0,1,2,3,4)")
    p.add_argument("--add", action="append", default=[], metavar="NAME",
                   help="also try a technique the recipe does not use, at its documented default (repeatable)")
    p.add_argument("--output", "-o", type=Path,
                   help="folder for ablation.md/.json, forest.png, recommended.yaml (default: <frozen dir>/<stem>-ablation)")
    p.add_argument("--storage", help="Optuna storage URL of the ablation study (default: SQLite in the output folder)")
    p.add_argument("--test", action="store_true", help="also score the test split (reported apart, never decides a verdict)")
    p.add_argument("--allow-data-change", action="store_true", help="run even if the data's fingerprint changed")
    _device_arg(p)

    p = sub.add_parser("best", help="show the leaderboard and re-export the best recipe")
    _study_args(p)
    p.add_argument("--export", type=Path, help="where to write the frozen config")
    p.add_argument("--top", type=int, default=10)

    p = sub.add_parser("report", help="write an HTML report and PNG figures of a study")
    p.add_argument("study", help="the study YAML file")
    p.add_argument("--storage", help="Optuna storage URL (default: the study's)")
    p.add_argument("--output", "-o", type=Path, help="folder for report.html and the PNGs (default: <study dir>/report)")
    p.add_argument("--top", type=int, default=10, help="recipes in the table and the per-seed figure")

    p = sub.add_parser("validate", help="check a study file without running anything")
    _study_args(p)

    p = sub.add_parser("plugins", help="list techniques and their parameter spaces")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--disable", action="append", default=[], metavar="NAME")

    p = sub.add_parser("cache", help="list or prune the cache of every kind: further-pretraining stages, distillation "
                                     "teachers, task models, maskers, masks, augmented rows and plugins' own kinds")
    p.add_argument("action", choices=["ls", "prune"])
    p.add_argument("study", help="the study YAML file (its cache_dir, default <study dir>/cache), or a cache folder")
    p.add_argument("--kind", "--namespace", dest="kind",
                   help="only this kind of entry (stage, teacher, task-model, masker, mask, augmentation, or a plugin's)")
    p.add_argument("--older-than", type=float, metavar="DAYS", help="prune: entries unused for this many days")
    p.add_argument("--all", action="store_true", help="prune: every entry")

    p = sub.add_parser("portfolio", help="score candidate recipes on several task studies and choose a portfolio "
                                         "of them (the warm start of later studies)")
    psub = p.add_subparsers(dest="portfolio_command", required=True)
    q = psub.add_parser("evaluate", help="run every candidate on every task study; each score is an Optuna trial, "
                                         "so the same command resumes")
    q.add_argument("tasks", nargs="+", help="task study YAML files (model, data, max_length, ...)")
    q.add_argument("--candidates", nargs="+", default=[], type=Path, metavar="FILE",
                   help="portfolio or candidate files (`recipes:` lists) or frozen configs (best.yaml)")
    q.add_argument("--from-study", nargs=2, action="append", default=[], metavar=("STORAGE", "NAME"),
                   help="also the best recipes of this finished study (repeatable)")
    q.add_argument("--top", type=int, default=3, help="recipes taken from each --from-study (default 3)")
    q.add_argument("--seeds", type=_seed_list, default=[0], metavar="S1,S2,...", help="seeds per (recipe, task)")
    q.add_argument("--storage", required=True, help="Optuna storage URL for the scores (sqlite:///, journal:///, ...)")
    q.add_argument("--name", default="portfolio", help="the evaluation's name (its task studies are NAME.TASK)")
    _device_arg(q)
    q = psub.add_parser("build", help="choose --size recipes greedily from a stored evaluation and write a portfolio")
    q.add_argument("--storage", required=True, help="the storage `portfolio evaluate` wrote to")
    q.add_argument("--name", default="portfolio")
    q.add_argument("--size", type=_positive, required=True, metavar="K", help="recipes in the portfolio")
    q.add_argument("--output", "-o", type=Path, required=True, help="the portfolio YAML file to write")
    q.add_argument("--exclude", action="append", default=[], metavar="TASK",
                   help="leave a task out (e.g. the one the portfolio will be tested on); repeatable")
    return parser


def _device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", metavar="cpu|cuda|cuda:N",
                   help="train on this device (default: the first GPU if there is one, else the CPU)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of workers, 1 or more")
    return value


def _interrupt(signum, frame) -> None:
    """SIGINT and SIGTERM: stop as Ctrl-C does, and for good.

    A KeyboardInterrupt raised while Python runs a finaliser (``__del__``) is
    printed and dropped; the flag makes the next training step raise it again
    (``autobert.check_deadline``), so a stop request is never lost.
    """
    request_stop()
    raise KeyboardInterrupt


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers, e.g. 0,1,2,3,4") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more distinct integer seeds, e.g. 0,1,2,3,4")
    return seeds


def _prepare(args):
    """Load, check and return (study, plugin manager, data)."""
    from autobert.config.schema import load_study, with_lines
    from autobert.run.device import precision_problems
    from autobert.run.pipeline import quiet_transformers, reporting_problems
    from autobert.study.search import plugin_manager_for
    from autobert.study.validation import validate_study

    quiet_transformers()
    study = load_study(args.study)
    pm = plugin_manager_for(study, args.disable)
    # Whether this machine runs the study's precision and logging, reported with the study's other problems.
    problems = precision_problems(study.precision) + reporting_problems(study.report_to)
    try:
        data = validate_study(study, pm)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(args.study, with_lines(problems, Path(args.study).read_text(encoding="utf-8"))) from None
    # Doubts about the data (duplicates, rows shared between splits, rare classes) do not stop the run.
    for warning in with_lines(list(data.warnings), Path(args.study).read_text(encoding="utf-8")):
        err_console.print("[bold yellow]warning:[/] ", end="")
        err_console.print(warning, markup=False, highlight=False, soft_wrap=True)
    return study, pm, data


def cmd_search(args) -> int:
    from autobert.study.display import SearchProgress, leaderboard
    from autobert.study.search import export_best, run_search
    from autobert.strategy.planner import trial_summary
    from autobert.store.storage import shown

    from autobert.run.device import select_device

    select_device(args.device)  # before anything touches CUDA
    study, pm, data = _prepare(args)
    if args.workers and not args.as_worker and not args.init_only:
        from autobert.study.workers import run_workers

        return run_workers(args, study, pm, data, console, err_console)
    if args.init_only:
        from autobert.study.search import init_study

        opened = init_study(study, pm, args.storage)
        console.print(f"[green]ready[/]: study {study.name!r} in {shown(args.storage or study.storage_url)} "
                      f"({len(opened.trials)} trial(s) stored); start the workers with the same study file and --storage")
        return 0
    n_trials = args.n_trials if args.n_trials is not None else (None if args.timeout else study.budget.trials)
    timeout = args.timeout if args.timeout is not None else (None if args.n_trials else study.budget.timeout)
    console.print(
        f"[bold]{study.name}[/]: {n_trials or 'unlimited'} trial(s), techniques: {', '.join(sorted(pm.techniques))}; "
        f"storage {shown(args.storage or study.storage_url)}"
    )
    # Schedulers stop workers with SIGTERM: end the running trial as cleanly as Ctrl-C does. SIGINT is
    # set too: a process started in the background by a shell inherits it ignored, and Ctrl-C (or a
    # scheduler's SIGINT) must still stop the search cleanly.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    previous_int = signal.signal(signal.SIGINT, _interrupt)
    with SearchProgress(console, n_trials, study.direction, study.metric) as progress:
        try:
            opened = run_search(
                study, pm, data, n_trials=n_trials, timeout=timeout, storage=args.storage,
                progress=progress, callbacks=[progress], keep_stored_space=args.keep_stored_space,
            )
        except KeyboardInterrupt:
            progress.progress.stop()
            err_console.print(
                "[yellow]interrupted[/]: the running trial is marked failed; completed trials are stored. "
                "Run the same command to resume."
            )
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
            clear_stop()
    if args.as_worker:
        return 0  # the process that started the workers shows the leaderboard and exports, once all have stopped
    console.print(leaderboard(opened, study.metric))
    if trial_summary(opened).get("complete"):
        path = export_best(study, opened, pm, data, args.export)
        console.print(f"best recipe written to [bold]{path}[/]; reproduce it with `autobert train {path} --output DIR`")
    else:
        err_console.print("[red]no trial completed[/], so there is no recipe to export; see the reasons above")
        return 1
    return 0


def cmd_best(args) -> int:
    from autobert.study.display import leaderboard
    from autobert.study.search import export_best, open_study

    study, pm, data = _prepare(args)
    opened = open_study(study, args.storage)
    console.print(leaderboard(opened, study.metric, args.top))
    path = export_best(study, opened, pm, data, args.export)
    console.print(f"best recipe written to [bold]{path}[/]")
    return 0


def cmd_validate(args) -> int:
    study, pm, data = _prepare(args)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in data.splits.items())
    console.print(f"[green]ok[/]: {study.name}: {sizes} rows, {data.num_labels} labels, techniques {', '.join(sorted(pm.techniques))}")
    return 0


def cmd_train(args) -> int:
    from autobert.config.schema import dump_yaml, load_frozen, relocate, with_lines, write_atomic
    from autobert.run.data import load_task_data
    from autobert.run.device import precision_problems, select_device
    from autobert.reporting.model_card import write_model_card
    from autobert.study.display import SearchProgress
    from autobert.run.aggregate import mean_std
    from autobert.run.pipeline import metric_names, quiet_transformers, run_seeds
    from autobert.study.validation import check_frozen
    from autobert.study.search import plugin_manager_for, replay_trial

    select_device(args.device)  # before anything touches CUDA
    quiet_transformers()
    frozen = load_frozen(args.frozen)
    problems = precision_problems(frozen.precision)
    if problems:
        raise ConfigError(args.frozen, with_lines([p + " (edit `precision` in the frozen config; the results then "
                                                   "differ a little from the search's)" for p in problems],
                                                  Path(args.frozen).read_text(encoding="utf-8")))
    pm = plugin_manager_for(frozen)
    data = load_task_data(frozen)
    check_frozen(frozen, data, args.allow_data_change)
    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".autobert-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise AutobertError(f"--output {out}: cannot write there ({exc.strerror}); choose a writable folder") from None
    seeds = args.seeds or frozen.run_seeds
    console.print(
        f"training trial {frozen.provenance.trial} of {frozen.provenance.study} ({frozen.metric} in search: "
        f"{frozen.provenance.value}) on seed(s) {', '.join(map(str, seeds))} in {frozen.precision}"
    )
    with SearchProgress(console, None, frozen.direction, frozen.metric) as progress:
        result = run_seeds(frozen, replay_trial(frozen), pm, data, seeds=seeds, save_to=out,
                           evaluate_test=True, progress=progress)
    first = result.first
    mean, std = result.mean_std
    metrics = {"validation": first.metrics, "test": first.test_metrics, "value": result.value,
               "metric": frozen.metric, "search_value": frozen.provenance.value,
               "seconds": round(sum(r.seconds for r in result.results), 2),
               "seeds": seeds, "aggregate": frozen.aggregate, "seed_values": result.seed_values,
               "mean": mean, "std": std}
    fits = {str(s): r.batch_fit for s, r in zip(seeds, result.results) if r.batch_fit}
    if fits:  # the batch was halved to fit in memory (same effective batch)
        metrics["out_of_memory"] = fits
    if len(seeds) > 1:
        metrics["per_seed"] = {str(s): {"validation": r.metrics, "test": r.test_metrics}
                               for s, r in zip(seeds, result.results)}
        for split in ("validation", "test"):
            runs = [getattr(r, "metrics" if split == "validation" else "test_metrics") for r in result.results]
            if all(runs):
                metrics[f"{split}_mean_std"] = {n: list(mean_std([m[n] for m in runs])) for n in metric_names(pm) if n in runs[0]}
    try:
        write_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        write_atomic(out / "autobert.yaml", dump_yaml(relocate(frozen, out)))
        write_model_card(out, frozen, metrics)  # README.md in the Hub's model-card format
    except OSError as exc:
        raise AutobertError(f"cannot write metrics.json, autobert.yaml and README.md to {out} ({exc.strerror or exc}); "
                            "the files there before are unchanged. Free some space or choose another --output") from None
    shown = [n for n in metric_names(pm) if n in first.metrics]
    table = Table(title=f"{frozen.name}: trained recipe" + (f" on {len(seeds)} seeds" if len(seeds) > 1 else ""))
    table.add_column("split")
    for name in shown:
        table.add_column(name, justify="right")
    if len(seeds) == 1:
        table.add_row("validation", *[f"{first.metrics[n]:.4f}" for n in shown])
        if first.test_metrics:
            table.add_row("test", *[f"{first.test_metrics[n]:.4f}" for n in shown])
    else:
        for seed, r in zip(seeds, result.results):
            table.add_row(f"validation, seed {seed}", *[f"{r.metrics[n]:.4f}" for n in shown])
        for split in ("validation", "test"):
            if f"{split}_mean_std" in metrics:
                summary = metrics[f"{split}_mean_std"]
                table.add_row(f"{split}, mean ± std", *[f"{summary[n][0]:.4f} ± {summary[n][1]:.4f}" for n in shown])
    console.print(table)
    if len(seeds) > 1:
        console.print(f"{frozen.metric}: {mean:.4f} ± {std:.4f} over {len(seeds)} seeds ({frozen.aggregate}: {result.value:.4f}); "
                      f"the saved model is seed {seeds[0]}'s")
    console.print(f"model, tokenizer, metrics.json, autobert.yaml and a model card (README.md) written to [bold]{out}[/]")
    return 0


def cmd_ablate(args) -> int:
    from autobert.ablation.ablate import AblationProgress, default_output, plan, rich_table, run_ablation, write_outputs
    from autobert.config.schema import load_frozen
    from autobert.run.data import load_task_data
    from autobert.run.pipeline import quiet_transformers
    from autobert.study.validation import check_frozen
    from autobert.study.search import plugin_manager_for
    from autobert.run.device import select_device
    from autobert.store.storage import shown

    select_device(args.device)  # before anything touches CUDA
    quiet_transformers()
    frozen = load_frozen(args.frozen)
    pm = plugin_manager_for(frozen)
    data = load_task_data(frozen)
    check_frozen(frozen, data, args.allow_data_change)
    out = Path(args.output) if args.output else default_output(Path(args.frozen))
    arms = plan(frozen, pm, args.add)
    console.print(f"ablating trial {frozen.provenance.trial} of {frozen.provenance.study}: {len(arms.arms)} arm(s) "
                  f"({', '.join(a.name for a in arms.arms)}) on seed(s) {', '.join(map(str, args.seeds))}"
                  + (f"; not ablatable: {', '.join(sorted(arms.not_ablatable))}" if arms.not_ablatable else ""))
    previous = signal.signal(signal.SIGTERM, _interrupt)
    previous_int = signal.signal(signal.SIGINT, _interrupt)
    with AblationProgress(console, len(arms.arms) * len(args.seeds), frozen.metric) as progress:
        try:
            ablation = run_ablation(frozen, pm, data, seeds=args.seeds, output=out, recipe_path=str(args.frozen),
                                    add=args.add, storage=args.storage, evaluate_test=args.test, progress=progress)
        except KeyboardInterrupt:
            progress.progress.stop()
            stored = args.storage or f"sqlite:///{(out / 'ablation.db').resolve()}"
            err_console.print(f"[yellow]interrupted[/]: finished arms and seeds are stored in {shown(stored)}; "
                              "run the same command to resume.")
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
            clear_stop()
    written = write_outputs(ablation, out)
    console.print(rich_table(ablation))
    if "recommended" in written:
        dropped = ", ".join(ablation.dropped) or "nothing"
        console.print(f"recommended recipe (drops {dropped}): [bold]{written['recommended']}[/]")
    console.print(f"table, plot and JSON written to [bold]{out}[/]")
    return 0


def cmd_report(args) -> int:
    from autobert.config.schema import load_study
    from autobert.reporting.report import write_report

    study = load_study(args.study)
    html = write_report(study, output=args.output, storage=args.storage, top=args.top)
    console.print(f"report written to [bold]{html}[/] (figures beside it as PNG)")
    return 0


def cmd_plugins(args) -> int:
    from autobert.run.plugin_manager import get_plugin_manager
    from autobert.config.settings import declared_settings

    pm = get_plugin_manager(disable=args.disable)
    report = pm.effective_space()
    declared = declared_settings(pm)
    listing = []
    for name, technique in sorted(pm.techniques.items()):
        params = [spec.to_dict() for n, spec in sorted(report.defaults.items()) if spec.technique == name]
        settings = [{"name": n, "default": s.default, "help": s.help, "path": s.path}
                    for n, s in sorted(declared.items()) if n.split(".", 1)[0] == name]
        listing.append({"name": name, "module": technique.module, "source": technique.source, "parameters": params,
                        "settings": settings})
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    table = Table(title="autobert techniques")
    for col in ("technique", "source", "parameter", "space"):
        table.add_column(col)
    for entry in listing:
        specs = [s for s in report.defaults.values() if s.technique == entry["name"]]
        first = True
        for spec in sorted(specs, key=lambda s: s.name) or [None]:
            table.add_row(
                entry["name"] if first else "", entry["source"] if first else "",
                spec.short_name if spec else "—", spec.describe() if spec else "",
            )
            first = False
        for setting in entry["settings"]:
            table.add_row("", "", setting["name"].split(".", 1)[1],
                          f"setting, default {setting['default']!r}" + (f": {setting['help']}" if setting["help"] else ""))
    console.print(table)
    return 0


def cmd_cache(args) -> int:
    import time

    from autobert.config.schema import load_study
    from autobert.stage_cache import StageCache

    target = Path(args.study)
    root = target if target.is_dir() else load_study(target).cache_path
    cache = StageCache(root)
    if args.action == "prune":
        if args.older_than is None and not args.all:
            removed = cache.prune(kind=args.kind)
        else:
            older = None if args.older_than is None else args.older_than * 86400
            removed = cache.prune(older_than=older, kind=args.kind, everything=args.all)
        console.print(f"removed {len(removed)} folder(s) from {root}" + ("" if args.all or args.older_than is not None
                      else " (unfinished builds only; add --older-than DAYS or --all for entries)"))
        return 0
    entries = cache.entries(args.kind)
    table = Table(title=f"cache {root}")
    for col in ("kind", "entry", "size", "age", "hits", "last use", "built from"):
        table.add_column(col, justify="left" if col in ("kind", "entry", "built from") else "right")
    now = time.time()
    for e in sorted(entries, key=lambda e: (e.kind, e.last_used)):
        short = e.key if len(e.key) <= 20 else f"{e.key[:8]}…{e.key[-8:]}"
        table.add_row(e.kind, short, f"{e.size / 2**20:.1f} MiB", _age(now - e.created), str(e.hits),
                      f"{_age(now - e.last_used)} ago", e.summary())
    console.print(table)
    leftovers = list(cache.leftovers(args.kind))
    by_kind: dict[str, list] = {}
    for e in entries:
        by_kind.setdefault(e.kind, []).append(e)
    kinds = "; ".join(f"{kind} {len(found)} ({sum(e.size for e in found) / 2**20:.1f} MiB)"
                      for kind, found in sorted(by_kind.items()))
    total = sum(e.size for e in entries)
    console.print(f"{len(entries)} entries, {total / 2**20:.1f} MiB, {sum(e.hits for e in entries)} hits"
                  + (f": {kinds}" if kinds else "")
                  + (f"; {len(leftovers)} unfinished build(s) (`autobert cache prune` removes them)" if leftovers else ""))
    return 0


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{max(seconds, 0):.0f} s"


def cmd_portfolio(args) -> int:
    from autobert.strategy import portfolio

    if args.portfolio_command == "evaluate":
        return _portfolio_evaluate(args)
    matrix = portfolio.read_matrix(args.storage, args.name)
    unknown = sorted(set(args.exclude) - set(matrix.tasks))
    if unknown:
        raise ConfigError("--exclude", [f"no task {', '.join(unknown)} in evaluation {args.name!r}; its tasks are "
                                        f"{', '.join(matrix.tasks)}"])
    from autobert.strategy.declarations import off_values
    from autobert.run.plugin_manager import get_plugin_manager

    pm = get_plugin_manager()
    built = portfolio.build(matrix, args.size, exclude=args.exclude, off=off_values(pm), techniques=pm.techniques)
    path = portfolio.write_portfolio(built, args.output)
    table = Table(title=f"portfolio of {len(built.recipes)} (coverage {built.provenance['coverage']:.2f}; best single "
                        f"recipe {built.provenance['best_single']['coverage']:.2f})")
    table.add_column("recipe")
    tasks = built.provenance["tasks"]
    for task in tasks:
        table.add_column(task, justify="right")
    for recipe in built.recipes:
        table.add_row(recipe.name, *(f"{v:.4f}" if (v := matrix.mean(t, recipe.name)) is not None else "—" for t in tasks))
    console.print(table)
    console.print(f"techniques that won a place: {', '.join(built.provenance['techniques_won']) or '—'}; not chosen: "
                  f"{', '.join(built.provenance['techniques_not_chosen']) or '—'}")
    console.print(f"portfolio written to [bold]{path}[/]; use it with `warm_start: {path}` in a study file")
    return 0


def _portfolio_evaluate(args) -> int:
    from autobert.strategy import portfolio
    from autobert.config.schema import load_study
    from autobert.run.device import select_device
    from autobert.run.pipeline import quiet_transformers

    select_device(args.device)
    quiet_transformers()
    problems, candidates = [], []
    for path in args.candidates:
        try:
            candidates += portfolio.load_recipes(path).recipes
        except ConfigError as exc:
            problems += [f"{path}: {p}" for p in exc.problems]
    for storage, name in args.from_study:
        try:
            candidates += portfolio.candidates_from_study(storage, name, args.top)
        except AutobertError as exc:
            problems.append(f"--from-study {storage} {name}: {exc}")
    tasks = []
    for path in args.tasks:
        try:
            tasks.append(load_study(path))
        except ConfigError as exc:
            problems += [f"{path}: {p}" for p in exc.problems]
    names = [c.name for c in candidates]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"candidate name(s) {', '.join(repeated)} given twice; rename them so each score has one owner")
    if not candidates and not problems:
        problems.append("no candidates: give --candidates FILE ... and/or --from-study STORAGE NAME")
    if problems:
        raise ConfigError("portfolio evaluate", problems)
    console.print(f"[bold]{len(candidates)}[/] candidate(s) x {len(tasks)} task(s) x {len(args.seeds)} seed(s); "
                  f"scores in {args.storage} (evaluation {args.name!r})")
    from autobert.study.portfolio import evaluate

    counts = evaluate(candidates, tasks, args.seeds, args.storage, name=args.name,
                      say=lambda m: console.print(m, markup=False, highlight=False))
    console.print(f"{counts['run']} run, {counts['stored']} already stored, {counts['skipped']} skipped, "
                  f"{counts['failed']} failed; choose a portfolio with `autobert portfolio build --storage "
                  f"{args.storage} --name {args.name} --size K --output FILE`")
    return 0 if not counts["failed"] else 1


COMMANDS = {"portfolio": cmd_portfolio, "search": cmd_search, "train": cmd_train, "best": cmd_best, "validate": cmd_validate, "plugins": cmd_plugins,
            "report": cmd_report, "cache": cmd_cache, "ablate": cmd_ablate}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return COMMANDS[args.command](args)
    except AutobertError as exc:
        err_console.print("[bold red]error:[/] ", end="")
        err_console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
