"""Configurations, not trials: the trials of a search grouped by everything but the seed.

Contract: a *configuration* is the set of trials whose parameters (``params.json``, or a
Ray result's config) are equal on every key except :data:`SEED_KEY` and the grid index
(:data:`INDEX_KEY`, or the search's ``index_key``); its value for a metric is the mean
over its trials' last reports (one trial per seed), with the std, n and the t-based 95%
interval of :func:`mtlsearch.report.stats.summary`. :func:`rank` orders configurations by
that mean (one metric) or gives the Pareto set of the means (several), and
:func:`representative` picks the trial a retrain reproduces: the one whose values are
closest to the configuration's means. ``mtlsearch best``, ``mtlsearch status`` and the
summary printed after a search all rank through here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mtlsearch.layout import FINISHED
from mtlsearch.report.stats import Summary, summary
from mtlsearch.space.spec import INDEX_KEY, SEED_KEY


@dataclass
class Trial:
    """What a configuration needs of one trial."""

    trial_id: str
    seed: Any
    params: dict[str, Any]
    metrics: dict[str, float]


@dataclass
class Configuration:
    """The trials of one configuration (one per seed) and their per-metric statistics."""

    params: dict[str, Any]
    """Every config key but the seed (and the grid index) -> its value."""
    trials: list[Trial] = field(default_factory=list)
    stats: dict[str, Summary] = field(default_factory=dict)

    @property
    def seeds(self) -> list[Any]:
        return [t.seed for t in self.trials]

    @property
    def n(self) -> int:
        return len(self.trials)

    def values(self, metric: str) -> list[float]:
        return [t.metrics.get(metric, math.nan) for t in self.trials]

    def mean(self, metric: str) -> float:
        s = self.stats.get(metric)
        return s.mean if s is not None else math.nan

    def label(self, keys: Sequence[str] | None = None) -> str:
        """``key=value, ...`` over ``keys`` (default: every key)."""
        keys = list(self.params) if keys is None else list(keys)
        if not keys:
            return "(the only configuration)"
        return ", ".join(f"{k}={_text(self.params.get(k))}" for k in keys)


def _text(value: Any) -> str:
    from mtlsearch.space.text import format_value

    return format_value(value)


def _canonical(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)


def excluded_keys(index_key: str | None = None) -> set[str]:
    """Keys that never tell configurations apart: the seed and the grid index."""
    return {SEED_KEY, INDEX_KEY} | ({index_key} if index_key else set())


def group(trials: Iterable[Trial], metrics: Sequence[str], index_key: str | None = None) -> list[Configuration]:
    """Group ``trials`` by their params without the seed and grid index, in first-seen
    order, with the statistics of every metric in ``metrics``."""
    skip = excluded_keys(index_key)
    configs: dict[str, Configuration] = {}
    for t in trials:
        params = {k: v for k, v in t.params.items() if k not in skip}
        key = _canonical(sorted((k, _canonical(v)) for k, v in params.items()))
        configs.setdefault(key, Configuration(params)).trials.append(t)
    for c in configs.values():
        c.stats = {m: summary(c.values(m)) for m in metrics}
    return list(configs.values())


def varying_keys(configs: Sequence[Configuration]) -> list[str]:
    """Keys whose value differs between ``configs`` (in first-seen order)."""
    keys: list[str] = []
    for c in configs:
        keys += [k for k in c.params if k not in keys]
    return [k for k in keys if len({_canonical(c.params.get(k)) for c in configs}) > 1]


def _dominates(a: Sequence[float], b: Sequence[float], modes: Sequence[str]) -> bool:
    signs = [1.0 if m == "max" else -1.0 for m in modes]
    ge = all(s * x >= s * y for s, x, y in zip(signs, a, b))
    gt = any(s * x > s * y for s, x, y in zip(signs, a, b))
    return ge and gt


def rank(configs: Sequence[Configuration], metrics: Sequence[str], modes: Sequence[str]) -> list[Configuration]:
    """Configurations with a mean for every metric: all of them ordered by the mean of the
    one metric (best first; ties: more seeds first), or for several metrics the Pareto
    set of the means ordered by the first metric."""
    scored = [c for c in configs if all(math.isfinite(c.mean(m)) for m in metrics)]
    sign = 1.0 if modes[0] == "max" else -1.0
    if len(metrics) > 1:
        points = [[c.mean(m) for m in metrics] for c in scored]
        scored = [c for c, p in zip(scored, points) if not any(_dominates(o, p, modes) for o in points)]
    return sorted(scored, key=lambda c: (-sign * c.mean(metrics[0]), -c.n))


def _seed_order(seed: Any) -> tuple[int, float, str]:
    if isinstance(seed, (int, float)) and not isinstance(seed, bool) and math.isfinite(seed):
        return (0, float(seed), "")
    return (1, 0.0, str(seed))


def representative(config: Configuration, metrics: Sequence[str]) -> Trial:
    """The trial closest to the configuration's means: smallest sum over ``metrics`` of
    ``((value - mean) / std)²`` (metrics without spread count 0); ties (within 1e-9,
    as for two seeds, which lie equally far from their mean) go to the smallest seed."""
    def distance(t: Trial) -> float:
        total = 0.0
        for m in metrics:
            s = config.stats.get(m)
            v = t.metrics.get(m, math.nan)
            if s is None or math.isnan(v) or not s.std > 0:
                continue
            total += ((v - s.mean) / s.std) ** 2
        return total

    dists = [distance(t) for t in config.trials]
    low = min(dists)
    close = [t for t, d in zip(config.trials, dists) if d <= low + 1e-9 * max(1.0, low)]
    return min(close, key=lambda t: _seed_order(t.seed))


def from_search(search: Any, metrics: Sequence[str], statuses: Iterable[str] | None = (FINISHED,),
                ) -> list[Configuration]:
    """The configurations of a collected :class:`~mtlsearch.report.collect.Search` over its
    trials with a status in ``statuses`` (None: every trial) whose every metric in
    ``metrics`` is a finite number."""
    res = search.results
    wanted = None if statuses is None else set(statuses)
    index_key = search.meta.search.index_key
    keys = list(getattr(search, "param_keys", []) or [])
    trials = []
    for _, row in res.iterrows():
        if wanted is not None and row.get("status") not in wanted:
            continue
        values = {m: row.get(f"final_{m}") for m in metrics}
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                   for v in values.values()):
            continue
        params = {k: row.get(k) for k in keys}
        params = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in params.items()}
        seed = row.get("seed")
        seed = None if seed is None or (isinstance(seed, float) and math.isnan(seed)) else int(seed)
        trials.append(Trial(str(row["trial_id"]), seed, params, {m: float(v) for m, v in values.items()}))
    return group(trials, metrics, index_key)


def describe_stats(s: Summary) -> str:
    """``9.35 ± 0.636 (95% CI [3.63, 15.1], n=2)``: the mean with its spread and interval."""
    from mtlsearch.space.text import format_value

    if s.n == 0:
        return "-"
    text = format_value(s.mean)
    if s.n > 1:
        text += f" ± {format_value(s.std)} (95% CI [{format_value(s.lo)}, {format_value(s.hi)}], n={s.n})"
    else:
        text += " (n=1: no interval)"
    return text


def summary_lines(trials: Iterable[Trial], metrics: Sequence[str], modes: Sequence[str]) -> list[str]:
    """What the search prints after it ends: the best configuration by its mean over
    seeds (one metric) or the Pareto set of the means (several), with n and intervals."""
    found = group(trials, metrics)
    ranked = rank(found, metrics, modes)
    if not ranked:
        return []
    if len(metrics) == 1:
        m, c = metrics[0], ranked[0]
        lines = [f"best configuration by mean {m} ({modes[0]}) over seeds: {describe_stats(c.stats[m])} "
                 f"with {c.label()}"]
        if len(ranked) > 1:
            lines.append(f"  runner-up: {describe_stats(ranked[1].stats[m])} with {ranked[1].label()}")
        return lines
    lines = [f"Pareto set of the configurations' means over seeds "
             f"({', '.join(f'{m} ({md})' for m, md in zip(metrics, modes))}): {len(ranked)} configuration(s)"]
    lines += [f"  {c.label()}: " + "; ".join(f"{m} {describe_stats(c.stats[m])}" for m in metrics)
              for c in ranked]
    return lines


__all__ = [
    "FINISHED",
    "Configuration",
    "Trial",
    "describe_stats",
    "excluded_keys",
    "from_search",
    "group",
    "rank",
    "representative",
    "summary_lines",
    "varying_keys",
]
