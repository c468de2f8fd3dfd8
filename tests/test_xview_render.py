"""Geometrically exact cross-view rendering, checked on an analytic scene.

Two solid half-spaces (a tilted wall and the floor) are written directly as a
density / normal field in view I's camera frame, bypassing the learned tri-plane, and
rendered through :func:`render_perspective` (the learned field's code path) as view I'
with a pose of 12 degrees about the vertical axis, 4 about x and a 20 cm translation
with a forward component. Ground truth comes from ray-plane intersection in I'
(numpy, pixel rays from ``geometry.camera_rays`` on the render grid). The pose conventions
are proved to matter: the same render with R and R^T swapped, or with -t, must miss.
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
