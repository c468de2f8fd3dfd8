"""The 3D-aware regularizer (3DMTL, ICLR 2024): tri-plane, neural task fields, rendering.

Pipeline, from the decoder's fused map f(I) (the heads' input, ``(B, C, h_f, w_f)``):

1. Tri-plane encoder: conv3x3 -> BN -> ReLU -> Dropout -> conv3x3, giving
   ``3 * triplane_width`` channels split into the planes e_xy, e_xz, e_yz (optionally
   resized by ``plane_scale``).
2. A point b = (x, y, z) of the normalised box [-1, 1]^3 is projected on each plane and
   sampled bilinearly (``F.grid_sample``, zero padding outside the box):
   e(b) = e_xy(x, y) + e_xz(x, z) + e_yz(z, y)   (SUM aggregation).
   Plane axes as ``grid_sample`` (u, v) = (width, height) coordinates: e_xy (x, y) so it
   aligns with the image, e_xz (x, z), e_yz (z, y).
3. Per-task neural field: 2-layer MLP (``hidden``, LeakyReLU 0.2) -> density + task vector.
   ``shared_density``: one density MLP for all tasks; otherwise each task MLP has its own.
4. Rays, sampled at ``samples_per_ray`` mid-points, composited by emission-absorption:
   w_i = (1 - exp(-sigma_i d_i)) * exp(-sum_{j<i} sigma_j d_j), value = sum_i w_i v_i.
   Outputs follow the heads' conventions: logits composited (semseg/parts/edge/sal),
   normals L2-normalised, depth as below.

Ray modes (``regularizer.ray_mode``), and what each assumes:

* ``orthographic`` (the paper's, default): one ray per render pixel parallel to z, (x, y)
  on the render grid in [-1, 1] (pixel centres per ``align_corners``), z in the box's
  [near, far]; d_i in box units. It ignores the intrinsics K, so it is only meaningful
  for rendering the input view itself: cross-view rendering is refused (a
  :class:`UserError`). Depth is the composited raw value (``depth_mode: raw``) or the
  expected ray depth in metres, box z mapped by box_size * z + box_center_depth
  (``depth_mode: expected``).
* ``perspective``: pinhole rays through the render pixels' centres with the rendered
  view's K (pixel centres at integer coordinates of the input image: render pixel j sits
  at input u = (j + 1/2) W / w - 1/2), samples at z-depths uniform in metres between
  box_center_depth + box_size * near and box_center_depth + box_size * far, d_i the
  metric length of each segment along the ray. The field lives in the reference
  view's camera frame (``perspective_box``: ``camera`` = the metric box
  b = (p - (0, 0, box_center_depth)) / box_size; ``frustum`` = the reference view's
  normalised pixel coordinates and normalised z-depth, so e_xy stays aligned with the
  image at every depth). A cross-view render of view I' with ``pose`` = I'-from-I
  (the sample's ``rel_pose``: p' = R p + t) casts I' rays, maps each sample into I's
  frame (p = R^T (p' - t)) and queries the field of f(I): exact for any pose. Depth is
  the expected z-depth in the rendered view's frame (the leftover transmittance at far;
  ``depth_mode: raw`` is allowed only without a pose) and normals, which the field
  predicts in I's frame, are rotated into the rendered view's frame (n' = R n).

The renderer (:func:`render_perspective`) takes any :data:`Field` (points in the
reference frame -> density and values per task), so analytic scenes can be rendered
through exactly the code path of the learned tri-plane.

Rays are processed in chunks of ``chunk_rays`` (over the whole batch) to bound memory;
each ray is independent, so the result does not depend on the chunk size.
The regularizer is training-only: ``MultiTaskModel.export`` drops it.

Precision (``train.precision`` bf16/fp16, :mod:`mtlsearch.precision`): under autocast the
tri-plane encoder and the field MLPs run in the low dtype; everything where rounding would
bias the renders runs in float32 with autocast off: ray directions and sample points,
pose and box transforms, tri-plane sampling (bf16 keeps 8 significant bits: a coordinate
near the box's faces would round by up to 2^-9, 1/8 pixel of a 128-pixel plane), densities
and the compositing (the exclusive cumulative sum of optical depth and the transmittance
exp(-tau) would keep about 3 significant digits).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mtlsearch.config import Config, RegularizerConfig
from mtlsearch.errors import UserError
from mtlsearch.precision import autocast_dtype
from mtlsearch.tasks import get_task

Planes = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Field = Callable[[torch.Tensor], dict[str, tuple[torch.Tensor, torch.Tensor]]]
"""A radiance-like field: sample points (B, r, S, 3) in the reference view's frame ->
{task: (density (B, r, S) >= 0, values (B, r, S, C))}; normals in the reference frame."""


def alpha_at(step: int, cfg: Config, task: str | None = None) -> float:
    """Regularizer weight alpha (or alpha_t of ``task``) at training ``step`` (Eq. 2).

    ``regularizer.alpha``: ``linear_ramp``: 0 -> max over ``ramp_fraction *
    train.iterations`` steps, then max; ``cosine_ramp``: the same ramp along half a
    cosine; ``step``: 0 before the ramp end, max from it on; ``constant``: max. A
    zero-length ramp gives max from step 0. ``regularizer.alpha.per_task[task]``, when
    set, replaces max for that task (same schedule).
    """
    a = cfg.regularizer.alpha
    top = float(a.max)
    if task is not None and task in a.per_task:
        top = float(a.per_task[task])
    ramp = a.ramp_fraction * cfg.train.iterations
    if a.schedule == "constant" or ramp <= 0:
        return top
    frac = min(max(step / ramp, 0.0), 1.0)
    if a.schedule == "linear_ramp":
        return top * frac
    if a.schedule == "cosine_ramp":
        return top * 0.5 * (1.0 - math.cos(math.pi * frac))
    if a.schedule == "step":
        return top if step >= ramp else 0.0
    raise ValueError(f"regularizer.alpha.schedule: unknown schedule {a.schedule!r}")


def composite_weights(sigma: torch.Tensor, delta: float | torch.Tensor) -> torch.Tensor:
    """Emission-absorption weights over the last dim: w_i = alpha_i * prod_{j<i}(1 - alpha_j),
    alpha_i = 1 - exp(-sigma_i delta_i), via an exclusive cumulative sum of optical depth.
    ``delta`` is a number or a tensor broadcastable to ``sigma``."""
    tau = sigma * delta
    alpha = -torch.expm1(-tau)
    before = torch.cumsum(tau, dim=-1) - tau
    return alpha * torch.exp(-before)


# ---------------------------------------------------------------------------
# Perspective rays and the generic renderer
# ---------------------------------------------------------------------------


def pixel_rays(K: torch.Tensor, image_size: tuple[int, int], render_size: tuple[int, int]) -> torch.Tensor:
    """Camera-frame directions (B, h * w, 3), z = 1, through the centres of the render
    pixels, rows first. ``K`` (B, 3, 3) is on the input image's pixel grid (pixel centres
    at integers); render pixel (i, j) covers input u = (j + 1/2) W / w - 1/2."""
    (H, W), (h, w) = image_size, render_size
    K = K.to(torch.float64)
    device = K.device
    u = (torch.arange(w, device=device, dtype=torch.float64) + 0.5) * (W / w) - 0.5
    v = (torch.arange(h, device=device, dtype=torch.float64) + 0.5) * (H / h) - 0.5
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    pix = torch.stack([uu, vv, torch.ones_like(uu)], dim=-1).reshape(-1, 3)
    rays = torch.einsum("bij,rj->bri", torch.linalg.inv(K), pix)
    return (rays / rays[..., 2:3]).to(torch.float32)


def to_reference_frame(points: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """Points (B, R, S, 3) of view I' into I's frame, pose = I'-from-I (B, 4, 4):
    p = R^T (p' - t) for the rigid map p' = R p + t."""
    rot, trans = pose[:, :3, :3].to(points.dtype), pose[:, :3, 3].to(points.dtype)
    return torch.einsum("brsj,bjk->brsk", points - trans[:, None, None, :], rot)


def render_perspective(
    field: Field,
    K: torch.Tensor,
    image_size: tuple[int, int],
    render_size: tuple[int, int],
    depth_range: tuple[float, float],
    samples: int,
    pose: torch.Tensor | None = None,
    *,
    raw_depth: bool = False,
    chunk_rays: int = 8192,
) -> dict[str, torch.Tensor]:
    """Render ``field`` from a pinhole camera: {task: (B, C, h, w)}.

    ``K`` (B, 3, 3): the rendered view's intrinsics on the ``image_size`` grid. Samples:
    ``samples`` mid-points of [near, far] = ``depth_range`` in z-depth metres of the
    rendered view. ``pose`` (B, 4, 4), rendered-from-reference (I'-from-I): the field is
    queried in the reference frame and normals are rotated into the rendered frame.
    Depth: the expected z-depth (leftover transmittance at far), or with ``raw_depth``
    (only without a pose) the composited depth value. Normals are L2-normalised.
    """
    near, far = float(depth_range[0]), float(depth_range[1])
    if not 0.0 <= near < far:
        raise UserError(f"perspective rays need 0 <= near < far metres, got {near}, {far}")
    batch = K.shape[0]
    h, w = render_size
    dirs = pixel_rays(K, image_size, render_size)  # (B, R, 3)
    dz = (far - near) / samples
    z = near + (torch.arange(samples, device=K.device, dtype=torch.float32) + 0.5) * dz
    step_len = dirs.norm(dim=-1, keepdim=True) * dz  # (B, R, 1): metres per segment
    rot = pose[:, :3, :3].to(torch.float32) if pose is not None else None
    rays = dirs.shape[1]
    step = max(1, chunk_rays // batch)
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, rays, step):
        d = dirs[:, start : start + step]
        points = d[:, :, None, :] * z[None, None, :, None]
        if pose is not None:
            points = to_reference_frame(points, pose)
        delta = step_len[:, start : start + step]
        for task, (sigma, values) in field(points).items():
            if get_task(task).ray_depth and raw_depth and pose is not None:
                raise UserError(
                    "regularizer.depth_mode: raw depth is a value of the reference view; a "
                    "cross-view render needs depth_mode: expected"
                )
            weights = composite_weights(sigma, delta)
            if get_task(task).ray_depth and not raw_depth:
                value = (weights * z).sum(-1) + (1 - weights.sum(-1)) * far
                value = value.unsqueeze(-1)
            else:
                value = (weights.unsqueeze(-1) * values).sum(-2)
                if rot is not None:
                    value = get_task(task).rotate(value, rot)
            parts.setdefault(task, []).append(value)
    out = {}
    for task, chunks in parts.items():
        value = torch.cat(chunks, dim=1).transpose(1, 2).reshape(batch, -1, h, w)
        out[task] = get_task(task).finish_render(value)
    return out


_ACTIVATIONS = {
    "softplus": F.softplus,
    "relu": F.relu,
    "exp": torch.exp,
}


def _mlp(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, cout))


def check_ray_settings(cfg: RegularizerConfig, tasks: list[str] | tuple[str, ...]) -> None:
    """Raise :class:`UserError` for ray settings that cannot render what is asked:
    cross-view rendering needs perspective rays and, when depth is rendered, the
    expected ray depth; perspective samples must lie in front of the camera."""
    mode = cfg.ray_mode
    if cfg.cross_view.enabled and mode != "perspective":
        raise UserError(
            "regularizer.cross_view.enabled needs regularizer.ray_mode: perspective (the "
            "orthographic rays ignore the intrinsics K, so another view's render would be "
            "geometrically wrong)"
        )
    ray_depth = any(get_task(t).ray_depth for t in tasks)  # depth rendered as expected ray depth
    if cfg.cross_view.enabled and ray_depth and cfg.depth_mode != "expected":
        raise UserError(
            "regularizer.cross_view.enabled renders depth in the second view's frame: set "
            "regularizer.depth_mode: expected (raw is a value of the input view)"
        )
    if mode == "perspective":
        near = cfg.box_center_depth + cfg.box_size * cfg.near
        if near < 0:
            raise UserError(
                f"regularizer.near: perspective rays start at box_center_depth + box_size * "
                f"near = {near:g} m, behind the camera; need >= 0"
            )


class TriplaneRegularizer(nn.Module):
    """Tri-plane encoder + per-task neural fields + volume renderer (see the module doc).

    Args:
        in_channels: channels of f(I) (the decoder's ``out_channels``).
        task_channels: output channels of each rendered task.
        cfg: ``regularizer`` section of the config.
    """

    def __init__(self, in_channels: int, task_channels: dict[str, int], cfg: RegularizerConfig) -> None:
        super().__init__()
        check_ray_settings(cfg, list(task_channels))
        self.cfg = cfg
        self.task_channels = dict(task_channels)
        c3 = 3 * cfg.triplane_width
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, c3, 3, padding=1, bias=False),
            nn.BatchNorm2d(c3),
            nn.ReLU(inplace=True),
            nn.Dropout(cfg.dropout),
            nn.Conv2d(c3, c3, 3, padding=1),
        )
        width, hidden = cfg.triplane_width, cfg.hidden
        self.density = _mlp(width, hidden, 1) if cfg.shared_density else None
        extra = 0 if cfg.shared_density else 1
        self.fields = nn.ModuleDict({t: _mlp(width, hidden, c + extra) for t, c in task_channels.items()})
        self.activation = _ACTIVATIONS[cfg.density_activation]

    @property
    def ray_mode(self) -> str:
        return self.cfg.ray_mode

    # -- geometry -----------------------------------------------------------

    def render_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        s = self.cfg.render_scale
        return max(1, round(image_size[0] * s)), max(1, round(image_size[1] * s))

    def _axis(self, n: int, device: torch.device) -> torch.Tensor:
        """Pixel-centre coordinates in [-1, 1] matching ``grid_sample``'s ``align_corners``."""
        if self.cfg.align_corners:
            return torch.linspace(-1.0, 1.0, n, device=device) if n > 1 else torch.zeros(1, device=device)
        return (torch.arange(n, device=device, dtype=torch.float32) * 2 + 1) / n - 1

    def sample_depths(self, device: torch.device) -> tuple[torch.Tensor, float]:
        """Mid-point samples on box z in [near, far] and their spacing (box units)."""
        s, near, far = self.cfg.samples_per_ray, self.cfg.near, self.cfg.far
        delta = (far - near) / s
        return near + (torch.arange(s, device=device, dtype=torch.float32) + 0.5) * delta, delta

    def metric_depth_range(self) -> tuple[float, float]:
        """The box's [near, far] as camera-frame z-depths in metres."""
        c, s = self.cfg.box_center_depth, self.cfg.box_size
        return c + s * self.cfg.near, c + s * self.cfg.far

    def ray_points(self, size: tuple[int, int], device: torch.device) -> torch.Tensor:
        """Orthographic box-coordinate sample points of the render grid: (h * w, S, 3)."""
        h, w = size
        ys, xs = torch.meshgrid(self._axis(h, device), self._axis(w, device), indexing="ij")
        zs, _ = self.sample_depths(device)
        xy = torch.stack([xs, ys], dim=-1).reshape(-1, 1, 2).expand(-1, zs.numel(), 2)
        z = zs.view(1, -1, 1).expand(xy.shape[0], -1, 1)
        return torch.cat([xy, z], dim=-1)

    def to_box(
        self, points: torch.Tensor, K: torch.Tensor | None, image_size: tuple[int, int]
    ) -> torch.Tensor:
        """Reference-frame points in metres (B, r, S, 3) -> tri-plane box coordinates,
        per ``perspective_box`` (``frustum`` needs the reference view's ``K``)."""
        cfg = self.cfg
        if cfg.perspective_box == "camera":
            centre = points.new_tensor([0.0, 0.0, cfg.box_center_depth])
            return (points - centre) / cfg.box_size
        if K is None:
            raise ValueError("perspective_box: frustum needs the reference view's K")
        H, W = image_size
        uvw = torch.einsum("bij,brsj->brsi", K.to(points.dtype), points)
        z = points[..., 2]
        front = z > 1e-6
        safe = torch.where(front, uvw[..., 2], torch.ones_like(z))
        u, v = uvw[..., 0] / safe, uvw[..., 1] / safe
        if cfg.align_corners:
            bx, by = 2 * u / max(W - 1, 1) - 1, 2 * v / max(H - 1, 1) - 1
        else:
            bx, by = 2 * (u + 0.5) / W - 1, 2 * (v + 0.5) / H - 1
        near, far = self.metric_depth_range()
        bz = 2 * (z - near) / (far - near) - 1
        box = torch.stack([bx, by, bz], dim=-1)
        return torch.where(front.unsqueeze(-1), box, torch.full_like(box, 2.0))

    # -- encoding and field queries -----------------------------------------

    def encode(self, f: torch.Tensor) -> Planes:
        """Tri-plane encoder: f(I) -> (e_xy, e_xz, e_yz), each (B, triplane_width, h', w')."""
        planes = self.encoder(f)
        if self.cfg.plane_scale != 1.0:
            size = (
                max(1, round(planes.shape[-2] * self.cfg.plane_scale)),
                max(1, round(planes.shape[-1] * self.cfg.plane_scale)),
            )
            planes = F.interpolate(planes, size=size, mode="bilinear", align_corners=False)
        xy, xz, yz = planes.chunk(3, dim=1)
        return xy, xz, yz

    def query(self, planes: Planes, points: torch.Tensor) -> torch.Tensor:
        """Tri-plane features of box points (B, R, S, 3) -> (B, R, S, C'), SUM-aggregated."""
        xy, xz, yz = planes
        x, y, z = points.unbind(-1)
        out = 0
        for plane, (u, v) in ((xy, (x, y)), (xz, (x, z)), (yz, (z, y))):
            grid = torch.stack([u, v], dim=-1)
            out = out + F.grid_sample(
                plane, grid, mode="bilinear", padding_mode="zeros", align_corners=self.cfg.align_corners
            )
        return out.permute(0, 2, 3, 1)

    def field(
        self,
        planes: Planes,
        to_box: Callable[[torch.Tensor], torch.Tensor] | None = None,
        mlp_dtype: torch.dtype | None = None,
    ) -> Field:
        """The learned :data:`Field` of ``planes``: points (mapped by ``to_box`` into box
        coordinates; identity when None) -> activated density and values per task, in
        float32. ``mlp_dtype``: autocast dtype of the MLPs (None: as the caller runs)."""

        def mlp_of(net: nn.Module, feats: torch.Tensor) -> torch.Tensor:
            if mlp_dtype is None:
                return net(feats).float()
            with torch.autocast(feats.device.type, dtype=mlp_dtype):
                return net(feats).float()

        def evaluate(points: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
            feats = self.query(planes, points if to_box is None else to_box(points))
            shared = None
            if self.density is not None:
                shared = self.activation(mlp_of(self.density, feats).squeeze(-1))
            out = {}
            for task, mlp in self.fields.items():
                raw = mlp_of(mlp, feats)
                if shared is None:
                    out[task] = (self.activation(raw[..., 0]), raw[..., 1:])
                else:
                    out[task] = (shared, raw)
            return out

        return evaluate

    # -- rendering ------------------------------------------------------------

    def render(
        self,
        planes: Planes,
        image_size: tuple[int, int],
        pose: torch.Tensor | None = None,
        K: torch.Tensor | None = None,
        render_K: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Render every task at ``render_scale * image_size``: {task: (B, C, h, w)}, float32.

        Perspective mode: ``K`` (B, 3, 3) is the input view's intrinsics on the
        ``image_size`` grid; ``pose`` (B, 4, 4), I'-from-I in metres, renders view I'
        (intrinsics ``render_K``, default ``K``) from I's tri-plane. Orthographic mode
        takes neither and refuses a pose. Under autocast only the field MLPs run in its
        dtype; the rest runs in float32 (see the module docstring).
        """
        kind = planes[0].device.type
        mlp_dtype = autocast_dtype(kind)
        # Autocast off for the float32 parts (only where it is on: ``meta``, where models
        # are checked before a search, has no autocast at all).
        off = torch.autocast(kind, enabled=False) if mlp_dtype is not None else contextlib.nullcontext()
        with off:
            planes = (planes[0].float(), planes[1].float(), planes[2].float())
            return self._render_float32(planes, image_size, pose, K, render_K, mlp_dtype)

    def _render_float32(
        self,
        planes: Planes,
        image_size: tuple[int, int],
        pose: torch.Tensor | None,
        K: torch.Tensor | None,
        render_K: torch.Tensor | None,
        mlp_dtype: torch.dtype | None,
    ) -> dict[str, torch.Tensor]:
        if self.ray_mode == "perspective":
            if K is None:
                raise ValueError("regularizer.ray_mode: perspective needs the view's intrinsics K")
            K = K.to(planes[0].device, torch.float32)
            ref_K = K

            def ref_box(points: torch.Tensor) -> torch.Tensor:
                return self.to_box(points, ref_K, image_size)

            return render_perspective(
                self.field(planes, ref_box, mlp_dtype),
                K if render_K is None else render_K.to(K),
                image_size,
                self.render_size(image_size),
                self.metric_depth_range(),
                self.cfg.samples_per_ray,
                pose,
                raw_depth=self.cfg.depth_mode == "raw",
                chunk_rays=self.cfg.chunk_rays,
            )
        if pose is not None:
            raise UserError(
                "cross-view rendering needs regularizer.ray_mode: perspective (orthographic "
                "rays ignore K, so they cannot render another view)"
            )
        return self._render_orthographic(planes, image_size, mlp_dtype)

    def _render_orthographic(
        self, planes: Planes, image_size: tuple[int, int], mlp_dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        batch, device = planes[0].shape[0], planes[0].device
        h, w = self.render_size(image_size)
        points = self.ray_points((h, w), device).unsqueeze(0).expand(batch, -1, -1, -1)
        depths, delta = self.sample_depths(device)
        metric = self.cfg.box_center_depth + self.cfg.box_size * depths
        far = self.cfg.box_center_depth + self.cfg.box_size * self.cfg.far
        expected = self.cfg.depth_mode == "expected"
        field = self.field(planes, mlp_dtype=mlp_dtype)
        step = max(1, self.cfg.chunk_rays // batch)
        parts: dict[str, list[torch.Tensor]] = {t: [] for t in self.fields}
        for start in range(0, points.shape[1], step):
            for task, (sigma, values) in field(points[:, start : start + step]).items():
                weights = composite_weights(sigma, delta)
                if get_task(task).ray_depth and expected:
                    value = ((weights * metric).sum(-1) + (1 - weights.sum(-1)) * far).unsqueeze(-1)
                else:
                    value = (weights.unsqueeze(-1) * values).sum(-2)
                parts[task].append(value)
        out = {}
        for task, chunks in parts.items():
            value = torch.cat(chunks, dim=1).transpose(1, 2).reshape(batch, -1, h, w)
            out[task] = get_task(task).finish_render(value)
        return out

    def forward(
        self,
        f: torch.Tensor,
        image_size: tuple[int, int],
        pose: torch.Tensor | None = None,
        K: torch.Tensor | None = None,
        render_K: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Encode f(I) and render every task (from view I, or view I' given ``pose``)."""
        return self.render(self.encode(f), image_size, pose, K, render_K)
