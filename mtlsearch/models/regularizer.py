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
4. Orthographic camera looking at the image centre: one ray per render pixel, (x, y) on
   the render grid in [-1, 1] (pixel centres per ``align_corners``), ``samples_per_ray``
   mid-point samples on z in [near, far]; sigma = act(density); emission-absorption
   compositing w_i = (1 - exp(-sigma_i d_i)) * exp(-sum_{j<i} sigma_j d_j), value = sum_i w_i v_i.
   Outputs follow the heads' conventions: logits composited (semseg/parts/edge/sal),
   normals L2-normalised, depth = composited raw value (``depth_mode: raw``) or the
   expected ray distance in metres with the leftover transmittance at ``far``
   (``depth_mode: expected``).

Metres and the box: box point b is the camera-frame point p = box_size * b + (0, 0,
box_center_depth) metres. A cross-view render of view I' (``pose``: I'-from-I, i.e. the
sample's ``rel_pose`` convention) maps each I' sample point to metres, into I's frame with
inv(pose), back to I's box, then samples I's tri-plane: view I' is rendered from f(I).

Rays are processed in chunks of ``chunk_rays`` (over the whole batch) to bound memory;
each ray is independent, so the result does not depend on the chunk size.
The regularizer is training-only: ``MultiTaskModel.export`` drops it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mtlsearch.config import Config, RegularizerConfig

DEPTH_TASK = "depth"
NORMALS_TASK = "normals"


def alpha_at(step: int, cfg: Config) -> float:
    """Regularizer weight alpha at training ``step`` (Eq. 2), per ``regularizer.alpha``.

    ``linear_ramp``: 0 -> max over ``ramp_fraction * train.iterations`` steps, then max;
    ``cosine_ramp``: the same ramp along half a cosine; ``step``: 0 before the ramp end,
    max from it on; ``constant``: max. A zero-length ramp gives max from step 0.
    """
    a = cfg.regularizer.alpha
    ramp = a.ramp_fraction * cfg.train.iterations
    if a.schedule == "constant" or ramp <= 0:
        return float(a.max)
    frac = min(max(step / ramp, 0.0), 1.0)
    if a.schedule == "linear_ramp":
        return float(a.max * frac)
    if a.schedule == "cosine_ramp":
        return float(a.max * 0.5 * (1.0 - math.cos(math.pi * frac)))
    if a.schedule == "step":
        return float(a.max) if step >= ramp else 0.0
    raise ValueError(f"regularizer.alpha.schedule: unknown schedule {a.schedule!r}")


def composite_weights(sigma: torch.Tensor, delta: float) -> torch.Tensor:
    """Emission-absorption weights over the last dim: w_i = alpha_i * prod_{j<i}(1 - alpha_j),
    alpha_i = 1 - exp(-sigma_i delta), via an exclusive cumulative sum of optical depth."""
    tau = sigma * delta
    alpha = -torch.expm1(-tau)
    before = torch.cumsum(tau, dim=-1) - tau
    return alpha * torch.exp(-before)


_ACTIVATIONS = {
    "softplus": F.softplus,
    "relu": F.relu,
    "exp": torch.exp,
}


def _mlp(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, cout))


class TriplaneRegularizer(nn.Module):
    """Tri-plane encoder + per-task neural fields + orthographic volume renderer.

    Args:
        in_channels: channels of f(I) (the decoder's ``out_channels``).
        task_channels: output channels of each rendered task.
        cfg: ``regularizer`` section of the config.
    """

    def __init__(self, in_channels: int, task_channels: dict[str, int], cfg: RegularizerConfig) -> None:
        super().__init__()
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
        """Mid-point samples on z in [near, far] and their spacing."""
        s, near, far = self.cfg.samples_per_ray, self.cfg.near, self.cfg.far
        delta = (far - near) / s
        return near + (torch.arange(s, device=device, dtype=torch.float32) + 0.5) * delta, delta

    def ray_points(self, size: tuple[int, int], device: torch.device) -> torch.Tensor:
        """Box-coordinate sample points of the render grid: (h * w, S, 3), rays row-major."""
        h, w = size
        ys, xs = torch.meshgrid(self._axis(h, device), self._axis(w, device), indexing="ij")
        zs, _ = self.sample_depths(device)
        xy = torch.stack([xs, ys], dim=-1).reshape(-1, 1, 2).expand(-1, zs.numel(), 2)
        z = zs.view(1, -1, 1).expand(xy.shape[0], -1, 1)
        return torch.cat([xy, z], dim=-1)

    def to_reference_box(self, points: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Map box points of view I' (R, S, 3) into I's box, given pose = I'-from-I (B, 4, 4)
        (a rigid transform in metres); returns (B, R, S, 3)."""
        cfg = self.cfg
        centre = points.new_tensor([0.0, 0.0, cfg.box_center_depth])
        metres = points * cfg.box_size + centre
        rot, trans = pose[:, :3, :3].to(points.dtype), pose[:, :3, 3].to(points.dtype)
        # p_I = R^T (p_I' - t) for the rigid pose p_I' = R p_I + t.
        local = metres.unsqueeze(0) - trans[:, None, None, :]
        ref = torch.einsum("brsj,bjk->brsk", local, rot)
        return (ref - centre) / cfg.box_size

    # -- encoding and field queries -----------------------------------------

    def encode(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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

    def query(
        self, planes: tuple[torch.Tensor, torch.Tensor, torch.Tensor], points: torch.Tensor
    ) -> torch.Tensor:
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

    def _render_chunk(
        self,
        planes: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        points: torch.Tensor,
        metric_depths: torch.Tensor,
        delta: float,
    ) -> dict[str, torch.Tensor]:
        """Render rays (B, r, S, 3) -> {task: (B, r, C)} (before output normalisation)."""
        feats = self.query(planes, points)
        shared_w = None
        if self.density is not None:
            shared_w = composite_weights(self.activation(self.density(feats).squeeze(-1)), delta)
        out = {}
        for task, field in self.fields.items():
            raw = field(feats)
            if shared_w is None:
                weights = composite_weights(self.activation(raw[..., 0]), delta)
                values = raw[..., 1:]
            else:
                weights, values = shared_w, raw
            if task == DEPTH_TASK and self.cfg.depth_mode == "expected":
                far = metric_depths[-1] + 0.5 * delta * self.cfg.box_size
                rendered = (weights * metric_depths).sum(-1) + (1 - weights.sum(-1)) * far
                out[task] = rendered.unsqueeze(-1)
            else:
                out[task] = (weights.unsqueeze(-1) * values).sum(-2)
        return out

    def render(
        self,
        planes: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        image_size: tuple[int, int],
        pose: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Render every task at ``render_scale * image_size``: {task: (B, C, h, w)}.

        ``pose`` (B, 4, 4), I'-from-I in metres: render view I' from I's tri-plane.
        """
        batch, device = planes[0].shape[0], planes[0].device
        h, w = self.render_size(image_size)
        points = self.ray_points((h, w), device)
        depths, delta = self.sample_depths(device)
        metric_depths = self.cfg.box_center_depth + self.cfg.box_size * depths
        if pose is None:
            points = points.unsqueeze(0).expand(batch, -1, -1, -1)
        else:
            points = self.to_reference_box(points, pose)
        rays = points.shape[1]
        step = max(1, self.cfg.chunk_rays // batch)
        parts: dict[str, list[torch.Tensor]] = {t: [] for t in self.fields}
        for start in range(0, rays, step):
            chunk = self._render_chunk(planes, points[:, start : start + step], metric_depths, delta)
            for task, value in chunk.items():
                parts[task].append(value)
        out = {}
        for task, chunks in parts.items():
            value = torch.cat(chunks, dim=1).transpose(1, 2).reshape(batch, -1, h, w)
            out[task] = F.normalize(value, dim=1) if task == NORMALS_TASK else value
        return out

    def forward(
        self, f: torch.Tensor, image_size: tuple[int, int], pose: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Encode f(I) and render every task (from view I, or view I' given ``pose``)."""
        return self.render(self.encode(f), image_size, pose)
