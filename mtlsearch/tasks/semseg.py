"""Semantic segmentation (``semseg``): a class-index map scored by mIoU.

Contract: logits (B, C, H, W) with C classes of the dataset layout; labels int64
(B, H, W), 255 = ignore (decoded uint8 (H, W)); cross-entropy, softmax, arg-max
predictions. Files: NYUD_MT ``segmentation/<id>.png`` (0 = void -> 255, k -> k - 1; the
class count from ``meta.json``'s class list when SynthRooms wrote one), PASCAL_MT
``semseg/VOC12/<id>.png`` or else ``semseg/pascal-context/<id>.png`` (values as stored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mtlsearch.classes import SYNTHROOMS_CLASSES
from mtlsearch.tasks.base import LabelFiles
from mtlsearch.tasks.kinds import ClassTask, decode_class_png
from mtlsearch.tasks.registry import register_task


def decode_nyud_classes(path: Path) -> np.ndarray:
    """NYUD_MT class png: 0 = void -> 255; k -> k - 1 (uint8 wrap-around maps 0 to 255)."""
    raw = decode_class_png(path)
    return (raw - np.uint8(1)).astype(np.uint8)


class NyudFiles(LabelFiles):
    """``segmentation/<id>.png``; the class count from SynthRooms' ``meta.json``."""

    def num_classes(self, reader: Any) -> int | None:
        classes = getattr(reader, "meta", {}).get("classes")
        return len(classes) if isinstance(classes, list) and classes else None


class PascalFiles(LabelFiles):
    """The VOC12 map when present, else the pascal-context one."""

    def path(self, root: Path, id_: str) -> Path:
        voc = root / self.folder / "VOC12" / f"{id_}.png"
        return voc if voc.is_file() else root / self.folder / "pascal-context" / f"{id_}.png"


@register_task
class Semseg(ClassTask):
    name = "semseg"
    title = "segmentation"
    classes = {"synthrooms": len(SYNTHROOMS_CLASSES), "nyud": 40, "pascal": 21}
    files = {
        "nyud": NyudFiles("segmentation", (".png",), decode_nyud_classes),
        "pascal": PascalFiles("semseg", (".png",), decode_class_png),
    }
