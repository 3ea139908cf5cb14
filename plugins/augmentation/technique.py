"""The ``augmentation`` technique: extend the training split with augmented copies.

Each trial draws ``augmentation.ratio``, the share of training rows to
augment (``0``: off, the data is left untouched), and, when it is above 0,
``augmentation.method``, one of the augmenters registered through the
``autobert_augmenters`` hook (the built-in ``eda``, ``contextual`` and,
once its two models are set, ``backtranslation`` techniques, and any
third-party one). The chosen augmenter then draws its own parameters.

``round(ratio * n)`` training rows, drawn with the trial's seed, are handed
to the augmenter; every new text becomes a new training row that copies its
source row (its label and any other column), so validation and test are
never touched. The new rows are an entry of kind ``augmentation`` in the
study's cache (``autobert cache ls``), the key hashing the method, its
:meth:`~autobert.augmenters.Augmenter.identity` (parameters,
settings, version), the ratio, the seed and the training data's
fingerprint: trials that differ elsewhere in their recipe augment once. The
cache publishes an entry whole or not at all; an entry that does not parse
is rebuilt, not served.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

from autobert import cache_key, hookimpl
from autobert.augmenters import registered_augmenters
from autobert.errors import TrialFailed

RATIO = "augmentation.ratio"
METHOD = "augmentation.method"
#: The default choices of ``augmentation.ratio``; a study picks a subset (``ratio: 0`` turns it off).
RATIOS = [0.0, 0.1, 0.25, 0.5, 1.0]
#: Bump when what a cache entry holds changes, so that old entries are not reused.
CACHE_VERSION = 2
#: The kind of the augmented rows' cache entries.
KIND = "augmentation"
ROWS = "rows.jsonl"

log = logging.getLogger(__name__)


@hookimpl
def autobert_search_space(space):
    unavailable: dict[str, str] = {}
    augmenters = registered(space.hooks, space.settings, unavailable)
    if not augmenters:
        return
    if space.suggest_categorical(RATIO, RATIOS) > 0:
        # A method that cannot run with the study's settings (back-translation without its models) is no choice;
        # a study file asking for it is refused with the method's own reason.
        method = space.suggest_categorical(METHOD, sorted(augmenters), unavailable=unavailable)
        augmenters[method].search_space(space)


@hookimpl
def autobert_ablation():
    # Off: the data untouched (every method at once). On: EDA on a quarter of the rows, the paper's settings.
    return {"off": {RATIO: 0.0},
            "on": {RATIO: 0.25, METHOD: "eda", "eda.alpha": "auto", "eda.copies": "auto"}}


@hookimpl
def autobert_trial_cost(params, train_rows, settings, hooks):
    ratio = params.get(RATIO, 0.0)
    augmenter = registered(hooks, settings).get(params.get(METHOD)) if ratio else None
    if augmenter is None:
        return None
    sources = min(train_rows, max(1, round(ratio * train_rows)))
    new_texts, work = augmenter.cost(params, train_rows)
    # The new rows are trained on in every epoch; making them happens once (and is cached).
    return {"augmented rows": sources * new_texts * float(params.get("finetune.epochs", 1)),
            "augmenting": sources * work}


# Last (declared, see docs/plugin_hooks.md#order): the new rows copy their source rows' columns, so every
# column other techniques add to the training split (knowledge's vectors, distillation's teacher logits)
# must be there first.
@hookimpl(trylast=True)
def autobert_modify_datasets(datasets, run):
    ratio = run.params.get(RATIO, 0.0)
    if not ratio:
        return
    from datasets import concatenate_datasets

    from autobert.services import fingerprint

    method = run.params[METHOD]
    augmenters = registered(run.hooks, run.settings)
    if method not in augmenters:
        raise TrialFailed(f"augmentation.method {method!r} is not a registered augmenter here (registered: "
                          f"{', '.join(sorted(augmenters)) or 'none'}); install or enable the technique that "
                          "provides it, and set the settings it needs")
    augmenter = augmenters[method]
    train = datasets["train"]
    texts, labels = list(train["text"]), list(train["label"])
    chosen = chosen_rows(len(texts), ratio, run.seed)
    key = rows_key(method, augmenter.identity(run), ratio, run.seed, fingerprint(texts, labels))
    run.metadata["augmentation"] = {"train_size": len(texts)}
    built = []

    def augment(folder: Path) -> None:
        start = time.perf_counter()
        outputs = augmenter.augment([texts[i] for i in chosen], [labels[i] for i in chosen], run, run.seed)
        seconds = time.perf_counter() - start
        if not isinstance(outputs, list) or len(outputs) != len(chosen):
            raise TrialFailed(f"augmenter {method!r} returned {type(outputs).__name__} of "
                              f"{len(outputs) if hasattr(outputs, '__len__') else '?'} items for {len(chosen)} texts; "
                              "it must return one list of new texts per input text")
        new_rows = [(i, text) for i, new in zip(chosen, outputs) for text in new
                    if isinstance(text, str) and text.strip() and text != texts[i]]
        write_entry(folder / ROWS, new_rows, {"method": method, "ratio": ratio, "seed": run.seed,
                                              "sources": len(chosen), "seconds": round(seconds, 3)})
        built.append(True)

    cache = run.cache
    description = {"method": method, "ratio": ratio, "seed": run.seed, "sources": len(chosen)}
    entry = cache.build(KIND, key, augment, description)
    rows = read_entry(entry / ROWS, len(texts))
    if rows is None:
        cache.discard(KIND, key)  # corrupt: rebuilt, not served
        entry = cache.build(KIND, key, augment, description)
        rows = read_entry(entry / ROWS, len(texts))
        if rows is None:
            raise TrialFailed(f"the augmented rows just written to {entry} cannot be read back; "
                              "check the cache folder's disk")
    run.metadata["augmentation"].update(method=method, rows=len(rows), cached=not built, entry=str(entry))
    if not rows:
        return
    sources = [i for i, _ in rows]
    extra = train.select(sources).remove_columns(["text"]).add_column("text", [t for _, t in rows])
    datasets["train"] = concatenate_datasets([train, extra.select_columns(train.column_names)])


# --------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------


def registered(hooks: Any, settings: dict[str, Any], unavailable: dict[str, str] | None = None) -> dict[str, Any]:
    """``{name: augmenter}`` from every plugin's ``autobert_augmenters(settings)`` (see
    :func:`autobert.augmenters.registered_augmenters`); methods that cannot run go to ``unavailable``."""
    return registered_augmenters(hooks, settings, unavailable)


# --------------------------------------------------------------------------
# Rows and the cache
# --------------------------------------------------------------------------


def chosen_rows(n: int, ratio: float, seed: int) -> list[int]:
    """The training rows to augment: ``round(ratio * n)`` of them (at least one), in row order."""
    k = min(n, max(1, round(ratio * n)))
    return sorted(random.Random(f"augmentation-{seed}").sample(range(n), k))


def rows_key(method: str, identity: dict, ratio: float, seed: int, train_fingerprint: str) -> str:
    """The cache key of the rows ``method`` makes: everything they depend on."""
    return cache_key({"version": CACHE_VERSION, "method": method, "identity": identity, "ratio": ratio, "seed": seed,
                      "train": train_fingerprint})


def write_entry(path: Path, rows: list[tuple[int, str]], header: dict) -> None:
    """Write ``rows`` as JSON lines after a header line (into the cache's staging folder: published whole)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({**header, "rows": len(rows)}) + "\n")
        for source, text in rows:
            f.write(json.dumps([source, text]) + "\n")


def read_entry(path: Path, n_train: int) -> list[tuple[int, str]] | None:
    """The cached rows, or ``None`` when the entry is missing or does not hold what its header says."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    try:
        header = json.loads(lines[0])
        rows = [tuple(json.loads(line)) for line in lines[1:]]
        if len(rows) != header["rows"] or not all(
            len(r) == 2 and isinstance(r[0], int) and 0 <= r[0] < n_train and isinstance(r[1], str) for r in rows
        ):
            raise ValueError("rows do not match the header")
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        log.warning("augmentation cache entry %s is corrupt (%s); rebuilding it", path, exc)
        return None
    return rows
