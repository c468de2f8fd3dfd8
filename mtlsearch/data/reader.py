"""Reader base class shared by the NYUD_MT and PASCAL_MT readers.

A reader knows a dataset folder: its split ids, images and cameras. Which tasks it
provides, where each task's label file lives and how it decodes come from the tasks
themselves (``TaskSpec.files[reader.format]``, :mod:`mtlsearch.tasks`), so a reader
holds no task knowledge; labels come out in the tasks' numpy conventions (no batch
dimension).

Every decode error (missing, truncated or unreadable file) is raised as a
:class:`UserError` naming the file path.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtlsearch.classes import IGNORE  # noqa: F401  (re-exported)
from mtlsearch.data.files import (  # noqa: F401  (re-exported)
    MAX_PIXELS,
    file_error,
    open_image,
    read_mat,
    read_npy,
    read_png,
)
from mtlsearch.errors import UserError
from mtlsearch.tasks import TASKS, LabelFiles, get_task

NYUV2_K = np.array(
    [[518.857901, 0.0, 325.582449], [0.0, 519.469611, 253.736166], [0.0, 0.0, 1.0]]
)
"""NYUv2 Kinect colour-camera intrinsics for 480 x 640 images (the toolbox's values)."""

@dataclass
class Camera:
    """One view's calibration on the original pixel grid (pixel centres at integers)."""

    K: np.ndarray  # (3, 3) float64
    cam2world: np.ndarray  # (4, 4) float64
    scene: str
    frame: int


def empty_label(task: str, size: tuple[int, int]) -> np.ndarray:
    """A label of ``size`` filled with the task's ignore value (a view without that label)."""
    return get_task(task).empty_label(size)


def default_K(layout: str, size: tuple[int, int]) -> np.ndarray:
    """Intrinsics for a dataset without cameras: NYUv2's Kinect values scaled to the image
    (layout ``nyud``), otherwise a nominal pinhole with focal length max(H, W) (about 53
    degrees of field of view) centred on the image."""
    h, w = size
    if layout == "nyud":
        K = NYUV2_K.copy()
        sx, sy = w / 640.0, h / 480.0
        K[0, 0] *= sx
        K[1, 1] *= sy
        K[0, 2] = sx * (K[0, 2] + 0.5) - 0.5
        K[1, 2] = sy * (K[1, 2] + 0.5) - 0.5
        return K
    f = float(max(h, w))
    return np.array([[f, 0.0, (w - 1) / 2.0], [0.0, f, (h - 1) / 2.0], [0.0, 0.0, 1.0]])


# ---------------------------------------------------------------------------
# Decoders
# ---------------------------------------------------------------------------


def decode_rgb(path: Path) -> np.ndarray:
    """uint8 (H, W, 3)."""
    arr = read_png(path, "RGB")
    return np.ascontiguousarray(arr)


def read_camera(path: Path) -> Camera:
    """Parse ``cameras/<id>.json`` = {"K": 3x3, "cam2world": 4x4, "scene", "frame"}."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise file_error(path, err) from None
    try:
        K = np.asarray(data["K"], dtype=np.float64)
        c2w = np.asarray(data["cam2world"], dtype=np.float64)
        scene = str(data.get("scene", ""))
        frame = int(data.get("frame", 0))
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as err:
        raise UserError(f"{path}: camera file needs K (3x3) and cam2world (4x4): {err}") from None
    if K.shape != (3, 3) or c2w.shape != (4, 4):
        raise UserError(f"{path}: K must be 3x3 and cam2world 4x4, got {K.shape} and {c2w.shape}")
    if not (np.isfinite(K).all() and np.isfinite(c2w).all()):
        raise UserError(f"{path}: camera values must be finite")
    return Camera(K, c2w, scene, frame)


def read_split(path: Path) -> list[str]:
    """Ids listed one per line (blank lines skipped), UTF-8; an id is a file stem, so
    path separators, control characters and ``..`` are refused, naming the line."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise file_error(path, err) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not a UTF-8 text file of ids ({err.reason} at byte {err.start})") from None
    ids = []
    for number, line in enumerate(text.splitlines(), 1):
        id_ = line.strip()
        if not id_:
            continue
        if (id_ in (".", "..") or any(c in id_ for c in "/\\") or len(id_) > 255
                or any(ord(c) < 32 or ord(c) == 127 for c in id_)):
            raise UserError(f"{path}, line {number}: {id_[:40]!r} is not a file id")
        ids.append(id_)
    return ids


# ---------------------------------------------------------------------------
# Reader base
# ---------------------------------------------------------------------------


class Reader(abc.ABC):
    """A dataset folder: tasks, split ids, files and decoding of one view.

    Subclasses set ``layout`` and ``format`` (the key of every task's
    ``TaskSpec.files``), call :meth:`find_tasks` once the root is known, and implement
    :meth:`split_ids` and :meth:`image_path`.
    """

    layout: str = ""
    format: str = ""
    tasks: tuple[str, ...] = ()
    num_classes: dict[str, int] = {}

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise UserError(f"dataset folder not found: {self.root}")
        self._cameras: dict[str, Camera] | None = None

    def find_tasks(self) -> None:
        """Set ``tasks`` (registered tasks whose labels this folder has, in registry
        order) and ``num_classes`` (class counts of the class-valued tasks the format
        stores: the dataset's own, else the layout's)."""
        files = {name: spec.files[self.format] for name, spec in TASKS.items() if self.format in spec.files}
        self.tasks = tuple(name for name, f in files.items() if f.provided(self.root))
        self.num_classes = {
            name: f.num_classes(self) or TASKS[name].classes[self.layout]
            for name, f in files.items() if self.layout in TASKS[name].classes
        }

    # -- to implement -------------------------------------------------------
    @abc.abstractmethod
    def split_ids(self, split: str) -> list[str]:
        """Ids listed in ``split``."""

    @abc.abstractmethod
    def image_path(self, id_: str) -> Path:
        """The RGB file of ``id_``."""

    # -- labels ---------------------------------------------------------------
    def label_files(self, task: str) -> LabelFiles:
        """Where ``task``'s labels are in this dataset's format (UserError when the
        format has no place for them)."""
        files = get_task(task).files.get(self.format) if task in TASKS else None
        if files is None:
            raise UserError(f"task {task!r} is not provided by the {self.layout} dataset at {self.root}")
        return files

    def label_path(self, id_: str, task: str) -> Path:
        """The main file of ``task`` for ``id_`` (used by checks and error messages)."""
        return self.label_files(task).path(self.root, id_)

    def read_label(self, id_: str, task: str) -> np.ndarray:
        """The decoded label of ``task`` for ``id_`` (the task's numpy convention)."""
        self.check_tasks([task])
        return self.label_files(task).read(self, id_)

    # -- cameras (optional) ---------------------------------------------------
    @property
    def has_cameras(self) -> bool:
        return False

    def camera_path(self, id_: str) -> Path:
        return self.root / "cameras" / f"{id_}.json"

    def camera(self, id_: str) -> Camera | None:
        """The view's camera, or None for a dataset without cameras."""
        if not self.has_cameras:
            return None
        if self._cameras is None:
            self._cameras = {}
        cam = self._cameras.get(id_)
        if cam is None:
            cam = read_camera(self.camera_path(id_))
            self._cameras[id_] = cam
        return cam

    def scenes(self, ids: list[str]) -> dict[str, str] | None:
        """Scene of each id (from the cameras), or None without cameras."""
        if not self.has_cameras:
            return None
        return {i: self.camera(i).scene for i in ids}  # type: ignore[union-attr]

    # -- shared ---------------------------------------------------------------
    def check_tasks(self, tasks: list[str] | tuple[str, ...]) -> None:
        """Raise UserError naming the first task this dataset lacks."""
        for task in tasks:
            if task not in self.tasks:
                raise UserError(
                    f"task {task!r} is not provided by the {self.layout} dataset at {self.root} "
                    f"(it provides: {', '.join(self.tasks) or 'none'})"
                )

    def read_image(self, id_: str) -> np.ndarray:
        return decode_rgb(self.image_path(id_))

    def extra_split_path(self) -> Path:
        """Where extra frames are listed (NYUD_MT layout: ``gt_sets/extra.txt``)."""
        return self.root / "gt_sets" / "extra.txt"

    def extra_ids(self) -> list[str]:
        """Extra frames (e.g. NYUv2's raw video frames): ids with an image, a camera and
        only some labels (a task's file may be missing). Empty when the list is absent."""
        path = self.extra_split_path()
        return read_split(path) if path.is_file() else []

    def read_view(
        self, id_: str, tasks: list[str] | tuple[str, ...], *, partial: bool = False
    ) -> dict[str, Any]:
        """Decode one view: {"image", "labels", "has", "K", "cam2world", "name"} (numpy).

        Labels whose size differs from the image's raise a UserError naming the file.
        ``partial`` (extra frames): a task whose label file does not exist gets an
        ignore-filled label with ``has = False`` instead of an error.
        """
        self.check_tasks(tasks)
        image = self.read_image(id_)
        size = image.shape[:2]
        labels: dict[str, np.ndarray] = {}
        has: dict[str, bool] = {}
        for task in tasks:
            if partial and not self.label_path(id_, task).is_file():
                labels[task] = empty_label(task, size)
                has[task] = False
                continue
            label = self.read_label(id_, task)
            if label.shape[:2] != size:
                raise UserError(
                    f"{self.label_path(id_, task)}: size {label.shape[:2]} differs from the "
                    f"image's {size} ({self.image_path(id_)})"
                )
            labels[task] = label
            has[task] = not self.label_absent(task, label)
        cam = self.camera(id_)
        if cam is None:
            K, c2w = default_K(self.layout, size), np.eye(4)
        else:
            K, c2w = cam.K, cam.cam2world
        return {"image": image, "labels": labels, "has": has, "K": K, "cam2world": c2w, "name": id_}

    def label_absent(self, task: str, label: np.ndarray) -> bool:
        """Whether a decoded label carries no annotation at all (PASCAL parts without people)."""
        return self.label_files(task).absent(label)

    def _find(self, folder: str, id_: str, exts: tuple[str, ...]) -> Path:
        """``root/folder/id.ext`` for the first existing ext (the first one when none exists)."""
        base = self.root / folder
        for ext in exts:
            path = base / f"{id_}{ext}"
            if path.is_file():
                return path
        return base / f"{id_}{exts[0]}"
