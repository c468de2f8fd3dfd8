"""``mtlsearch data import-colmap``: COLMAP text model -> ``cameras/<id>.json``.

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
    """Rotation matrix of a unit quaternion (w, x, y, z) (normalised first)."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q)
    if n == 0:
        raise ValueError("zero quaternion")
    w, x, y, z = q / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def _lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise UserError(f"missing COLMAP file: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    return list(enumerate(text.splitlines(), start=1))


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
        if model not in _INTRINSICS:
            raise UserError(f"{path}:{lineno}: unsupported camera model {model!r} "
                            f"(supported: {', '.join(_INTRINSICS)})")
        if len(params) != _NUM_PARAMS[model]:
            raise UserError(f"{path}:{lineno}: {model} needs {_NUM_PARAMS[model]} parameters, "
                            f"got {len(params)}")
        if not np.isfinite(params).all() or width <= 0 or height <= 0:
            raise UserError(f"{path}:{lineno}: camera size and parameters must be positive and finite")
        i_fx, i_fy, i_cx, i_cy = _INTRINSICS[model]
        if params[i_fx] <= 0 or params[i_fy] <= 0:
            raise UserError(f"{path}:{lineno}: focal lengths must be positive, got "
                            f"{params[i_fx]} and {params[i_fy]}")
        K = np.array([
            [params[i_fx], 0.0, params[i_cx] - 0.5],
            [0.0, params[i_fy], params[i_cy] - 0.5],
            [0.0, 0.0, 1.0],
        ])
        cams[cam_id] = ColmapCamera(model, width, height, K)
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


def cameras_from_model(model_dir: str | Path, scale: float = 1.0) -> dict[str, dict[str, Any]]:
    """Read a COLMAP text model; returns id -> {"K", "cam2world", "scene", "frame"}."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(f"COLMAP model folder not found: {model_dir}")
    if not np.isfinite(scale) or scale <= 0:
        raise UserError(f"--scale must be a positive number, got {scale}")
    cams = read_cameras_txt(model_dir / "cameras.txt")
    images = read_images_txt(model_dir / "images.txt")
    if not images:
        raise UserError(f"{model_dir / 'images.txt'}: no images")
    out: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    by_scene: dict[str, list[tuple[str, str]]] = {}
    for img in images:
        if img.camera_id not in cams:
            raise UserError(f"{model_dir / 'images.txt'}: image {img.name!r} uses camera "
                            f"{img.camera_id}, absent from cameras.txt")
        pure = PurePosixPath(img.name.replace("\\", "/"))
        id_ = pure.stem
        if id_ in names:
            raise UserError(f"{model_dir / 'images.txt'}: images {names[id_]!r} and {img.name!r} "
                            f"both map to id {id_!r}")
        names[id_] = img.name
        scene = pure.parent.name or "colmap"
        try:
            R = qvec_to_rotmat(img.qvec)
        except ValueError:
            raise UserError(f"{model_dir / 'images.txt'}: image {img.name!r} has a zero quaternion") from None
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
