"""Reader base class and file decoders shared by the NYUD_MT and PASCAL_MT readers.

A reader knows a dataset folder's layout: which tasks it provides, the ids of each
split, where each task's file lives and how to decode it into the label conventions
of :mod:`mtlsearch.tasks` (numpy, no batch dimension):

==========  ==========================================  ===========
task        array                                       ignore
==========  ==========================================  ===========
semseg      uint8 (H, W), class index                   255
depth       float32 (H, W), metres                      0
normals     float32 (H, W, 3), unit vectors             all zeros
edge        float32 (H, W) in {0, 1}                    255
sal         float32 (H, W) in {0, 1}                    255
parts       uint8 (H, W), part index                    255
==========  ==========================================  ===========

Every decode error (missing, truncated or unreadable file) is raised as a
:class:`UserError` naming the file path.
"""

from __future__ import annotations

import abc
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mtlsearch.errors import UserError

IGNORE = 255

NYUV2_K = np.array(
    [[518.857901, 0.0, 325.582449], [0.0, 519.469611, 253.736166], [0.0, 0.0, 1.0]]
)
"""NYUv2 Kinect colour-camera intrinsics for 480 x 640 images (the toolbox's values)."""

LABEL_FILL: dict[str, float] = {
    "semseg": IGNORE, "parts": IGNORE, "edge": IGNORE, "sal": IGNORE,
    "depth": 0.0, "normals": 0.0,
}
"""The ignore value every task is padded / filled with."""

LABEL_DTYPE: dict[str, Any] = {
    "semseg": np.uint8, "parts": np.uint8, "edge": np.float32, "sal": np.float32,
    "depth": np.float32, "normals": np.float32,
}


@dataclass
class Camera:
    """One view's calibration on the original pixel grid (pixel centres at integers)."""

    K: np.ndarray  # (3, 3) float64
    cam2world: np.ndarray  # (4, 4) float64
    scene: str
    frame: int


def empty_label(task: str, size: tuple[int, int]) -> np.ndarray:
    """A label of ``size`` filled with the task's ignore value (a view without that label)."""
    shape = (*size, 3) if task == "normals" else size
    return np.full(shape, LABEL_FILL[task], dtype=LABEL_DTYPE[task])


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


def _fail(path: Path, err: Exception | str) -> UserError:
    if not path.exists():
        return UserError(f"missing file: {path}")
    return UserError(f"cannot read {path}: {err}")


MAX_PIXELS = 1 << 26
"""Largest image (about 67 megapixels, 8192 x 8192) any reader decodes: a bigger one is a
decompression bomb or not a dataset image."""


def open_image(path: Path) -> Image.Image:
    """``Image.open`` with the size checked before any pixel is decoded (decompression
    bombs): a :class:`UserError` naming the file. Use as a context manager."""
    try:
        with warnings.catch_warnings():  # the size is checked below, whatever PIL's limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as err:
        raise UserError(f"{path}: image too large ({err})") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise _fail(path, err) from None
    w, h = img.size
    if w * h > MAX_PIXELS:
        img.close()
        raise UserError(f"{path}: {w}x{h} image is larger than {MAX_PIXELS} pixels "
                        "(decompression bomb?)")
    return img


def read_png(path: Path, mode: str | None = None) -> np.ndarray:
    """Decode an image file into a numpy array (``mode`` converts, e.g. ``"RGB"``)."""
    try:
        with open_image(path) as img:
            if mode is not None and img.mode != mode:
                img = img.convert(mode)
            arr = np.array(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise _fail(path, err) from None
    if arr.dtype.kind not in "biuf" or arr.ndim not in (2, 3):
        raise UserError(f"{path}: not a plain image (decoded as {arr.dtype} {arr.shape})")
    return arr


def read_npy(path: Path) -> np.ndarray:
    """Load a ``.npy`` array without pickles: numeric (bool, int or float) dtypes only,
    the header's size checked against the file's before anything is read."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(fh)
            offset = fh.tell()
        if dtype.hasobject or dtype.kind not in "biuf" or dtype.fields is not None:
            raise UserError(f"{path}: expected a numeric array, got dtype {dtype}")
        size = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if size > path.stat().st_size - offset:
            raise UserError(f"{path}: truncated (header {shape} {dtype} needs {size} bytes)")
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, SyntaxError, TypeError) as err:
        raise _fail(path, err) from None


def read_mat(path: Path) -> dict[str, Any]:
    """Load a MATLAB ``.mat`` file (scipy.io.loadmat)."""
    import scipy.io

    try:
        return scipy.io.loadmat(path)
    except Exception as err:  # scipy raises MatReadError and assorted parse errors
        raise _fail(path, err) from None


def decode_rgb(path: Path) -> np.ndarray:
    """uint8 (H, W, 3)."""
    arr = read_png(path, "RGB")
    return np.ascontiguousarray(arr)


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


def decode_binary(path: Path) -> np.ndarray:
    """Edge map from ``.png`` or ``.npy``: value > 0 -> 1, else 0 (float32)."""
    arr = read_npy(path) if path.suffix == ".npy" else read_png(path)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise UserError(f"{path}: expected an (H, W) map, got shape {arr.shape}")
    return (arr > 0).astype(np.float32)


def decode_saliency(path: Path) -> np.ndarray:
    """Saliency png 0..255 -> [0, 1], binarised at 0.5 as ATRC/MTI-Net do (float32)."""
    arr = read_png(path, "L")
    return (arr.astype(np.float32) / 255.0 > 0.5).astype(np.float32)


def decode_class_png(path: Path) -> np.ndarray:
    """Raw single-channel class-index png (palette or grey), uint8 (H, W)."""
    arr = read_png(path)
    if arr.ndim == 3:
        raise UserError(f"{path}: a class map must be single-channel (palette or grey)")
    if arr.dtype != np.uint8:
        if arr.max(initial=0) > 255:
            raise UserError(f"{path}: class values above 255")
        arr = arr.astype(np.uint8)
    return arr


def read_camera(path: Path) -> Camera:
    """Parse ``cameras/<id>.json`` = {"K": 3x3, "cam2world": 4x4, "scene", "frame"}."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise _fail(path, err) from None
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
        raise _fail(path, err) from None
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

    Subclasses set ``layout``, ``tasks`` and implement :meth:`split_ids`,
    :meth:`image_path`, :meth:`label_path` and :meth:`read_label`.
    """

    layout: str = ""
    tasks: tuple[str, ...] = ()
    num_classes: dict[str, int] = {}

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise UserError(f"dataset folder not found: {self.root}")
        self._cameras: dict[str, Camera] | None = None

    # -- to implement -------------------------------------------------------
    @abc.abstractmethod
    def split_ids(self, split: str) -> list[str]:
        """Ids listed in ``split``."""

    @abc.abstractmethod
    def image_path(self, id_: str) -> Path:
        """The RGB file of ``id_``."""

    @abc.abstractmethod
    def label_path(self, id_: str, task: str) -> Path:
        """The main file of ``task`` for ``id_`` (used by checks and error messages)."""

    @abc.abstractmethod
    def read_label(self, id_: str, task: str) -> np.ndarray:
        """The decoded label of ``task`` for ``id_`` (tasks.py conventions)."""

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
        return False

    def _find(self, folder: str, id_: str, exts: tuple[str, ...]) -> Path:
        """``root/folder/id.ext`` for the first existing ext (the first one when none exists)."""
        base = self.root / folder
        for ext in exts:
            path = base / f"{id_}{ext}"
            if path.is_file():
                return path
        return base / f"{id_}{exts[0]}"
