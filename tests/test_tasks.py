"""The task registry, checked for every task: channels, losses on unlabelled and
labelled views, directions."""

from __future__ import annotations

import pytest
import torch

from mtlsearch.tasks import IGNORE, NUM_CLASSES, TASKS, metric_direction, task_loss


def _label(task: str, shape: tuple[int, int, int], fill: float | None) -> torch.Tensor:
    """A label in the mtlsearch.tasks encoding: ``fill`` everywhere, or a valid random one."""
    spec = TASKS[task]
    b, h, w = shape
    g = torch.Generator().manual_seed(0)
    if spec.kind == "classes":
        if fill is not None:
            return torch.full((b, h, w), int(fill), dtype=torch.int64)
        return torch.randint(0, spec.channels(), (b, h, w), generator=g)
    channels = 3 if spec.kind == "normals" else 1
    if fill is not None:
        return torch.full((b, channels, h, w), float(fill))
    if spec.kind == "normals":
        return torch.nn.functional.normalize(torch.randn(b, 3, h, w, generator=g), dim=1)
    if spec.kind == "binary":
        return (torch.rand(b, 1, h, w, generator=g) > 0.7).float()
    return 0.5 + torch.rand(b, 1, h, w, generator=g)


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_loss_and_direction(task: str) -> None:
    spec = TASKS[task]
    for layout in NUM_CLASSES:
        if spec.kind != "classes" or task in NUM_CLASSES[layout]:
            assert spec.channels(layout) >= 1
    pred = torch.randn(2, spec.channels(), 8, 10, requires_grad=True)
    unlabelled = task_loss(task, pred, _label(task, (2, 8, 10), spec.ignore))
    assert float(unlabelled.detach()) == 0.0
    unlabelled.backward()  # stays in the graph: a batch without labels still steps
    labelled = task_loss(task, pred, _label(task, (2, 16, 20), None))  # label twice the size
    assert torch.isfinite(labelled) and float(labelled.detach()) > 0
    assert spec.mode in ("max", "min") and set(spec.metrics.values()) <= {"max", "min"}
    for prefix in ("", "render_", "avg_", "mv_", "mv_render_"):
        assert metric_direction(f"{prefix}{task}_{spec.metric}") == spec.mode
    assert metric_direction(f"loss_{task}") == "min"
    assert spec.ignore in (IGNORE, 0.0)
