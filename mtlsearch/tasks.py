"""The task registry: what each dense prediction task outputs, how it is lost and scored.

Conventions shared by heads, regularizer renders, labels and metrics
(B = batch, H x W = the tensor's own size):

=========  =====================  ==============================  ===================
task       prediction             label                           invalid / ignore
=========  =====================  ==============================  ===================
semseg     logits (B, C, H, W)    int64 (B, H, W), class index    255
depth      metres (B, 1, H, W)    float (B, 1, H, W), metres      0
normals    (B, 3, H, W), any norm float (B, 3, H, W), unit        all-zero vector
edge       logits (B, 1, H, W)    float (B, 1, H, W) in {0, 1}    255
sal        logits (B, 1, H, W)    float (B, 1, H, W) in [0, 1]    255
parts      logits (B, 7, H, W)    int64 (B, H, W), part index     255
=========  =====================  ==============================  ===================

A view that lacks a task's label (e.g. video frames labelled with depth only)
carries a label filled with the ignore value, so every loss skips it.

This module is the one place every task fact is defined: channels, label encoding,
loss, the metrics it reports with their directions (one vocabulary, Optuna's and
Tune's: ``"max"``/``"min"``), its primary metric, and the prefixes of keys scored on
other outputs (``render_``, ``avg_``, ``mv_``). Config, metrics, spaces and reports
read them from here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from mtlsearch.classes import (  # noqa: F401  (re-exported)
    IGNORE,
    NUM_CLASSES,
    SYNTHROOMS_CLASSES,
    SYNTHROOMS_OBJECT_CLASSES,
)

Direction = Literal["max", "min"]
"""Whether a larger (``"max"``) or smaller (``"min"``) value of a score is better."""


@dataclass(frozen=True)
class TaskSpec:
    """A task's contract: output channels, label encoding, loss, metrics, primary metric."""

    name: str
    kind: str  # "classes" | "regression" | "normals" | "binary"
    metric: str  # primary metric, reported as f"{name}_{metric}"
    metrics: Mapping[str, Direction]  # every metric the task reports -> its direction
    ignore: float
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    scorer: str  # the mtlsearch.metrics class that computes ``metrics``

    @property
    def mode(self) -> Direction:
        """Direction of the primary metric."""
        return self.metrics[self.metric]

    def channels(self, layout: str = "synthrooms") -> int:
        if self.kind == "classes":
            return NUM_CLASSES[layout][self.name]
        return {"regression": 1, "normals": 3, "binary": 1}[self.kind]

    @property
    def discrete(self) -> bool:
        """Labels that must be resized with nearest-neighbour sampling."""
        return self.kind in ("classes", "binary")


def _empty(pred: torch.Tensor) -> torch.Tensor:
    """A zero loss that keeps ``pred`` in the graph (no valid pixel in the batch)."""
    return pred.sum() * 0.0


def cross_entropy_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel-wise cross-entropy, ignoring label 255."""
    if not (target != IGNORE).any():
        return _empty(pred)
    return F.cross_entropy(pred, target.long(), ignore_index=IGNORE)


def depth_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 on valid depth pixels (label > 0)."""
    valid = target > 0
    if not valid.any():
        return _empty(pred)
    return (pred - target).abs()[valid].mean()


def normals_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the L2-normalised prediction and the unit label, on valid pixels."""
    valid = target.abs().sum(dim=1, keepdim=True) > 0
    if not valid.any():
        return _empty(pred)
    unit = F.normalize(pred, dim=1)
    return (unit - target).abs().masked_select(valid.expand_as(pred)).mean()


def balanced_bce_loss(pos_weight: float | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Class-balanced BCE on logits, ignoring 255.

    With ``pos_weight`` w, positives weigh w and negatives 1 - w (the field's 0.95 for
    edges); with ``None`` the weight is the batch's negative fraction (saliency).
    """

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != IGNORE
        if not valid.any():
            return _empty(pred)
        y = target[valid].float()
        logits = pred[valid]
        w = float(1.0 - y.mean()) if pos_weight is None else pos_weight
        weights = torch.where(y > 0.5, torch.full_like(y, w), torch.full_like(y, 1.0 - w))
        return F.binary_cross_entropy_with_logits(logits, y, weight=weights, reduction="sum") / y.numel()

    return loss


_SEG = {"miou": "max", "pixel_acc": "max"}
_NORMALS = {"mean_err": "min", "median_err": "min", "rmse": "min",
            "within_11_25": "max", "within_22_5": "max", "within_30": "max"}

TASKS: dict[str, TaskSpec] = {
    "semseg": TaskSpec("semseg", "classes", "miou", _SEG, IGNORE, cross_entropy_loss, "SegMetric"),
    "depth": TaskSpec("depth", "regression", "rmse",
                      {"rmse": "min", "abs_rel": "min", "log_rmse": "min", "sq_rel": "min"}, 0.0,
                      depth_l1_loss, "DepthMetric"),
    "normals": TaskSpec("normals", "normals", "mean_err", _NORMALS, 0.0, normals_l1_loss,
                        "NormalsMetric"),
    "edge": TaskSpec("edge", "binary", "odsf", {"odsf": "max", "oisf": "max"}, IGNORE,
                     balanced_bce_loss(0.95), "EdgeMetric"),
    "sal": TaskSpec("sal", "binary", "maxf", {"maxf": "max"}, IGNORE, balanced_bce_loss(None),
                    "SaliencyMetric"),
    "parts": TaskSpec("parts", "classes", "miou", _SEG, IGNORE, cross_entropy_loss, "SegMetric"),
}

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


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r} (known: {', '.join(TASKS)})") from None


def resize_label(label: torch.Tensor, size: tuple[int, int], task: str) -> torch.Tensor:
    """Resize a batched label to ``size``: nearest for discrete labels and for depth
    and normals too, so invalid pixels never blend into valid ones."""
    if tuple(label.shape[-2:]) == tuple(size):
        return label
    squeeze = label.dim() == 3
    x = label.unsqueeze(1) if squeeze else label
    out = F.interpolate(x.float(), size=size, mode="nearest")
    out = out.squeeze(1) if squeeze else out
    return out.to(label.dtype)


def resize_pred(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize a prediction map to ``size``."""
    if tuple(pred.shape[-2:]) == tuple(size):
        return pred
    return F.interpolate(pred, size=size, mode="bilinear", align_corners=False)


def task_loss(task: str, pred: torch.Tensor, target: torch.Tensor, label_mode: str = "upsample") -> torch.Tensor:
    """Loss of one task; if sizes differ, resize the label down (``downsample``) or
    the prediction up (``upsample``)."""
    if tuple(pred.shape[-2:]) != tuple(target.shape[-2:]):
        if label_mode == "downsample":
            target = resize_label(target, tuple(pred.shape[-2:]), task)
        else:
            pred = resize_pred(pred, tuple(target.shape[-2:]))
    return get_task(task).loss(pred, target)
