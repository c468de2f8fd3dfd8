"""Geometrically exact cross-view rendering, checked on an analytic scene.

Two solid half-spaces (a tilted wall and the floor) are written directly as a
density / normal field in view I's camera frame, bypassing the learned tri-plane, and
rendered through :func:`render_perspective` (the learned field's code path) as view I'
with a pose of 12 degrees about the vertical axis, 4 about x and a 20 cm translation
with a forward component. Ground truth comes from ray-plane intersection in I'
(numpy, pixel rays from ``geometry.camera_rays`` on the render grid). The pose conventions
are proved to matter: the same render with R and R^T swapped, or with -t, must miss.
The same is checked on real SynthRooms views 12.5 degrees and 35 cm apart, with a field
built from one view's depth and normals and the other view's labels as ground truth.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtlsearch.data.geometry import camera_rays
from mtlsearch.models.regularizer import render_perspective

IMAGE = (96, 128)
RENDER = (48, 64)
K = np.array([[120.0, 0.0, 63.5], [0.0, 120.0, 47.5], [0.0, 0.0, 1.0]])
DEPTH_RANGE = (0.2, 6.2)
SAMPLES = 256
# Planes n . p + h = 0 in I's frame, n unit and facing the camera (h > 0); solid where < 0.
WALL_N = np.array([0.3, 0.1, -1.0]) / np.linalg.norm([0.3, 0.1, -1.0])
PLANES = [(WALL_N, 3.0), (np.array([0.0, -1.0, 0.0]), 1.3)]
SIGMA = 1000.0  # per metre inside the solids: opaque within a sample


def _rot(axis: str, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


R_TRUE = _rot("y", 12.0) @ _rot("x", 4.0)
T_TRUE = 0.2 * np.array([0.6, -0.3, 0.74]) / np.linalg.norm([0.6, -0.3, 0.74])
POSE = _pose(R_TRUE, T_TRUE)  # I'-from-I: p' = R p + t


def analytic_field(points: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Density and normals (I's frame) of the union of the two solids."""
    normals = torch.tensor(np.stack([n for n, _ in PLANES]), dtype=points.dtype)
    offsets = torch.tensor([h for _, h in PLANES], dtype=points.dtype)
    sd = points @ normals.T + offsets  # (B, r, S, planes): < 0 inside a solid
    inside = (sd < 0).any(-1)
    sigma = torch.where(inside, torch.full_like(sd[..., 0], SIGMA), torch.zeros_like(sd[..., 0]))
    # The entered surface: of the planes the point is behind, the one it is closest to.
    which = torch.where(sd < 0, sd, torch.full_like(sd, -math.inf)).argmax(-1)
    n = normals[which]
    return {"depth": (sigma, torch.zeros_like(sigma).unsqueeze(-1)), "normals": (sigma, n)}


def ground_truth(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-depth and unit normals of view I' = pose (I'-from-I) at the render pixels."""
    sy, sx = RENDER[0] / IMAGE[0], RENDER[1] / IMAGE[1]
    Kr = K.copy()
    Kr[0] *= sx
    Kr[1] *= sy
    Kr[0, 2], Kr[1, 2] = sx * (K[0, 2] + 0.5) - 0.5, sy * (K[1, 2] + 0.5) - 0.5
    d = camera_rays(Kr, *RENDER)  # (h, w, 3), z = 1
    R, t = pose[:3, :3], pose[:3, 3]
    best = np.full(RENDER, np.inf)
    normal = np.zeros((*RENDER, 3))
    for n, h in PLANES:
        n2 = R @ n
        h2 = h - n2 @ t
        assert h2 > 0  # the camera of I' is in free space
        nd = d @ n2
        with np.errstate(divide="ignore"):
            z = np.where(nd < 0, -h2 / nd, np.inf)
        closer = z < best
        best = np.where(closer, z, best)
        normal[closer] = n2
    return best, normal


def render(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = render_perspective(
        analytic_field,
        torch.tensor(K, dtype=torch.float32).unsqueeze(0),
        IMAGE,
        RENDER,
        DEPTH_RANGE,
        SAMPLES,
        torch.tensor(pose, dtype=torch.float32).unsqueeze(0),
        chunk_rays=1024,
    )
    depth = out["depth"][0, 0].numpy()
    normals = out["normals"][0].permute(1, 2, 0).numpy()
    return depth, normals


def errors(pose_used: np.ndarray) -> tuple[float, float]:
    """Median relative depth error and median normal angle (degrees) of the render with
    ``pose_used`` against the ground truth of the TRUE pose."""
    gt_depth, gt_normals = ground_truth(POSE)
    assert np.isfinite(gt_depth).all() and gt_depth.max() < DEPTH_RANGE[1]
    depth, normals = render(pose_used)
    rel = np.abs(depth - gt_depth) / gt_depth
    cos = np.clip((normals * gt_normals).sum(-1), -1.0, 1.0)
    return float(np.median(rel)), float(np.degrees(np.median(np.arccos(cos))))


def test_scene_is_not_trivial():
    depth, normals = ground_truth(POSE)
    floor = normals[..., 1] < -0.9
    assert 0.1 < floor.mean() < 0.6  # both planes are in view
    assert depth.max() - depth.min() > 0.5
    rot = math.degrees(math.acos((np.trace(R_TRUE) - 1) / 2))
    assert rot >= 10.0 and abs(np.linalg.norm(T_TRUE) - 0.2) < 1e-9
    assert abs(R_TRUE[2, 2]) < math.cos(math.radians(10))  # the optical axis moves


def test_cross_view_render_matches_the_second_views_geometry():
    rel, angle = errors(POSE)
    assert rel < 0.02, rel
    assert angle < 3.0, angle


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(_pose(R_TRUE.T, T_TRUE), id="R-and-RT-swapped"),
        pytest.param(_pose(R_TRUE, -T_TRUE), id="translation-sign-flipped"),
        pytest.param(np.linalg.inv(POSE), id="inverse-pose"),
    ],
)
def test_wrong_pose_conventions_fail_the_same_thresholds(wrong):
    rel, angle = errors(wrong)
    assert rel >= 0.02 or angle >= 3.0, (rel, angle)


def test_identity_pose_equals_the_single_view_render():
    K_t = torch.tensor(K, dtype=torch.float32).unsqueeze(0)
    plain = render_perspective(analytic_field, K_t, IMAGE, RENDER, DEPTH_RANGE, 64)
    same = render_perspective(analytic_field, K_t, IMAGE, RENDER, DEPTH_RANGE, 64, torch.eye(4)[None])
    for task in plain:
        assert torch.allclose(plain[task], same[task], atol=1e-5)
    gt_depth, _ = ground_truth(np.eye(4))
    rel = np.abs(plain["depth"][0, 0].numpy() - gt_depth) / gt_depth
    assert np.median(rel) < 0.05  # 64 samples over 6 m: within one spacing


def _depth_map_field(depth: np.ndarray, normals: np.ndarray, K_ref: np.ndarray, thickness: float = 0.25):
    """A field from one SynthRooms view: solid for `thickness` metres behind the surface it
    sees (in its own frame), carrying that surface's normal; empty elsewhere."""
    h, w = depth.shape
    d = torch.tensor(depth, dtype=torch.float32)
    n = torch.tensor(normals, dtype=torch.float32)
    Kt = torch.tensor(K_ref, dtype=torch.float32)

    def field(points: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        z = points[..., 2]
        front = z > 1e-3
        uvw = points @ Kt.T
        u = torch.round(uvw[..., 0] / z.clamp_min(1e-3)).long()
        v = torch.round(uvw[..., 1] / z.clamp_min(1e-3)).long()
        inside = front & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        uc, vc = u.clamp(0, w - 1), v.clamp(0, h - 1)
        surface = d[vc, uc]
        solid = inside & (z >= surface) & (z <= surface + thickness)
        sigma = torch.where(solid, torch.full_like(z, SIGMA), torch.zeros_like(z))
        return {"depth": (sigma, torch.zeros_like(z).unsqueeze(-1)), "normals": (sigma, n[vc, uc])}

    return field


def test_synthrooms_view_rendered_from_another_views_geometry():
    """View b of a SynthRooms walk rendered from view a's depth and normals (pose
    inv(cam2world_b) @ cam2world_a) matches view b's own labels where a saw the surface."""
    from mtlsearch.data.geometry import rel_pose, rotation_angle_deg
    from mtlsearch.data.synthrooms import render_scene_views

    size = (60, 80)
    views = render_scene_views(0, 2, views=4, size=size)  # 12.5 deg about ~y, 35 cm
    a, b = views[0], views[3]
    pose = rel_pose(a["cam2world"], b["cam2world"])  # b-from-a: p_b = R p_a + t
    assert rotation_angle_deg(pose) >= 10.0 and np.linalg.norm(pose[:3, 3]) >= 0.2
    field = _depth_map_field(a["depth"], a["normals"], a["K"])
    out = render_perspective(
        field, torch.tensor(b["K"], dtype=torch.float32)[None], size, size, (0.1, 12.1), 600,
        torch.tensor(pose, dtype=torch.float32)[None], chunk_rays=2048,
    )
    depth = out["depth"][0, 0].numpy()
    normals = out["normals"][0].permute(1, 2, 0).numpy()
    # Pixels of b whose surface point a saw (reprojects into a at a's own depth).
    pts_b = camera_rays(b["K"], *size) * b["depth"][..., None]
    inv = np.linalg.inv(pose)
    pts_a = pts_b @ inv[:3, :3].T + inv[:3, 3]
    uv = pts_a @ a["K"].T
    u, v = np.round(uv[..., 0] / uv[..., 2]).astype(int), np.round(uv[..., 1] / uv[..., 2]).astype(int)
    ok = (uv[..., 2] > 0) & (u >= 0) & (u < size[1]) & (v >= 0) & (v < size[0])
    seen = np.zeros(size, bool)
    seen[ok] = np.abs(a["depth"][v[ok], u[ok]] - pts_a[..., 2][ok]) < 0.05
    assert seen.mean() > 0.5
    rel = np.abs(depth - b["depth"])[seen] / b["depth"][seen]
    angle = np.degrees(np.arccos(np.clip((normals * b["normals"]).sum(-1)[seen], -1, 1)))
    assert np.median(rel) < 0.02, np.median(rel)
    assert np.median(angle) < 3.0, np.median(angle)
    # The same render with R and R^T swapped, or with -t, misses.
    swapped, flipped = pose.copy(), pose.copy()
    swapped[:3, :3] = pose[:3, :3].T
    flipped[:3, 3] = -pose[:3, 3]
    for wrong in (swapped, flipped):
        bad = render_perspective(
            field, torch.tensor(b["K"], dtype=torch.float32)[None], size, size, (0.1, 12.1), 600,
            torch.tensor(wrong, dtype=torch.float32)[None], chunk_rays=2048,
        )
        bad_rel = np.abs(bad["depth"][0, 0].numpy() - b["depth"])[seen] / b["depth"][seen]
        bad_n = bad["normals"][0].permute(1, 2, 0).numpy()
        bad_angle = np.degrees(np.arccos(np.clip((bad_n * b["normals"]).sum(-1)[seen], -1, 1)))
        assert np.median(bad_rel) >= 0.02 or np.median(bad_angle) >= 3.0
