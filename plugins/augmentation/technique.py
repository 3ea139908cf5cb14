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
never touched. The new rows are cached under
``<run.cache_dir>/augmentation/<key>.jsonl``, the key hashing the method, its
:meth:`~autobert.plugins.augmentation.Augmenter.identity` (parameters,
settings, version), the ratio, the seed and the training data's
fingerprint: trials that differ elsewhere in their recipe augment once. An
entry is written to a temporary file and renamed, so a reader never sees half
of one; an entry that does not parse is rebuilt, not served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from autobert import hookimpl
from autobert.errors import PluginError, TrialFailed

RATIO = "augmentation.ratio"
METHOD = "augmentation.method"
#: The default choices of ``augmentation.ratio``; a study picks a subset (``ratio: 0`` turns it off).
RATIOS = [0.0, 0.1, 0.25, 0.5, 1.0]
#: Bump when what a cache entry holds changes, so that old entries are not reused.
CACHE_VERSION = 1

log = logging.getLogger(__name__)


@hookimpl
def autobert_search_space(space):
    augmenters = registered(space.hooks, space.settings, space.techniques)
    if not augmenters:
        return
    if space.suggest_categorical(RATIO, RATIOS) > 0:
        method = space.suggest_categorical(METHOD, sorted(augmenters))
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


@hookimpl
def autobert_modify_datasets(datasets, run):
    ratio = run.params.get(RATIO, 0.0)
    if not ratio:
        return
    from datasets import concatenate_datasets

    from autobert.data import fingerprint

    method = run.params[METHOD]
    augmenters = registered(run.hooks, run.settings, _installed_enabled(run))
    if method not in augmenters:
        raise TrialFailed(f"augmentation.method {method!r} is not a registered augmenter here (registered: "
                          f"{', '.join(sorted(augmenters)) or 'none'}); install or enable the technique that "
                          "provides it, and set the settings it needs")
    augmenter = augmenters[method]
    train = datasets["train"]
    texts, labels = list(train["text"]), list(train["label"])
    chosen = chosen_rows(len(texts), ratio, run.seed)
    key = cache_key(method, augmenter.identity(run), ratio, run.seed, fingerprint(texts, labels))
    entry = run.cache_dir / "augmentation" / f"{key}.jsonl"
    rows = read_entry(entry, len(texts))
    cached = rows is not None
    run.metadata["augmentation"] = {"train_size": len(texts)}
    if rows is None:
        start = time.perf_counter()
        outputs = augmenter.augment([texts[i] for i in chosen], [labels[i] for i in chosen], run, run.seed)
        seconds = time.perf_counter() - start
        if not isinstance(outputs, list) or len(outputs) != len(chosen):
            raise TrialFailed(f"augmenter {method!r} returned {type(outputs).__name__} of "
                              f"{len(outputs) if hasattr(outputs, '__len__') else '?'} items for {len(chosen)} texts; "
                              "it must return one list of new texts per input text")
        rows = [(i, text) for i, new in zip(chosen, outputs) for text in new
                if isinstance(text, str) and text.strip() and text != texts[i]]
        write_entry(entry, rows, {"method": method, "ratio": ratio, "seed": run.seed, "sources": len(chosen),
                                  "seconds": round(seconds, 3)})
    run.metadata["augmentation"].update(method=method, rows=len(rows), cached=cached, entry=str(entry))
    if not rows:
        return
    sources = [i for i, _ in rows]
    extra = train.select(sources).remove_columns(["text"]).add_column("text", [t for _, t in rows])
    datasets["train"] = concatenate_datasets([train, extra.select_columns(train.column_names)])


# --------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------


def registered(hooks: Any, settings: dict[str, Any], techniques: Any = ()) -> dict[str, Any]:
    """``{name: augmenter}`` from every plugin's ``autobert_augmenters(settings)``.

    ``hooks`` is the plugin manager's relay (``space.hooks``, ``run.hooks``);
    without one (a space or run built outside a plugin manager), the installed
    techniques among ``techniques`` are asked.

    Raises:
        PluginError: two plugins register the same name, or a value is no augmenter.
    """
    from autobert.plugins.augmentation import Augmenter

    if hooks is None:
        hooks = _installed_hooks(frozenset(techniques))
    found: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for impl in hooks.autobert_augmenters.get_hookimpls():
        answer = impl.function(*[{"settings": settings}[arg] for arg in impl.argnames])
        for name, augmenter in (answer or {}).items():
            if name in found:
                raise PluginError(f"techniques {owners[name]!r} and {impl.plugin_name!r} both register the augmenter "
                                  f"{name!r}; disable one of them (disable: [{impl.plugin_name}])")
            if not isinstance(augmenter, Augmenter):
                raise PluginError(f"technique {impl.plugin_name!r} registers {name!r} as {type(augmenter).__name__}; "
                                  "an augmenter must subclass autobert.plugins.augmentation.Augmenter")
            found[name], owners[name] = augmenter, impl.plugin_name
    return found


@lru_cache(maxsize=8)
def _installed_hooks(techniques: frozenset[str]) -> Any:
    from autobert.plugin_manager import available_technique_names, get_plugin_manager

    return get_plugin_manager(only=sorted(techniques & set(available_technique_names()))).hook


def _installed_enabled(run) -> frozenset[str]:
    from autobert.plugin_manager import available_technique_names

    return frozenset(available_technique_names()) - set(getattr(run.study, "disable", ()) or ())


# --------------------------------------------------------------------------
# Rows and the cache
# --------------------------------------------------------------------------


def chosen_rows(n: int, ratio: float, seed: int) -> list[int]:
    """The training rows to augment: ``round(ratio * n)`` of them (at least one), in row order."""
    k = min(n, max(1, round(ratio * n)))
    return sorted(random.Random(f"augmentation-{seed}").sample(range(n), k))


def cache_key(method: str, identity: dict, ratio: float, seed: int, train_fingerprint: str) -> str:
    described = {"version": CACHE_VERSION, "method": method, "identity": identity, "ratio": ratio, "seed": seed,
                 "train": train_fingerprint}
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def write_entry(path: Path, rows: list[tuple[int, str]], header: dict) -> None:
    """Write ``rows`` as JSON lines after a header line, atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps({**header, "rows": len(rows)}) + "\n")
            for source, text in rows:
                f.write(json.dumps([source, text]) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
