"""Split-level evaluation metrics for the dense prediction tasks, and delta_m.

Contract: one metric family per module, each class following
:class:`~mtlsearch.metrics.base.Metric` (summable statistics, DDP reduction):
:mod:`~mtlsearch.metrics.segmentation` (semseg, parts), :mod:`~mtlsearch.metrics.geometry`
(depth, normals), :mod:`~mtlsearch.metrics.boundaries` (edge),
:mod:`~mtlsearch.metrics.saliency` (sal); :mod:`~mtlsearch.metrics.gain` holds delta_m and
the baselines. Which class scores a task (built by its ``build_metric`` hook), which keys
it reports and their directions come from :data:`mtlsearch.tasks.TASKS`;
:func:`build_metrics` makes one per task.

By default every score follows the official MTI-Net/InvPT evaluators (mIoU over all
classes, depth clamped at 1e-9, saliency maxF as ATRC); ``eval.miou_classes``,
``eval.depth_clamp`` and ``eval.sal_protocol`` select the documented alternatives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mtlsearch.errors import UserError
from mtlsearch.metrics.base import Metric, compute_all, sync_metrics
from mtlsearch.metrics.boundaries import MATCHER_SEED, EdgeMetric, edge_thresholds
from mtlsearch.metrics.gain import check_baselines, delta_m, flatten_baselines
from mtlsearch.metrics.geometry import DepthMetric, NormalsMetric
from mtlsearch.metrics.saliency import SaliencyMetric
from mtlsearch.metrics.segmentation import SegMetric
from mtlsearch.tasks import NUM_CLASSES, TASKS


def metric_class(task: str) -> type[Metric]:
    """The metric class of ``task`` (its registry entry's ``scorer``)."""
    if task not in TASKS:
        raise UserError(f"tasks.{task}: no metric for this task (known: {', '.join(TASKS)})")
    return TASKS[task].metric_class()


def build_metrics(
    tasks: Iterable[str],
    num_classes: Mapping[str, int] | None = None,
    cfg_eval: Any = None,
    *,
    layout: str = "synthrooms",
) -> dict[str, Metric]:
    """One fresh metric per task (each task's ``build_metric``).

    ``num_classes``: ``{task: classes}`` or ``None`` (the layout's counts,
    :data:`mtlsearch.tasks.NUM_CLASSES`). ``cfg_eval``: an ``EvalConfig``
    (``edge_max_dist``, ``edge_thresholds``, ``miou_classes``, ``depth_clamp``,
    ``sal_protocol``; its ``baselines`` are validated) or ``None`` for the defaults (the
    official protocols).
    """
    if cfg_eval is None:
        from mtlsearch.config import EvalConfig

        cfg_eval = EvalConfig()
    check_baselines(getattr(cfg_eval, "baselines", {}) or {})
    if layout not in NUM_CLASSES:
        raise UserError(f"data.layout: unknown layout {layout!r} (known: {', '.join(NUM_CLASSES)})")
    counts = {**NUM_CLASSES[layout], **(num_classes or {})}
    out: dict[str, Metric] = {}
    for task in tasks:
        metric_class(task)  # an unknown task is a UserError
        out[task] = TASKS[task].build_metric(counts.get(task), cfg_eval)
    return out


__all__ = [
    "MATCHER_SEED",
    "DepthMetric",
    "EdgeMetric",
    "Metric",
    "NormalsMetric",
    "SaliencyMetric",
    "SegMetric",
    "build_metrics",
    "check_baselines",
    "compute_all",
    "delta_m",
    "edge_thresholds",
    "flatten_baselines",
    "metric_class",
    "sync_metrics",
]
