"""SynthRooms scene model and sampling: a box room, its objects, decorations,
palette and camera walk, drawn from one seeded generator per scene.

Contract: :func:`sample_scene` (seed, index, views, size) -> (Scene, rng) depends on
nothing but its arguments; the returned ``rng`` continues the scene's stream (the
renderer draws sensor noise from it), so call order is part of the output.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import numpy as np

from mtlsearch.classes import SYNTHROOMS_CLASSES, SYNTHROOMS_OBJECT_CLASSES
from mtlsearch.data.geometry import camera_rays, rotation_angle_deg
from mtlsearch.data.synthrooms.raycast import _room_hit

CYLINDER_SIZES = {"lamp": ((1.0, 1.8), (0.08, 0.2)), "bin": ((0.25, 0.5), (0.12, 0.25))}
"""Height and radius ranges (metres) of the cylinder-shaped objects."""
CLASS_ID = {name: i for i, name in enumerate(SYNTHROOMS_CLASSES)}
OBJECT_CLASS_IDS = tuple(CLASS_ID[c] for c in SYNTHROOMS_OBJECT_CLASSES)

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
