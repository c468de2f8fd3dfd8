"""The multi-task gain delta_m (the one place it is computed) and the single-task
baselines it is measured against.

Contract: :func:`delta_m` raises :class:`~mtlsearch.errors.UserError` rather than
average over fewer tasks than asked; directions come from :mod:`mtlsearch.tasks`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from mtlsearch.errors import UserError
from mtlsearch.tasks import (
    TASKS,
    metric_direction,
    strip_prefixes,
)


def flatten_baselines(baselines: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``{task: {metric: value}}`` (``eval.baselines``) -> ``{"task_metric": value}``."""
    return {f"{task}_{name}": float(v) for task, per in baselines.items() for name, v in per.items()}


def check_baselines(
    baselines: Mapping[str, Mapping[str, float]], tasks: Iterable[str] | None = None
) -> dict[str, float]:
    """Validate ``eval.baselines`` and flatten it; UserError names the bad key.

    With ``tasks`` (the config's tasks) and non-empty baselines, every task must have a
    baseline: delta_m averages over all T tasks, so a missing one is refused up front.
    """
    for task, per in baselines.items():
        if task not in TASKS:
            raise UserError(f"eval.baselines.{task}: unknown task (known: {', '.join(TASKS)})")
        if not per:
            raise UserError(f"eval.baselines.{task}: no metric given (e.g. {TASKS[task].metric})")
        for name, value in per.items():
            if name not in TASKS[task].metrics:
                known = ", ".join(TASKS[task].metrics)
                raise UserError(f"eval.baselines.{task}.{name}: unknown metric (known: {known})")
            if not math.isfinite(float(value)) or float(value) == 0:
                raise UserError(f"eval.baselines.{task}.{name}: must be a non-zero number, got {value}")
    if baselines and tasks is not None:
        missing = [t for t in tasks if t not in baselines]
        if missing:
            raise UserError(
                f"eval.baselines: no single-task baseline for {', '.join(missing)}; delta_m "
                f"needs one for every task (given: {', '.join(baselines)})"
            )
    return flatten_baselines(baselines)


def _task_of(key: str) -> tuple[str, str]:
    """``render_depth_rmse`` -> (``render_depth``, ``depth``): the term a key belongs to
    (prefix kept, so renders and heads are never mixed) and its task."""
    rest = strip_prefixes(key)
    task = rest.split("_", 1)[0]
    if task not in TASKS or rest == task:
        raise UserError(f"delta_m: {key!r} is not a task metric key such as semseg_miou or depth_rmse")
    return key[: len(key) - len(rest)] + task, task


def delta_m(
    results: Mapping[str, float],
    baselines: Mapping[str, float],
    lower_is_better: Mapping[str, bool] | set[str] | None = None,
    *,
    tasks: Iterable[str] | None = None,
) -> float:
    """Multi-task gain over single-task baselines, percent (Maninis et al. 2019), the one place
    it is computed: ``(1/T) sum_t (-1)^{l_t} (M_mt,t - M_st,t) / |M_st,t| * 100``.

    ``baselines`` holds flat reported keys (``semseg_miou``, ``render_depth_rmse``). One
    term per task: a baseline naming several metrics of one task contributes the mean of
    their gains, so it never counts as extra tasks. T is ``tasks`` when given (each needs
    a baseline), else the tasks the baselines name. ``lower_is_better``: a set of keys
    where lower is better, or ``{key: bool}``; keys it does not name (and all keys when it
    is ``None``) take :func:`mtlsearch.tasks.metric_direction`.

    Raises :class:`UserError` when a task has no baseline, a baseline metric is missing
    from ``results`` or not finite there, a baseline is zero or not finite, or a key is
    not a task metric: delta_m over fewer tasks than asked would not be comparable.
    """
    wanted = list(tasks) if tasks is not None else None
    per_task: dict[str, list[float]] = {}
    named: set[str] = set()
    for key, base in baselines.items():
        group, task = _task_of(key)
        named.add(task)
        if wanted is not None and task not in wanted:
            continue
        base = float(base)
        if not math.isfinite(base) or base == 0:
            raise UserError(f"delta_m: baseline {key} must be a finite non-zero number, got {base}")
        if key not in results:
            raise UserError(f"delta_m: the results have no {key} (a baseline names it)")
        value = float(results[key])
        if not math.isfinite(value):
            raise UserError(f"delta_m: {key} is {value}, not a finite score")
        if isinstance(lower_is_better, Mapping) and key in lower_is_better:
            lower = bool(lower_is_better[key])
        elif isinstance(lower_is_better, (set, frozenset)):
            lower = key in lower_is_better
        else:
            direction = metric_direction(key)
            if direction is None:
                raise UserError(f"delta_m: {key!r} is not a known metric")
            lower = direction == "min"
        sign = -1.0 if lower else 1.0
        per_task.setdefault(group, []).append(sign * (value - base) / abs(base) * 100.0)
    if wanted is not None:
        missing = [t for t in wanted if t not in named]
        if missing:
            raise UserError(f"delta_m: no single-task baseline for {', '.join(missing)}")
    if not per_task:
        raise UserError("delta_m: no baseline given")
    terms = [sum(v) / len(v) for v in per_task.values()]
    return sum(terms) / len(terms)
