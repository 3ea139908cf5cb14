"""Statistics over seed pairs: per technique the paired difference, its 95 % t interval, Wilcoxon's p, a verdict.

With n seeds the two-sided signed-rank p is at least 2/2**n (0.0625 at 5 seeds), so the verdict is the t
interval's; the p-value is shown beside it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from autobert.ablation.plan import Arm, changed_recipe, describe
from autobert.config.schema import FrozenConfig
from autobert.run.plugin_manager import PluginManager

HELPS, HURTS, NO_EVIDENCE = "helps", "hurts", "no evidence"


# ---------------------------------------------------------------------------
# Statistics over seed pairs
# ---------------------------------------------------------------------------


def paired_summary(with_values: list[float], without_values: list[float], direction: str = "maximize") -> dict[str, Any]:
    """Mean paired difference (with - without), its 95 % t interval, Wilcoxon's p and the verdict."""
    from scipy import stats

    diffs = [a - b for a, b in zip(with_values, without_values)]
    n = len(diffs)
    mean = statistics.fmean(diffs) if diffs else math.nan
    if n > 1:
        sd = statistics.stdev(diffs)
        half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        low, high = mean - half, mean + half
    else:
        low = high = math.nan
    if n > 0 and any(diffs):
        try:
            p = float(stats.wilcoxon(diffs).pvalue)
        except ValueError:
            p = math.nan
    else:
        p = 1.0 if n else math.nan
    better = 1 if direction == "maximize" else -1
    if n > 1 and math.isfinite(low) and (low > 0 or high < 0) and (low != 0 or high != 0):
        verdict = HELPS if (mean * better) > 0 else HURTS
    else:
        verdict = NO_EVIDENCE
    return {"differences": diffs, "mean_difference": mean, "ci95": [low, high], "wilcoxon_p": p, "verdict": verdict}


@dataclass
class ArmResult:
    arm: Arm
    seeds: dict[str, dict[str, Any]] = field(default_factory=dict)  # {"0": {"value", "metrics", "test", "seconds"}}
    ran: list[int] = field(default_factory=list)  # seeds trained in this process (the rest came from storage)

    def values(self, seeds: list[int], split: str = "value") -> list[float]:
        if split == "value":
            return [float(self.seeds[str(s)]["value"]) for s in seeds]
        return [float(self.seeds[str(s)]["test"][split]) for s in seeds]


def summarise(frozen: FrozenConfig, results: list[ArmResult], seeds: list[int], evaluate_test: bool) -> list[dict[str, Any]]:
    """One row per off or add arm: the technique's effect (with minus without) on the seeds both finished."""
    full = results[0]
    rows = []
    for result in results[1:]:
        arm = result.arm
        paired = [s for s in seeds if str(s) in full.seeds and str(s) in result.seeds]
        with_r, without_r = (full, result) if arm.kind == "off" else (result, full)
        row = {"technique": arm.technique, "arm": arm.name, "kind": "ablated" if arm.kind == "off" else "added",
               "switched": describe(arm.changes, frozen.params), "seeds": paired}
        row.update(paired_summary(with_r.values(paired), without_r.values(paired), frozen.direction))
        extra = [with_r.seeds[str(s)]["seconds"] - without_r.seeds[str(s)]["seconds"] for s in paired]
        row["extra_seconds"] = statistics.fmean(extra) if extra else math.nan
        row["with_mean"] = statistics.fmean(with_r.values(paired)) if paired else math.nan
        row["without_mean"] = statistics.fmean(without_r.values(paired)) if paired else math.nan
        if evaluate_test and paired:
            test = paired_summary(with_r.values(paired, frozen.metric), without_r.values(paired, frozen.metric),
                                  frozen.direction)
            row["test"] = {k: test[k] for k in ("differences", "mean_difference", "ci95", "wilcoxon_p")}
        rows.append(row)
    return rows


def recommend(frozen: FrozenConfig, rows: list[dict[str, Any]], arms: list[Arm], pm: PluginManager) -> tuple[FrozenConfig, list[str]]:
    """The recipe without every ablated technique that showed no evidence of helping."""
    by_arm = {a.name: a for a in arms}
    dropped, changes = [], {}
    for row in rows:
        if row["kind"] == "ablated" and row["verdict"] != HELPS:
            dropped.append(row["technique"])
            changes.update(by_arm[row["arm"]].changes)
    return changed_recipe(frozen, changes, pm, "the recommended recipe"), dropped


__all__ = ["HELPS", "HURTS", "NO_EVIDENCE", "ArmResult", "paired_summary", "recommend", "summarise"]
