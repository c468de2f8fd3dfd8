"""Lookups in the registries that config and space values are checked against.

Contract: every function reads its registry (``mtlsearch.tasks``,
``mtlsearch.models.decoders``, timm) on first use and caches the answer, so importing
``mtlsearch.config`` stays light (no torch, no timm) and ``mtlsearch --help`` fast.
Nothing here knows a task, metric, decoder or backbone name itself.
"""

from __future__ import annotations

import functools

SCALAR_METRICS = ("loss", "delta_m", "alpha", "iteration")
"""Reported keys that belong to no task."""


@functools.cache
def task_names() -> tuple[str, ...]:
    """Names of the registered tasks (``mtlsearch.tasks.TASKS``), in registry order."""
    from mtlsearch.tasks import TASKS

    return tuple(TASKS)


def renders_ray_depth(tasks: list[str] | tuple[str, ...]) -> bool:
    """Whether the regularizer renders one of ``tasks`` as the expected ray depth
    (``TaskSpec.ray_depth``: depth), a value that a raw render only has in the input view."""
    from mtlsearch.tasks import TASKS

    return any(TASKS[t].ray_depth for t in tasks if t in TASKS)


@functools.cache
def metric_prefixes() -> tuple[str, ...]:
    """Prefixes of reported keys (renders, head/render average, multi-view): ``mtlsearch.tasks``."""
    from mtlsearch.tasks import METRIC_PREFIXES

    return tuple(METRIC_PREFIXES)


@functools.cache
def metric_directions() -> dict[str, str]:
    """``{task}_{metric}`` -> ``"max"``/``"min"``, for every metric a task reports."""
    from mtlsearch.tasks import metric_directions as directions

    return {k: v for k, v in directions().items() if k != "delta_m"}


def task_metrics(task: str) -> list[str]:
    """The metric names (without the task prefix) that ``task`` reports."""
    from mtlsearch.tasks import TASKS

    return list(TASKS[task].metrics) if task in TASKS else []


def strip_prefixes(name: str) -> str:
    """``render_semseg_miou`` -> ``semseg_miou`` (every known prefix removed)."""
    from mtlsearch.tasks import strip_prefixes as strip

    return strip(name)


def metric_problem(name: str, tasks: list[str] | None = None) -> str | None:
    """None if ``name`` is a key the trainer reports (for the config's ``tasks`` when
    given), else why not, listing what would be valid."""
    if name in SCALAR_METRICS:
        return None
    if name.startswith("loss_"):
        task = name[5:]
        if task not in task_names():
            return f"unknown task {task!r} (known: {', '.join(task_names())})"
        if tasks is not None and task not in tasks:
            return f"task {task!r} is not trained (tasks: {', '.join(tasks)})"
        return None
    bare = strip_prefixes(name)
    task, _, metric = bare.partition("_")
    if task not in task_names() or not metric:
        return (
            "expected loss, delta_m or <task>_<metric> such as semseg_miou or depth_rmse"
            f" (tasks: {', '.join(task_names())}; prefixes: {', '.join(metric_prefixes())})"
        )
    if tasks is not None and task not in tasks:
        return f"task {task!r} is not trained (tasks: {', '.join(tasks)})"
    known = task_metrics(task)
    if metric not in known:
        return f"{task} reports no metric {metric!r} (known: {', '.join(known)})"
    return None


def metric_direction(name: str) -> str | None:
    """``"max"`` or ``"min"`` for a reported key (prefixes allowed); None if unknown."""
    from mtlsearch.tasks import metric_direction as direction

    return direction(name)


@functools.cache
def decoder_names() -> tuple[str, ...]:
    """Names registered with ``@register_decoder`` (imports the models package)."""
    import mtlsearch.models  # noqa: F401  (registers every decoder module)
    from mtlsearch.models.decoders import list_decoders

    return tuple(list_decoders())


@functools.cache
def is_backbone(name: str) -> bool:
    """Whether timm knows the model ``name`` (a pretrained tag like ``.a1_in1k`` allowed)."""
    import timm

    return bool(timm.is_model(name))


@functools.cache
def out_indices_problem(backbone: str, out_indices: tuple[int, ...]) -> str | None:
    """Why ``backbone`` cannot give features at ``out_indices`` (None: it can)."""
    from mtlsearch.models.backbones import out_indices_problem as problem

    return problem(backbone, out_indices)


def close_backbones(name: str, n: int = 3) -> list[str]:
    """timm model names close to ``name`` (for "did you mean" hints)."""
    import difflib

    import timm

    return difflib.get_close_matches(name, timm.list_models(), n=n, cutoff=0.7)


__all__ = [
    "SCALAR_METRICS",
    "close_backbones",
    "decoder_names",
    "is_backbone",
    "metric_direction",
    "metric_directions",
    "metric_prefixes",
    "out_indices_problem",
    "metric_problem",
    "strip_prefixes",
    "task_metrics",
    "task_names",
]
