"""Saliency (``sal``): a binary map of salient objects, scored by maxF.

Contract: logits (B, 1, H, W); labels float (B, 1, H, W) in [0, 1] (binarised at 0.5
when decoded), 255 = ignore; class-balanced BCE weighted by the batch's negative
fraction; sigmoid probabilities; ``eval.sal_protocol`` picks the maxF protocol. Files:
NYUD_MT ``saliency/<id>.png``, PASCAL_MT ``sal_distill/<id>.png`` (0..255 -> [0, 1],
binarised at 0.5 as ATRC/MTI-Net do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mtlsearch.classes import IGNORE
from mtlsearch.data.files import read_png
from mtlsearch.tasks.base import LabelFiles
from mtlsearch.tasks.kinds import BinaryTask
from mtlsearch.tasks.registry import register_task


def decode_saliency(path: Path) -> np.ndarray:
    """Saliency png 0..255 -> [0, 1], binarised at 0.5 as ATRC/MTI-Net do (float32)."""
    arr = read_png(path, "L")
    return (arr.astype(np.float32) / 255.0 > 0.5).astype(np.float32)


@register_task
class Sal(BinaryTask):
    name = "sal"
    metric = "maxf"
    metrics = {"maxf": "max"}
    scorer = "SaliencyMetric"
    title = "saliency"
    files = {
        "nyud": LabelFiles("saliency", (".png",), decode_saliency),
        "pascal": LabelFiles("sal_distill", (".png",), decode_saliency),
    }

    def bad_values(self, vals: np.ndarray) -> np.ndarray:
        return vals[((vals < 0) | (vals > 1)) & (vals != IGNORE)]

    def build_metric(self, num_classes: int | None, cfg_eval: Any) -> Any:
        from mtlsearch.metrics.saliency import SaliencyMetric

        return SaliencyMetric(protocol=getattr(cfg_eval, "sal_protocol", "atrc"))
