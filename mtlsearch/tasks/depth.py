"""Depth (``depth``): z-depth in metres, scored by RMSE.

Contract: prediction metres (B, 1, H, W); labels float (B, 1, H, W) in metres, 0 =
invalid; L1 on valid pixels. Scaling the scene by s divides depths by s. Output layers
start at ``model.depth_init`` metres. The regularizer renders depth as the expected ray
depth (``ray_depth``). Files: NYUD_MT ``depth/<id>.npy`` (metres) or ``.png`` (uint16
millimetres).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtlsearch.data.files import read_npy, read_png
from mtlsearch.errors import UserError
from mtlsearch.tasks.base import LabelCheck, LabelFiles, TaskSpec, empty_loss
from mtlsearch.tasks.registry import register_task


def depth_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 on valid depth pixels (label > 0)."""
    valid = target > 0
    if not valid.any():
        return empty_loss(pred)
    return (pred - target).abs()[valid].mean()


def decode_depth(path: Path) -> np.ndarray:
    """Depth in metres, 0 = invalid: ``.npy`` metres or ``.png`` uint16 millimetres."""
    if path.suffix == ".png":
        arr = read_png(path)
        if arr.dtype not in (np.uint16, np.int32, np.uint8) or arr.ndim != 2:
            raise UserError(f"{path}: depth png must be single-channel uint16 millimetres")
        return arr.astype(np.float32) / 1000.0
    arr = read_npy(path)
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise UserError(f"{path}: depth must be an (H, W) array, got shape {arr.shape}")
    arr = arr.astype(np.float32)
    arr[~np.isfinite(arr)] = 0.0
    return arr


@register_task
class Depth(TaskSpec):
    name = "depth"
    kind = "regression"
    metric = "rmse"
    metrics = {"rmse": "min", "abs_rel": "min", "log_rmse": "min", "sq_rel": "min"}
    ignore = 0.0
    scorer = "DepthMetric"
    title = "depth"
    files = {"nyud": LabelFiles("depth", (".npy", ".png"), decode_depth)}
    ray_depth = True

    def transform_label(self, window: np.ndarray, inside: np.ndarray, scale: float, flip: bool) -> torch.Tensor:
        return super().transform_label(window / np.float32(scale), inside, scale, flip)

    def check_label(self, label: np.ndarray, num_classes: int) -> LabelCheck:
        if not np.isfinite(label).all():
            return LabelCheck("non-finite depth values")
        if (label < 0).any():
            return LabelCheck(f"negative depth (min {float(label.min()):.3f})")
        valid = label[label > 0]
        if valid.size:
            return LabelCheck(ranges={"depth (m)": (float(valid.min()), float(valid.max()))})
        return LabelCheck()

    def example_label(self, batch: int, size: tuple[int, int], channels: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.rand(batch, 1, *size, generator=generator) * 9 + 0.5

    def loss(self, pred: torch.Tensor, target: torch.Tensor, cfg: Any = None) -> torch.Tensor:
        return depth_l1_loss(pred, target)

    def output_bias(self, model_cfg: Any) -> float | None:
        return float(model_cfg.depth_init)

    def summary(self, value: np.ndarray) -> str:
        return f"depth {value.min():.2f}-{value.max():.2f} m"

    def valid(self, label: np.ndarray) -> np.ndarray:
        return np.asarray(label) > 0

    def colour_scale(self, label: np.ndarray, channels: int) -> tuple[float, float] | None:
        values = label[self.valid(label) & np.isfinite(label)]
        return (float(values.min()), float(values.max())) if values.size else None

    def build_metric(self, num_classes: int | None, cfg_eval: Any) -> Any:
        from mtlsearch.metrics.geometry import DepthMetric

        return DepthMetric(clamp=getattr(cfg_eval, "depth_clamp", True))
