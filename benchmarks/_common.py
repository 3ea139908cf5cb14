"""What every benchmark shares: where the SST-2 data is and how a split is sampled."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SST2 = SHARED / "sst2"


def sample(split: str, n: int | None, out: Path) -> str:
    """Write ``n`` rows of an SST-2 split (all with ``n`` 0 or None) to ``out``, sampled with seed 0.

    The same ``n`` gives the same rows in every benchmark, so their figures compare.
    """
    frame = pd.read_csv(SST2 / f"{split}.csv", keep_default_na=False)
    if n and n < len(frame):
        frame = frame.sample(n=n, random_state=0)
    path = Path(out) / f"{split}-{n or 'all'}.csv"
    frame.to_csv(path, index=False)
    return str(path)


def sample_task(task: str, split: str, n: int | None, out: Path) -> str:
    """Like :func:`sample`, for any task folder of ``../shared/data`` (sst2, cr, mpqa, mr, subj, sst5)."""
    frame = pd.read_csv(SHARED / task / f"{split}.csv", keep_default_na=False)
    if n and n < len(frame):
        frame = frame.sample(n=n, random_state=0)
    path = Path(out) / f"{task}-{split}-{n or 'all'}.csv"
    frame.to_csv(path, index=False)
    return str(path)


def write_report(path: Path, lines: list[str]) -> None:
    """Write a benchmark's markdown ``lines`` to ``path`` (creating its folder) and print them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def fixed_params(techniques: dict) -> set[str]:
    """The ``technique.param`` names a study's ``techniques`` fix to one value (neither a range nor a list)."""
    return {f"{t}.{k}" for t, values in techniques.items() for k, v in values.items() if not isinstance(v, (dict, list))}


def t_interval(diffs: list[float]) -> tuple[float, float, float]:
    """Mean of paired differences and its 95 % t interval (nan bounds with fewer than two)."""
    import math
    import statistics

    from scipy import stats

    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half
