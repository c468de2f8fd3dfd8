"""Surface normals (``normals``): unit vectors in the camera frame, scored by angle errors.

Contract: prediction (B, 3, H, W) of any norm (L2-normalised to score, average or
save); labels float (B, 3, H, W), unit vectors in the OpenCV camera frame (x right, y
down, z forward), all-zero = invalid (decoded float32 (H, W, 3)); L1 between the
normalised prediction and the label. A horizontal flip negates x; a camera rotation R
(new-from-old) maps n to R n, which is how the regularizer's cross-view renders see the
field's normals. Files: NYUD_MT ``normals/<id>.png`` (2 v / 255 - 1) or ``.npy``
([-1, 1]); PASCAL_MT ``normals_distill/<id>.png``, kept only on Context classes that
NYUv2 has (when the folder has the Context label maps and the reader masks normals).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mtlsearch.data.files import read_npy, read_png
from mtlsearch.errors import UserError
from mtlsearch.tasks.base import LabelCheck, LabelFiles, TaskSpec, empty_loss
from mtlsearch.tasks.registry import register_task

NORMALS_VALID_CONTEXT_CLASSES = frozenset({
    3, 4, 6, 9, 10, 11, 13, 15, 17, 18, 22, 23, 29, 30, 33, 34, 36, 37, 38, 39, 41, 43,
    46, 49, 50, 51, 53, 55, 56, 59, 61, 62, 65, 66, 68, 69, 72, 73, 78, 83, 84, 85, 87, 88,
    95, 96, 101, 104, 105, 107, 111, 113, 115, 122, 124, 135, 141, 142, 143, 146, 150, 154,
    157, 158, 159, 165, 172, 174, 181, 183, 184, 191, 193, 195, 197, 199, 202, 213, 215,
    216, 219, 220, 223, 225, 228, 230, 232, 233, 238, 239, 242, 243, 246, 250, 251, 252,
    255, 260, 261, 263, 269, 272, 273, 275, 281, 283, 284, 285, 286, 287, 288, 290, 291,
    292, 293, 295, 304, 307, 309, 310, 314, 315, 319, 323, 329, 330, 331, 336, 342, 345,
    349, 350, 351, 352, 355, 357, 368, 370, 371, 374, 379, 380, 383, 384, 397, 401, 403,
    405, 407, 408, 411, 412, 413, 414, 417, 419, 421, 423, 427, 429, 430, 432, 440, 441,
    442, 443, 444, 446, 454, 457,
})
"""PASCAL-Context label ids (459-class LabelMap) whose name is also an NYUv2 class, plus
tvmonitor (427): the classes on which the distilled normals are valid."""


def normals_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the L2-normalised prediction and the unit label, on valid pixels."""
    valid = target.abs().sum(dim=1, keepdim=True) > 0
    if not valid.any():
        return empty_loss(pred)
    unit = F.normalize(pred, dim=1)
    return (unit - target).abs().masked_select(valid.expand_as(pred)).mean()


def decode_normals(path: Path) -> np.ndarray:
    """Unit normals (H, W, 3): ``.png`` decoded as 2 v / 255 - 1, ``.npy`` in [-1, 1].
    Pixels that decode to (near) zero length are invalid and set to exactly zero."""
    if path.suffix == ".npy":
        arr = read_npy(path).astype(np.float32)
    else:
        raw = read_png(path, "RGB")
        arr = raw.astype(np.float32) * (2.0 / 255.0) - 1.0
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise UserError(f"{path}: normals must be (H, W, 3), got shape {arr.shape}")
    norm = np.sqrt((arr * arr).sum(axis=2, keepdims=True))
    valid = norm > 0.5
    arr = np.where(valid, arr / np.maximum(norm, 1e-6), 0.0).astype(np.float32)
    return arr


class PascalFiles(LabelFiles):
    """``normals_distill/<id>.png``, zero (invalid) outside the NYUv2 classes of the
    image's Context label map."""

    def read(self, reader: Any, id_: str) -> np.ndarray:
        path = self.path(reader.root, id_)
        normals = decode_normals(path)
        if reader.mask_normals and reader.has_context:
            labels = reader.context_labels(id_)
            if labels.shape != normals.shape[:2]:
                raise UserError(
                    f"{reader.context_path(id_)}: size {labels.shape} differs from {path}'s"
                    f" {normals.shape[:2]}"
                )
            keep = np.isin(labels, list(NORMALS_VALID_CONTEXT_CLASSES))
            normals[~keep] = 0.0
        return normals


@register_task
class Normals(TaskSpec):
    name = "normals"
    kind = "normals"
    metric = "mean_err"
    metrics = {"mean_err": "min", "median_err": "min", "rmse": "min",
               "within_11_25": "max", "within_22_5": "max", "within_30": "max"}
    ignore = 0.0
    scorer = "NormalsMetric"
    title = "normals"
    out_channels = 3
    label_channels = 3
    files = {
        "nyud": LabelFiles("normals", (".png", ".npy"), decode_normals),
        "pascal": PascalFiles("normals_distill", (".png",), decode_normals),
    }

    def transform_label(self, window: np.ndarray, inside: np.ndarray, scale: float, flip: bool) -> torch.Tensor:
        out = np.where(inside[..., None], window, np.float32(self.ignore))
        if flip:
            out[..., 0] = -out[..., 0]
        return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))

    def label_array(self, label: torch.Tensor) -> np.ndarray:
        return label.permute(1, 2, 0).numpy()

    def check_label(self, label: np.ndarray, num_classes: int) -> LabelCheck:
        norm = np.linalg.norm(label, axis=2)
        valid = norm > 0
        fraction = float(valid.mean())
        ranges = {"normals valid fraction": (fraction, fraction)}
        if (np.abs(norm[valid] - 1.0) > 0.05).any():
            return LabelCheck("normals of non-unit length", ranges=ranges)
        return LabelCheck(ranges=ranges)

    def example_label(self, batch: int, size: tuple[int, int], channels: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        return F.normalize(torch.randn(batch, 3, *size, generator=generator), dim=1)

    def loss(self, pred: torch.Tensor, target: torch.Tensor, cfg: Any = None) -> torch.Tensor:
        return normals_l1_loss(pred, target)

    def activate(self, pred: torch.Tensor) -> torch.Tensor:
        return F.normalize(pred, dim=1)

    def decode_prediction(self, pred: torch.Tensor) -> np.ndarray:
        return F.normalize(pred, dim=0).permute(1, 2, 0).numpy().astype(np.float32)

    def valid(self, label: np.ndarray) -> np.ndarray:
        return np.abs(np.asarray(label)).sum(axis=-1) > 0

    def preview(self, value: np.ndarray, limits: tuple[float, float] | None = None,
                prediction: bool = False) -> np.ndarray:
        """Vectors as colours, (n + 1) / 2 per channel (x red, y green, z blue)."""
        from matplotlib.cm import ScalarMappable

        rgb = np.clip((np.asarray(value) + 1) / 2, 0, 1)
        rgba = ScalarMappable().to_rgba(rgb, bytes=True, norm=False)
        if not prediction:
            rgba[~self.valid(value)] = 0
        return rgba

    def build_metric(self, num_classes: int | None, cfg_eval: Any) -> Any:
        from mtlsearch.metrics.geometry import NormalsMetric

        return NormalsMetric()

    def rotate(self, values: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bkc,brc->brk", rotation, values)

    def finish_render(self, value: torch.Tensor) -> torch.Tensor:
        return F.normalize(value, dim=1)
