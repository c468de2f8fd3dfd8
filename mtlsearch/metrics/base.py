"""The metric protocol: split-level accumulators of summable float64 statistics.

Every metric accumulates *sufficient statistics* over a whole split (not averaged per
image, as the official evaluators score) and scores them at the end::

    m = SegMetric(num_classes=40)
    for batch in loader:
        m.update(pred, target)      # tensors in the mtlsearch.tasks conventions (any device)
    scores = m.compute()            # {"miou": ..., "pixel_acc": ...}
    m.reset()

Reported keys are ``f"{task}_{name}"`` (``semseg_miou``, ``depth_rmse``, ...); see
:func:`compute_all`; their directions are the task registry's
(:func:`mtlsearch.tasks.metric_directions`).

Reduction across DDP workers (the contract)
-------------------------------------------
All statistics are sums, so the metric over the union of several workers' shards is
the metric over the element-wise SUM of their statistics. Each metric exposes them as
one flat float64 CPU tensor whose length depends only on the constructor arguments
(so it is the same on every worker, whatever data each one saw):

- ``t = m.to_tensor()``: a copy of the statistics;
- ``m.from_tensor(t)``: replace the statistics by ``t`` (e.g. after ``all_reduce``);
- ``m.merge(other)``: add another accumulator of the same kind and arguments;
- ``m.sync(fn)``: ``fn`` receives ``to_tensor()``, reduces it (in place, returning
  ``None``, or returning the reduced tensor) and the result is loaded back. With
  ``torch.distributed``::

      def all_sum(t):
          t = t.to(device)                       # NCCL needs a CUDA tensor
          dist.all_reduce(t, op=dist.ReduceOp.SUM)
          return t.cpu()

      m.sync(all_sum)                            # or sync_metrics(metrics, all_sum): one call

  Every worker must call ``sync`` (a collective), even one that saw no data, and the
  shards must be disjoint: a sampler that pads the split with repeated samples counts
  them twice. Counts stay exact in float64 up to 2**53 pixels.

Metrics without any valid pixel report NaN. Percentages are in [0, 100].
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping

import torch

from mtlsearch.tasks import (
    resize_pred,
)

# ---------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------


class Metric(abc.ABC):
    """An accumulator of summable float64 statistics (see the module docstring).

    Subclasses declare ``names`` (the keys :meth:`compute` returns: the metrics of the
    tasks it scores in :data:`mtlsearch.tasks.TASKS`, where their directions live) and
    the shapes of their statistics in :meth:`_spec`.
    """

    names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] = {}
        self.reset()

    @abc.abstractmethod
    def _spec(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of each summable statistic."""

    @abc.abstractmethod
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Accumulate one batch."""

    @abc.abstractmethod
    def compute(self) -> dict[str, float]:
        """Scores over everything accumulated."""

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.state = {k: torch.zeros(shape, dtype=torch.float64) for k, shape in self._spec().items()}

    @property
    def numel(self) -> int:
        """Length of :meth:`to_tensor` (fixed by the constructor arguments)."""
        return sum(math.prod(shape) for shape in self._spec().values())

    def to_tensor(self) -> torch.Tensor:
        """All statistics as one flat float64 CPU tensor (a copy)."""
        return torch.cat([v.reshape(-1) for v in self.state.values()]).clone()

    def from_tensor(self, flat: torch.Tensor) -> None:
        """Replace the statistics by ``flat`` (as produced by :meth:`to_tensor`)."""
        flat = flat.detach().to("cpu", torch.float64).reshape(-1)
        if flat.numel() != self.numel:
            raise ValueError(
                f"{type(self).__name__}.from_tensor: expected {self.numel} values, got {flat.numel()}"
            )
        offset = 0
        for key, value in self.state.items():
            n = value.numel()
            self.state[key] = flat[offset : offset + n].reshape(value.shape).clone()
            offset += n

    def merge(self, other: Metric) -> None:
        """Add the statistics of ``other`` (same class, same constructor arguments)."""
        if type(other) is not type(self) or other.numel != self.numel:
            raise ValueError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        self.from_tensor(self.to_tensor() + other.to_tensor())

    def sync(self, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> None:
        """Reduce the statistics with ``fn`` (e.g. an all-reduce SUM) and load the result."""
        flat = self.to_tensor()
        out = fn(flat)
        self.from_tensor(flat if out is None else out)


def _squeeze_channel(x: torch.Tensor, what: str) -> torch.Tensor:
    """(B, 1, H, W) -> (B, H, W); (B, H, W) unchanged."""
    if x.dim() == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.dim() == 3:
        return x
    raise ValueError(f"{what}: expected (B, 1, H, W) or (B, H, W), got {tuple(x.shape)}")


def _fit(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize a (B, C, H, W) prediction to the label size (scores are taken at
    label resolution)."""
    return resize_pred(pred.float(), size)


def _single_channel(
    pred: torch.Tensor, target: torch.Tensor, what: str, *, from_logits: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """A one-channel ``pred`` and its ``target`` as (B, H, W) at label resolution (``pred``
    through a sigmoid when ``from_logits``); ``what`` (the metric) names mismatches."""
    target = _squeeze_channel(target, f"{what} target")
    pred4 = pred if pred.dim() == 4 else pred.unsqueeze(1)
    pred = _squeeze_channel(_fit(pred4, tuple(target.shape[-2:])), f"{what} pred")
    if from_logits:
        pred = torch.sigmoid(pred)
    if pred.shape != target.shape:
        raise ValueError(f"{what}: pred {tuple(pred.shape)} vs target {tuple(target.shape)}")
    return pred, target


def _pct(num: float, den: float) -> float:
    return 100.0 * num / den if den > 0 else float("nan")


def compute_all(metrics: Mapping[str, Metric], prefix: str = "") -> dict[str, float]:
    """``{f"{prefix}{task}_{name}": value}`` for every metric (prefix e.g. ``render_``)."""
    return {
        f"{prefix}{task}_{name}": value
        for task, metric in metrics.items()
        for name, value in metric.compute().items()
    }


def sync_metrics(metrics: Mapping[str, Metric], fn: Callable[[torch.Tensor], torch.Tensor | None]) -> None:
    """Reduce all metrics with one call of ``fn`` on their concatenated statistics (the
    same order on every worker: iterate the same mapping)."""
    parts = [m.to_tensor() for m in metrics.values()]
    if not parts:
        return
    flat = torch.cat(parts)
    out = fn(flat)
    flat = (flat if out is None else out).detach().to("cpu", torch.float64).reshape(-1)
    offset = 0
    for metric in metrics.values():
        metric.from_tensor(flat[offset : offset + metric.numel])
        offset += metric.numel
