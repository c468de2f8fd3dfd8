"""Pinhole camera math shared by the data generators, loaders and tests (numpy).

Conventions (the project's shared contract):

* Camera frame: OpenCV/NYUD, x right, y down, z forward.
* Pixel ``(u, v)`` = ``K @ (X/Z, Y/Z, 1)``; pixel centres sit at integer coordinates
  (``u = 0`` is the centre of the first column).
* Depth is z-depth (along the optical axis) in metres; 0 marks invalid pixels.
* ``cam2world`` is a 4x4 matrix mapping camera-frame points to world points.
* ``rel_pose(ref, src) = inv(cam2world_src) @ cam2world_ref`` maps reference-camera
  points into the source camera ("source-from-reference").
* Normals are unit vectors in the camera frame pointing towards the camera side of
  the surface (``dot(n, ray) < 0``).
"""

from __future__ import annotations

import numpy as np


def pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(u, v)``, each (h, w) float64 (u = column, v = row)."""
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    return u, v


def camera_rays(K: np.ndarray, h: int, w: int) -> np.ndarray:
    """Camera-frame ray directions (h, w, 3) scaled so that their z component is 1.

    With z = 1, a point at ray parameter ``t`` has z-depth ``t``: ray casting with these
    directions yields z-depth directly.
    """
    u, v = pixel_grid(h, w)
    Kinv = np.linalg.inv(np.asarray(K, dtype=np.float64))
    x = Kinv[0, 0] * u + Kinv[0, 1] * v + Kinv[0, 2]
    y = Kinv[1, 0] * u + Kinv[1, 1] * v + Kinv[1, 2]
    z = Kinv[2, 0] * u + Kinv[2, 1] * v + Kinv[2, 2]
    return np.stack([x / z, y / z, np.ones_like(z)], axis=-1)


def backproject(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame 3D points (h, w, 3) of a z-depth map (invalid pixels give z = 0)."""
    h, w = depth.shape
    return camera_rays(K, h, w) * np.asarray(depth, dtype=np.float64)[..., None]


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid transform to points (..., 3)."""
    T = np.asarray(T, dtype=np.float64)
    return points @ T[:3, :3].T + T[:3, 3]


def project(points: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project camera-frame points (..., 3) to pixels: returns ``uv`` (..., 2) and ``z`` (...).

    Points with z <= 0 (behind the camera) get ``uv = nan``.
    """
    K = np.asarray(K, dtype=np.float64)
    z = points[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(z > 0, points[..., 0] / z, np.nan)
        y = np.where(z > 0, points[..., 1] / z, np.nan)
    u = K[0, 0] * x + K[0, 1] * y + K[0, 2]
    v = K[1, 1] * y + K[1, 2]
    return np.stack([u, v], axis=-1), z


def rel_pose(cam2world_ref: np.ndarray, cam2world_src: np.ndarray) -> np.ndarray:
    """Source-from-reference transform ``inv(cam2world_src) @ cam2world_ref`` (4x4)."""
    return np.linalg.inv(np.asarray(cam2world_src, np.float64)) @ np.asarray(
        cam2world_ref, np.float64
    )


def rotation_angle_deg(R: np.ndarray) -> float:
    """Angle in degrees of a 3x3 rotation matrix (e.g. the rotation part of a rel pose)."""
    c = (np.trace(np.asarray(R, np.float64)[:3, :3]) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def normals_from_depth(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame unit normals (h, w, 3) from a z-depth map, facing the camera.

    The normal is the cross product of the horizontal and vertical neighbour
    differences of the back-projected points. Along each axis the one-sided difference
    with the smaller depth change is used, so pixels next to a depth discontinuity
    take their normal from their own surface. Pixels whose depth or whose neighbours
    along an axis are all invalid get the zero vector (the invalid-normal convention).
    """
    depth = np.asarray(depth, dtype=np.float64)
    pts = backproject(depth, K)
    pts[depth <= 0] = np.nan

    def one_sided(axis: int) -> np.ndarray:
        pad = [(0, 0)] * 3
        pad[axis] = (1, 1)
        p = np.pad(pts, pad, constant_values=np.nan)
        sl = [slice(None)] * 3
        sl[axis] = slice(2, None)
        fwd = p[tuple(sl)] - pts
        sl[axis] = slice(0, -2)
        bwd = pts - p[tuple(sl)]
        dz_f = np.abs(fwd[..., 2])
        dz_b = np.abs(bwd[..., 2])
        use_f = np.isnan(dz_b) | (~np.isnan(dz_f) & (dz_f <= dz_b))
        return np.where(use_f[..., None], fwd, bwd)

    n = np.cross(one_sided(1), one_sided(0))
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = n / norm
    facing = np.sum(n * pts, axis=-1, keepdims=True) > 0
    n = np.where(facing, -n, n)
    bad = ~np.isfinite(n).all(axis=-1) | (norm[..., 0] == 0)
    n[bad] = 0.0
    return n
