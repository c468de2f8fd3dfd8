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

A task is provided when its folder exists; the folders and their decoding are the tasks'
(``TaskSpec.files["nyud"]``, :mod:`mtlsearch.tasks`).
"""

from __future__ import annotations

import json
from pathlib import Path

from mtlsearch.data.reader import Reader, read_split
from mtlsearch.errors import UserError

IMAGE_EXTS = (".png", ".jpg", ".jpeg")


class NyudReader(Reader):
    """NYUD_MT folder reader; ``layout`` is ``nyud`` (40 classes) or ``synthrooms``."""

    format = "nyud"

    def __init__(self, root: str | Path, layout: str = "nyud") -> None:
        super().__init__(root)
        if layout not in ("nyud", "synthrooms"):
            raise UserError(f"data.layout: NYUD_MT reader cannot read layout {layout!r}")
        self.layout = layout
        if not (self.root / "images").is_dir():
            raise UserError(f"{self.root}: not a NYUD_MT folder (no images/ folder)")
        self.meta = self._read_meta()
        self.find_tasks()
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
