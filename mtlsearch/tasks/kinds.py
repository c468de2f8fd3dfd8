"""Behaviour shared by tasks of one label family: class maps and binary maps.

Contract: :class:`ClassTask` (semseg, parts: int64 class-index labels, cross-entropy,
softmax, arg-max predictions, mIoU) and :class:`BinaryTask` (edge, sal: {0, 1} float
labels, class-balanced BCE on logits, sigmoid, probabilities) implement the hooks of
:class:`~mtlsearch.tasks.base.TaskSpec` for their family; a task module subclasses one
and adds what is its own (class counts, files, metric, the BCE's positive weight).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mtlsearch.classes import IGNORE
from mtlsearch.data.files import read_png
from mtlsearch.errors import UserError
from mtlsearch.tasks.base import LabelCheck, LossFn, TaskSpec, empty_loss

# ---------------------------------------------------------------------------
# Class maps
# ---------------------------------------------------------------------------


def cross_entropy_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel-wise cross-entropy, ignoring label 255."""
    if not (target != IGNORE).any():
        return empty_loss(pred)
    return F.cross_entropy(pred, target.long(), ignore_index=IGNORE)


def decode_class_png(path: Path) -> np.ndarray:
    """Raw single-channel class-index png (palette or grey), uint8 (H, W)."""
    arr = read_png(path)
    if arr.ndim == 3:
        raise UserError(f"{path}: a class map must be single-channel (palette or grey)")
    if arr.dtype != np.uint8:
        if arr.max(initial=0) > 255:
            raise UserError(f"{path}: class values above 255")
        arr = arr.astype(np.uint8)
    return arr


class ClassTask(TaskSpec):
    """A class-index map: logits (B, C, H, W); labels int64 (B, H, W), 255 = ignore;
    decoded labels uint8 (H, W)."""

    kind = "classes"
    metric = "miou"
    metrics = {"miou": "max", "pixel_acc": "max"}
    ignore = IGNORE
    scorer = "SegMetric"
    label_dtype = np.uint8
    cmap = "tab20"

    def channels(self, layout: str = "synthrooms", classes: Mapping[str, int] | None = None) -> int:
        if classes and self.name in classes:
            return classes[self.name]
        return self.classes[layout]

    @property
    def discrete(self) -> bool:
        return True

    def transform_label(self, window: np.ndarray, inside: np.ndarray, scale: float, flip: bool) -> torch.Tensor:
        out = np.where(inside, window, window.dtype.type(self.ignore))
        return torch.from_numpy(out.astype(np.int64))

    def label_array(self, label: torch.Tensor) -> np.ndarray:
        return label.numpy()

    def check_label(self, label: np.ndarray, num_classes: int) -> LabelCheck:
        vals = np.unique(label)
        bad = vals[(vals >= num_classes) & (vals != IGNORE)]
        seen = frozenset(int(v) for v in vals if v != IGNORE)
        if bad.size:
            return LabelCheck(f"class values {bad.tolist()[:8]} outside 0..{num_classes - 1} "
                              f"(and {IGNORE} ignore)", seen)
        return LabelCheck(None, seen)

    def example_label(self, batch: int, size: tuple[int, int], channels: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randint(0, channels, (batch, *size), generator=generator)

    def loss(self, pred: torch.Tensor, target: torch.Tensor, cfg: Any = None) -> torch.Tensor:
        return cross_entropy_loss(pred, target)

    def activate(self, pred: torch.Tensor) -> torch.Tensor:
        return pred.softmax(dim=1)

    def deactivate(self, value: torch.Tensor) -> torch.Tensor:
        return value.clamp_min(1e-12).log()

    def decode_prediction(self, pred: torch.Tensor) -> np.ndarray:
        return pred.argmax(0).to(torch.uint8).numpy()

    def summary(self, value: np.ndarray) -> str:
        return f"{self.name} {len(np.unique(value))} classes"

    def colour_scale(self, label: np.ndarray, channels: int) -> tuple[float, float] | None:
        return 0.0, float(channels - 1)  # the same colour per class id in every panel

    def build_metric(self, num_classes: int | None, cfg_eval: Any) -> Any:
        from mtlsearch.metrics.segmentation import SegMetric

        return SegMetric(num_classes, classes=getattr(cfg_eval, "miou_classes", "all"))


# ---------------------------------------------------------------------------
# Binary maps
# ---------------------------------------------------------------------------


def balanced_bce_loss(pos_weight: float | None) -> LossFn:
    """Class-balanced BCE on logits, ignoring 255.

    With ``pos_weight`` w, positives weigh w and negatives 1 - w (``loss.edge_pos_weight``
    for edges); with ``None`` the weight is the batch's negative fraction (saliency).
    """

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != IGNORE
        if not valid.any():
            return empty_loss(pred)
        y = target[valid].float()
        logits = pred[valid]
        w = float(1.0 - y.mean()) if pos_weight is None else pos_weight
        weights = torch.where(y > 0.5, torch.full_like(y, w), torch.full_like(y, 1.0 - w))
        return F.binary_cross_entropy_with_logits(logits, y, weight=weights, reduction="sum") / y.numel()

    return loss


class BinaryTask(TaskSpec):
    """A binary map: logits (B, 1, H, W); labels float (B, 1, H, W) in {0, 1}, 255 =
    ignore; decoded predictions are probabilities."""

    kind = "binary"
    ignore = IGNORE
    cmap = "gray"

    @property
    def discrete(self) -> bool:
        return True

    def pos_weight(self, cfg: Any) -> float | None:
        """The BCE's positive weight (None: the batch's negative fraction)."""
        return None

    def loss(self, pred: torch.Tensor, target: torch.Tensor, cfg: Any = None) -> torch.Tensor:
        return balanced_bce_loss(self.pos_weight(cfg))(pred, target)

    def bad_values(self, vals: np.ndarray) -> np.ndarray:
        """The values of ``vals`` (unique label values) a label may not hold."""
        return vals[(vals != 0) & (vals != 1) & (vals != IGNORE)]

    def check_label(self, label: np.ndarray, num_classes: int) -> LabelCheck:
        bad = self.bad_values(np.unique(label))
        if bad.size:
            return LabelCheck(f"values {bad.tolist()[:8]} outside [0, 1]")
        pos = float((label == 1).mean())
        return LabelCheck(ranges={f"{self.name} positive fraction": (pos, pos)})

    def example_label(self, batch: int, size: tuple[int, int], channels: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        return (torch.rand(batch, 1, *size, generator=generator) > 0.9).float()

    def activate(self, pred: torch.Tensor) -> torch.Tensor:
        return pred.sigmoid()

    def deactivate(self, value: torch.Tensor) -> torch.Tensor:
        return torch.logit(value.clamp(1e-6, 1.0 - 1e-6))

    def decode_prediction(self, pred: torch.Tensor) -> np.ndarray:
        return torch.sigmoid(pred[0]).numpy().astype(np.float32)

    def colour_scale(self, label: np.ndarray, channels: int) -> tuple[float, float] | None:
        return 0.0, 1.0
