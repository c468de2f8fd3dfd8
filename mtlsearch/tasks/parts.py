"""Human parts (``parts``): a part-index map of people (PASCAL-Part), scored by mIoU.

Contract: logits (B, 7, H, W): 0 background, 1..6 the field's grouping of person parts
(head, torso, upper arms, lower arms/hands, upper legs, lower legs/feet); labels int64
(B, H, W), 255 = ignore (decoded uint8 (H, W)); cross-entropy, softmax, arg-max
predictions. Files: PASCAL_MT ``human_parts/<id>.mat`` (the ``anno`` struct: objects with
class, class_ind, mask, parts(part_name, mask)); an image without any person part is
all-ignore and counts as unlabelled for the task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mtlsearch.classes import IGNORE
from mtlsearch.data.files import read_mat
from mtlsearch.errors import UserError
from mtlsearch.tasks.base import LabelFiles
from mtlsearch.tasks.kinds import ClassTask
from mtlsearch.tasks.registry import register_task

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


class PascalFiles(LabelFiles):
    """``human_parts/<id>.mat``; a map without any person part carries no annotation."""

    def absent(self, label: np.ndarray) -> bool:
        return bool((label == IGNORE).all())


@register_task
class Parts(ClassTask):
    name = "parts"
    title = "parts"
    classes = {"synthrooms": 7, "nyud": 7, "pascal": 7}
    files = {"pascal": PascalFiles("human_parts", (".mat",), decode_human_parts)}
