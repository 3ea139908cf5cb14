"""Writing an ablation down: the console table, ``ablation.md``, ``ablation.json``, ``forest.png``, ``recommended.yaml``;
and finding a stored one again (the study report shows it). Light: no torch at import.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from autobert.ablation.stats import HELPS, HURTS, NO_EVIDENCE
from autobert.config.schema import dump_yaml, relocate, write_atomic

if TYPE_CHECKING:
    from autobert.ablation.runner import Ablation


# ---------------------------------------------------------------------------
# Writing it down
# ---------------------------------------------------------------------------


def _pm(value: float, digits: int = 4) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:+.{digits}f}"


def _ci(ci: list[float]) -> str:
    low, high = ci
    return "—" if not (math.isfinite(low) and math.isfinite(high)) else f"[{low:+.4f}, {high:+.4f}]"


def _p(p: float) -> str:
    return "—" if p is None or not math.isfinite(p) else f"{p:.3f}"


def _seconds(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:+.1f} s"


HEAD = ["technique", "switched", "Δ {metric} (with − without)", "95 % CI", "Wilcoxon p", "extra time / seed", "verdict"]


def table_rows(ablation: Ablation) -> list[list[str]]:
    rows = []
    for row in ablation.rows:
        name = row["technique"] + (" (added)" if row["kind"] == "added" else "")
        cells = [name, row["switched"], _pm(row["mean_difference"]), _ci(row["ci95"]), _p(row["wilcoxon_p"]),
                 _seconds(row["extra_seconds"]), row["verdict"]]
        if ablation.evaluate_test:
            test = row.get("test") or {}
            cells += [_pm(test.get("mean_difference", math.nan)), _ci(test.get("ci95", [math.nan, math.nan]))]
        rows.append(cells)
    return rows


def _head(ablation: Ablation) -> list[str]:
    head = [h.format(metric=ablation.frozen.metric) for h in HEAD]
    if ablation.evaluate_test:
        head += [f"test Δ {ablation.frozen.metric} (not used for the verdict)", "test 95 % CI"]
    return head


def rich_table(ablation: Ablation):
    from rich.table import Table

    f = ablation.frozen
    table = Table(title=f"ablation of trial {f.provenance.trial} of {f.provenance.study}: {f.metric} ({f.direction}) "
                        f"on seeds {', '.join(map(str, ablation.seeds))}",
                  caption=_caption(ablation))
    short = ["technique", "switched", f"Δ {f.metric}", "95 % CI", "Wilcoxon p", "time / seed", "verdict"]
    if ablation.evaluate_test:
        short += [f"test Δ {f.metric}", "test 95 % CI"]
    for i, column in enumerate(short):
        table.add_column(column, justify="left" if i in (0, 1, 6) else "right")
    style = {HELPS: "green", HURTS: "red"}
    for cells, row in zip(table_rows(ablation), ablation.rows):
        cells = list(cells)
        if row["verdict"] in style:
            cells[6] = f"[{style[row['verdict']]}]{cells[6]}[/]"
        table.add_row(*cells)
    return table


def _caption(ablation: Ablation) -> str:
    full = ablation.arms[0]
    values = [full.seeds[str(s)]["value"] for s in ablation.seeds if str(s) in full.seeds]
    parts = ["Δ: mean over seed pairs of (with the technique − without it); 95 % t interval; time: extra seconds per seed"
             + ("; test: scored on the test split, not used for the verdict" if ablation.evaluate_test else "")]
    if values:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        parts.append(f"full recipe: {statistics.fmean(values):.4f} ± {sd:.4f} over {len(values)} seeds")
    if ablation.not_ablatable:
        parts.append("not ablatable: " + "; ".join(f"{t} ({r})" for t, r in sorted(ablation.not_ablatable.items())))
    if not ablation.complete:
        parts.append("INCOMPLETE: some arms have not finished every seed; run the same command to finish them")
    return "\n".join(parts)


def markdown(ablation: Ablation) -> str:
    f = ablation.frozen
    head = _head(ablation)
    lines = [
        f"# Ablation of trial {f.provenance.trial} of `{f.provenance.study}`",
        "",
        f"Recipe: `{ablation.recipe_path}`. Metric: validation {f.metric} ({f.direction}). "
        f"Seeds: {', '.join(map(str, ablation.seeds))}; every arm trains on each, so differences are paired "
        "(same seed: same initialisation and data order).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i in (0, 1, 6) else "---:" for i in range(len(head))) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in table_rows(ablation)]
    if not ablation.rows:
        lines.append("| (the recipe uses no technique that can be switched off) |" + " |" * (len(head) - 1))
    lines += ["", "Δ is the mean over seed pairs of (with the technique − without it); the interval is the 95 % t "
              f"interval over the {len(ablation.seeds)} pairs. Verdict: *helps* / *hurts* when the interval excludes "
              "zero, else *no evidence at this many seeds*. The Wilcoxon signed-rank p (two-sided) cannot go below "
              f"{2 / 2 ** len(ablation.seeds):.4g} with {len(ablation.seeds)} seeds. Extra time: mean wall-time "
              "difference per seed (cached stages make a repeated arm cheaper).", ""]
    lines.append("## Per seed")
    lines.append("")
    lines.append("| arm | " + " | ".join(f"seed {s}" for s in ablation.seeds) + " | mean | time / seed |")
    lines.append("|---|" + "---:|" * (len(ablation.seeds) + 2))
    for result in ablation.arms:
        cells = [f"{result.seeds[str(s)]['value']:.4f}" if str(s) in result.seeds else "—" for s in ablation.seeds]
        have = [result.seeds[str(s)] for s in ablation.seeds if str(s) in result.seeds]
        mean = f"{statistics.fmean(r['value'] for r in have):.4f}" if have else "—"
        secs = f"{statistics.fmean(r['seconds'] for r in have):.1f} s" if have else "—"
        lines.append(f"| {result.arm.name} | " + " | ".join(cells) + f" | {mean} | {secs} |")
    lines.append("")
    if ablation.not_ablatable:
        lines += ["## Not ablatable", ""]
        lines += [f"- `{t}`: {r}" for t, r in sorted(ablation.not_ablatable.items())]
        lines.append("")
    if ablation.recommended is not None:
        lines += ["## Recommended recipe", ""]
        if ablation.dropped:
            lines.append(f"`recommended.yaml`: the recipe without {', '.join(f'`{d}`' for d in ablation.dropped)} "
                         "(no evidence that they help at this many seeds). The combination itself was not trained: "
                         "`autobert train recommended.yaml --seeds ...` checks it.")
        else:
            lines.append("`recommended.yaml`: the full recipe; every technique it uses showed evidence of helping.")
        lines.append("")
    lines += ["![forest plot](forest.png)", ""]
    return "\n".join(lines)


def forest_plot(ablation: Ablation) -> bytes | None:
    """Difference ± 95 % CI per technique, as PNG bytes (None without rows)."""
    if not ablation.rows:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = ablation.rows
    colour = {HELPS: "tab:green", HURTS: "tab:red", NO_EVIDENCE: "tab:gray"}
    fig, ax = plt.subplots(figsize=(7, 0.55 * len(rows) + 1.6))
    for i, row in enumerate(reversed(rows)):
        low, high = row["ci95"]
        mean = row["mean_difference"]
        if math.isfinite(low) and math.isfinite(high):
            ax.plot([low, high], [i, i], color=colour[row["verdict"]], linewidth=2)
        ax.plot([mean], [i], "o", color=colour[row["verdict"]])
        ax.scatter(row["differences"], [i] * len(row["differences"]), s=12, color="black", alpha=0.4, zorder=3)
    ax.axvline(0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r['technique']}{' (added)' if r['kind'] == 'added' else ''}\n{r['verdict']}"
                        for r in reversed(rows)], fontsize=8)
    ax.set_xlabel(f"Δ validation {ablation.frozen.metric}, with − without (dots: seed pairs; bar: 95 % CI)")
    ax.set_title(f"Ablation of trial {ablation.frozen.provenance.trial} of {ablation.frozen.provenance.study}, "
                 f"{len(ablation.seeds)} seeds", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def write_outputs(ablation: Ablation, output: Path) -> dict[str, Path]:
    """Write ``ablation.json``, ``ablation.md``, ``forest.png`` and ``recommended.yaml`` into ``output``."""
    output = Path(output)
    written = {}
    if ablation.recommended is not None:
        written["recommended"] = output / "recommended.yaml"
        raw = relocate(ablation.recommended, output)
        raw["provenance"].setdefault("value", None)  # not trained in the search (dropped as None by the dump)
        write_atomic(written["recommended"], dump_yaml(raw))
    png = forest_plot(ablation)
    if png is not None:
        written["forest"] = output / "forest.png"
        written["forest"].write_bytes(png)
    written["json"] = output / "ablation.json"
    write_atomic(written["json"], json.dumps(_finite(ablation.to_json()), indent=2, default=_json_default) + "\n")
    written["markdown"] = output / "ablation.md"
    write_atomic(written["markdown"], markdown(ablation))
    return written


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` (JSON has no NaN; one seed gives no interval)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def find_ablation(folder: Path, study: str, trial: int, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The newest ``ablation.json`` under ``folder`` (one level down) for this study's trial and recipe."""
    candidates = sorted(Path(folder).glob("*/ablation.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if found.get("study") == study and found.get("trial") == trial and found.get("params") == dict(params):
            found["folder"] = str(path.parent)
            return found
    return None


__all__ = ["find_ablation", "markdown", "rich_table", "table_rows", "write_outputs", "forest_plot"]
