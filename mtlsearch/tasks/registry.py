"""The task registry (timm-style): ``@register_task`` adds a task, :func:`get_task` finds it.

Contract: :data:`TASKS` maps each name to its :class:`~mtlsearch.tasks.base.TaskSpec`
instance in registration order, the order configs and readers list tasks in; the
built-in tasks register when :mod:`mtlsearch.tasks` imports their modules. A name
registers once. :data:`NUM_CLASSES` and :func:`task_loss` read the registry live.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import torch

from mtlsearch.tasks.base import TaskSpec, resize_label, resize_pred

TASKS: dict[str, TaskSpec] = {}
"""Registered tasks: name -> spec (an instance of the task's class)."""

T = TypeVar("T", bound=type[TaskSpec])


def register_task(cls: T) -> T:
    """Class decorator: register an instance of a :class:`TaskSpec` subclass under its ``name``."""
    spec = cls()
    if spec.name in TASKS:
        raise ValueError(f"task {spec.name!r} is registered twice ({type(TASKS[spec.name]).__name__}, {cls.__name__})")
    TASKS[spec.name] = spec
    return cls


def get_task(name: str) -> TaskSpec:
    """The spec of a registered task (KeyError naming the known ones otherwise)."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r} (known: {', '.join(TASKS)})") from None


def list_tasks() -> list[str]:
    """Registered task names, in registry order."""
    return list(TASKS)


class _ClassCounts(Mapping[str, dict[str, int]]):
    """``NUM_CLASSES[layout][task]``: output channels of the class-valued tasks per dataset
    layout (each task's ``classes``), layouts in the order the tasks name them."""

    def _layouts(self) -> list[str]:
        return list(dict.fromkeys(layout for spec in TASKS.values() for layout in spec.classes))

    def __getitem__(self, layout: str) -> dict[str, int]:
        if layout not in self._layouts():
            raise KeyError(layout)
        return {name: spec.classes[layout] for name, spec in TASKS.items() if layout in spec.classes}

    def __iter__(self) -> Iterator[str]:
        return iter(self._layouts())

    def __len__(self) -> int:
        return len(self._layouts())


NUM_CLASSES: Mapping[str, dict[str, int]] = _ClassCounts()
"""Output channels of the class-valued tasks per dataset layout."""


def task_loss(task: str, pred: torch.Tensor, target: torch.Tensor, label_mode: str = "upsample",
              cfg: Any = None) -> torch.Tensor:
    """Loss of one task; if sizes differ, resize the label down (``downsample``) or the
    prediction up (``upsample``). ``cfg``: the run's config (the task's loss settings,
    e.g. ``loss.edge_pos_weight``); None: their defaults."""
    if tuple(pred.shape[-2:]) != tuple(target.shape[-2:]):
        if label_mode == "downsample":
            target = resize_label(target, tuple(pred.shape[-2:]))
        else:
            pred = resize_pred(pred, tuple(target.shape[-2:]))
    return get_task(task).loss(pred, target, cfg)
