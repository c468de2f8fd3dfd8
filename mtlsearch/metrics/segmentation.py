"""Segmentation scores (semseg, parts): mIoU and pixel accuracy from one confusion
matrix per split.

Contract: :class:`SegMetric` follows :class:`~mtlsearch.metrics.base.Metric`; by default
mIoU is the official MTI-Net/InvPT protocol (mean over all classes, an absent class
scoring 0); ``eval.miou_classes: present`` averages over the classes that occur.
"""

from __future__ import annotations

import torch

from mtlsearch.metrics.base import (
    Metric,
    _fit,
    _pct,
    _squeeze_channel,
)
from mtlsearch.tasks import (
    IGNORE,
    resize_label,
)

# ---------------------------------------------------------------------------
# Segmentation (semseg, parts)
# ---------------------------------------------------------------------------


class SegMetric(Metric):
    """mIoU and pixel accuracy (percent) from a confusion matrix over the split.

    ``pred``: logits (B, C, H, W) (argmax; bilinearly resized to the label first if the
    sizes differ) or labels (B, H, W) (nearest-resized). ``target``: (B, H, W) or
    (B, 1, H, W) class indices, ``ignore_index`` skipped.

    Per-class IoU is ``TP / (TP + FP + FN)`` from the split's confusion matrix. ``classes``
    (``eval.miou_classes``) says which classes mIoU averages over:

    - ``"all"`` (default, the official protocol): every one of the ``num_classes`` classes;
      a class whose union ``TP + FP + FN`` is zero (absent from both the labels and the
      predictions of the split) scores 0. This is what MTI-Net's and InvPT's
      ``SemsegMeter``/``HumanPartsMeter`` compute: ``jac = tp / max(tp + fp + fn, 1e-8)``
      per class, accumulated over the whole split, ``mean(jac)`` over all classes (ATRC's
      ``MeanIoU`` and MTL-PyTorch count absent classes as 0 too).
    - ``"present"``: only classes with a non-zero union (the previous default here); higher
      than ``"all"`` whenever a split lacks some classes (compared with the official
      evaluator on the same predictions: 38.51 ``present`` vs 28.88 official),
      equal when every class occurs in the labels or the predictions.

    Without any valid pixel mIoU is NaN (the official meters would report 0). Pixel
    accuracy = correct / valid pixels.
    """

    names = ("miou", "pixel_acc")

    CLASSES = ("all", "present")
    """Values of ``classes`` (``eval.miou_classes``)."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE, *, classes: str = "all") -> None:
        if num_classes < 1:
            raise ValueError(f"SegMetric: num_classes must be >= 1, got {num_classes}")
        if classes not in self.CLASSES:
            raise ValueError(f"SegMetric: classes must be one of {self.CLASSES}, got {classes!r}")
        self.num_classes = int(num_classes)
        self.classes = classes
        self.ignore_index = ignore_index
        super().__init__()

    def _spec(self) -> dict[str, tuple[int, ...]]:
        return {"confusion": (self.num_classes, self.num_classes)}

    @property
    def confusion(self) -> torch.Tensor:
        """(C, C) pixel counts, rows = label, columns = prediction."""
        return self.state["confusion"]

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        target = _squeeze_channel(target, "SegMetric target").long()
        size = tuple(target.shape[-2:])
        if pred.dim() == 4:
            if pred.shape[1] != self.num_classes:
                raise ValueError(
                    f"SegMetric: logits have {pred.shape[1]} channels, expected {self.num_classes}"
                )
            labels = _fit(pred, size).argmax(dim=1)
        elif pred.dim() == 3:
            labels = resize_label(pred.long(), size)
        else:
            raise ValueError(f"SegMetric: pred must be (B, C, H, W) or (B, H, W), got {tuple(pred.shape)}")
        if labels.shape != target.shape:
            raise ValueError(f"SegMetric: pred {tuple(labels.shape)} vs target {tuple(target.shape)}")
        valid = target != self.ignore_index
        t, p = target[valid], labels[valid].to(target.device)
        c = self.num_classes
        if t.numel() and (t.min() < 0 or t.max() >= c or p.min() < 0 or p.max() >= c):
            raise ValueError(f"SegMetric: label or prediction outside [0, {c}) (ignore {self.ignore_index})")
        counts = torch.bincount(t * c + p, minlength=c * c).reshape(c, c)
        self.state["confusion"] += counts.to("cpu", torch.float64)

    def per_class_iou(self) -> torch.Tensor:
        """IoU of every class in [0, 1]; NaN where the union is zero."""
        cm = self.confusion
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))

    def compute(self) -> dict[str, float]:
        iou = self.per_class_iou()
        present = ~torch.isnan(iou)
        if not present.any():  # nothing accumulated (no valid pixel)
            miou = float("nan")
        elif self.classes == "all":
            miou = 100.0 * float(torch.nan_to_num(iou, nan=0.0).mean())
        else:
            miou = 100.0 * float(iou[present].mean())
        cm = self.confusion
        return {"miou": miou, "pixel_acc": _pct(float(cm.diag().sum()), float(cm.sum()))}
