"""Reader for the PASCAL_MT layout (PASCAL-Context as packaged for ASTMT/ATRC/InvPT).

::

    ROOT/JPEGImages/<id>.jpg
    ROOT/ImageSets/Context/{train,val}.txt
    ROOT/semseg/VOC12/<id>.png or semseg/pascal-context/<id>.png   (21 classes, 255 ignore)
    ROOT/human_parts/<id>.mat                  (PASCAL-Part ``anno`` struct)
    ROOT/normals_distill/<id>.png              (2 v / 255 - 1)
    ROOT/sal_distill/<id>.png                  (0..255 -> [0, 1], binarised at 0.5)
    ROOT/pascal-context/trainval/<id>.mat      (``LabelMap``: 459 Context classes)

Decoding follows the field's loaders (ASTMT, MTI-Net, ATRC) and lives with each task
(``TaskSpec.files["pascal"]``, :mod:`mtlsearch.tasks`): semseg the VOC12 map when present,
else the pascal-context one; parts from the PASCAL-Part ``anno`` struct (6-part grouping,
all-ignore without any person part); edge from the Context label map (Laplacian, thinned);
normals kept only on Context classes that exist in NYUv2. This reader knows the folder:
splits, images and the Context label map that edge and normals read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlsearch.data.reader import Reader, read_mat, read_split
from mtlsearch.errors import UserError

CONTEXT_DIR = "pascal-context/trainval"
"""Folder of the 459-class PASCAL-Context label maps (``<id>.mat``, ``LabelMap``)."""


class PascalReader(Reader):
    """PASCAL_MT folder reader (no depth, no cameras)."""

    layout = "pascal"
    format = "pascal"

    def __init__(self, root: str | Path, mask_normals: bool = True) -> None:
        super().__init__(root)
        if not (self.root / "JPEGImages").is_dir():
            raise UserError(f"{self.root}: not a PASCAL_MT folder (no JPEGImages/ folder)")
        self.mask_normals = mask_normals
        self.find_tasks()

    def split_ids(self, split: str) -> list[str]:
        path = self.root / "ImageSets" / "Context" / f"{split}.txt"
        if not path.is_file():
            raise UserError(f"missing split file: {path}")
        return read_split(path)

    def image_path(self, id_: str) -> Path:
        return self._find("JPEGImages", id_, (".jpg", ".jpeg", ".png"))

    @property
    def has_context(self) -> bool:
        """Whether the folder has the PASCAL-Context label maps."""
        return (self.root / CONTEXT_DIR).is_dir()

    def context_path(self, id_: str) -> Path:
        return self.root / CONTEXT_DIR / f"{id_}.mat"

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
