"""Camera math of mtlsearch.data.geometry against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtlsearch.data import geometry as g

K = np.array([[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]])


def _rz(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def test_project_hand_computed() -> None:
    uv, z = g.project(np.array([[1.0, 2.0, 4.0], [0.0, 0.0, -1.0]]), K)
    # u = 100 * 1/4 + 50, v = 100 * 2/4 + 40
    assert uv[0].tolist() == [75.0, 90.0] and z[0] == 4.0
    assert np.isnan(uv[1]).all()  # behind the camera


def test_camera_rays_and_backproject_roundtrip() -> None:
    rays = g.camera_rays(K, 80, 100)
    assert rays.shape == (80, 100, 3)
    assert np.allclose(rays[..., 2], 1.0)
    assert np.allclose(rays[40, 50], [0.0, 0.0, 1.0])  # principal point: pixel centre (50, 40)
    assert np.allclose(rays[40, 60], [0.1, 0.0, 1.0])
    depth = np.random.default_rng(0).uniform(0.5, 8.0, (80, 100))
    pts = g.backproject(depth, K)
    assert np.allclose(pts[..., 2], depth)
    uv, z = g.project(pts, K)
    u, v = g.pixel_grid(80, 100)
    assert np.allclose(uv[..., 0], u) and np.allclose(uv[..., 1], v) and np.allclose(z, depth)


def test_transform_and_rel_pose() -> None:
    T = np.eye(4)
    T[:3, :3] = _rz(90)
    T[:3, 3] = [1.0, 2.0, 3.0]
    assert np.allclose(g.transform_points(T, np.array([1.0, 0.0, 0.0])), [1.0, 3.0, 3.0])
    ref, src = T, np.eye(4)
    src[:3, :3] = _rz(-30)
    src[:3, 3] = [0.5, 0.0, 0.0]
    rel = g.rel_pose(ref, src)
    p_ref = np.array([[0.3, -0.2, 2.0]])
    # Through the world: ref camera -> world -> src camera.
    via_world = g.transform_points(np.linalg.inv(src), g.transform_points(ref, p_ref))
    assert np.allclose(g.transform_points(rel, p_ref), via_world)
    assert np.allclose(g.rel_pose(ref, ref), np.eye(4))
    assert g.rotation_angle_deg(rel[:3, :3]) == pytest.approx(120.0)
    assert g.rotation_angle_deg(_rz(30)) == pytest.approx(30.0)


def _plane_depth(n: np.ndarray, c: float, h: int = 80, w: int = 100) -> np.ndarray:
    """z-depth of the plane n . X = c seen through K (rays with z = 1: t = c / (n . r))."""
    rays = g.camera_rays(K, h, w)
    return c / (rays @ n)


def test_normals_from_depth_on_a_slanted_plane() -> None:
    n = np.array([0.3, -0.4, -1.0])
    n /= np.linalg.norm(n)  # facing the camera: n . X < 0 for points in front
    depth = _plane_depth(n, -2.0)
    assert (depth > 0).all()
    est = g.normals_from_depth(depth, K)
    assert np.allclose(np.linalg.norm(est, axis=-1), 1.0)
    assert np.allclose(est, n, atol=1e-6)  # borders too: one-sided differences


def test_normals_from_depth_at_discontinuity_and_invalid() -> None:
    depth = np.full((80, 100), 2.0)
    depth[:, 50:] = 4.0
    depth[10, 10] = 0.0  # invalid pixel
    est = g.normals_from_depth(depth, K)
    assert np.allclose(est[10, 10], 0.0)
    ok = np.ones((80, 100), dtype=bool)
    ok[10, 10] = False
    # Both sides of the step keep the fronto-parallel normal (0, 0, -1): the one-sided
    # difference towards their own surface is used.
    assert np.allclose(est[ok], [0.0, 0.0, -1.0], atol=1e-9)
    # Facing the camera everywhere.
    assert (np.sum(est * g.backproject(depth, K), axis=-1)[ok] < 0).all()
