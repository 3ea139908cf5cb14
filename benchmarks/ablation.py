"""Ablation of the SST-2 winner of benchmarks/run.py: which of its techniques earned their place.

docs/benchmarks/run.md's autobert winner carried EDA on a quarter of the rows, LLRD 0.98 and two
re-initialised layers. This script rebuilds that recipe exactly and runs `autobert ablate` on it:

1. writes the benchmark's data (SST-2: 1,000 training sentences sampled with seed 0, all 872
   validation and 1,821 test sentences, as run.py does) under ``runs/ablation-sst2/``;
2. rebuilds the winning recipe: it was the search's first trial, a random start-up draw of the
   TPE sampler with seed 0 over ``benchmarks/sst2-benchmark.yaml``, so drawing trial 0 again gives
   its parameters to full precision (checked against the 3 digits run.md prints);
3. writes it as the frozen config ``benchmarks/sst2-winner.yaml`` (data, cache and trial folders
   under ``runs/ablation-sst2/``);
4. unless ``--prepare-only``: runs
   ``autobert ablate benchmarks/sst2-winner.yaml --seeds 100,101,102,103,104 --test --output runs/ablation-sst2/ablation``
   (the fresh seeds run.py re-trains winners on) and copies its table and forest plot to
   ``docs/benchmarks/ablation.md`` and ``docs/benchmarks/ablation-forest.png``. A stopped run resumes where it was.

Expect about 40 minutes on one CPU core: 4 arms (full, without augmentation, without llrd, without
reinit) x 5 seeds, each about 100 s (run.md: 520 s to re-train the winner on 5 seeds) plus scoring the test split.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import time
from datetime import date
from pathlib import Path

import optuna
import yaml

import autobert
from autobert.config.schema import StudyConfig, dump_yaml, relocate, write_atomic
from autobert.run.data import load_task_data
from autobert.run.pipeline import draw_params, quiet_transformers
from autobert.run.plugin_manager import get_plugin_manager
from autobert.study.search import frozen_config, make_sampler

from _common import ROOT, SST2, sample  # benchmarks/_common.py (scripts run with benchmarks/ on sys.path)

STUDY_FILE = Path(__file__).with_name("sst2-benchmark.yaml")
WINNER = Path(__file__).with_name("sst2-winner.yaml")
WORK = ROOT / "runs" / "ablation-sst2"
SEEDS = [100, 101, 102, 103, 104]
# docs/benchmarks/run.md's winning recipe, as printed there (3 significant digits).
PRINTED = {"augmentation.ratio": 0.25, "eda.alpha": 0.3, "finetune.epochs": 2, "finetune.learning_rate": 0.000179,
           "finetune.warmup_ratio": 0.114, "finetune.weight_decay": 0.0926, "llrd.decay": 0.978, "pooling.kind": "cls",
           "reinit.layers": 2}
SEARCH_VALUE = 0.837  # its validation accuracy in the search, as run.md prints it


def _close(a, b) -> bool:
    if isinstance(b, float) and not isinstance(a, bool):
        return float(f"{float(a):.3g}") == b
    return a == b


def prepare(work: Path = WORK) -> Path:
    """Write the data and ``benchmarks/sst2-winner.yaml``; return its path."""
    work.mkdir(parents=True, exist_ok=True)
    # Relative to the work folder (the study's base), so that the frozen config's paths are relative too.
    data = {"train": Path(sample("train", 1000, work)).name, "validation": Path(sample("validation", 0, work)).name,
            "test": Path(sample("test", 0, work)).name, "label_names": ["negative", "positive"]}
    space = yaml.safe_load(STUDY_FILE.read_text(encoding="utf-8"))
    study = StudyConfig.model_validate({**space, "name": "autobert", "data": data, "pruner": space["pruner"],
                                        "base_dir": work})
    pm = get_plugin_manager(only=list(space["techniques"]))
    opened = optuna.create_study(sampler=make_sampler(study), direction=study.direction)
    trial = opened.ask()
    params = draw_params(study, trial, pm)
    wrong = {k: (params.get(k), v) for k, v in PRINTED.items() if not _close(params.get(k), v)}
    if wrong:
        raise SystemExit(f"trial 0 drawn again does not match run.md's winner: {wrong}; the sampler or a "
                         "technique's space changed since that run")
    opened.tell(trial, SEARCH_VALUE)
    frozen = frozen_config(study, pm, load_task_data(study), opened.trials[0], WINNER.parent)
    raw = relocate(frozen, WINNER.parent)
    raw["output_dir"] = str(Path("..") / work.relative_to(ROOT) / "trials")
    raw["cache_dir"] = str(Path("..") / work.relative_to(ROOT) / "cache")
    header = ("# The SST-2 winner of benchmarks/run.py (docs/benchmarks/run.md): trial 0 of its autobert search,\n"
              "# rebuilt by benchmarks/ablation.py (which also writes the data under runs/ablation-sst2/).\n"
              "# Ablate it: autobert ablate benchmarks/sst2-winner.yaml --seeds 100,101,102,103,104 --test "
              "--output runs/ablation-sst2/ablation\n")
    write_atomic(WINNER, header + dump_yaml(raw))
    return WINNER


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare-only", action="store_true", help="write the data and the frozen config, do not train")
    args = parser.parse_args()
    if not SST2.exists():
        print(f"SST-2 not found at {SST2}; this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    quiet_transformers()
    winner = prepare()
    command = ["ablate", str(winner.relative_to(ROOT)), "--seeds", ",".join(map(str, SEEDS)), "--test",
               "--output", str((WORK / "ablation").relative_to(ROOT))]
    print(f"wrote {winner}; the ablation: autobert {' '.join(command)}")
    if args.prepare_only:
        return 0
    from autobert.cli import main as autobert

    started = time.perf_counter()
    code = autobert(command)
    if code != 0:
        return code
    out = WORK / "ablation"
    import torch

    docs = ROOT / "docs" / "benchmarks"
    shutil.copyfile(out / "forest.png", docs / "ablation-forest.png")
    table = (out / "ablation.md").read_text(encoding="utf-8").replace("](forest.png)", "](ablation-forest.png)")
    lines = [
        f"Run on {date.today():%Y-%m-%d}: autobert {autobert_version()}, torch {torch.__version__}, "
        f"optuna {optuna.__version__}, Python {platform.python_version()}; {platform.machine()}, "
        f"{torch.get_num_threads()} torch thread(s). Whole run: {(time.perf_counter() - started) / 60:.0f} min.",
        f"Command: `python benchmarks/ablation.py` (= `autobert {' '.join(command)}`).",
        "Data: as benchmarks/run.py (SST-2, 1,000 training sentences sampled with seed 0, 872 validation, 1,821 test); "
        "encoder all-MiniLM-L6-v2, max length 64.",
        "",
    ]
    head, _, rest = table.partition("\n\n")
    (docs / "ablation.md").write_text(head + "\n\n" + "\n".join(lines) + rest, encoding="utf-8")
    print(f"wrote {docs / 'ablation.md'}; add the reading by hand")
    return 0


def autobert_version() -> str:
    return autobert.__version__


if __name__ == "__main__":
    sys.exit(main())
