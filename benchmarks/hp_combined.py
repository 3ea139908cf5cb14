"""``Trainer.hyperparameter_search``'s winner, combined the way autobert combines: a seed soup and a seed ensemble.

The arm ``benchmarks/combine.py`` sets against autobert's combination. For one task and budget it reads the
winning recipe of ``search_strategy.py``'s stored cell (``docs/benchmarks/search_strategy-cells/<task>-hp-<budget>.json``:
learning rate, epochs, batch size; its ``seed`` is ignored) and, on the same sub-sampled splits (``write_splits(task,
500, ...)``, seed 1) and for each fresh seed ``s`` (100-104), trains ``M`` members with ``plain_trainer.train`` on the
seeds ``s + 1000 * j`` (``j = 0 .. M-1``). The ``j = 0`` member is the hyperparameter search arm's own single model
for ``s``; whether its test and validation accuracy equal the stored cell's is recorded (``reproduced``). Then:

* the soup: the uniform average of the members' weights (``autobert.run.inference.soup``), one model;
* the ensemble: the average of the members' softmax probabilities, ``M`` models.

Both are scored on validation and test, and timed (ms per 1,000 validation sentences, one core) and weighed (bytes
of weights on disk) once per cell.

Training order: the stored cell re-trained its winner on seeds 100, 101, ... one after the other in one process,
and ``from_pretrained`` draws the new classification head from torch's global generator *before* the Trainer seeds
it, so each model's head depends on the training before it. To give the ``j = 0`` members the same heads, they are
trained first, in seed order; the other members then each start from ``torch.manual_seed(their seed)``. (The first
fresh seed's head in the stored cell came after the search's last trial, which is not replayed: seed 100 is not
expected to reproduce.)

Each cell writes ``<out>/<task>-<budget>.json`` and is skipped when it exists; a budget whose stored recipe equals an
existing cell's of the same task copies that cell's figures (``same_recipe_as``) instead of training again::

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/hp_combined.py run --task mpqa --budget 300
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from _common import ROOT  # benchmarks/ is on sys.path when run as a script
from search_strategy import FRESH_SEEDS, MODEL, autobert_study, label_names, versions, write_splits

HP_CELLS = ROOT / "docs" / "benchmarks" / "search_strategy-cells"
OUT = ROOT / "docs" / "benchmarks" / "combine-hp-cells"
RECIPE_KEYS = ("learning_rate", "num_train_epochs", "per_device_train_batch_size")
MAX_LENGTH = 64  # plain_trainer's


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _frame(path: str):
    import pandas as pd

    return pd.read_csv(path, keep_default_na=False)  # as plain_trainer's load_dataset reads it


def _accuracy(probabilities, labels) -> float:
    return float((probabilities.argmax(axis=1) == labels).mean())


def run_cell(task: str, budget: float, members: int, seeds: list[int], train_rows: int, hp: dict) -> dict:
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import plain_trainer
    from autobert.heads import build_ensemble
    from autobert.run.inference import (Classifier, inference_ms_per_1000, model_size_bytes, plain_encoder,
                                        predict_probabilities, soup)
    from autobert.run.models import resolve_model
    from autobert.run.pipeline import quiet_transformers

    quiet_transformers()
    recipe = {k: hp["recipe"][k] for k in RECIPE_KEYS}
    stored = dict(zip(hp["seeds"], hp["test"]))
    stored_validation = dict(zip(hp["seeds"], hp["validation"]))
    work = Path(tempfile.mkdtemp(prefix=f"autobert-hp-combined-{task}-"))
    try:
        paths = write_splits(task, train_rows, work)
        model = resolve_model(autobert_study(task, paths, work, "probe"))
        n_labels = len(label_names(task))
        tokenizer = AutoTokenizer.from_pretrained(model)
        encoder = plain_encoder(tokenizer, MAX_LENGTH)
        splits = {s: _frame(paths[s]) for s in ("validation", "test")}
        texts = {s: [str(t) for t in f["text"]] for s, f in splits.items()}
        labels = {s: f["label"].to_numpy() for s, f in splits.items()}
        total = len(seeds) * members
        done = 0

        def train(seed: int, j: int) -> tuple[dict, Path]:
            nonlocal done
            folder = work / f"member-{seed}"
            if j > 0:
                torch.manual_seed(seed)  # this member's head from its own seed (see the module's docstring)
            result = plain_trainer.train(paths, model, recipe, seed=seed, save_to=str(folder), num_labels=n_labels)
            done += 1
            _say(f"{task} {int(budget)}: training {done}/{total} (fresh seed {seed - 1000 * j}, member {j}, "
                 f"seed {seed}): validation {100 * result['validation']:.2f}, test {100 * result['test']:.2f}, "
                 f"{result['seconds']:.0f} s")
            return result, folder

        def load(folder: Path):
            return AutoModelForSequenceClassification.from_pretrained(folder).eval()

        def scores(probabilities: dict) -> dict:
            return {s: _accuracy(p, labels[s]) for s, p in probabilities.items()}

        firsts = {s: train(s, 0) for s in seeds}  # in seed order: the stored cell's heads (see the docstring)
        rows, cost = [], {}
        for s in seeds:
            single, first = firsts[s]
            others = [train(s + 1000 * j, j) for j in range(1, members)]
            results = [single] + [r for r, _ in others]
            folders = [first] + [f for _, f in others]
            loaded = [load(f) for f in folders]
            probs = [{split: predict_probabilities(m, encoder, texts[split]) for split in texts} for m in loaded]
            member_scores = [scores(p) for p in probs]
            ensemble = scores({split: np.mean([p[split] for p in probs], axis=0) for split in texts})
            souped = soup(loaded)
            soup_scores = scores({split: predict_probabilities(souped, encoder, texts[split]) for split in texts})
            hp_test = stored.get(s)
            row = {"seed": s, "member_seeds": [s + 1000 * j for j in range(members)],
                   "single": {"test": single["test"], "validation": single["validation"]},
                   "soup": soup_scores, "ensemble": ensemble,
                   "members": [{"test": r["test"], "validation": r["validation"], "seconds": r["seconds"]}
                               for r in results],
                   # the members' probabilities scored here agree with what the Trainer scored
                   "rescored_match": all(abs(m["test"] - r["test"]) < 1e-12 and abs(m["validation"] - r["validation"]) < 1e-12
                                         for m, r in zip(member_scores, results)),
                   "train_seconds": sum(r["seconds"] for r in results),
                   "hp_test": hp_test, "hp_validation": stored_validation.get(s),
                   # the same model: test and validation accuracy both equal the stored cell's
                   "reproduced": hp_test is not None and single["test"] == hp_test
                                 and single["validation"] == stored_validation.get(s)}
            _say(f"{task} {int(budget)}: fresh seed {s}: single {100 * single['test']:.2f} (stored "
                 f"{'—' if hp_test is None else f'{100 * hp_test:.2f}'}, reproduced {row['reproduced']}), soup "
                 f"{100 * soup_scores['test']:.2f}, ensemble {100 * ensemble['test']:.2f}")
            rows.append(row)
            if not cost:  # once per cell: speed on one core and bytes on disk
                timed = texts["validation"]
                cpu = torch.device("cpu")
                as_classifier = lambda m, f: Classifier(model=m, tokenizer=tokenizer, label_names=[str(i) for i in range(n_labels)],
                                                        encoder=encoder, folder=f, device=cpu)
                soup_folder, ensemble_folder = work / "soup", work / "ensemble"
                souped.save_pretrained(soup_folder)
                joined = build_ensemble(loaded)
                joined.save_pretrained(ensemble_folder)
                cost = {
                    "single": {"inference_ms_per_1000": inference_ms_per_1000(as_classifier(loaded[0], first), timed),
                               "size_bytes": model_size_bytes(first)},
                    "soup": {"inference_ms_per_1000": inference_ms_per_1000(as_classifier(souped, soup_folder), timed),
                             "size_bytes": model_size_bytes(soup_folder)},
                    "ensemble": {"inference_ms_per_1000": inference_ms_per_1000(as_classifier(joined, ensemble_folder),
                                                                                timed),
                                 "size_bytes": model_size_bytes(ensemble_folder)},
                }
                _say(f"{task} {int(budget)}: ms per 1,000 sentences: single {cost['single']['inference_ms_per_1000']:.0f}, "
                     f"soup {cost['soup']['inference_ms_per_1000']:.0f}, ensemble "
                     f"{cost['ensemble']['inference_ms_per_1000']:.0f}; MB: soup {cost['soup']['size_bytes'] / 1e6:.0f}, "
                     f"ensemble {cost['ensemble']['size_bytes'] / 1e6:.0f}")
                del joined
            for f in folders:
                shutil.rmtree(f, ignore_errors=True)
            del loaded, souped
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def arm(name: str, split: str) -> list[float]:
        return [r[name][split] for r in rows]

    return {"task": task, "budget": budget, "members": members, "seeds": seeds, "train_rows": train_rows,
            "model": MODEL, "recipe": recipe, "hp_cell": str(Path(hp["_path"]).relative_to(ROOT)),
            "hp_test": [stored.get(s) for s in seeds], "hp_validation": [stored_validation.get(s) for s in seeds],
            "reproduced": [r["reproduced"] for r in rows],
            **{name: {"test": arm(name, "test"), "validation": arm(name, "validation")}
               for name in ("single", "soup", "ensemble")},
            "cost": cost, "per_seed": rows, "train_seconds": sum(r["train_seconds"] for r in rows)}


def _same_recipe(out: Path, task: str, budget: float, recipe: dict, members: int, seeds: list[int],
                 train_rows: int) -> dict | None:
    """A finished cell of ``task`` at another budget, trained (not copied) on the same recipe and protocol."""
    for path in sorted(out.glob(f"{task}-*.json")):
        cell = json.loads(path.read_text())
        if (cell.get("same_recipe_as") is None and cell["budget"] != budget and cell["recipe"] == recipe
                and cell["members"] == members and cell["seeds"] == seeds and cell["train_rows"] == train_rows):
            return cell
    return None


def cmd_run(args) -> int:
    out: Path = args.out
    path = out / f"{args.task}-{int(args.budget)}.json"
    if path.exists():
        print(f"{path} exists: skipped")
        return 0
    hp_path = HP_CELLS / f"{args.task}-hp-{int(args.budget)}.json"
    if not hp_path.exists():
        print(f"{hp_path} not found: run `search_strategy.py run --task {args.task} --system hp --budget "
              f"{int(args.budget)}` first", file=sys.stderr)
        return 1
    hp = {**json.loads(hp_path.read_text()), "_path": str(hp_path)}
    seeds = [int(s) for s in args.seeds.split(",")]
    recipe = {k: hp["recipe"][k] for k in RECIPE_KEYS}
    start = time.perf_counter()
    same = _same_recipe(out, args.task, args.budget, recipe, args.members, seeds, args.train_rows)
    if same is not None:
        source = f"{same['task']}-{int(same['budget'])}"
        _say(f"{args.task} {int(args.budget)}: the stored recipe is {source}'s: its figures copied, nothing trained")
        stored = dict(zip(hp["seeds"], zip(hp["test"], hp["validation"])))
        hp_scores = [stored.get(s, (None, None)) for s in seeds]
        row = {k: v for k, v in same.items() if k not in ("date", "versions", "command", "seconds")}
        row["per_seed"] = [{**r, "hp_test": t, "hp_validation": v,
                            "reproduced": t is not None and (r["single"]["test"], r["single"]["validation"]) == (t, v)}
                           for r, (t, v) in zip(same["per_seed"], hp_scores)]
        row.update(budget=args.budget, same_recipe_as=source, hp_cell=str(hp_path.relative_to(ROOT)),
                   hp_test=[t for t, _ in hp_scores], hp_validation=[v for _, v in hp_scores],
                   reproduced=[r["reproduced"] for r in row["per_seed"]])
    else:
        _say(f"{args.task} {int(args.budget)}: recipe {recipe}, {args.members} members per fresh seed, seeds {seeds}")
        row = run_cell(args.task, args.budget, args.members, seeds, args.train_rows, hp)
    row.update(date=date.today().isoformat(), versions=versions(), seconds=time.perf_counter() - start,
               command="python benchmarks/hp_combined.py " + " ".join(sys.argv[1:]))
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=1) + "\n")

    def ms(name: str) -> str:
        values = [100 * v for v in row[name]["test"]]
        return f"{statistics.fmean(values):.2f}" + (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "")

    _say(f"wrote {path}: test single {ms('single')}, soup {ms('soup')}, ensemble {ms('ensemble')}; reproduced "
         f"{row['reproduced']}; {row['seconds']:.0f} s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="one cell: a task and a budget of the stored hyperparameter search")
    run.add_argument("--task", required=True)
    run.add_argument("--budget", type=float, required=True)
    run.add_argument("--members", type=int, default=3, help="models per fresh seed (the first: the search's own)")
    run.add_argument("--seeds", default=",".join(map(str, FRESH_SEEDS)), help=argparse.SUPPRESS)
    run.add_argument("--train-rows", type=int, default=500, help=argparse.SUPPRESS)
    run.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.members < 2:
        parser.error("--members: at least 2 (one model is the single arm)")
    return {"run": cmd_run}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
