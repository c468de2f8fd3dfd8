"""Reader for the NYUD_MT layout (NYUv2 as packaged for ATRC/InvPT, and SynthRooms).

::

    ROOT/images/<id>.png|jpg
    ROOT/depth/<id>.npy (metres, 0 = invalid)  or  <id>.png (uint16 millimetres)
    ROOT/normals/<id>.png (2 v / 255 - 1)       or  <id>.npy ([-1, 1])
    ROOT/edge/<id>.png|npy                      (> 0 = edge)
    ROOT/segmentation/<id>.png                  (0 = void -> 255, k -> k - 1)
    ROOT/saliency/<id>.png                      (optional; 0..255 -> {0, 1})
    ROOT/cameras/<id>.json                      (optional; {"K", "cam2world", "scene", "frame"})
    ROOT/gt_sets/{train,val}.txt
    ROOT/meta.json                              (optional; SynthRooms writes its class list)

A task is provided when its folder exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mtlsearch.classes import NUM_CLASSES
from mtlsearch.data.reader import (
    Reader,
    decode_binary,
    decode_class_png,
    decode_depth,
    decode_normals,
    decode_saliency,
    read_split,
)
from mtlsearch.errors import UserError

TASK_DIRS = {
    "semseg": ("segmentation", (".png",)),
    "depth": ("depth", (".npy", ".png")),
    "normals": ("normals", (".png", ".npy")),
    "edge": ("edge", (".png", ".npy")),
    "sal": ("saliency", (".png",)),
}
IMAGE_EXTS = (".png", ".jpg", ".jpeg")


class NyudReader(Reader):
    """NYUD_MT folder reader; ``layout`` is ``nyud`` (40 classes) or ``synthrooms``."""

    def __init__(self, root: str | Path, layout: str = "nyud") -> None:
        super().__init__(root)
        if layout not in ("nyud", "synthrooms"):
            raise UserError(f"data.layout: NYUD_MT reader cannot read layout {layout!r}")
        self.layout = layout
        self.tasks = tuple(t for t, (d, _) in TASK_DIRS.items() if (self.root / d).is_dir())
        if not (self.root / "images").is_dir():
            raise UserError(f"{self.root}: not a NYUD_MT folder (no images/ folder)")
        self.meta = self._read_meta()
        classes = self.meta.get("classes")
        n_sem = len(classes) if isinstance(classes, list) and classes else NUM_CLASSES[layout]["semseg"]
        self.num_classes = {"semseg": n_sem}
        self._has_cameras = (self.root / "cameras").is_dir()

    def _read_meta(self) -> dict:
        path = self.root / "meta.json"
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read {path}: {err}") from None
        return data if isinstance(data, dict) else {}

    @property
    def has_cameras(self) -> bool:
        return self._has_cameras

    def split_ids(self, split: str) -> list[str]:
        path = self.root / "gt_sets" / f"{split}.txt"
        if not path.is_file():
            raise UserError(f"missing split file: {path}")
        return read_split(path)

    def image_path(self, id_: str) -> Path:
        return self._find("images", id_, IMAGE_EXTS)

    def label_path(self, id_: str, task: str) -> Path:
        folder, exts = TASK_DIRS[task]
        return self._find(folder, id_, exts)

    def read_label(self, id_: str, task: str) -> np.ndarray:
        self.check_tasks([task])
        path = self.label_path(id_, task)
        if task == "semseg":
            raw = decode_class_png(path)
            # 0 = void -> 255; k -> k - 1 (uint8 wrap-around maps 0 to 255 exactly).
            return (raw - np.uint8(1)).astype(np.uint8)
        if task == "depth":
            return decode_depth(path)
        if task == "normals":
            return decode_normals(path)
        if task == "edge":
            return decode_binary(path)
        if task == "sal":
            return decode_saliency(path)
        raise UserError(f"task {task!r} is not provided by the {self.layout} dataset at {self.root}")
