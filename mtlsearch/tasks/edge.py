"""Boundaries (``edge``): a binary map of object boundaries, scored by ODS/OIS F.

Contract: logits (B, 1, H, W); labels float (B, 1, H, W) in {0, 1}, 255 = ignore;
class-balanced BCE whose positive weight is ``loss.edge_pos_weight`` (negatives weigh
1 - w); sigmoid probabilities. Scored per image on its unpadded part. Files: NYUD_MT
``edge/<id>.png|npy`` (> 0 = edge); PASCAL_MT derives edges from the Context label map
(``pascal-context/trainval/<id>.mat``): cv2.Laplacian with ksize 1 (3x3 kernel
[0 1 0; 1 -4 1; 0 1 0], reflect-101 border), nonzero -> edge, thinned with Guo-Hall's
two-subiteration algorithm (skimage.morphology.thin).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mtlsearch.data.files import read_npy, read_png
from mtlsearch.errors import UserError
from mtlsearch.tasks.base import LabelFiles
from mtlsearch.tasks.kinds import BinaryTask
from mtlsearch.tasks.registry import register_task


def decode_binary(path: Path) -> np.ndarray:
    """Edge map from ``.png`` or ``.npy``: value > 0 -> 1, else 0 (float32)."""
    arr = read_npy(path) if path.suffix == ".npy" else read_png(path)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise UserError(f"{path}: expected an (H, W) map, got shape {arr.shape}")
    return (arr > 0).astype(np.float32)


def laplacian(labels: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian (kernel [0 1 0; 1 -4 1; 0 1 0]) with reflect-101 borders:
    ``cv2.Laplacian`` with ``ksize=1``, in float64 so label ids stay exact."""
    import cv2

    return cv2.Laplacian(labels.astype(np.float64), cv2.CV_64F, ksize=1,
                         borderType=cv2.BORDER_REFLECT_101)


def thin(mask: np.ndarray) -> np.ndarray:
    """Morphological thinning of a binary mask to one-pixel-wide curves (Guo & Hall 1989,
    ``skimage.morphology.thin``), iterated until nothing changes."""
    import skimage.morphology

    return skimage.morphology.thin(np.asarray(mask, dtype=bool))


def context_edges(labels: np.ndarray) -> np.ndarray:
    """Edge label from a Context label map: thin(|Laplacian| > 0) as float32 {0, 1}."""
    return thin(np.abs(laplacian(labels)) > 0).astype(np.float32)


class PascalFiles(LabelFiles):
    """Edges of the reader's Context label map of the image."""

    def read(self, reader: Any, id_: str) -> np.ndarray:
        return context_edges(reader.context_labels(id_))


@register_task
class Edge(BinaryTask):
    name = "edge"
    metric = "odsf"
    metrics = {"odsf": "max", "oisf": "max"}
    scorer = "EdgeMetric"
    title = "edges"
    unpadded = True
    files = {
        "nyud": LabelFiles("edge", (".png", ".npy"), decode_binary),
        "pascal": PascalFiles("pascal-context/trainval", (".mat",)),
    }

    def pos_weight(self, cfg: Any) -> float | None:
        if cfg is None:
            from mtlsearch.config.schema import LossConfig

            return LossConfig().edge_pos_weight
        return cfg.loss.edge_pos_weight

    def build_metric(self, num_classes: int | None, cfg_eval: Any) -> Any:
        from mtlsearch.metrics.boundaries import EdgeMetric

        return EdgeMetric(max_dist=cfg_eval.edge_max_dist, thresholds=cfg_eval.edge_thresholds)
