"""The cross-view module (CvM): spatial encoder, multi-view transformer, plane-sweep cost volume.

Pipeline (derived from UniMatch / MVSplat / DepthSplat; the CvM code is not released):

1. :class:`SpatialEncoder` -- a shallow residual CNN (7x7 stride-2 conv to 64 channels,
   residual stages 64/96/128 with InstanceNorm, total stride 8, 1x1 conv to
   ``cvm.width``) applied to every view.
2. :class:`MultiViewTransformer` -- ``cvm.layers`` blocks of self-attention then
   cross-attention inside Swin-style local windows (``cvm.window_splits`` splits per
   side, windows shifted by half a window on odd blocks), 2D sine position encoding,
   ``cvm.heads`` heads. Each view cross-attends to its ``min(2, V - 1)`` nearest views
   by camera-centre distance (:func:`nearest_views`), i.e. to all others when V <= 3.
3. :func:`cost_volume` -- ``cvm.depth_planes`` candidates uniform in inverse depth
   between ``cvm.near`` and ``cvm.far`` (:func:`inverse_depth_planes`); the reference's
   nearest neighbours' transformer features are warped into the reference view
   (plane sweep with the feature-resolution intrinsics and the relative pose, bilinear
   ``grid_sample``, zeros outside) and correlated with the reference features
   (dot product / sqrt(C), averaged over neighbours), ``cvm.chunk_planes`` planes at a
   time so 512 planes at 56x72 features fit in memory.
4. Output: ``concat(cost head(cost volume, soft-argmin inverse depth) -> 64 channels,
   reference transformer features -> cvm.width channels)``, each part switched by
   ``cvm.use_cost_volume`` / ``cvm.use_features`` (the CvM paper's ablation).
   ``out_channels`` does not depend on the number of planes, so L can be searched.

Conventions. ``rel_pose`` is source-from-reference, ``inv(cam2world_src) @ cam2world_ref``
(OpenCV camera axes, metres): a point X_ref in the reference camera frame is
``R X_ref + t`` in the source frame. Intrinsics are given on the input image's pixel
grid with pixel centres at integer coordinates (u = 0 is the centre of the first column).

Intrinsics at feature resolution (:func:`scale_intrinsics`). If feature pixel j of a
stride-s map is centred on input coordinate ``u = s * j + o``, then
``j = (u - o) / s = (fx X/Z + cx - o) / s``, so ``fx' = fx / s`` and ``cx' = (cx - o) / s``
(same for y). Two offsets occur:

* pooled / area-resized maps (``avg_pool``, ``interpolate(align_corners=False)``): feature
  pixel j averages input pixels ``s j .. s j + s - 1``, centre ``o = (s - 1) / 2``, i.e. the
  half-pixel rule ``cx' = (cx + 0.5) / s - 0.5`` (for s = 8: ``cx' = cx / 8 - 7 / 16``).
  This is the default of :func:`scale_intrinsics`.
* strided convolutions with "same" padding (this module's encoder: 7x7/s2/p3, then
  3x3/s2/p1 and 1x1/s2 in the residual stages): output j is centred on input ``s j``,
  so ``o = 0`` and ``cx' = cx / 8``. The module uses this (:data:`ENCODER_OFFSET`); the
  test suite checks the encoder's receptive field is centred there.

Single-view input (``src_images=None``): the image is duplicated with the identity pose,
so every plane warps each pixel onto itself and the cost volume is the same at all
depths: it carries no geometry (a known property of the design, reported by the paper).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from mtlsearch.config import CvmConfig
from mtlsearch.errors import UserError

ENCODER_STRIDE = 8
ENCODER_OFFSET = 0.0
"""Input coordinate of feature pixel 0's centre for :class:`SpatialEncoder` (see module doc)."""
COST_CHANNELS = 64
"""Channels the cost-volume head produces, whatever the number of depth planes."""
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


# ---------------------------------------------------------------------------
# Spatial-aware encoder
# ---------------------------------------------------------------------------


class _ResidualBlock(nn.Module):
    """Two 3x3 convs with InstanceNorm and ReLU; a strided 1x1 projection when needed."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.InstanceNorm2d(cout, affine=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.norm2 = nn.InstanceNorm2d(cout, affine=False)
        self.down: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                nn.InstanceNorm2d(cout, affine=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        return F.relu(self.down(x) + y)


class SpatialEncoder(nn.Module):
    """UniMatch-style shallow CNN: (N, 3, H, W) -> (N, width, ceil(H/8), ceil(W/8)).

    Feature pixel j is centred on input pixel 8 j (strided convs with same padding).
    """

    def __init__(self, width: int = 128, stages: tuple[int, ...] = (64, 96, 128)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            nn.InstanceNorm2d(64, affine=False),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        cin = 64
        for i, cout in enumerate(stages):
            stride = 1 if i == 0 else 2
            layers += [_ResidualBlock(cin, cout, stride), _ResidualBlock(cout, cout, 1)]
            cin = cout
        self.stages = nn.Sequential(*layers)
        self.proj = nn.Conv2d(cin, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.stages(self.stem(x)))


# ---------------------------------------------------------------------------
# Multi-view transformer
# ---------------------------------------------------------------------------


def sine_position_encoding(
    h: int, w: int, channels: int, device: torch.device | None = None
) -> torch.Tensor:
    """DETR-style normalised 2D sine encoding (channels, h, w): half y, half x.

    ``channels`` must be divisible by 4 (sin/cos pairs per axis).
    """
    npf = channels // 2
    y = (torch.arange(1, h + 1, device=device, dtype=torch.float32) / (h + 1e-6)) * 2 * math.pi
    x = (torch.arange(1, w + 1, device=device, dtype=torch.float32) / (w + 1e-6)) * 2 * math.pi
    dim_t = torch.arange(npf, device=device, dtype=torch.float32)
    dim_t = 10000.0 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / npf)
    py = y[:, None] / dim_t  # (h, npf)
    px = x[:, None] / dim_t  # (w, npf)
    py = torch.stack([py[:, 0::2].sin(), py[:, 1::2].cos()], dim=2).flatten(1)
    px = torch.stack([px[:, 0::2].sin(), px[:, 1::2].cos()], dim=2).flatten(1)
    pos_y = py.t()[:, :, None].expand(npf, h, w)
    pos_x = px.t()[:, None, :].expand(npf, h, w)
    return torch.cat([pos_y, pos_x], dim=0)


def _partition(x: torch.Tensor, splits: int) -> torch.Tensor:
    """(N, H, W, C) -> (N, splits^2, H*W/splits^2, C) non-overlapping windows."""
    N, H, W, C = x.shape
    wh, ww = H // splits, W // splits
    x = x.view(N, splits, wh, splits, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(N, splits * splits, wh * ww, C)


def _merge(x: torch.Tensor, splits: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`_partition`."""
    N, _, _, C = x.shape
    wh, ww = H // splits, W // splits
    x = x.view(N, splits, splits, wh, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(N, H, W, C)


def _window_mask(
    H: int, W: int, valid_h: int, valid_w: int, splits: int, shift: tuple[int, int],
    device: torch.device, dtype: torch.dtype,
) -> torch.Tensor | None:
    """Additive attention mask (nW, T, T) for (possibly shifted) windows of an H x W map
    padded from valid_h x valid_w: tokens of different Swin regions or padded keys are
    masked with a large negative number (finite, so no row is ever all -inf)."""
    sh, sw = shift
    if (sh, sw) == (0, 0) and (valid_h, valid_w) == (H, W):
        return None
    wh, ww = H // splits, W // splits
    region = torch.zeros(H, W, device=device)
    if (sh, sw) != (0, 0):
        count = 0
        for hs in (slice(0, H - wh), slice(H - wh, H - sh), slice(H - sh, H)):
            for ws in (slice(0, W - ww), slice(W - ww, W - sw), slice(W - sw, W)):
                region[hs, ws] = count
                count += 1
    valid = torch.zeros(H, W, device=device)
    valid[:valid_h, :valid_w] = 1.0
    valid = torch.roll(valid, shifts=(-sh, -sw), dims=(0, 1))
    region_w = _partition(region[None, :, :, None], splits)[0, :, :, 0]  # (nW, T)
    valid_w_ = _partition(valid[None, :, :, None], splits)[0, :, :, 0]
    blocked = (region_w[:, :, None] != region_w[:, None, :]) | (valid_w_[:, None, :] < 0.5)
    mask = torch.zeros(blocked.shape, device=device, dtype=dtype)
    return mask.masked_fill(blocked, torch.finfo(dtype).min / 4)


class _AttentionLayer(nn.Module):
    """UniMatch transformer layer: multi-head attention, merge, LayerNorm, optional
    FFN on ``concat(x, message)``; residual ``x + message``."""

    def __init__(self, dim: int, heads: int, ffn_expansion: int | None) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.merge = nn.Linear(dim, dim, bias=False)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn: nn.Module | None = None
        if ffn_expansion:
            hidden = 2 * dim * ffn_expansion
            self.ffn = nn.Sequential(
                nn.Linear(2 * dim, hidden, bias=False), nn.GELU(), nn.Linear(hidden, dim, bias=False)
            )
            self.norm2 = nn.LayerNorm(dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        *lead, T, C = x.shape
        return x.view(*lead, T, self.heads, C // self.heads).transpose(-2, -3)

    def forward(self, x: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x (N, nW, T, C), kv (N, nW, Tk, C), mask (nW, T, Tk) or None."""
        q, k, v = self._split(self.q(x)), self._split(self.k(kv)), self._split(self.v(kv))
        attn_mask = None if mask is None else mask[:, None]
        msg = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        msg = self.norm1(self.merge(msg.transpose(-2, -3).flatten(-2)))
        if self.ffn is not None:
            msg = self.norm2(self.ffn(torch.cat([x, msg], dim=-1)))
        return x + msg


class _TransformerBlock(nn.Module):
    """Self-attention within each view's windows, then cross-attention from each view's
    windows to the same windows of its neighbour views (with FFN)."""

    def __init__(self, dim: int, heads: int, ffn_expansion: int) -> None:
        super().__init__()
        self.self_attn = _AttentionLayer(dim, heads, None)
        self.cross_attn = _AttentionLayer(dim, heads, ffn_expansion)

    def forward(self, x: torch.Tensor, nbr: torch.Tensor, mask: torch.Tensor | None,
                cross_mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, V, nW, T, C) windows; nbr (B, V, k) neighbour indices."""
        B, V, nW, T, C = x.shape
        flat = x.reshape(B * V, nW, T, C)
        flat = self.self_attn(flat, flat, mask)
        x = flat.view(B, V, nW, T, C)
        k = nbr.shape[-1]
        bidx = torch.arange(B, device=x.device)[:, None, None]
        kv = x[bidx, nbr]  # (B, V, k, nW, T, C)
        kv = kv.permute(0, 1, 3, 2, 4, 5).reshape(B * V, nW, k * T, C)
        flat = self.cross_attn(x.reshape(B * V, nW, T, C), kv, cross_mask)
        return flat.view(B, V, nW, T, C)


class MultiViewTransformer(nn.Module):
    """``layers`` blocks of windowed self- then cross-view attention over (B, V, C, h, w)."""

    def __init__(self, dim: int, layers: int, heads: int, splits: int, ffn_expansion: int = 4) -> None:
        super().__init__()
        self.dim = dim
        self.splits = splits
        self.blocks = nn.ModuleList(
            _TransformerBlock(dim, heads, ffn_expansion) for _ in range(layers)
        )

    def forward(self, feats: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
        """feats (B, V, C, h, w), nbr (B, V, k) -> transformed features (B, V, C, h, w)."""
        B, V, C, h, w = feats.shape
        s = self.splits
        x = feats + sine_position_encoding(h, w, C, feats.device).to(feats.dtype)
        Hp, Wp = -(-h // s) * s, -(-w // s) * s
        x = x.flatten(0, 1).permute(0, 2, 3, 1)  # (BV, h, w, C)
        if (Hp, Wp) != (h, w):
            x = F.pad(x, (0, 0, 0, Wp - w, 0, Hp - h))
        wh, ww = Hp // s, Wp // s
        half = (wh // 2, ww // 2) if s > 1 else (0, 0)
        k = nbr.shape[-1]
        masks = {}
        for shifted in (False, True):
            shift = half if shifted else (0, 0)
            m = _window_mask(Hp, Wp, h, w, s, shift, x.device, x.dtype)
            masks[shifted] = (m, None if m is None else m.repeat(1, 1, k))
        for i, block in enumerate(self.blocks):
            shifted = i % 2 == 1 and half != (0, 0)
            if shifted:
                x = torch.roll(x, shifts=(-half[0], -half[1]), dims=(1, 2))
            win = _partition(x, s).view(B, V, s * s, wh * ww, C)
            win = block(win, nbr, *masks[shifted])
            x = _merge(win.view(B * V, s * s, wh * ww, C), s, Hp, Wp)
            if shifted:
                x = torch.roll(x, shifts=half, dims=(1, 2))
        x = x[:, :h, :w].permute(0, 3, 1, 2)
        return x.reshape(B, V, C, h, w)


# ---------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------


class CrossViewModule(nn.Module):
    """Cross-view features for the reference view: (B, out_channels, ceil(H/8), ceil(W/8)).

    ``out_channels = 64 * use_cost_volume + width * use_features`` (independent of the
    number of depth planes). See the module docstring for the design and conventions.
    With ``src_images=None`` the image is paired with itself under the identity pose, so
    the cost volume is constant over depth and carries no geometry.
    """

    def __init__(self, cfg: CvmConfig, ffn_expansion: int = 4) -> None:
        super().__init__()
        if not (cfg.use_cost_volume or cfg.use_features):
            raise UserError(
                "cvm.use_cost_volume and cvm.use_features are both false: "
                "the cross-view module needs at least one of them"
            )
        if cfg.width % 4 != 0 or cfg.width % cfg.heads != 0:
            raise UserError(
                f"cvm.width ({cfg.width}) must be divisible by 4 and by cvm.heads ({cfg.heads})"
            )
        if cfg.window_splits < 1:
            raise UserError(f"cvm.window_splits: must be >= 1, got {cfg.window_splits}")
        if cfg.layers < 0:
            raise UserError(f"cvm.layers: must be >= 0, got {cfg.layers}")
        self.cfg = cfg
        self.encoder = SpatialEncoder(cfg.width)
        self.transformer = MultiViewTransformer(
            cfg.width, cfg.layers, cfg.heads, cfg.window_splits, ffn_expansion
        )
        self.register_buffer(
            "depths", inverse_depth_planes(cfg.near, cfg.far, cfg.depth_planes), persistent=False
        )
        self.cost_head: nn.Module | None = None
        if cfg.use_cost_volume:
            self.cost_head = nn.Sequential(
                nn.Conv2d(cfg.depth_planes + 1, COST_CHANNELS, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(COST_CHANNELS, COST_CHANNELS, 3, padding=1),
            )
        self.out_channels = COST_CHANNELS * cfg.use_cost_volume + cfg.width * cfg.use_features

    def forward(
        self,
        image: torch.Tensor,
        src_images: torch.Tensor | None = None,
        K: torch.Tensor | None = None,
        src_K: torch.Tensor | None = None,
        rel_pose: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """image (B,3,H,W); src_images (B,S,3,H,W) or None; K (B,3,3) and src_K (B,S,3,3)
        on the input pixel grid; rel_pose (B,S,4,4) source-from-reference."""
        return self.forward_all(image, src_images, K, src_K, rel_pose)["out"]

    def forward_all(
        self,
        image: torch.Tensor,
        src_images: torch.Tensor | None = None,
        K: torch.Tensor | None = None,
        src_K: torch.Tensor | None = None,
        rel_pose: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Like :meth:`forward`, also returning the pieces: ``out``, ``features``
        (B, V, width, h, w), ``neighbours`` (B, V, k) and, with the cost volume on,
        ``cost_volume`` (B, L, h, w) and ``depth`` (B, 1, h, w) soft-argmin in metres."""
        src_images, K, src_K, rel_pose = self._views(image, src_images, K, src_K, rel_pose)
        B, S = src_images.shape[:2]
        views = torch.cat([image[:, None], src_images], dim=1)  # (B, V, 3, H, W)
        V = S + 1
        feats = self.encoder(views.flatten(0, 1))
        C, h, w = feats.shape[1:]
        nbr = nearest_views(rel_pose)
        feats = self.transformer(feats.view(B, V, C, h, w), nbr)
        ref = feats[:, 0]
        out: dict[str, torch.Tensor] = {"features": feats, "neighbours": nbr}
        parts = []
        if self.cost_head is not None:
            sel = nbr[:, 0] - 1  # the reference's neighbours, as source indices
            bidx = torch.arange(B, device=image.device)[:, None]
            Kf = scale_intrinsics(K, ENCODER_STRIDE, ENCODER_OFFSET)
            src_Kf = scale_intrinsics(src_K[bidx, sel], ENCODER_STRIDE, ENCODER_OFFSET)
            cv = cost_volume(
                ref, feats[:, 1:][bidx, sel], Kf, src_Kf, rel_pose[bidx, sel],
                self.depths, self.cfg.chunk_planes,
            )
            inv = 1.0 / self.depths
            inv_est = (cv.softmax(dim=1) * inv[None, :, None, None]).sum(1, keepdim=True)
            inv_norm = (inv_est - 1.0 / self.cfg.far) / (1.0 / self.cfg.near - 1.0 / self.cfg.far)
            parts.append(self.cost_head(torch.cat([cv, inv_norm], dim=1)))
            out["cost_volume"] = cv
            out["depth"] = 1.0 / inv_est
        if self.cfg.use_features:
            parts.append(ref)
        out["out"] = torch.cat(parts, dim=1)
        return out

    @staticmethod
    def _views(
        image: torch.Tensor,
        src_images: torch.Tensor | None,
        K: torch.Tensor | None,
        src_K: torch.Tensor | None,
        rel_pose: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Check shapes; fill the single-view case (duplicate image, identity pose)."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be (B, 3, H, W), got {tuple(image.shape)}")
        B, _, H, W = image.shape
        eye4 = torch.eye(4, device=image.device, dtype=image.dtype)
        if src_images is None:
            if K is None:  # any K works: the identity pose maps every pixel onto itself
                f = float(max(H, W))
                K = image.new_tensor([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]])
                K = K.expand(B, 3, 3)
            return image[:, None], K, K[:, None], eye4.expand(B, 1, 4, 4)
        if src_images.dim() != 5 or src_images.shape[0] != B or src_images.shape[2:] != image.shape[1:]:
            raise ValueError(
                f"src_images must be (B, S, 3, H, W) matching image {tuple(image.shape)}, "
                f"got {tuple(src_images.shape)}"
            )
        S = src_images.shape[1]
        if K is None or rel_pose is None:
            raise ValueError("the cross-view module needs K and rel_pose with src_images")
        if src_K is None:
            src_K = K[:, None].expand(B, S, 3, 3)
        if rel_pose.shape != (B, S, 4, 4) or src_K.shape != (B, S, 3, 3) or K.shape != (B, 3, 3):
            raise ValueError(
                f"expected K (B,3,3), src_K (B,S,3,3), rel_pose (B,S,4,4) with B={B}, S={S}; got "
                f"{tuple(K.shape)}, {tuple(src_K.shape)}, {tuple(rel_pose.shape)}"
            )
        return src_images, K, src_K, rel_pose


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = [
    "COST_CHANNELS",
    "ENCODER_OFFSET",
    "ENCODER_STRIDE",
    "CrossViewModule",
    "MultiViewTransformer",
    "SpatialEncoder",
    "camera_centres",
    "cost_volume",
    "count_parameters",
    "inverse_depth_planes",
    "nearest_views",
    "scale_intrinsics",
    "sine_position_encoding",
]
