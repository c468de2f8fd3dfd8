"""SynthRooms textures and rendering: procedural albedo, Lambertian shading with a
point light and cast shadows, sensor noise, and the label maps of a view.

Contract: :func:`render_view` turns (scene, pose, size, rng) into the arrays of one
view; :func:`render_scene_views` gives every view of a scene, exactly what the
writer stores.
"""

from __future__ import annotations

import math

import numpy as np

from mtlsearch.data.geometry import camera_rays
from mtlsearch.data.synthrooms.raycast import (
    _hit_t,
    _room_hit,
    _surface,
)
from mtlsearch.data.synthrooms.scenes import (
    _CEIL,
    _FLOOR,
    _WALL_NORMALS,
    CLASS_ID,
    OBJECT_CLASS_IDS,
    Material,
    Scene,
    _wall_coord,
    _world_rays,
    sample_scene,
)

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
