"""The Hugging Face Hub model card (``README.md``) that ``autobert train`` writes beside the model.

YAML metadata the Hub reads (``library_name``, ``pipeline_tag``,
``base_model``, ``tags``, ``model-index`` with the study's metric on
validation and test), then the recipe one technique per line, how to load
the model, the data fingerprints and the versions it was trained with. The
metadata is built with ``huggingface_hub``'s own ``ModelCardData`` and
``EvalResult``, so it has the shape the Hub validates.
"""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from autobert.config.schema import FrozenConfig, HubSource, load_yaml, write_atomic
from autobert.config.space import format_value
from autobert.run.models import resolve_model

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def base_model(frozen: FrozenConfig) -> str | None:
    """The Hub id the recipe started from: the study's ``model`` when it is one, else what its folder's own card says."""
    if not frozen.model.startswith("package:") and HUB_ID.match(frozen.model) and not frozen.resolve_path(frozen.model).exists():
        return frozen.model
    try:
        card = Path(resolve_model(frozen)) / "README.md"
        text = card.read_text(encoding="utf-8") if card.is_file() else ""
    except Exception:  # an uninstalled package: the card simply has no base model
        return None
    match = re.match(r"^---\n(.*?)\n---", text, re.S)
    found = (load_yaml(match.group(1)) or {}).get("base_model") if match else None
    if isinstance(found, list):
        found = found[0] if found else None
    return found if isinstance(found, str) and HUB_ID.match(found) else None


def _dataset(frozen: FrozenConfig) -> tuple[str, str, str | None]:
    """``(type, name, config)`` of the training data for the model index."""
    train = frozen.data.train
    if isinstance(train, HubSource):
        return train.hub, train.hub, train.config
    return "custom", Path(str(train)).parent.name or frozen.name, None


def _needs_remote_code(folder: Path) -> tuple[bool, bool]:
    """Whether loading needs ``trust_remote_code`` (a head saved with its code), and whether it needs knowledge vectors."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, False
    return bool(config.get("auto_map")), "knowledge_dim" in config


def _versions(frozen: FrozenConfig) -> dict[str, str]:
    import platform

    versions = {"autobert": frozen.provenance.autobert_version}
    for package in ("transformers", "torch", "datasets", "optuna", "huggingface_hub"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    versions["python"] = platform.python_version()
    return versions


def _combination_lines(metrics: dict[str, Any]) -> list[str]:
    """The model card's section on a soup, an ensemble or an averaged run: its members, cost and size."""
    kind, members = metrics["kind"], metrics.get("members") or []
    what = {
        "soup": "one model whose weights are the average of its members' (a model soup, Wortsman et al. 2022): it "
                "costs what one model costs to run",
        "checkpoints": f"one model whose weights are its run's averaged over its last {metrics.get('checkpoints')} "
                       "checkpoints (the tail of training, as stochastic weight averaging): it costs what one model "
                       "costs to run",
        "ensemble": "an ensemble: the model runs every member and averages their class probabilities with the weights "
                    "below (Caruana ensemble selection on the validation split)",
    }[kind]
    lines = ["", "## Combination", "", f"This is {what}. {len(members)} member(s), each the recipe of a search trial "
             "trained on a seed:", "", "| trial | seed | weight | validation |", "|---|---|---|---|"]
    metric = metrics.get("metric")
    for member in members:
        value = (member.get("validation") or {}).get(metric)
        lines.append(f"| {member['trial']} | {member['seed']} | {member['weight']:.3f} | "
                     + (f"{value:.4f} |" if value is not None else " |"))
    facts = [f"training time {metrics.get('seconds', 0):.0f} s (every member)"]
    if metrics.get("inference_ms_per_1000") is not None:
        facts.append(f"inference {metrics['inference_ms_per_1000']:.0f} ms per 1,000 sentences on the machine that "
                     "trained it")
    if metrics.get("size_bytes") is not None:
        facts.append(f"{metrics['size_bytes'] / 1e6:.1f} MB on disk")
    return lines + ["", "; ".join(facts).capitalize() + "."]


def render(folder: Path, frozen: FrozenConfig, metrics: dict[str, Any]) -> str:
    """The model card's text for the model saved in ``folder`` (``metrics`` is what metrics.json holds)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    metric = frozen.metric
    seeds = metrics.get("seeds") or frozen.run_seeds
    dataset_type, dataset_name, dataset_config = _dataset(frozen)
    results = []
    for split in ("validation", "test"):
        values = metrics.get(split) or {}
        if metric in values:
            results.append(EvalResult(
                task_type="text-classification", task_name="Text Classification", dataset_type=dataset_type,
                dataset_name=dataset_name, dataset_config=dataset_config, dataset_split=split, metric_type=metric,
                metric_value=round(float(values[metric]), 6), metric_name=f"{split} {metric}"
                + (f" (seed {seeds[0]}, the saved model)" if len(seeds) > 1 else "")))
        spread = (metrics.get(f"{split}_mean_std") or {}).get(metric)
        if spread and len(seeds) > 1:
            results.append(EvalResult(
                task_type="text-classification", task_name="Text Classification", dataset_type=dataset_type,
                dataset_name=dataset_name, dataset_config=dataset_config, dataset_split=split, metric_type=metric,
                metric_value=round(float(spread[0]), 6),
                metric_name=f"{split} {metric}, mean of {len(seeds)} seeds (std {spread[1]:.4f})"))
    base = base_model(frozen)
    techniques = sorted({name.split(".", 1)[0] for name in frozen.params})
    data = ModelCardData(
        library_name="transformers", pipeline_tag="text-classification", base_model=base,
        tags=["autobert", "text-classification", *techniques], model_name=frozen.name, eval_results=results or None,
    )
    remote, knowledge = _needs_remote_code(folder)
    lines = [f"# {frozen.name}", "",
             f"A text classifier fine-tuned by autobert with the recipe "
             f"of trial {frozen.provenance.trial} of the study `{frozen.provenance.study}` "
             f"({metric} {format_value(frozen.provenance.value, digits=6)} in the search), "
             + (f"starting from [`{base}`](https://huggingface.co/{base})." if base else
                f"starting from `{frozen.model}` (not a Hub id: add `base_model:` above before uploading)."),
             "", "## Results", "", f"| split | {metric} (this model, seed {seeds[0]}) |"
             + (f" mean ± std over {len(seeds)} seeds |" if len(seeds) > 1 else ""),
             "|---|---|" + ("---|" if len(seeds) > 1 else "")]
    for split in ("validation", "test"):
        values = metrics.get(split) or {}
        if metric not in values:
            continue
        row = f"| {split} | {values[metric]:.4f} |"
        spread = (metrics.get(f"{split}_mean_std") or {}).get(metric)
        if len(seeds) > 1:
            row += f" {spread[0]:.4f} ± {spread[1]:.4f} |" if spread else " |"
        lines.append(row)
    if len(seeds) > 1 and metrics.get("seed_values"):
        per_seed = ", ".join(f"seed {s}: {format_value(v, digits=6)}" for s, v in metrics["seed_values"].items())
        aggregate = format_value(metrics.get("value"), digits=6)
        lines += ["", f"Validation {metric} per seed: {per_seed} ({frozen.aggregate}: {aggregate})."]
    if metrics.get("kind") in ("soup", "ensemble", "checkpoints"):
        lines += _combination_lines(metrics)
    lines += ["", "## Recipe", "", "One technique per line, as `autobert train` replays it "
              f"(precision {frozen.precision}, max_length {frozen.max_length}, seeds {', '.join(map(str, seeds))}):", ""]
    by_technique: dict[str, list[str]] = {}
    for name, value in sorted(frozen.params.items()):
        technique, short = name.split(".", 1)
        by_technique.setdefault(technique, []).append(f"{short}={format_value(value, digits=6)}")
    lines += [f"- **{t}**: {', '.join(v)}" for t, v in by_technique.items()]
    load = ', trust_remote_code=True' if remote else ''
    lines += ["", "## How to use it", "", "```python",
              "from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline", "",
              f'model = AutoModelForSequenceClassification.from_pretrained("MODEL"{load})',
              'tokenizer = AutoTokenizer.from_pretrained("MODEL")']
    if knowledge:
        lines += ["# every call needs the knowledge vectors, one per text (see `knowledge_dim` in config.json):",
                  'logits = model(**tokenizer(texts, padding=True, return_tensors="pt"), knowledge_vectors=vectors).logits',
                  "```"]
    else:
        lines += [f'classifier = pipeline("text-classification", model="MODEL"{load})',
                  'print(classifier("a gripping, beautifully acted film"))', "```"]
    lines += ["", "`MODEL` is this folder, or its Hub id once uploaded."
              + (" `trust_remote_code=True` loads the classification head's code, saved beside the weights "
                 "(it needs only torch and transformers)." if remote else "")]
    lines += ["", "## Data", "", "Fingerprints of the splits the recipe was found on (autobert refuses to replay it "
              "on other data unless told to):", "", "| split | fingerprint |", "|---|---|"]
    lines += [f"| {split} | `{fp}` |" for split, fp in sorted(frozen.provenance.data_fingerprint.items())]
    lines += ["", "## Versions", "", "| package | version |", "|---|---|"]
    lines += [f"| {name} | {version} |" for name, version in _versions(frozen).items()]
    plugins = ", ".join(f"{name} ({source})" for name, source in sorted(frozen.provenance.plugins.items()))
    lines += ["", f"Techniques installed when the recipe was found: {plugins}.", ""]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def write_model_card(folder: Path, frozen: FrozenConfig, metrics: dict[str, Any]) -> Path:
    """Write ``folder/README.md`` atomically; return its path."""
    path = Path(folder) / "README.md"
    write_atomic(path, render(Path(folder), frozen, metrics))
    return path


__all__ = ["write_model_card", "render", "base_model"]
