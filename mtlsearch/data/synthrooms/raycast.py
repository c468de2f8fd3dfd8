"""SynthRooms ray casting: analytic ray/surface intersections (room box, boxes,
cylinders, spheres) vectorised over pixels, and surface normals and texture
coordinates at the hits.

Contract: pure numpy functions of the scene and the rays; no randomness.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mtlsearch.data.synthrooms.scenes import Obj

_EPS = 1e-6

# ----------------------------------------------------------------------------- ray casting


def _room_hit(o: np.ndarray, d: np.ndarray, dims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exit distance of rays from inside the room box, and the face hit
    (0-3 walls in _WALL_NORMALS order, 4 floor, 5 ceiling)."""
    ts = []
    for ax in range(3):
        da = d[:, ax]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(da > 0, (dims[ax] - o[ax]) / da, np.where(da < 0, -o[ax] / da, np.inf))
        ts.append(t)
    T = np.stack(ts)
    ax = np.argmin(T, axis=0)
    t = np.take_along_axis(T, ax[None], 0)[0]
    pos = np.take_along_axis(d.T, ax[None], 0)[0] > 0
    face_table = np.array([[3, 1], [0, 2], [4, 5]])  # [axis][direction positive]
    return t, face_table[ax, pos.astype(np.int64)]


def _safe(d: np.ndarray) -> np.ndarray:
    return np.where(np.abs(d) < 1e-12, 1e-12, d)


def _to_local(obj: Obj, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, ...]:
    """Ray origin and direction in the object's frame (centred, rotated by -yaw)."""
    c, s = math.cos(obj.yaw), math.sin(obj.yaw)
    ox, oy = o[..., 0] - obj.cx, o[..., 1] - obj.cy
    return (
        c * ox + s * oy,
        -s * ox + c * oy,
        o[..., 2],
        c * d[:, 0] + s * d[:, 1],
        -s * d[:, 0] + c * d[:, 1],
        d[:, 2],
    )


def _hit_t(obj: Obj, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Ray parameter of the first hit with ``obj`` (inf where missed). ``o`` (3,) or (N, 3)."""
    ox, oy, oz, dx, dy, dz = _to_local(obj, o, d)
    if obj.shape == "box":
        tmin = np.full(d.shape[0], -np.inf)
        tmax = np.full(d.shape[0], np.inf)
        for oo, dd, lo, hi in (
            (ox, dx, -obj.hx, obj.hx),
            (oy, dy, -obj.hy, obj.hy),
            (oz, dz, 0.0, obj.h),
        ):
            inv = 1.0 / _safe(dd)
            t1, t2 = (lo - oo) * inv, (hi - oo) * inv
            tmin = np.maximum(tmin, np.minimum(t1, t2))
            tmax = np.minimum(tmax, np.maximum(t1, t2))
        return np.where((tmax >= tmin) & (tmin > _EPS), tmin, np.inf)
    if obj.shape == "cyl":
        a = dx * dx + dy * dy
        b = 2 * (ox * dx + oy * dy)
        c = ox * ox + oy * oy - obj.r * obj.r
        disc = b * b - 4 * a * c
        with np.errstate(invalid="ignore", divide="ignore"):
            ts = (-b - np.sqrt(disc)) / (2 * a)
        z = oz + ts * dz
        side = np.where(
            (disc >= 0) & (a > 1e-12) & (ts > _EPS) & (z >= 0) & (z <= obj.h), ts, np.inf
        )
        best = side
        for zc in (obj.h, 0.0):
            tc = (zc - oz) / _safe(dz)
            xc, yc = ox + tc * dx, oy + tc * dy
            cap = np.where((tc > _EPS) & (xc * xc + yc * yc <= obj.r * obj.r), tc, np.inf)
            best = np.minimum(best, cap)
        return best
    oz = oz - obj.r
    a = dx * dx + dy * dy + dz * dz
    b = 2 * (ox * dx + oy * dy + oz * dz)
    c = ox * ox + oy * oy + oz * oz - obj.r * obj.r
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / (2 * a)
    return np.where((disc >= 0) & (t > _EPS), t, np.inf)


def _surface(obj: Obj, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World normals (M, 3) and texture coordinates (M, 2) at hit points ``p`` of ``obj``."""
    c, s = math.cos(obj.yaw), math.sin(obj.yaw)
    px, py = p[:, 0] - obj.cx, p[:, 1] - obj.cy
    lx, ly, lz = c * px + s * py, -s * px + c * py, p[:, 2]
    m = p.shape[0]
    n_loc = np.zeros((m, 3))
    if obj.shape == "box":
        dist = np.stack(
            [
                np.abs(lx - obj.hx),
                np.abs(lx + obj.hx),
                np.abs(ly - obj.hy),
                np.abs(ly + obj.hy),
                np.abs(lz - obj.h),
                np.abs(lz),
            ]
        )
        face = np.argmin(dist, axis=0)
        axis, sign = face // 2, np.where(face % 2 == 0, 1.0, -1.0)
        n_loc[np.arange(m), axis] = sign
        uv = np.where(
            (axis == 0)[:, None],
            np.stack([ly, lz], 1),
            np.where((axis == 1)[:, None], np.stack([lx, lz], 1), np.stack([lx, ly], 1)),
        )
    elif obj.shape == "cyl":
        rho = np.hypot(lx, ly)
        on_cap = np.minimum(np.abs(lz - obj.h), np.abs(lz)) < np.abs(rho - obj.r)
        n_loc[:, 0] = np.where(on_cap, 0.0, lx / np.maximum(rho, 1e-9))
        n_loc[:, 1] = np.where(on_cap, 0.0, ly / np.maximum(rho, 1e-9))
        n_loc[:, 2] = np.where(on_cap, np.where(lz > obj.h / 2, 1.0, -1.0), 0.0)
        uv = np.where(
            on_cap[:, None], np.stack([lx, ly], 1), np.stack([obj.r * np.arctan2(ly, lx), lz], 1)
        )
    else:
        n_loc = np.stack([lx, ly, lz - obj.r], 1) / obj.r
        uv = obj.r * np.stack(
            [np.arctan2(n_loc[:, 1], n_loc[:, 0]), np.arcsin(np.clip(n_loc[:, 2], -1, 1))], 1
        )
    n = np.stack(
        [c * n_loc[:, 0] - s * n_loc[:, 1], s * n_loc[:, 0] + c * n_loc[:, 1], n_loc[:, 2]], 1
    )
    return n, uv
