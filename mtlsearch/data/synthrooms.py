"""SynthRooms: a procedural multi-view indoor dataset rendered by ray casting (numpy).

Each scene is a box-shaped room (four walls, floor, ceiling) holding furniture-like
objects that stand on the floor (boxes rotated about the vertical axis: cabinet,
bed, table; vertical cylinders: lamp, bin; spheres: ball) and flat decorations lying
in the wall planes (window, picture, door), whose boundaries exist in appearance
only. A camera walks a short path through the room like video frames (consecutive
views 5-30 cm and 2-10 degrees apart, height 1.2-1.7 m, nearly horizontal). Every
pixel's ray is cast analytically against all surfaces at once (vectorised over
pixels), which gives exact depth, normals, classes and instances; the image is a
procedural texture attached to surface coordinates (stripes, checks, value noise,
grain; colours drawn from one palette per scene, shared by all classes), shaded by a
point light (Lambertian, with cast shadows) plus ambient light, plus sensor noise.

Output layout (NYUD_MT-like), ``<id> = s<scene:04d>_f<frame:02d>``:

==========================  ===========================================================
``images/<id>.png``         RGB uint8
``depth/<id>.npy``          float32 z-depth in metres (every pixel valid: the room is closed)
``normals/<id>.png``        uint8 ``round((n + 1) / 2 * 255)``, camera frame (x right,
                            y down, z forward), facing the camera
``segmentation/<id>.png``   uint8, 0 = void (unused), class k stored as k + 1
``edge/<id>.png``           uint8 0/255; a pixel is 255 when any 4-neighbour belongs to a
                            different instance (both sides of a boundary are marked)
``saliency/<id>.png``       uint8 0/255: exactly the pixels of the object classes
``instances/<id>.png``      uint16 instance id, unique within a scene, stable across views
``cameras/<id>.json``       ``{"K", "cam2world", "scene", "frame"}``
``gt_sets/{train,val}.txt`` one id per line; split by scene
``meta.json``               generator version, parameters, classes, encodings, depth range
==========================  ===========================================================

Same arguments give byte-identical files, whatever the number of worker processes:
scene ``i`` is drawn from ``SeedSequence(seed, spawn_key=(0, i))`` alone (so it does not
depend on the number of scenes), PNGs are written by PIL with fixed options, JSON with
sorted keys, and ``meta.json`` holds no timestamps. The folder is built under a
temporary sibling name and renamed into place at the end.

Entry points: :func:`generate` (files), :func:`render_scene_views` (arrays in memory),
:func:`run_cli` (``mtlsearch data synthrooms``).
"""

from __future__ import annotations

import colorsys
import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mtlsearch.classes import SYNTHROOMS_CLASSES, SYNTHROOMS_OBJECT_CLASSES
from mtlsearch.data.geometry import camera_rays, rotation_angle_deg
from mtlsearch.errors import UserError
from mtlsearch.outputs import check_target, install

GENERATOR_VERSION = "1.0"
CYLINDER_SIZES = {"lamp": ((1.0, 1.8), (0.08, 0.2)), "bin": ((0.25, 0.5), (0.12, 0.25))}
"""Height and radius ranges (metres) of the cylinder-shaped objects."""
_GENERATOR = "mtlsearch.data.synthrooms"
OUTPUT_KIND = "synthrooms"
"""Marker kind (``.mtlsearch-synthrooms``): ``--force`` replaces only such a dataset."""
CLASS_ID = {name: i for i, name in enumerate(SYNTHROOMS_CLASSES)}
OBJECT_CLASS_IDS = tuple(CLASS_ID[c] for c in SYNTHROOMS_OBJECT_CLASSES)
MODALITIES = (
    "images",
    "depth",
    "normals",
    "segmentation",
    "edge",
    "saliency",
    "instances",
    "cameras",
)

_EPS = 1e-6
_STEP_RANGE_M = (0.05, 0.30)
_ANGLE_RANGE_DEG = (2.0, 10.0)
_HEIGHT_RANGE_M = (1.2, 1.7)
# Walls in counter-clockwise order seen from above: y = 0, x = W, y = D, x = 0.
_WALL_NORMALS = np.array([[0, 1, 0], [-1, 0, 0], [0, -1, 0], [1, 0, 0]], dtype=np.float64)


# ----------------------------------------------------------------------------- scene model


@dataclass
class Material:
    """A procedural texture evaluated on 2D surface coordinates (metres)."""

    kind: str  # plain | stripes | checks | noise | grain
    c1: np.ndarray
    c2: np.ndarray
    scale: float
    angle: float
    seed: int


@dataclass
class Obj:
    """A furniture-like object standing on the floor.

    ``shape`` "box": centre (cx, cy), yaw, half extents (hx, hy), height h;
    "cyl": centre, radius r, height h; "sphere": centre (cx, cy, r), radius r.
    """

    shape: str
    cls: int
    instance: int
    material: Material
    cx: float
    cy: float
    h: float
    r: float = 0.0
    hx: float = 0.0
    hy: float = 0.0
    yaw: float = 0.0

    @property
    def footprint(self) -> float:
        """Radius of a circle around the centre that holds the footprint."""
        return math.hypot(self.hx, self.hy) if self.shape == "box" else self.r


@dataclass
class Decoration:
    """A flat rectangle in a wall plane: ``a`` along the wall, ``z`` up (metres)."""

    cls: int
    instance: int
    wall: int
    a0: float
    a1: float
    z0: float
    z1: float
    material: Material
    frame: Material
    frame_width: float
    mullions: bool = False


@dataclass
class Scene:
    """One room: geometry, materials, lighting and the camera path."""

    dims: np.ndarray  # (W, D, H) room extent along x, y, z
    room_materials: dict[int, Material]  # instance id -> material for walls/floor/ceiling
    objects: list[Obj]
    decorations: list[Decoration]
    light: np.ndarray
    ambient: float
    diffuse: float
    bounce: float  # light reflected by the floor onto surfaces facing down
    noise_sigma: float
    K: np.ndarray
    cam2world: list[np.ndarray] = field(default_factory=list)


# Instance ids: 1-4 walls (in _WALL_NORMALS order), 5 floor, 6 ceiling, then
# decorations, then objects.
_FLOOR, _CEIL = 5, 6


def _wall_length(dims: np.ndarray, wall: int) -> float:
    return float(dims[0] if wall % 2 == 0 else dims[1])


def _wall_coord(dims: np.ndarray, wall: int, p: np.ndarray) -> np.ndarray:
    """Coordinate along ``wall`` (metres from its start corner, counter-clockwise)."""
    W, D = dims[0], dims[1]
    return (p[..., 0], p[..., 1], W - p[..., 0], D - p[..., 1])[wall]


# ----------------------------------------------------------------------------- sampling


def _palette(rng: np.random.Generator, n: int = 7) -> list[np.ndarray]:
    """Scene colours shared by every class (so colour does not give the class away)."""
    cols = []
    for _ in range(n):
        hue = rng.uniform()
        sat = rng.uniform(0.03, 0.25) if rng.uniform() < 0.5 else rng.uniform(0.25, 0.7)
        val = rng.uniform(0.35, 0.95)
        cols.append(np.array(colorsys.hsv_to_rgb(hue, sat, val)))
    return cols


def _material(
    rng: np.random.Generator, palette: list[np.ndarray], avoid: tuple[int, ...] = ()
) -> tuple[Material, int]:
    """Draw a material; returns it and its main palette index (to keep contrasts)."""
    kinds = ("plain", "stripes", "checks", "noise", "grain")
    kind = kinds[int(rng.choice(5, p=[0.25, 0.2, 0.15, 0.2, 0.2]))]
    choices = [i for i in range(len(palette)) if i not in avoid] or list(range(len(palette)))
    i1 = int(rng.choice(choices))
    i2 = int(rng.choice([i for i in range(len(palette)) if i != i1]))
    scale = {
        "plain": 0.3,
        "stripes": rng.uniform(0.06, 0.4),
        "checks": rng.uniform(0.1, 0.5),
        "noise": rng.uniform(0.08, 0.5),
        "grain": rng.uniform(0.02, 0.08),
    }[kind]
    angle = (
        float(rng.choice([0.0, math.pi / 2])) if rng.uniform() < 0.7 else rng.uniform(0, math.pi)
    )
    c2 = palette[i2] if kind != "plain" else palette[i1] * rng.uniform(0.8, 0.95)
    mat = Material(kind, palette[i1], c2, float(scale), float(angle), int(rng.integers(2**31)))
    return mat, i1


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """World-from-camera rotation (world z up; camera x right, y down, z forward)."""
    cp, sp, cy, sy = math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw)
    fwd = np.array([cp * cy, cp * sy, sp])
    right0 = np.array([sy, -cy, 0.0])
    down0 = np.cross(fwd, right0)
    cr, sr = math.cos(roll), math.sin(roll)
    right = cr * right0 + sr * down0
    down = -sr * right0 + cr * down0
    return np.stack([right, down, fwd], axis=1)


def _pose(pos: np.ndarray, angles: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = _rotation(*angles)
    T[:3, 3] = pos
    return T


def _camera_path(rng: np.random.Generator, dims: np.ndarray, views: int) -> list[np.ndarray]:
    """A short, smooth walk: each step 5-30 cm and 2-10 degrees from the previous view."""
    W, D, _ = dims
    margin = 0.7
    lo, hi = np.array([margin, margin]), np.array([W - margin, D - margin])
    while True:
        pos = np.array(
            [rng.uniform(lo[0], hi[0]), rng.uniform(lo[1], hi[1]), rng.uniform(1.25, 1.65)]
        )
        # Look towards a far point of the room so that most of it is in view.
        for _ in range(50):
            target = np.array([rng.uniform(0.3, W - 0.3), rng.uniform(0.3, D - 0.3)])
            if np.hypot(*(target - pos[:2])) > 0.6 * max(W, D):
                break
        yaw = math.atan2(target[1] - pos[1], target[0] - pos[0])
        angles = np.array(
            [yaw, math.radians(rng.uniform(-14, 0)), math.radians(rng.uniform(-2, 2))]
        )
        heading = yaw + rng.uniform(-1.2, 1.2)
        poses = [_pose(pos, angles)]
        turn = rng.choice([-1.0, 1.0])
        ok = True
        for _ in range(views - 1):
            for _ in range(200):
                step_len = rng.uniform(0.07, 0.27)
                head = heading + rng.uniform(-0.5, 0.5)
                step = np.array(
                    [step_len * math.cos(head), step_len * math.sin(head), rng.uniform(-0.04, 0.04)]
                )
                new_pos = pos + step
                if rng.uniform() < 0.15:
                    turn = -turn
                d_ang = np.array(
                    [
                        turn * math.radians(rng.uniform(2.5, 7.5)),
                        math.radians(rng.uniform(-1.5, 1.5)),
                        math.radians(rng.uniform(-0.5, 0.5)),
                    ]
                )
                new_ang = angles + d_ang
                new_ang[1] = float(np.clip(new_ang[1], math.radians(-20), math.radians(5)))
                new_ang[2] = float(np.clip(new_ang[2], math.radians(-3), math.radians(3)))
                pose = _pose(new_pos, new_ang)
                dist = float(np.linalg.norm(step))
                ang = rotation_angle_deg(poses[-1][:3, :3].T @ pose[:3, :3])
                inside = bool(np.all(new_pos[:2] >= lo) and np.all(new_pos[:2] <= hi))
                if (
                    inside
                    and _HEIGHT_RANGE_M[0] <= new_pos[2] <= _HEIGHT_RANGE_M[1]
                    and _STEP_RANGE_M[0] + 0.005 <= dist <= _STEP_RANGE_M[1] - 0.005
                    and _ANGLE_RANGE_DEG[0] + 0.1 <= ang <= _ANGLE_RANGE_DEG[1] - 0.1
                ):
                    pos, angles, heading = new_pos, new_ang, head
                    poses.append(pose)
                    break
                heading += rng.uniform(-1.0, 1.0)  # blocked: look for another way
            else:
                ok = False
                break
        if ok:
            return poses


def _world_rays(
    K: np.ndarray, cam2world: np.ndarray, h: int, w: int
) -> tuple[np.ndarray, np.ndarray]:
    """Origin (3,) and world directions (h*w, 3) whose camera-z component is 1."""
    rc = camera_rays(K, h, w).reshape(-1, 3)
    R = cam2world[:3, :3]
    d = rc[:, 0:1] * R[:, 0] + rc[:, 1:2] * R[:, 1] + rc[:, 2:3] * R[:, 2]
    return cam2world[:3, 3].copy(), d


def _floor_points(rng: np.random.Generator, scene: Scene, n: int) -> np.ndarray:
    """Floor points seen by random pixels of random views (where objects will be seen)."""
    out = []
    for _ in range(n):
        T = scene.cam2world[int(rng.integers(len(scene.cam2world)))]
        K = scene.K
        u = rng.uniform(0.05, 0.95) * 2 * K[0, 2]
        v = rng.uniform(0.45, 1.0) * 2 * K[1, 2]
        ray = np.linalg.solve(K, np.array([u, v, 1.0]))
        d = T[:3, :3] @ ray
        if d[2] >= -1e-3:
            continue
        t = -T[2, 3] / d[2]
        out.append(T[:3, 3] + t * d)
    return np.array(out).reshape(-1, 3)


def _place_objects(
    rng: np.random.Generator, scene: Scene, palette: list[np.ndarray], first_instance: int
) -> None:
    W, D, _ = scene.dims
    n = int(rng.integers(4, 8))
    order = [SYNTHROOMS_OBJECT_CLASSES[i] for i in rng.permutation(6)]
    names = order[:n] + [order[int(i)] for i in rng.integers(0, 6, max(0, n - 6))]
    cams = np.array([T[:3, 3] for T in scene.cam2world])
    candidates = _floor_points(rng, scene, 60)
    inst = first_instance
    for name in names:
        for _ in range(60):
            if len(candidates) and rng.uniform() < 0.8:
                c = candidates[int(rng.integers(len(candidates)))][:2].copy()
                c += rng.normal(0, 0.15, 2)
            else:
                c = np.array([rng.uniform(0, W), rng.uniform(0, D)])
            obj = _sample_object(rng, name, c, scene.dims)
            if obj is None or not _object_fits(obj, scene, cams):
                continue
            obj.instance = inst
            obj.material = _material(rng, palette)[0]
            scene.objects.append(obj)
            inst += 1
            break


def _sample_object(
    rng: np.random.Generator, name: str, c: np.ndarray, dims: np.ndarray
) -> Obj | None:
    W, D, _ = dims
    cls = CLASS_ID[name]
    mat = Material("plain", np.zeros(3), np.zeros(3), 1.0, 0.0, 0)  # replaced on success
    if name in ("cabinet", "bed", "table"):
        size = {
            "cabinet": ((0.4, 1.2), (0.35, 0.6), (0.8, 2.0)),
            "bed": ((1.9, 2.1), (0.9, 1.6), (0.4, 0.6)),
            "table": ((0.8, 1.6), (0.6, 1.0), (0.7, 0.8)),
        }[name]
        lx, ly, h = (rng.uniform(*s) for s in size)
        yaw = rng.uniform(0, math.pi)
        if name != "table" and rng.uniform() < 0.7:
            # Against the nearest wall, back (local +y side) touching it.
            # The local y axis of a box with yaw = wall * 90 deg is the wall's inward normal.
            dist = [c[1], W - c[0], D - c[1], c[0]]
            wall = int(np.argmin(dist))
            yaw = wall * math.pi / 2
            back = ly / 2 + 0.01
            c = c.copy()
            if wall % 2 == 0:
                c[1] = back if wall == 0 else D - back
            else:
                c[0] = W - back if wall == 1 else back
        return Obj(
            "box",
            cls,
            0,
            mat,
            float(c[0]),
            float(c[1]),
            float(h),
            0.0,
            float(lx / 2),
            float(ly / 2),
            float(yaw),
        )
    if name in CYLINDER_SIZES:
        (h_lo, h_hi), (r_lo, r_hi) = CYLINDER_SIZES[name]
        height, radius = rng.uniform(h_lo, h_hi), rng.uniform(r_lo, r_hi)
        return Obj("cyl", cls, 0, mat, float(c[0]), float(c[1]), height, radius)
    r = rng.uniform(0.1, 0.35)
    return Obj("sphere", cls, 0, mat, float(c[0]), float(c[1]), 2 * r, r)


def _object_fits(obj: Obj, scene: Scene, cams: np.ndarray) -> bool:
    """Inside the room, clear of other objects and of the camera path."""
    W, D, _ = scene.dims
    if obj.shape == "box":
        cy, sy = math.cos(obj.yaw), math.sin(obj.yaw)
        corners = np.array(
            [
                [sx * obj.hx * cy - sy_ * obj.hy * sy, sx * obj.hx * sy + sy_ * obj.hy * cy]
                for sx in (-1, 1)
                for sy_ in (-1, 1)
            ]
        ) + [obj.cx, obj.cy]
    else:
        corners = np.array([[obj.cx - obj.r, obj.cy - obj.r], [obj.cx + obj.r, obj.cy + obj.r]])
    if corners.min() < 0.005 or np.any(corners.max(axis=0) > [W - 0.005, D - 0.005]):
        return False
    cam_dist = np.hypot(cams[:, 0] - obj.cx, cams[:, 1] - obj.cy) - obj.footprint
    if cam_dist.min() < 0.6:
        return False
    return all(
        math.hypot(o.cx - obj.cx, o.cy - obj.cy) > o.footprint + obj.footprint + 0.05
        for o in scene.objects
    )


def _visible_walls(scene: Scene) -> list[list[float]]:
    """Per wall, the along-wall coordinates its visible part spans in the first and last views."""
    hits: list[list[float]] = [[] for _ in range(4)]
    h, w = 2 * scene.K[1, 2] + 1, 2 * scene.K[0, 2] + 1
    s = 12 / h  # a coarse grid with the same field of view
    for T in (scene.cam2world[0], scene.cam2world[-1]):
        o, d = _world_rays(_scale_K(scene.K, s), T, 12, max(2, round(w * s)))
        t, face = _room_hit(o, d, scene.dims)
        p = o + t[:, None] * d
        for wall in range(4):
            sel = face == wall
            hits[wall].extend(_wall_coord(scene.dims, wall, p[sel]).tolist())
    return hits


def _scale_K(K: np.ndarray, s: float) -> np.ndarray:
    """Intrinsics of the same camera on a grid ``s`` times as fine (pixel centres at integers)."""
    K2 = K.copy()
    K2[0, 0] *= s
    K2[1, 1] *= s
    K2[0, 2] = (K[0, 2] + 0.5) * s - 0.5
    K2[1, 2] = (K[1, 2] + 0.5) * s - 0.5
    return K2


def _place_decorations(
    rng: np.random.Generator,
    scene: Scene,
    palette: list[np.ndarray],
    wall_main: int,
    first_instance: int,
) -> int:
    dims = scene.dims
    H = float(dims[2])
    hits = _visible_walls(scene)
    weights = np.array([len(h) for h in hits], dtype=np.float64) + 1.0
    names = (
        ["door"] * int(rng.uniform() < 0.9)
        + ["window"] * int(rng.integers(1, 3))
        + ["picture"] * int(rng.integers(1, 4))
    )
    inst = first_instance
    for name in names:
        for _ in range(40):
            wall = int(rng.choice(4, p=weights / weights.sum()))
            L = _wall_length(dims, wall)
            if name == "door":
                w, z0, z1 = rng.uniform(0.8, 1.0), 0.0, rng.uniform(2.0, 2.1)
            elif name == "window":
                w = rng.uniform(0.7, 1.6)
                z0 = rng.uniform(0.7, 1.0)
                z1 = min(z0 + rng.uniform(0.9, 1.4), H - 0.2)
            else:
                w = rng.uniform(0.3, 1.0)
                zc, hh = rng.uniform(1.3, 1.8), rng.uniform(0.25, 0.8)
                z0, z1 = zc - hh / 2, min(zc + hh / 2, H - 0.15)
            if hits[wall] and rng.uniform() < 0.85:
                a_c = rng.uniform(min(hits[wall]), max(hits[wall]))
            else:
                a_c = rng.uniform(0, L)
            a0, a1 = a_c - w / 2, a_c + w / 2
            if a0 < 0.15 or a1 > L - 0.15:
                continue
            if any(
                d.wall == wall and a0 < d.a1 + 0.1 and d.a0 < a1 + 0.1 for d in scene.decorations
            ):
                continue
            mat, i1 = _material(rng, palette, avoid=(wall_main,))
            frame, _ = _material(rng, palette, avoid=(wall_main, i1))
            frame = Material("plain", frame.c1, frame.c1 * 0.9, 0.3, 0.0, frame.seed)
            fw = rng.uniform(0.02, 0.05) if name == "picture" else rng.uniform(0.04, 0.08)
            scene.decorations.append(
                Decoration(
                    CLASS_ID[name],
                    inst,
                    wall,
                    float(a0),
                    float(a1),
                    float(z0),
                    float(z1),
                    mat,
                    frame,
                    float(fw),
                    mullions=bool(name == "window" and rng.uniform() < 0.6),
                )
            )
            inst += 1
            break
    return inst


def sample_scene(
    seed: int, index: int, views: int, size: tuple[int, int]
) -> tuple[Scene, np.random.Generator]:
    """Draw scene ``index`` of dataset ``seed``; returns it and the generator for its noise."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, index)))
    h, w = size
    dims = np.array([rng.uniform(3.5, 6.5), rng.uniform(3.5, 7.5), rng.uniform(2.5, 3.2)])
    palette = _palette(rng)
    wall_mat, wall_main = _material(rng, palette)
    floor_mat, _ = _material(rng, palette)
    ceil_mat, _ = _material(rng, palette)
    room = {1: wall_mat, 2: wall_mat, 3: wall_mat, 4: wall_mat, _FLOOR: floor_mat, _CEIL: ceil_mat}
    hfov = math.radians(rng.uniform(55, 65))
    f = (w / 2) / math.tan(hfov / 2)
    K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]], dtype=np.float64)
    light = np.array(
        [
            rng.uniform(0.3, 0.7) * dims[0],
            rng.uniform(0.3, 0.7) * dims[1],
            max(dims[2] - rng.uniform(0.4, 0.9), 2.05),
        ]
    )  # above every object
    scene = Scene(
        dims,
        room,
        [],
        [],
        light,
        float(rng.uniform(0.28, 0.45)),
        float(rng.uniform(0.8, 1.1)),
        float(rng.uniform(0.2, 0.4)),
        float(rng.uniform(0.006, 0.02)),
        K,
    )
    scene.cam2world = _camera_path(rng, dims, views)
    next_inst = _place_decorations(rng, scene, palette, wall_main, _CEIL + 1)
    _place_objects(rng, scene, palette, next_inst)
    return scene, rng


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


# ----------------------------------------------------------------------------- textures


def _hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer lattice point."""
    h = (ix * 374761393 + iy * 668265263 + seed * 2246822519) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return h.astype(np.float64) / 2.0**32


def value_noise(x: np.ndarray, y: np.ndarray, seed: int, octaves: int = 3) -> np.ndarray:
    """Smooth lattice value noise (fractal sum of ``octaves``) in [0, 1]."""
    total, amp, norm = np.zeros_like(x), 1.0, 0.0
    for k in range(octaves):
        xs, ys = x * 2**k, y * 2**k
        xf, yf = np.floor(xs), np.floor(ys)
        fx, fy = xs - xf, ys - yf
        fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
        xi, yi = xf.astype(np.int64), yf.astype(np.int64)
        s = seed + 7919 * k
        v00, v10 = _hash01(xi, yi, s), _hash01(xi + 1, yi, s)
        v01, v11 = _hash01(xi, yi + 1, s), _hash01(xi + 1, yi + 1, s)
        v = (v00 * (1 - fx) + v10 * fx) * (1 - fy) + (v01 * (1 - fx) + v11 * fx) * fy
        total += amp * v
        norm += amp
        amp *= 0.5
    return total / norm


def albedo(mat: Material, uv: np.ndarray) -> np.ndarray:
    """Surface colour (M, 3) in [0, 1] of ``mat`` at surface coordinates ``uv`` (M, 2)."""
    ca, sa = math.cos(mat.angle), math.sin(mat.angle)
    u = ca * uv[:, 0] + sa * uv[:, 1]
    v = -sa * uv[:, 0] + ca * uv[:, 1]
    if mat.kind == "stripes":
        mix = (np.floor(u / mat.scale) % 2).astype(np.float64)
    elif mat.kind == "checks":
        mix = ((np.floor(u / mat.scale) + np.floor(v / mat.scale)) % 2).astype(np.float64)
    elif mat.kind == "noise":
        mix = np.clip((value_noise(u / mat.scale, v / mat.scale, mat.seed) - 0.25) * 2.0, 0, 1)
    elif mat.kind == "grain":
        mix = value_noise(u / (mat.scale * 12), v / mat.scale, mat.seed, octaves=2)
    else:
        mix = value_noise(u / mat.scale, v / mat.scale, mat.seed, octaves=2)
    col = mat.c1[None] * (1 - mix[:, None]) + mat.c2[None] * mix[:, None]
    fine = value_noise(uv[:, 0] / 0.015, uv[:, 1] / 0.015, mat.seed + 1, octaves=1)
    return col * (0.93 + 0.14 * fine[:, None])


# ----------------------------------------------------------------------------- rendering


def boundaries(instances: np.ndarray) -> np.ndarray:
    """Binary (h, w) uint8: 1 where any 4-neighbour has a different label (both sides)."""
    lab = np.asarray(instances)
    edge = np.zeros(lab.shape, dtype=bool)
    dv = lab[1:] != lab[:-1]
    dh = lab[:, 1:] != lab[:, :-1]
    edge[1:] |= dv
    edge[:-1] |= dv
    edge[:, 1:] |= dh
    edge[:, :-1] |= dh
    return edge.astype(np.uint8)


def render_view(
    scene: Scene, cam2world: np.ndarray, size: tuple[int, int], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Ray-cast one view. Returns ``rgb`` (h, w, 3) uint8, ``depth`` (h, w) float32,
    ``normals`` (h, w, 3) float32 (camera frame, unit, facing the camera), ``semseg``
    (h, w) uint8 class ids, ``instances`` (h, w) uint16, ``edge`` and ``sal`` (h, w)
    uint8 in {0, 1}, ``K`` and ``cam2world``."""
    h, w = size
    o, d = _world_rays(scene.K, cam2world, h, w)
    n_pix = d.shape[0]
    t_room, face = _room_hit(o, d, scene.dims)
    t_all = np.stack([t_room] + [_hit_t(obj, o, d) for obj in scene.objects])
    which = np.argmin(t_all, axis=0)  # 0 = room, k = objects[k - 1]
    t = np.take_along_axis(t_all, which[None], 0)[0]
    p = o + t[:, None] * d

    normal = np.zeros((n_pix, 3))
    uv = np.zeros((n_pix, 2))
    inst = np.zeros(n_pix, dtype=np.int64)
    materials: dict[int, Material] = dict(scene.room_materials)
    cls_of = {k: CLASS_ID["wall"] for k in range(1, 5)} | {
        _FLOOR: CLASS_ID["floor"],
        _CEIL: CLASS_ID["ceiling"],
    }

    room = which == 0
    for f in range(6):
        sel = room & (face == f)
        if not sel.any():
            continue
        q = p[sel]
        if f < 4:
            normal[sel] = _WALL_NORMALS[f]
            offset = [
                0.0,
                scene.dims[0],
                scene.dims[0] + scene.dims[1],
                2 * scene.dims[0] + scene.dims[1],
            ][f]
            uv[sel] = np.stack([offset + _wall_coord(scene.dims, f, q), q[:, 2]], 1)
            inst[sel] = f + 1
        else:
            normal[sel] = (0, 0, 1) if f == 4 else (0, 0, -1)
            uv[sel] = q[:, :2]
            inst[sel] = _FLOOR if f == 4 else _CEIL
    deco_local: dict[int, np.ndarray] = {}
    for dec in scene.decorations:
        sel = room & (face == dec.wall)
        idx = np.flatnonzero(sel)
        q = p[idx]
        a = _wall_coord(scene.dims, dec.wall, q)
        inside = (a >= dec.a0) & (a <= dec.a1) & (q[:, 2] >= dec.z0) & (q[:, 2] <= dec.z1)
        idx = idx[inside]
        inst[idx] = dec.instance
        deco_local[dec.instance] = np.stack([a[inside] - dec.a0, q[inside, 2] - dec.z0], 1)
        uv[idx] = deco_local[dec.instance]
        cls_of[dec.instance] = dec.cls
    for k, obj in enumerate(scene.objects, start=1):
        sel = which == k
        if sel.any():
            normal[sel], uv[sel] = _surface(obj, p[sel])
        inst[sel] = obj.instance
        materials[obj.instance] = obj.material
        cls_of[obj.instance] = obj.cls

    # Albedo per surface instance, from its own material and surface coordinates.
    col = np.zeros((n_pix, 3))
    decos = {dec.instance: dec for dec in scene.decorations}
    for i in np.unique(inst):
        sel = inst == i
        if i in decos:
            dec = decos[i]
            col[sel] = albedo(dec.material, uv[sel])
            x, z = deco_local[i][:, 0], deco_local[i][:, 1]
            wd, hd, fw = dec.a1 - dec.a0, dec.z1 - dec.z0, dec.frame_width
            if dec.cls == CLASS_ID["door"]:
                fr = np.minimum(np.minimum(x, wd - x), hd - z) < fw
                fr |= (x - 0.85 * wd) ** 2 + (z - 1.0) ** 2 < 0.035**2
            else:
                fr = np.minimum(np.minimum(x, wd - x), np.minimum(z, hd - z)) < fw
            if dec.mullions:
                fr |= (np.abs(x - wd / 2) < 0.35 * fw) | (np.abs(z - 0.55 * hd) < 0.35 * fw)
            if fr.any():
                idx = np.flatnonzero(sel)[fr]
                col[idx] = albedo(dec.frame, uv[idx])
        else:
            col[sel] = albedo(materials[int(i)], uv[sel])

    # Lambertian shading from the point light (with cast shadows), ambient and floor bounce.
    to_light = scene.light[None] - p
    dist = np.linalg.norm(to_light, axis=1)
    cos = np.clip(np.sum(normal * to_light, axis=1) / dist, 0, None)
    lit = cos > 0
    if scene.objects and lit.any():
        origin = p[lit] + 1e-4 * normal[lit]
        ray = to_light[lit]
        blocked = np.zeros(origin.shape[0], dtype=bool)
        for obj in scene.objects:
            blocked |= _hit_t(obj, origin, ray) < 1.0
        cos[np.flatnonzero(lit)[blocked]] = 0.0
    atten = 9.0 / (9.0 + dist**2)
    shade = (
        scene.ambient + scene.diffuse * cos * atten + scene.bounce * np.clip(-normal[:, 2], 0, 1)
    )
    img = col * shade[:, None]
    img = img + rng.normal(0.0, scene.noise_sigma, img.shape)
    rgb = np.clip(np.round(img * 255), 0, 255).astype(np.uint8).reshape(h, w, 3)

    R = cam2world[:3, :3]
    n_cam = normal @ R  # R^T n for each row
    rc = camera_rays(scene.K, h, w).reshape(-1, 3)
    n_cam = np.where((np.sum(n_cam * rc, 1) > 0)[:, None], -n_cam, n_cam)
    lut = np.zeros(int(inst.max()) + 1, dtype=np.uint8)
    for i, c in cls_of.items():
        if i < lut.size:
            lut[i] = c
    semseg = lut[inst].reshape(h, w)
    instances = inst.reshape(h, w).astype(np.uint16)
    return {
        "rgb": rgb,
        "depth": t.reshape(h, w).astype(np.float32),
        "normals": n_cam.reshape(h, w, 3).astype(np.float32),
        "semseg": semseg,
        "instances": instances,
        "edge": boundaries(instances),
        "sal": np.isin(semseg, OBJECT_CLASS_IDS).astype(np.uint8),
        "K": scene.K.copy(),
        "cam2world": cam2world.copy(),
    }


def render_scene_views(
    seed: int, index: int, views: int = 4, size: tuple[int, int] = (120, 160), extra: int = 0
) -> list[dict[str, np.ndarray]]:
    """All views of scene ``index`` of dataset ``seed`` as arrays (see :func:`render_view`);
    exactly what :func:`generate` writes for that scene. With ``extra`` video frames the
    camera path has ``views + extra`` frames in path order (see :func:`labelled_frames`)."""
    scene, rng = sample_scene(seed, index, views + extra, size)
    return [render_view(scene, T, size, rng) for T in scene.cam2world]


def labelled_frames(views: int, extra: int) -> list[int]:
    """Path positions of the fully labelled frames among ``views + extra`` frames: spread
    evenly along the walk (first and last included), the extra frames between them."""
    total = views + extra
    if views == 1:
        return [0]
    return [round(i * (total - 1) / (views - 1)) for i in range(views)]


# ----------------------------------------------------------------------------- files


def view_id(scene: int, frame: int) -> str:
    """The file stem of a view, e.g. ``s0003_f02``."""
    return f"s{scene:04d}_f{frame:02d}"


def _save_png(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr).save(path, format="PNG", compress_level=6)


def _write_scene(
    job: tuple[str, int, int, int, tuple[int, int], int],
) -> tuple[int, float, float, list[int]]:
    """Render scene ``index`` and write its files; returns (index, depth min, depth max,
    classes seen). Extra frames get an image, depth and a camera only. Runs in worker
    processes."""
    root_s, seed, index, views, size, extra = job
    root = Path(root_s)
    dmin, dmax, seen = math.inf, 0.0, set()
    labelled = set(labelled_frames(views, extra))
    for frame, v in enumerate(render_scene_views(seed, index, views, size, extra)):
        vid = view_id(index, frame)
        _save_png(root / "images" / f"{vid}.png", v["rgb"])
        np.save(root / "depth" / f"{vid}.npy", v["depth"])
        _save_camera(root, vid, v, index, frame)
        dmin, dmax = min(dmin, float(v["depth"].min())), max(dmax, float(v["depth"].max()))
        if frame not in labelled:
            continue
        nrm = np.round((v["normals"].astype(np.float64) + 1) / 2 * 255).astype(np.uint8)
        _save_png(root / "normals" / f"{vid}.png", nrm)
        _save_png(root / "segmentation" / f"{vid}.png", (v["semseg"] + 1).astype(np.uint8))
        _save_png(root / "edge" / f"{vid}.png", v["edge"] * np.uint8(255))
        _save_png(root / "saliency" / f"{vid}.png", v["sal"] * np.uint8(255))
        _save_png(root / "instances" / f"{vid}.png", v["instances"])
        seen.update(int(c) for c in np.unique(v["semseg"]))
    return index, dmin, dmax, sorted(seen)


def _save_camera(root: Path, vid: str, v: dict[str, np.ndarray], index: int, frame: int) -> None:
    cam = {
        "K": v["K"].tolist(),
        "cam2world": v["cam2world"].tolist(),
        "scene": f"s{index:04d}",
        "frame": frame,
    }
    (root / "cameras" / f"{vid}.json").write_text(json.dumps(cam, sort_keys=True) + "\n")


def split_scenes(scenes: int, val_fraction: float, seed: int) -> list[int]:
    """Scene indices of the validation split (sorted).

    ``round(val_fraction * scenes)`` scenes drawn with a seeded permutation; with at least
    two scenes and ``val_fraction > 0`` each split gets at least one scene. One scene, or
    ``val_fraction == 0``: everything is train.
    """
    if scenes < 2 or val_fraction <= 0:
        return []
    n_val = min(max(round(val_fraction * scenes), 1), scenes - 1)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    return sorted(int(i) for i in rng.permutation(scenes)[:n_val])


def _replaceable(out: Path) -> bool:
    """A dataset this generator wrote before output markers existed (its ``meta.json``,
    nothing but the dataset's own folders): ``--force`` may replace it."""
    try:
        meta = json.loads((out / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    own = {*MODALITIES, "gt_sets", "meta.json"}
    if any(p.name not in own for p in out.iterdir()):
        return False
    return isinstance(meta, dict) and meta.get("generator") == _GENERATOR


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which terminates the pool and cleans up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _mp_context() -> multiprocessing.context.BaseContext:
    """Fork on Linux: workers inherit the imported modules (``mtlsearch.tasks`` pulls in
    torch, seconds per spawned worker) and only run numpy and PIL. Spawn elsewhere."""
    if sys.platform == "linux":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _check_args(
    out: Path,
    scenes: int,
    views: int,
    size: tuple[int, int],
    seed: int,
    val_fraction: float,
    workers: int | None,
    force: bool,
) -> None:
    if not isinstance(scenes, int) or scenes < 1:
        raise UserError(f"--scenes must be a positive integer, got {scenes!r}")
    if not isinstance(views, int) or views < 1:
        raise UserError(f"--views must be a positive integer, got {views!r}")
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or any(not isinstance(s, (int, np.integer)) or s < 8 for s in size)
    ):
        raise UserError(f"--size must be HxW with both sides >= 8, got {size!r}")
    if not isinstance(seed, int) or seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"--val-fraction must be in [0, 1), got {val_fraction!r}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be a positive integer, got {workers!r}")
    check_target(out, OUTPUT_KIND, replace=force, force_hint="--force", legacy=_replaceable)


def generate(
    out: str | Path,
    scenes: int = 20,
    views: int = 4,
    size: tuple[int, int] = (120, 160),
    seed: int = 0,
    val_fraction: float = 0.2,
    workers: int | None = None,
    force: bool = False,
    progress: bool = True,
    extra_views: int = 0,
) -> Path:
    """Generate a SynthRooms dataset into ``out`` and return its path.

    ``extra_views`` > 0 adds that many video frames per room along the same camera walk
    (the labelled frames spread evenly among them, :func:`labelled_frames`), each with an
    image, depth and a camera only, listed in ``gt_sets/extra.txt``, like NYUv2's raw
    frames; ids keep the path position (``s0003_f01``). With 0 the output is exactly
    that of the generator without the option.

    The dataset is built in ``<out>.tmp-<pid>`` and renamed to ``out`` when complete, so
    an interrupted run leaves nothing at ``out``. An existing ``out`` is refused unless
    ``force``; then the new dataset is built first, swapped in, and the old one deleted.
    ``force`` only replaces an empty folder or an earlier SynthRooms dataset. ``workers``
    processes (default: all cores) render scenes in parallel; the files are identical
    to a serial run. A run killed outright (SIGKILL) may leave ``<out>.tmp-<pid>`` behind.
    """
    out = Path(os.path.abspath(out))
    _check_args(out, scenes, views, size, seed, val_fraction, workers, force)
    if not isinstance(extra_views, int) or isinstance(extra_views, bool) or not 0 <= extra_views <= 256:
        raise UserError(f"--extra-views must be an integer in [0, 256], got {extra_views!r}")
    size = (int(size[0]), int(size[1]))
    workers = min(workers or os.cpu_count() or 1, scenes)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        for sub in (*MODALITIES, "gt_sets"):
            (tmp / sub).mkdir(parents=True)
        jobs = [(str(tmp), seed, i, views, size, extra_views) for i in range(scenes)]
        results = []
        from tqdm import tqdm

        with tqdm(
            total=scenes, desc="synthrooms", unit="scene", file=sys.stderr, disable=not progress
        ) as bar:
            if workers == 1:
                for job in jobs:
                    results.append(_write_scene(job))
                    bar.update()
            else:
                with _mp_context().Pool(workers, initializer=_ignore_sigint) as pool:
                    for res in pool.imap(_write_scene, jobs, chunksize=1):
                        results.append(res)
                        bar.update()
        val = set(split_scenes(scenes, val_fraction, seed))
        frames = labelled_frames(views, extra_views)
        for name, keep in (("train", lambda i: i not in val), ("val", lambda i: i in val)):
            ids = [view_id(i, f) for i in range(scenes) if keep(i) for f in frames]
            (tmp / "gt_sets" / f"{name}.txt").write_text("".join(f"{x}\n" for x in ids))
        if extra_views:
            others = [f for f in range(views + extra_views) if f not in set(frames)]
            ids = [view_id(i, f) for i in range(scenes) for f in others]
            (tmp / "gt_sets" / "extra.txt").write_text("".join(f"{x}\n" for x in ids))
        meta = _meta(scenes, views, size, seed, val_fraction, results, len(val))
        if extra_views:
            meta["params"]["extra_views"] = extra_views
            meta["splits"]["extra"] = scenes * extra_views
            meta["encodings"]["extra"] = (
                "gt_sets/extra.txt: video frames with images, depth and cameras only"
            )
        (tmp / "meta.json").write_text(json.dumps(meta, sort_keys=True, indent=2) + "\n")
        install(tmp, out, OUTPUT_KIND, replace=force, force_hint="--force", legacy=_replaceable)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _meta(
    scenes: int,
    views: int,
    size: tuple[int, int],
    seed: int,
    val_fraction: float,
    results: list[tuple[int, float, float, list[int]]],
    n_val: int,
) -> dict[str, Any]:
    seen = sorted({c for r in results for c in r[3]})
    return {
        "generator": _GENERATOR,
        "version": GENERATOR_VERSION,
        "params": {
            "scenes": scenes,
            "views": views,
            "size": list(size),
            "seed": seed,
            "val_fraction": val_fraction,
        },
        "classes": list(SYNTHROOMS_CLASSES),
        "object_classes": list(SYNTHROOMS_OBJECT_CLASSES),
        "classes_present": [SYNTHROOMS_CLASSES[c] for c in seen],
        "image_size": list(size),
        "depth_range": [round(min(r[1] for r in results), 4), round(max(r[2] for r in results), 4)],
        "num_views": views,
        "splits": {"train": (scenes - n_val) * views, "val": n_val * views},
        "encodings": {
            "depth": "npy float32 z-depth in metres, 0 = invalid (unused: every pixel valid)",
            "normals": "png uint8 round((n + 1) / 2 * 255), camera frame x right y down z forward",
            "segmentation": "png uint8, 0 = void, class k stored as k + 1",
            "edge": "png uint8 0/255, 255 where a 4-neighbour has another instance (both sides)",
            "saliency": "png uint8 0/255, 255 on object classes",
            "instances": "png uint16 instance id, unique per scene, stable across views",
            "cameras": "json K (3x3), cam2world (4x4, OpenCV camera axes), scene, frame",
        },
    }


def run_cli(args: Any) -> int:
    """``mtlsearch data synthrooms``: generate and print a one-line summary."""
    start = time.perf_counter()
    out = generate(
        args.out,
        scenes=args.scenes,
        views=args.views,
        size=tuple(args.size),
        seed=args.seed,
        val_fraction=args.val_fraction,
        workers=args.workers,
        force=args.force,
        extra_views=args.extra_views,
    )
    dt = time.perf_counter() - start
    n = args.scenes * (args.views + args.extra_views)
    extra = f" + {args.extra_views} depth-only" if args.extra_views else ""
    print(
        f"wrote {n} views ({args.scenes} scenes x {args.views}{extra}) to {out} in {dt:.1f} s "
        f"({n / dt:.1f} views/s)"
    )
    return 0
