"""One value from several seeds' values: light (statistics only), for the engine and the displays."""

from __future__ import annotations

import statistics


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(values: list[float], how: str = "mean", k: float = 1.0, direction: str = "maximize") -> float:
    """One value from the per-seed values.

    ``worst`` is the minimum when maximising and the maximum when minimising;
    ``mean_minus_std`` penalises spread in the study's direction (mean - k·std
    when maximising, mean + k·std when minimising).
    """
    if not values:
        raise ValueError("no per-seed values to aggregate")
    mean, std = mean_std(values)
    maximize = direction == "maximize"
    if how == "mean":
        return mean
    if how == "median":
        return float(statistics.median(values))
    if how == "worst":
        return float(min(values) if maximize else max(values))
    if how == "mean_minus_std":
        return mean - k * std if maximize else mean + k * std
    raise ValueError(f"unknown aggregate {how!r}; use mean, median, worst or mean_minus_std")
