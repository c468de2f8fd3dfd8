"""Reader for the PASCAL_MT layout (PASCAL-Context as packaged for ASTMT/ATRC/InvPT).

::

    ROOT/JPEGImages/<id>.jpg
    ROOT/ImageSets/Context/{train,val}.txt
    ROOT/semseg/VOC12/<id>.png or semseg/pascal-context/<id>.png   (21 classes, 255 ignore)
    ROOT/human_parts/<id>.mat                  (PASCAL-Part ``anno`` struct)
    ROOT/normals_distill/<id>.png              (2 v / 255 - 1)
    ROOT/sal_distill/<id>.png                  (0..255 -> [0, 1], binarised at 0.5)
    ROOT/pascal-context/trainval/<id>.mat      (``LabelMap``: 459 Context classes)

Decoding follows the field's loaders (ASTMT, MTI-Net, ATRC):

* semseg: the VOC12 map when present, else the pascal-context one, values as stored.
* parts: the ``anno`` struct holds ``objects`` (fields class, class_ind, mask, parts);
  each person (class_ind 15) with parts paints its parts (fields part_name, mask) with
  the 6-part grouping (head, torso, upper arms, lower arms/hands, upper legs, lower
  legs/feet), 0 = background. An image without any person part is all-ignore (255).
* edge: Laplacian of the Context label map (cv2.Laplacian with ksize 1: 3x3 kernel
  [0 1 0; 1 -4 1; 0 1 0], reflect-101 border), nonzero -> edge, then thinned with
  Guo-Hall's two-subiteration algorithm (skimage.morphology.thin).
* normals: distilled normals kept only on Context classes that exist in NYUv2's class
  list (plus tvmonitor), zero (invalid) elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import skimage.morphology

from mtlsearch.data.reader import (
    IGNORE,
    Reader,
    decode_class_png,
    decode_normals,
    decode_saliency,
    read_mat,
    read_split,
)
from mtlsearch.errors import UserError

PERSON_CLASS = 15
"""PASCAL VOC class index of ``person`` in the PASCAL-Part annotations."""

HUMAN_PARTS_6 = {
    "hair": 1, "head": 1, "lear": 1, "lebrow": 1, "leye": 1, "mouth": 1, "nose": 1,
    "rear": 1, "rebrow": 1, "reye": 1,
    "neck": 2, "torso": 2,
    "luarm": 3, "ruarm": 3,
    "lhand": 4, "llarm": 4, "rhand": 4, "rlarm": 4,
    "luleg": 5, "ruleg": 5,
    "lfoot": 6, "llleg": 6, "rfoot": 6, "rlleg": 6,
}
"""PASCAL-Part person part names -> the 6-part grouping used by the field (0 = background)."""

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

TASK_DIRS = {
    "semseg": "semseg",
    "parts": "human_parts",
    "normals": "normals_distill",
    "sal": "sal_distill",
    "edge": "pascal-context/trainval",
}


class PascalReader(Reader):
    """PASCAL_MT folder reader (semseg, parts, normals, sal, edge; no depth, no cameras)."""

    layout = "pascal"

    def __init__(self, root: str | Path, mask_normals: bool = True) -> None:
        super().__init__(root)
        if not (self.root / "JPEGImages").is_dir():
            raise UserError(f"{self.root}: not a PASCAL_MT folder (no JPEGImages/ folder)")
        self.tasks = tuple(t for t, d in TASK_DIRS.items() if (self.root / d).is_dir())
        self.num_classes = {"semseg": 21, "parts": 7}
        self.mask_normals = mask_normals

    def split_ids(self, split: str) -> list[str]:
        path = self.root / "ImageSets" / "Context" / f"{split}.txt"
        if not path.is_file():
            raise UserError(f"missing split file: {path}")
        return read_split(path)

    def image_path(self, id_: str) -> Path:
        return self._find("JPEGImages", id_, (".jpg", ".jpeg", ".png"))

    def label_path(self, id_: str, task: str) -> Path:
        if task == "semseg":
            voc = self.root / "semseg" / "VOC12" / f"{id_}.png"
            return voc if voc.is_file() else self.root / "semseg" / "pascal-context" / f"{id_}.png"
        if task == "parts":
            return self.root / "human_parts" / f"{id_}.mat"
        if task == "normals":
            return self.root / "normals_distill" / f"{id_}.png"
        if task == "sal":
            return self.root / "sal_distill" / f"{id_}.png"
        if task == "edge":
            return self.context_path(id_)
        raise UserError(f"task {task!r} is not provided by the pascal dataset at {self.root}")

    def context_path(self, id_: str) -> Path:
        return self.root / "pascal-context" / "trainval" / f"{id_}.mat"

    def context_labels(self, id_: str) -> np.ndarray:
        """The 459-class PASCAL-Context label map of ``id_``."""
        path = self.context_path(id_)
        mat = read_mat(path)
        if "LabelMap" not in mat:
            raise UserError(f"{path}: no 'LabelMap' variable")
        labels = np.asarray(mat["LabelMap"])
        if labels.ndim != 2 or labels.dtype.kind not in "biuf":
            raise UserError(f"{path}: LabelMap must be a 2-D numeric array, got {labels.dtype} "
                            f"of shape {labels.shape}")
        return labels

    def read_label(self, id_: str, task: str) -> np.ndarray:
        self.check_tasks([task])
        path = self.label_path(id_, task)
        if task == "semseg":
            return decode_class_png(path)
        if task == "parts":
            return decode_human_parts(path)
        if task == "normals":
            normals = decode_normals(path)
            if self.mask_normals and (self.root / TASK_DIRS["edge"]).is_dir():
                labels = self.context_labels(id_)
                if labels.shape != normals.shape[:2]:
                    raise UserError(
                        f"{self.context_path(id_)}: size {labels.shape} differs from {path}'s"
                        f" {normals.shape[:2]}"
                    )
                keep = np.isin(labels, list(NORMALS_VALID_CONTEXT_CLASSES))
                normals[~keep] = 0.0
            return normals
        if task == "sal":
            return decode_saliency(path)
        if task == "edge":
            return context_edges(self.context_labels(id_))
        raise UserError(f"task {task!r} is not provided by the pascal dataset at {self.root}")

    def label_absent(self, task: str, label: np.ndarray) -> bool:
        return task == "parts" and bool((label == IGNORE).all())


# ---------------------------------------------------------------------------
# Human parts
# ---------------------------------------------------------------------------


def _field(record: Any, name: str, index: int) -> Any:
    """A struct field by name (scipy records) or by position (the field's indexing)."""
    names = getattr(getattr(record, "dtype", None), "names", None)
    if names and name in names:
        return record[name]
    return record[index]


def decode_human_parts(path: Path) -> np.ndarray:
    """uint8 (H, W): 0 background, 1..6 parts of people; all 255 without any person part."""
    mat = read_mat(path)
    try:
        anno = mat["anno"][0][0]
        objects = np.asarray(_field(anno, "objects", 1)).reshape(-1)
        target: np.ndarray | None = None
        shape: tuple[int, ...] | None = None
        for obj in objects:
            mask = np.asarray(_field(obj, "mask", 2))
            shape = shape or mask.shape
            class_ind = int(np.asarray(_field(obj, "class_ind", 1)).reshape(-1)[0])
            parts = np.asarray(_field(obj, "parts", 3))
            if class_ind != PERSON_CLASS or parts.size == 0:
                continue
            if target is None:
                target = np.zeros(mask.shape, dtype=np.uint8)
            for part in parts.reshape(-1):
                name = str(np.asarray(_field(part, "part_name", 0)).reshape(-1)[0])
                if name not in HUMAN_PARTS_6:
                    raise UserError(f"{path}: unknown person part name {name!r}")
                pmask = np.asarray(_field(part, "mask", 1)).astype(bool)
                target[pmask] = HUMAN_PARTS_6[name]
    except UserError:
        raise
    except (KeyError, IndexError, ValueError, TypeError) as err:
        raise UserError(f"{path}: not a PASCAL-Part 'anno' struct ({err})") from None
    if target is None or not target.any():
        if shape is None:
            raise UserError(f"{path}: the 'anno' struct lists no objects; cannot tell the size")
        return np.full(shape, IGNORE, dtype=np.uint8)
    return target


# ---------------------------------------------------------------------------
# Edges from Context label maps
# ---------------------------------------------------------------------------


def laplacian(labels: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian (kernel [0 1 0; 1 -4 1; 0 1 0]) with reflect-101 borders:
    ``cv2.Laplacian`` with ``ksize=1``, in float64 so label ids stay exact."""
    return cv2.Laplacian(labels.astype(np.float64), cv2.CV_64F, ksize=1,
                         borderType=cv2.BORDER_REFLECT_101)


def thin(mask: np.ndarray) -> np.ndarray:
    """Morphological thinning of a binary mask to one-pixel-wide curves (Guo & Hall 1989,
    ``skimage.morphology.thin``), iterated until nothing changes."""
    return skimage.morphology.thin(np.asarray(mask, dtype=bool))


def context_edges(labels: np.ndarray) -> np.ndarray:
    """Edge label from a Context label map: thin(|Laplacian| > 0) as float32 {0, 1}."""
    return thin(np.abs(laplacian(labels)) > 0).astype(np.float32)
