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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mtlsearch.classes import (  # noqa: F401  (re-exported)
    IGNORE,
    NUM_CLASSES,
    SYNTHROOMS_CLASSES,
    SYNTHROOMS_OBJECT_CLASSES,
)


@dataclass(frozen=True)
class TaskSpec:
    """A task's contract: output channels, label encoding, loss, primary metric."""

    name: str
    kind: str  # "classes" | "regression" | "normals" | "binary"
    metric: str  # primary metric key reported as f"{name}/{metric}"
    higher_is_better: bool
    ignore: float
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

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


TASKS: dict[str, TaskSpec] = {
    "semseg": TaskSpec("semseg", "classes", "miou", True, IGNORE, cross_entropy_loss),
    "depth": TaskSpec("depth", "regression", "rmse", False, 0.0, depth_l1_loss),
    "normals": TaskSpec("normals", "normals", "mean_err", False, 0.0, normals_l1_loss),
    "edge": TaskSpec("edge", "binary", "odsf", True, IGNORE, balanced_bce_loss(0.95)),
    "sal": TaskSpec("sal", "binary", "maxf", True, IGNORE, balanced_bce_loss(None)),
    "parts": TaskSpec("parts", "classes", "miou", True, IGNORE, cross_entropy_loss),
}


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
