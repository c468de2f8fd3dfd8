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

import torch
import torch.nn.functional as F
from torch import nn

from mtlsearch.config import CvmConfig
from mtlsearch.errors import UserError
from mtlsearch.models.costvolume import (
    camera_centres,
    cost_volume,
    inverse_depth_planes,
    nearest_views,
    scale_intrinsics,
)
from mtlsearch.models.mvtransformer import (
    MultiViewTransformer,
    sine_position_encoding,
)

ENCODER_STRIDE = 8
ENCODER_OFFSET = 0.0
"""Input coordinate of feature pixel 0's centre for :class:`SpatialEncoder` (see module doc)."""
COST_CHANNELS = 64
"""Channels the cost-volume head produces, whatever the number of depth planes."""

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
