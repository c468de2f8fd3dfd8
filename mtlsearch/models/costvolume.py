"""Plane-sweep geometry of the cross-view module: inverse-depth planes, intrinsics at
feature resolution, nearest views by camera centre, and the correlation cost volume.

Contract: pure tensor functions in the conventions of :mod:`mtlsearch.models.crossview`
(``rel_pose`` source-from-reference, OpenCV axes, pixel centres at integers).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as _checkpoint

from mtlsearch.errors import UserError

NUM_NEIGHBOURS = 2
"""Each view attends to (and the cost volume uses) at most this many nearest views."""



# ---------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------


def inverse_depth_planes(
    near: float, far: float, num: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """``num`` depths (metres, near first) uniformly spaced in inverse depth in [near, far]."""
    if not 0.0 < near < far:
        raise UserError(f"cvm.near/cvm.far: need 0 < near < far, got {near}, {far}")
    if num < 1:
        raise UserError(f"cvm.depth_planes: must be positive, got {num}")
    inv = torch.linspace(1.0 / near, 1.0 / far, num, dtype=torch.float64)
    return (1.0 / inv).to(device=device, dtype=torch.float32)


def scale_intrinsics(K: torch.Tensor, stride: float, offset: float | None = None) -> torch.Tensor:
    """Intrinsics ``K`` (..., 3, 3) moved onto a stride-``stride`` feature grid.

    ``offset`` is the input coordinate of feature pixel 0's centre (pixel centres at
    integer coordinates on both grids): ``(stride - 1) / 2`` for pooled / area-resized
    maps (the default), ``0`` for strided convolutions with same padding.
    ``fx' = fx / s``, ``cx' = (cx - offset) / s`` (derivation in the module docstring).
    """
    if offset is None:
        offset = (stride - 1.0) / 2.0
    out = K.clone()
    out[..., 0, :] = K[..., 0, :] / stride
    out[..., 1, :] = K[..., 1, :] / stride
    out[..., 0, 2] = (K[..., 0, 2] - offset) / stride
    out[..., 1, 2] = (K[..., 1, 2] - offset) / stride
    return out


def camera_centres(rel_pose: torch.Tensor) -> torch.Tensor:
    """Camera centres (B, 1 + S, 3) in the reference frame: the reference at the origin,
    then each source's ``-R^T t`` from its source-from-reference pose (B, S, 4, 4)."""
    R = rel_pose[..., :3, :3]
    t = rel_pose[..., :3, 3:]
    src = -(R.transpose(-1, -2) @ t).squeeze(-1)
    ref = torch.zeros_like(src[:, :1])
    return torch.cat([ref, src], dim=1)


def nearest_views(rel_pose: torch.Tensor, k: int = NUM_NEIGHBOURS) -> torch.Tensor:
    """Indices (B, V, min(k, V - 1)) of each view's nearest other views by camera-centre
    distance; view 0 is the reference, view s + 1 the source ``rel_pose[:, s]``.
    Ties go to the lower index (stable sort)."""
    centres = camera_centres(rel_pose)
    V = centres.shape[1]
    k = min(k, V - 1)
    dist = torch.cdist(centres.double(), centres.double())
    eye = torch.eye(V, dtype=torch.bool, device=dist.device)
    dist = dist.masked_fill(eye, float("inf"))
    order = torch.sort(dist, dim=-1, stable=True).indices
    return order[..., :k]


def _pixel_grid(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Homogeneous pixel centres (3, h*w), row-major, centres at integer coordinates."""
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype),
        torch.arange(w, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones_like(xs).reshape(-1)])


def _plane_sweep_chunk(
    ref_feat: torch.Tensor,
    src_feats: torch.Tensor,
    rays: torch.Tensor,
    offsets: torch.Tensor,
    depths: torch.Tensor,
) -> torch.Tensor:
    """Correlation (B, l, h, w) of the reference with its warped neighbours for l planes.

    ``rays`` (B, N, 3, h*w) = K_src R K_ref^-1 [u, v, 1]; ``offsets`` (B, N, 3, 1) = K_src t;
    a reference pixel at depth d lands at ``d * rays + offsets`` in source pixels.
    """
    B, C, h, w = ref_feat.shape
    N = src_feats.shape[1]
    n_planes = depths.shape[1]
    scale_x = 2.0 / max(w - 1, 1)
    scale_y = 2.0 / max(h - 1, 1)
    total = ref_feat.new_zeros(B, n_planes, h, w)
    for n in range(N):
        proj = depths[:, :, None, None] * rays[:, n, None] + offsets[:, n, None]
        z = proj[:, :, 2]
        valid = z > 1e-6
        z = torch.where(valid, z, torch.ones_like(z))
        gx = torch.where(valid, proj[:, :, 0] / z * scale_x - 1.0, torch.full_like(z, -4.0))
        gy = torch.where(valid, proj[:, :, 1] / z * scale_y - 1.0, torch.full_like(z, -4.0))
        grid = torch.stack([gx, gy], dim=-1).view(B, n_planes * h, w, 2)
        warped = F.grid_sample(
            src_feats[:, n], grid, mode="bilinear", padding_mode="zeros", align_corners=True
        ).view(B, C, n_planes, h, w)
        total = total + torch.einsum("bchw,bclhw->blhw", ref_feat, warped)
    return total / (N * math.sqrt(C))


def cost_volume(
    ref_feat: torch.Tensor,
    src_feats: torch.Tensor,
    K_ref: torch.Tensor,
    K_src: torch.Tensor,
    rel_pose: torch.Tensor,
    depths: torch.Tensor,
    chunk: int,
    recompute: bool = True,
) -> torch.Tensor:
    """Plane-sweep correlation volume (B, L, h, w), plane 0 = ``depths[..., 0]``.

    ref_feat (B, C, h, w); src_feats (B, N, C, h, w); K_ref (B, 3, 3) and K_src (B, N, 3, 3)
    already at feature resolution (pixel centres at integer coordinates); rel_pose
    (B, N, 4, 4) source-from-reference; depths (L,) or (B, L) in metres. Each neighbour
    is warped into the reference view for every depth (bilinear, zeros outside and behind
    the camera); the correlation is ``<f_ref, f_src_warped> / sqrt(C)`` averaged over the
    N neighbours. Planes are processed ``chunk`` at a time, so peak memory is about
    ``C * chunk * h * w`` instead of ``C * L * h * w``; with autograd on and ``recompute``,
    each chunk is recomputed in the backward pass (activation checkpointing) instead of
    keeping its warped features. The result does not depend on ``chunk``.
    """
    if ref_feat.dim() != 4 or src_feats.dim() != 5:
        raise ValueError(
            f"ref_feat must be (B,C,h,w) and src_feats (B,N,C,h,w), got "
            f"{tuple(ref_feat.shape)} and {tuple(src_feats.shape)}"
        )
    B, C, h, w = ref_feat.shape
    N = src_feats.shape[1]
    if chunk < 1:
        raise UserError(f"cvm.chunk_planes: must be positive, got {chunk}")
    dtype = ref_feat.dtype
    if depths.dim() == 1:
        depths = depths[None].expand(B, -1)
    depths = depths.to(device=ref_feat.device, dtype=dtype)
    L = depths.shape[1]
    pix = _pixel_grid(h, w, ref_feat.device, dtype)
    K_ref = K_ref.to(dtype)
    K_src = K_src.to(dtype)
    rel_pose = rel_pose.to(dtype)
    R = rel_pose[..., :3, :3]
    t = rel_pose[..., :3, 3:]
    rays_ref = torch.linalg.inv(K_ref) @ pix  # (B, 3, hw)
    rays = K_src @ R @ rays_ref[:, None]  # (B, N, 3, hw)
    offsets = K_src @ t  # (B, N, 3, 1)
    assert rays.shape == (B, N, 3, h * w)
    use_ckpt = recompute and chunk < L and torch.is_grad_enabled() and (
        ref_feat.requires_grad or src_feats.requires_grad
    )
    parts = []
    for start in range(0, L, chunk):
        d = depths[:, start : start + chunk]
        if use_ckpt:
            part = _checkpoint(
                _plane_sweep_chunk, ref_feat, src_feats, rays, offsets, d, use_reentrant=False
            )
        else:
            part = _plane_sweep_chunk(ref_feat, src_feats, rays, offsets, d)
        parts.append(part)
    return torch.cat(parts, dim=1)
