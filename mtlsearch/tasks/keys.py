"""Reported keys of the task scores and their directions.

Contract: a task metric is reported as ``f"{task}_{metric}"`` with the direction its
task declares (``"max"``/``"min"``, Optuna's and Tune's vocabulary); keys scored on
other outputs carry a prefix (:data:`METRIC_PREFIXES`) and the plain key's direction;
losses are minimised; :data:`SCORE_DIRECTIONS` holds the scores of no single task.
Config, metrics, spaces and reports read directions from here.
"""

from __future__ import annotations

from mtlsearch.tasks.base import Direction
from mtlsearch.tasks.registry import TASKS

OUTPUT_PREFIXES = {"heads": "", "renders": "render_", "average": "avg_"}
"""Evaluated output -> prefix of its reported keys (regularizer renders, the Table-5
average of heads and renders)."""

MULTIVIEW_PREFIX = "mv_"
"""Prefix of the heads' scores with the sample's source views as extra input."""

METRIC_PREFIXES = (*(p for p in OUTPUT_PREFIXES.values() if p), MULTIVIEW_PREFIX)
"""Prefixes of a metric scored on another output; the prefixed key has the direction
of the plain one."""

SCORE_DIRECTIONS: dict[str, Direction] = {"delta_m": "max", "delta_m_st": "max"}
"""Scores that are not one task's: the multi-task gain (``delta_m_st``: reports' gain
over single-task baselines beside a row baseline)."""


def metric_directions() -> dict[str, Direction]:
    """``{f"{task}_{metric}": direction}`` for every task metric, plus the scores of
    :data:`SCORE_DIRECTIONS`."""
    out: dict[str, Direction] = {
        f"{task}_{name}": d for task, spec in TASKS.items() for name, d in spec.metrics.items()
    }
    out.update(SCORE_DIRECTIONS)
    return out


def strip_prefixes(key: str) -> str:
    """``mv_render_depth_rmse`` -> ``depth_rmse`` (every leading known prefix removed)."""
    while key.startswith(METRIC_PREFIXES):
        key = key[key.index("_") + 1 :]
    return key


def metric_direction(key: str) -> Direction | None:
    """Direction of a reported key, also for prefixed keys (:data:`METRIC_PREFIXES`) and
    losses (``"min"``); ``None`` for keys that are not scores (``alpha``, ...)."""
    directions = metric_directions()
    while key not in directions and key.startswith(METRIC_PREFIXES):
        key = key[key.index("_") + 1 :]
    if key in directions:
        return directions[key]
    if key == "loss" or key.startswith("loss_"):
        return "min"
    return None
