"""``mtlsearch data import-colmap``: COLMAP model (text or binary) -> ``cameras/<id>.json``.

A text model (``cameras.txt``, ``images.txt``) is parsed here; a binary model
(``cameras.bin``, ``images.bin``, ``points3D.bin``: what ``colmap mapper`` writes to
``sparse/0`` by default) is read through ``pycolmap`` (the ``colmap`` extra:
``pip install mtlsearch[colmap]``). Both feed the same checks and conversion.

COLMAP's ``images.txt`` stores world-to-camera poses (quaternion QW QX QY QZ and
translation TX TY TZ, OpenCV camera axes); ``cameras.txt`` stores intrinsics whose
pixel centres sit at +0.5 (the first pixel's centre is (0.5, 0.5)). The project puts
pixel centres at integers, so cx and cy are shifted by -0.5. Distortion parameters
are ignored (undistort the images first, e.g. ``colmap image_undistorter``).

Each image becomes ``<out>/<id>.json`` with id = the image name without folders or
extension, ``cam2world`` = inverse of [R | S t], ``scene`` = the name's parent folder
(or "colmap"), ``frame`` = its position among the scene's images sorted by name.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from mtlsearch.errors import UserError
from mtlsearch.outputs import check_target, output_folder

CAMERAS_KIND = "cameras"
"""Marker kind (``.mtlsearch-cameras``): ``--out`` replaces only an earlier import."""

# model name -> indices of (fx, fy, cx, cy) in its parameter list (fy = fx when equal).
_INTRINSICS = {
    "SIMPLE_PINHOLE": (0, 0, 1, 2),
    "PINHOLE": (0, 1, 2, 3),
    "SIMPLE_RADIAL": (0, 0, 1, 2),
    "RADIAL": (0, 0, 1, 2),
    "OPENCV": (0, 1, 2, 3),
    "FULL_OPENCV": (0, 1, 2, 3),
    "OPENCV_FISHEYE": (0, 1, 2, 3),
    "SIMPLE_RADIAL_FISHEYE": (0, 0, 1, 2),
    "RADIAL_FISHEYE": (0, 0, 1, 2),
    "THIN_PRISM_FISHEYE": (0, 1, 2, 3),
}
_NUM_PARAMS = {
    "SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 4, "RADIAL": 5, "OPENCV": 8,
    "FULL_OPENCV": 12, "OPENCV_FISHEYE": 8, "SIMPLE_RADIAL_FISHEYE": 4,
    "RADIAL_FISHEYE": 5, "THIN_PRISM_FISHEYE": 12,
}
_UNDISTORTED = ("SIMPLE_PINHOLE", "PINHOLE")


@dataclass
class ColmapCamera:
    model: str
    width: int
    height: int
    K: np.ndarray  # project convention (pixel centres at integers)


@dataclass
class ColmapImage:
    image_id: int
    qvec: np.ndarray  # (w, x, y, z)
    tvec: np.ndarray
    camera_id: int
    name: str


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a quaternion in COLMAP's order (w, x, y, z), normalised first."""
    q = np.asarray(q, dtype=np.float64)
    if q.shape != (4,) or np.linalg.norm(q) == 0:
        raise ValueError("zero quaternion")
    # SciPy's from_quat takes scalar-last (x, y, z, w) unless scalar_first (SciPy >= 1.14).
    return Rotation.from_quat(np.roll(q, -1)).as_matrix()


def _lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise UserError(f"missing COLMAP file: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    return list(enumerate(text.splitlines(), start=1))


def _camera(where: str, model: str, width: int, height: int,
            params: list[float]) -> ColmapCamera:
    """One camera after the checks every model format shares; ``where`` prefixes errors."""
    if model not in _INTRINSICS:
        raise UserError(f"{where}: unsupported camera model {model!r} "
                        f"(supported: {', '.join(_INTRINSICS)})")
    if len(params) != _NUM_PARAMS[model]:
        raise UserError(f"{where}: {model} needs {_NUM_PARAMS[model]} parameters, "
                        f"got {len(params)}")
    if not np.isfinite(params).all() or width <= 0 or height <= 0:
        raise UserError(f"{where}: camera size and parameters must be positive and finite")
    i_fx, i_fy, i_cx, i_cy = _INTRINSICS[model]
    if params[i_fx] <= 0 or params[i_fy] <= 0:
        raise UserError(f"{where}: focal lengths must be positive, got "
                        f"{params[i_fx]} and {params[i_fy]}")
    K = np.array([
        [params[i_fx], 0.0, params[i_cx] - 0.5],
        [0.0, params[i_fy], params[i_cy] - 0.5],
        [0.0, 0.0, 1.0],
    ])
    return ColmapCamera(model, width, height, K)


def read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    """Parse ``cameras.txt``: CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]."""
    cams: dict[int, ColmapCamera] = {}
    for lineno, line in _lines(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        try:
            cam_id, model, width, height = int(parts[0]), parts[1], int(parts[2]), int(parts[3])
            params = [float(p) for p in parts[4:]]
        except (IndexError, ValueError):
            raise UserError(f"{path}:{lineno}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS...") from None
        cams[cam_id] = _camera(f"{path}:{lineno}", model, width, height, params)
    return cams


def read_images_txt(path: Path) -> list[ColmapImage]:
    """Parse ``images.txt``: a header line per image (IMAGE_ID QW QX QY QZ TX TY TZ
    CAMERA_ID NAME) followed by its 2D points line (possibly empty, skipped)."""
    images: list[ColmapImage] = []
    lines = _lines(path)
    i = 0
    while i < len(lines):
        lineno, line = lines[i]
        text = line.strip()
        i += 1
        if not text or text.startswith("#"):
            continue
        parts = text.split(maxsplit=9)
        try:
            image_id = int(parts[0])
            q = np.array([float(v) for v in parts[1:5]])
            t = np.array([float(v) for v in parts[5:8]])
            cam_id = int(parts[8])
            name = parts[9].strip()
        except (IndexError, ValueError):
            raise UserError(
                f"{path}:{lineno}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME"
            ) from None
        if not (np.isfinite(q).all() and np.isfinite(t).all()):
            raise UserError(f"{path}:{lineno}: quaternion and translation must be finite")
        images.append(ColmapImage(image_id, q, t, cam_id, name))
        i += 1  # the POINTS2D line that follows every image line
    return images


def read_model_bin(model_dir: Path) -> tuple[dict[int, ColmapCamera], list[ColmapImage]]:
    """Cameras and posed images of a binary model, read by ``pycolmap`` (optional extra)."""
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        if not (model_dir / name).is_file():
            raise UserError(f"missing COLMAP file: {model_dir / name}")
    try:
        import pycolmap
    except ImportError:
        raise UserError(f"{model_dir}: a binary COLMAP model needs pycolmap "
                        "(pip install 'mtlsearch[colmap]'), or convert it to text with "
                        "`colmap model_converter --output_type TXT`") from None
    rec = pycolmap.Reconstruction()
    try:
        rec.read_binary(str(model_dir))
    except (ValueError, RuntimeError) as err:
        raise UserError(f"{model_dir}: cannot read the binary COLMAP model ({err})") from None
    where = str(model_dir / "cameras.bin")
    cams = {int(cid): _camera(f"{where}: camera {cid}", c.model_name, int(c.width),
                              int(c.height), [float(v) for v in c.params])
            for cid, c in rec.cameras.items()}
    images = []
    for iid, img in sorted(rec.images.items()):
        if not img.has_pose:
            continue
        pose = img.cam_from_world()
        x, y, z, w = (float(v) for v in pose.rotation.quat)  # Eigen order: scalar last
        images.append(ColmapImage(int(iid), np.array([w, x, y, z]),
                                  np.asarray(pose.translation, dtype=np.float64),
                                  int(img.camera_id), str(img.name)))
    return cams, images


def cameras_from_model(model_dir: str | Path, scale: float = 1.0) -> dict[str, dict[str, Any]]:
    """Read a COLMAP model, text (``*.txt``) or binary (``*.bin``, through pycolmap);
    returns id -> {"K", "cam2world", "scene", "frame"}."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(f"COLMAP model folder not found: {model_dir}")
    if not np.isfinite(scale) or scale <= 0:
        raise UserError(f"--scale must be a positive number, got {scale}")
    binary = not (model_dir / "cameras.txt").exists() and (model_dir / "cameras.bin").exists()
    images_file = model_dir / ("images.bin" if binary else "images.txt")
    if binary:
        cams, images = read_model_bin(model_dir)
    else:
        cams = read_cameras_txt(model_dir / "cameras.txt")
        images = read_images_txt(images_file)
    if not images:
        raise UserError(f"{images_file}: no images")
    out: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    by_scene: dict[str, list[tuple[str, str]]] = {}
    for img in images:
        if img.camera_id not in cams:
            raise UserError(f"{images_file}: image {img.name!r} uses camera "
                            f"{img.camera_id}, absent from {images_file.with_stem('cameras').name}")
        pure = PurePosixPath(img.name.replace("\\", "/"))
        id_ = pure.stem
        if id_ in names:
            raise UserError(f"{images_file}: images {names[id_]!r} and {img.name!r} "
                            f"both map to id {id_!r}")
        names[id_] = img.name
        scene = pure.parent.name or "colmap"
        try:
            R = qvec_to_rotmat(img.qvec)
        except ValueError:
            raise UserError(f"{images_file}: image {img.name!r} has a zero quaternion") from None
        c2w = np.eye(4)
        c2w[:3, :3] = R.T
        c2w[:3, 3] = -R.T @ (scale * img.tvec)
        out[id_] = {"K": cams[img.camera_id].K.tolist(), "cam2world": c2w.tolist(), "scene": scene}
        by_scene.setdefault(scene, []).append((img.name, id_))
    for members in by_scene.values():
        for frame, (_, id_) in enumerate(sorted(members)):
            out[id_]["frame"] = frame
    distorted = sorted({c.model for c in cams.values() if c.model not in _UNDISTORTED})
    if distorted:
        print(f"warning: distortion of {', '.join(distorted)} cameras ignored; use undistorted "
              "images (colmap image_undistorter)", file=sys.stderr)
    return out


def import_colmap(model_dir: str | Path, out: str | Path, scale: float = 1.0) -> int:
    """Write ``out/<id>.json`` for every image of the model; returns how many."""
    check_target(out, CAMERAS_KIND)
    cameras = cameras_from_model(model_dir, scale)
    with output_folder(out, CAMERAS_KIND) as tmp:
        for id_, cam in cameras.items():
            (tmp / f"{id_}.json").write_text(json.dumps(cam, sort_keys=True) + "\n")
    return len(cameras)


def run_cli(args: Any) -> int:
    """``mtlsearch data import-colmap MODEL_DIR --out ROOT/cameras [--scale S]``."""
    n = import_colmap(args.model_dir, args.out, args.scale)
    print(f"wrote {n} camera files to {args.out}")
    return 0
